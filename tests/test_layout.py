"""The shape of the source tree (docs/design.md): one folder per stage, layers that import one
way, no private names shared between modules, kdcore torch-only. Read from the source with ``ast``, so a lazy import inside
a function counts as much as one at the top of a file."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "kdcore", "benchmarks")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            if "build" in f.relative_to(ROOT).parts:  # what `pip install ./kdcore` leaves
                continue
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name in one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, imported name or None) for every absolute import in ``path``."""
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names]
    return out


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, name in _imports(path):
            # `from bench.study import ledger` imports the submodule, not the package
            full = _resolve(f"{target}.{name}") if name else None
            dest = full if full and full != _resolve(target) else _resolve(target)
            if dest and dest != mod:
                edges[mod].add(dest)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


# bench's folders, from the top of the dependencies down: a module imports only from its own
# folder, the folders after it and the base modules (bench/*.py but the CLI). This is the one
# place the order is declared; docs/design.md shows it.
LAYERS = (
    "ship",
    "run",
    "report",
    "search",
    "group",
    "decision",
    "latency",
    "study",
    "teachers",
    "records",
    "config",
    "tasks",
    "models",
    "durable",
)
ENTRY = ("bench.cli", "bench.__main__", "bench.progress")  # the command line: any layer
MAX_TOP_LEVEL = 10


def layer_of(mod: str) -> int | None:
    """The layer index of a bench module (base modules: below every folder); None for the CLI
    and for modules outside bench."""
    parts = mod.split(".")
    if parts[0] != "bench" or mod in ENTRY:
        return None
    if len(parts) > 2 or (len(parts) == 2 and (ROOT / "bench" / parts[1]).is_dir()):
        return LAYERS.index(parts[1])
    return len(LAYERS)


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, targets in sorted(edges.items()):
        mine = layer_of(mod)
        if mine is None:
            continue
        for dest in sorted(targets):
            theirs = layer_of(dest)
            if dest in ENTRY or (theirs is not None and theirs < mine):
                out.append(f"{mod} imports {dest}")
    return out


def test_every_bench_folder_is_a_declared_layer() -> None:
    folders = {p.name for p in (ROOT / "bench").iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(LAYERS)


def test_imports_go_down_the_layers() -> None:
    assert layer_violations(_graph()) == []


def test_the_layer_rule_finds_an_upward_import() -> None:
    edges = {"bench.group.fit": {"bench.search.context"}, "bench.stats": {"bench.records"}}
    assert layer_violations(edges) == [
        "bench.group.fit imports bench.search.context",
        "bench.stats imports bench.records",
    ]


def test_bench_has_few_top_level_modules() -> None:
    top = sorted(p.name for p in (ROOT / "bench").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


def test_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_no_module_imports_another_modules_private_names() -> None:
    shared = [
        f"{mod} imports {name} from {target}"
        for mod, path in MODULES.items()
        for target, name in _imports(path)
        if name and name.startswith("_") and not name.startswith("__") and _resolve(target)
    ]
    assert shared == []


@pytest.mark.parametrize("forbidden", ["bench", "optuna", "pandas", "matplotlib", "sklearn"])
def test_kdcore_imports_torch_and_numpy_only(forbidden: str) -> None:
    offenders = [
        f"{mod} imports {target}"
        for mod, path in MODULES.items()
        if mod.startswith("kdcore")
        for target, _ in _imports(path)
        if target.split(".")[0] == forbidden
    ]
    assert offenders == []


MAX_LINES = 80


def test_a_long_function_says_why() -> None:
    """A function over 80 lines carries a ``# Long by design:`` comment just above it."""
    unexplained = []
    for mod, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if node.end_lineno is None or node.end_lineno - node.lineno + 1 <= MAX_LINES:
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            above = lines[max(0, first - 3) : first]
            if not any(line.strip().startswith("# Long by design:") for line in above):
                unexplained.append(f"{mod}.{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert unexplained == []


NOQA = re.compile(r"#\s*noqa(?::\s*([A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?(.*)$")


def noqa_without_reason(text: str) -> list[int]:
    """Lines whose ``noqa`` comment names no rule or gives no reason after its codes (comments
    only: read with ``tokenize``, so strings that mention one do not count)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        m = NOQA.search(tok.string) if tok.type == tokenize.COMMENT else None
        if m and (not m.group(1) or len(m.group(2).strip(" —-():")) < 8):
            out.append(tok.start[0])
    return out


def test_every_noqa_says_why() -> None:
    """A silenced lint rule (``# noqa: CODE``) carries a one-line reason after its code."""
    files = [*MODULES.values(), *(ROOT / "tests").rglob("*.py")]
    bare = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in files
        for n in noqa_without_reason(path.read_text(encoding="utf-8"))
    ]
    assert bare == []


def test_the_noqa_check_finds_a_bare_one() -> None:
    text = "x = 1  # noqa: E731\ny = 2  # noqa\nz = 3  # noqa: PLR0913 — the kernel's tensors\n"
    assert noqa_without_reason(text) == [1, 2]
