"""A throwaway PostgreSQL server for the integration tests: a fresh cluster in a temporary
folder, listening on 127.0.0.1 only, stopped and deleted afterwards. ``.ci/run`` installs the
Debian package ``postgresql``; where no server binary exists the tests that need one skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PASSWORD = "kd-S3cret-pw"  # tests grep every output file for it


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Yield the URL of a fresh database (user ``kd`` with a password) on 127.0.0.1."""
    initdb, pg_ctl, postgres_bin = find_bin("initdb"), find_bin("pg_ctl"), find_bin("postgres")
    if not (initdb and pg_ctl and postgres_bin):
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    root = os.geteuid() == 0
    as_user: list[str] = ["runuser", "-u", "postgres", "--"] if root else []
    folder = Path(tempfile.mkdtemp(prefix="kdbench-pg-"))
    data, sock = folder / "data", folder / "sock"
    sock.mkdir()
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if root:
        shutil.chown(folder, "postgres")
        shutil.chown(sock, "postgres")
        shutil.chown(pwfile, "postgres")
    port = _free_port()

    def run(*cmd):
        return subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)

    try:
        run(
            initdb,
            "-D",
            str(data),
            "-U",
            "kd",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
        )
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sock} -c max_connections=100 -c fsync=off"
        run(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        createdb = find_bin("createdb")
        for _ in range(20):
            res = subprocess.run(
                [createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "kd", "studies"],
                capture_output=True,
                text=True,
                env=env,
            )
            if res.returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"createdb failed: {res.stderr}")
        yield f"postgresql://kd:{PASSWORD}@127.0.0.1:{port}/studies"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)
