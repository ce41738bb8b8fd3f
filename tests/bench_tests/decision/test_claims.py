"""Every sentence that states a decision is worded in one module, bench.decision.claims: the
CLI, ``recommend --json``, the report's first screen and the model card all print from it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CLAIMS = ROOT / "bench" / "decision" / "claims.py"

# Phrases that assert a decision's outcome (not column headers, help texts or definitions).
DECISION = re.compile(
    r"\b(is|are|was|were|be) (not )?certified\b|\bCertified at\b|\bNot certified\b"
    r"|\bcertified only at\b|Recommended student|No certified student|no student is certified"
    r"|[Dd]istillation is (not )?needed|no better than its best member|^Ship |"
    r"none meets the cost limits|\b\d+ of \d+ (validation-ordered )?candidates"
)


def decision_literals(source: str) -> list[str]:
    """The string literals of ``source`` (docstrings aside) that word a decision."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and DECISION.search(node.value)
    ]


def test_only_the_claims_module_words_a_decision() -> None:
    found = {
        str(path.relative_to(ROOT)): hits
        for path in (ROOT / "bench").rglob("*.py")
        if path != CLAIMS and (hits := decision_literals(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_claims_module_does_word_them() -> None:
    assert len(decision_literals(CLAIMS.read_text(encoding="utf-8"))) >= 8


def test_a_decision_sentence_elsewhere_is_found() -> None:
    src = 'def f(n):\n    """Ship it."""\n    return f"Distillation is needed at {n} pp"\n'
    assert decision_literals(src) == ["Distillation is needed at "]
