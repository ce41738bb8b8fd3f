"""The example in kdcore's docstring (and docs/api.md) runs as written and shows what it says:
the ensemble beats chance, the distilled students learn, the scratch twin is there."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import kdcore

ROOT = Path(__file__).resolve().parents[2]


def _example(text: str) -> str:
    """The indented code block after the docstring's "Example" paragraph."""
    block = text[text.index("Example") :].split("::\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"


def test_the_docstring_example_runs_and_distils() -> None:
    code = _example(kdcore.__doc__ or "")
    assert len([line for line in code.splitlines() if line.strip()]) <= 16
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "kdcore-example", "exec"), {})
    numbers = [float(v) for v in re.findall(r"\d\.\d+", out.getvalue())]
    teacher, students = numbers[0], numbers[1:]
    assert len(students) == 3  # two distilled students and the scratch twin
    assert teacher > 0.85 and min(students) > 0.6  # three classes: chance is ~0.4 here


def test_the_api_page_shows_the_same_example() -> None:
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert _example(kdcore.__doc__ or "") in page


def test_the_core_namespace_is_small() -> None:
    assert 15 <= len(kdcore.__all__) <= 25
    for name in kdcore.__all__:
        assert getattr(kdcore, name).__doc__, name
