"""Session-wide guards for the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _entries() -> set[Path]:
    return {p for d in ("results", "reports") for p in (ROOT / d).glob("*")}


@pytest.fixture(scope="session", autouse=True)
def _tests_write_nothing_into_the_repository():
    """Tests write into temporary folders only, never into the repo's results/ or reports/."""
    before = _entries()
    yield
    created = sorted(str(p.relative_to(ROOT)) for p in _entries() - before)
    assert not created, f"tests wrote into the repository: {created}"
