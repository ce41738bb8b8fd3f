"""The docs stay true to the tree: the design page's layout names every module, every file a
page cites exists, and the command reference has a section for every command and option."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


def _layout_block() -> list[str]:
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = text[text.index("## Layout") :]
    return section.split("```", 2)[1].splitlines()


def _owners(lines: list[str]) -> dict[str, str]:
    """folder path (``bench/config``) → the text of the block's lines that belong to it."""
    stack: list[tuple[int, str]] = []  # (indent, folder path)
    owned: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        first = line.split()[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if first.endswith("/"):
            parent = stack[-1][1] + "/" if stack else ""
            stack.append((indent, parent + first.rstrip("/")))
        if stack:
            owned[stack[-1][1]] = owned.get(stack[-1][1], "") + " " + line
    return owned


def modules_missing_from_layout(lines: list[str]) -> list[str]:
    owned = _owners(lines)
    missing = []
    for pkg in ("bench", "kdcore"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "build" in rel.parts:  # what `pip install ./kdcore` leaves
                continue
            folder = rel.parent.as_posix()
            if path.name == "__init__.py":
                if folder not in owned:
                    missing.append(folder + "/")
            elif not re.search(rf"(?<![\w.]){re.escape(path.name)}\b", owned.get(folder, "")):
                missing.append(rel.as_posix())
    return missing


def test_the_design_page_names_every_module() -> None:
    assert modules_missing_from_layout(_layout_block()) == []


def test_the_layout_check_finds_a_missing_module() -> None:
    lines = [line for line in _layout_block() if "sweep.py" not in line]
    assert "bench/run/sweep.py" in modules_missing_from_layout(lines)


CITED = re.compile(
    r"(?<![\w/.-])((?:bench|kdcore|benchmarks|tests|suites|docs|results/benchmarks)/"
    r"[\w./-]*\w\.(?:py|toml|md|sh|json))\b"
)


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_file_a_page_cites_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = sorted({m for m in CITED.findall(text) if not (ROOT / m).exists()})
    assert missing == []


def _commands() -> dict[str, argparse.ArgumentParser]:
    from bench.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _section(text: str, command: str) -> str:
    start = text.index(f"## kdbench {command}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_command_and_option_has_its_place_in_the_reference(command: str) -> None:
    text = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    section = _section(text, command)
    options = [
        o
        for a in _commands()[command]._actions
        for o in a.option_strings
        if o.startswith("--") and o not in ("--help", "--verbose", "--quiet")
    ]
    assert [o for o in options if f"`{o}" not in section] == []


def test_the_exit_code_table_has_every_code_the_cli_states() -> None:
    from bench.cli import EXIT_CODES

    text = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    table = text[text.index("## Exit codes") : text.index("## kdbench run")]
    codes = set(re.findall(r"\b(\d{1,3})\b", EXIT_CODES))
    assert {c for c in codes if f"| {c} " not in table and f"/ {c} |" not in table} == set()
