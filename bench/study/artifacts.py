"""Kept students' weights in an Optuna artifact store, not in the study's attributes.

A certification trial uploads the weights of the seed it would ship with
:func:`optuna.artifacts.upload_artifact` (so optuna-dashboard lists them on the trial's page)
and keeps only a small reference in the user attribute ``kdbench_weights``:
``{"seed", "artifact_id", "store", "sha256", "bytes"}``. ``store`` names where the artifact
lives, so any host that can reach it (``pull``, ``export``, ``doctor``) fetches the same
bytes and checks their sha256.

Where the store is (``[budget] artifacts``):

- ``""`` (default): a folder ``artifacts/`` inside the run folder; for a shared (RDB) study,
  ``<--out>/artifacts/<study>`` on the host that ran the trial.
- a folder path: a :class:`~optuna.artifacts.FileSystemArtifactStore` there (a shared mount
  serves several hosts).
- ``s3://bucket``: a :class:`~optuna.artifacts.Boto3ArtifactStore` (needs ``boto3``;
  credentials and an S3-compatible endpoint come from boto3's usual settings, e.g.
  ``AWS_ENDPOINT_URL`` for MinIO). Artifacts are stored under their ids at the bucket's root.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from bench.errors import InputError

__all__ = ["ArtifactProblem", "fetch_weights", "open_store", "put_weights", "resolve_location"]


class ArtifactProblem(Exception):
    """A kept student's artifact is missing from its store or is not the bytes recorded."""


def resolve_location(setting: str, default: Path) -> str:
    """The store's location as recorded in every reference: an ``s3://`` URL as given, else
    an absolute folder (``default`` when ``setting`` is empty)."""
    if setting.startswith("s3://"):
        bucket = setting[len("s3://") :].rstrip("/")
        if not bucket or "/" in bucket:
            raise InputError(
                "The key [budget] artifacts must be a folder or s3://bucket (no prefix: "
                f"artifacts are named by their ids). Got {setting!r} instead."
            )
        if importlib.util.find_spec("boto3") is None:
            raise InputError(
                f"The key [budget] artifacts = {setting!r} needs boto3 (pip install boto3). "
                "Got no boto3 installed."
            )
        return "s3://" + bucket
    return str(Path(setting or default).expanduser().resolve())


def open_store(location: str) -> Any:
    """The artifact store at ``location`` (an absolute folder, created, or ``s3://bucket``)."""
    if not location.startswith("s3://"):
        Path(location).mkdir(parents=True, exist_ok=True)
        return FileSystemArtifactStore(location)
    try:
        from optuna.artifacts import Boto3ArtifactStore

        return Boto3ArtifactStore(location[len("s3://") :])
    except ImportError:
        raise InputError(
            f"The artifact store {location} needs boto3 (pip install boto3). Got no boto3 "
            "installed."
        ) from None


def put_weights(
    location: str,
    storage: optuna.storages.BaseStorage,
    study_name: str,
    number: int,
    seed: int,
    data: bytes,
) -> dict[str, Any]:
    """Upload ``data`` (a ``torch.save`` of a state_dict) as an artifact of trial ``number``
    and return the reference that trial keeps."""
    store = open_store(location)
    study_id = storage.get_study_id_from_name(study_name)
    trial = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, number))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"trial-{number}-seed-{seed}.pt"
        path.write_bytes(data)
        artifact_id = upload_artifact(
            artifact_store=store,
            file_path=os.fspath(path),
            study_or_trial=trial,
            storage=storage,
            mimetype="application/octet-stream",
        )
    return {
        "seed": int(seed),
        "artifact_id": artifact_id,
        "store": location,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }


def fetch_weights(ref: dict[str, Any], location: str | None = None) -> bytes:
    """The bytes a reference names, from its store (or ``location``), checked against the
    recorded sha256; :class:`ArtifactProblem` when they are missing or differ."""
    where = location or str(ref.get("store", ""))
    artifact_id = str(ref.get("artifact_id", ""))
    if not where or not artifact_id:
        raise ArtifactProblem("the trial's weights reference names no artifact")
    store = open_store(where)
    try:
        with store.open_reader(artifact_id) as f:
            data = f.read()
    except (ArtifactNotFound, FileNotFoundError, OSError) as exc:
        raise ArtifactProblem(
            f"artifact {artifact_id} is missing from the store {where} ({type(exc).__name__})"
        ) from None
    if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
        raise ArtifactProblem(
            f"artifact {artifact_id} in the store {where} is not the file recorded (sha256 differs)"
        )
    return data
