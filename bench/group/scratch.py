"""Scratch baselines per (family, architecture, seed, searched recipe): trained once in some
group, recorded with its trial, reused by every later trial of the same architecture."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.group.evaluate import Evaluation
from bench.group.plan import GroupPlan, Role
from bench.stats import pack_bits
from kdcore.families import format_arch

__all__ = ["ScratchStore", "scratch_entries"]


class ScratchStore:
    """Scratch baselines per (family, architecture, seed): trained once, reused by trials."""

    def __init__(self, data: dict[str, dict[str, Any]] | None = None) -> None:
        # per key: the scratch student's accuracies (floats) and its packed right/wrong bits
        self.data: dict[str, dict[str, Any]] = dict(data or {})

    @staticmethod
    def key(
        family: str,
        arch: Mapping[str, int | float],
        seed: int,
        recipe: Mapping[str, float] | None = None,
    ) -> str:
        """``family:arch:seed``, plus the searched recipe keys of the group when ``[search]``
        samples some (a scratch twin trains with its group's recipe)."""
        tail = "".join(f":{k}={v!r}" for k, v in sorted((recipe or {}).items()))
        return f"{family}:{format_arch(family, arch)}:{seed}{tail}"

    def get(
        self,
        family: str,
        arch: Mapping[str, int | float],
        seed: int,
        recipe: Mapping[str, float] | None = None,
    ) -> dict[str, Any] | None:
        return self.data.get(self.key(family, arch, seed, recipe))

    def put(
        self,
        value: dict[str, Any],
        family: str,
        arch: Mapping[str, int | float],
        seed: int,
        recipe: Mapping[str, float] | None = None,
    ) -> None:
        self.data[self.key(family, arch, seed, recipe)] = value


def scratch_entries(
    plan: GroupPlan,
    ev: Evaluation,
    family: str,
    arch: dict[str, int | float],
    recipe: Mapping[str, float] | None,
) -> dict[str, dict[str, Any]]:
    """The group's new scratch baselines (:class:`ScratchStore` entries), its failed ones
    left out: accuracies, and the packed right/wrong bits that pair later trials' KD gains."""
    failed = ev.distiller.failed_
    full = {s.seed: s for s in plan.scratch(Role.FULL) if s.index not in failed}
    out: dict[str, dict[str, Any]] = {}
    for slot in plan.scratch():
        if slot.index in failed:
            continue
        value = {
            "scratch_acc": float(ev.right[slot.index].mean()),
            "scratch_val_acc": ev.distiller.val_acc_[slot.index],
            "scratch_right": pack_bits(ev.right[slot.index]),
        }
        if slot.seed in full:
            value["full_scratch_acc"] = float(ev.right[full[slot.seed].index].mean())
            value["full_scratch_right"] = pack_bits(ev.right[full[slot.seed].index])
        out[ScratchStore.key(family, arch, slot.seed, recipe)] = value
    return out
