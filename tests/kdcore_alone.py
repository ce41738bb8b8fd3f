"""Run by ``make kdcore-alone`` (and CI) in a fresh virtual environment holding only kdcore,
torch and numpy: kdcore imports, the harness's dependencies are absent, and the example of its
docstring runs. Not a pytest module: it runs where pytest is not installed."""

from __future__ import annotations

import importlib.util
import sys

import kdcore
import kdcore.stream  # the streaming path, too, needs torch and numpy only

ABSENT = ("bench", "pandas", "optuna", "matplotlib", "sklearn", "scipy", "onnx", "pytest")


def main() -> int:
    present = [m for m in ABSENT if importlib.util.find_spec(m) is not None]
    if present:
        print(f"kdcore-alone: these should not be installed here: {present}", file=sys.stderr)
        return 1
    doc = kdcore.__doc__ or ""
    block = doc[doc.index("Example") :].split("::\n\n", 1)[1]
    code = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        code.append(line[4:])
    exec(compile("\n".join(code), "kdcore-example", "exec"), {})
    print(
        f"kdcore-alone: kdcore {kdcore.__file__} imports and its example runs with torch and numpy only"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
