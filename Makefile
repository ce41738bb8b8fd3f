# Quick start: `make demo` and `make test`. Both create/reuse .venv and install pinned deps.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kdbench-installed
DOCS_STAMP := $(VENV)/.kdbench-docs-installed
SUITE ?= suites/seed.toml
# local worker processes for the demo (bench.run.workers): the reference machine has 2 cores
WORKERS ?= 2

.PHONY: demo test bench lint typecheck docs install clean kdcore-alone

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kdbench needs Python >= 3.11, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt setuptools
	$(BIN)/python -m pip install -q -c constraints.txt --no-build-isolation -e '.[dev,postgres,onnx,models,data]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kdbench run $(SUITE) --workers $(WORKERS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	mkdir -p results/benchmarks
	$(BIN)/python -m pytest -q benchmarks --benchmark-only \
		--benchmark-json=results/benchmarks/bench-$$(date -u +%Y%m%dT%H%M%SZ).json
	$(BIN)/python benchmarks/benchsummary.py results/benchmarks

lint: $(STAMP)
	$(BIN)/ruff check kdcore bench tests benchmarks
	$(BIN)/ruff format --check kdcore bench tests benchmarks
	$(MAKE) typecheck

# mypy: kdcore strict, bench basic (pyproject.toml [tool.mypy])
typecheck: $(STAMP)
	$(BIN)/mypy

$(DOCS_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt --no-build-isolation -e '.[dev,postgres,onnx,models,data,docs]'
	touch $(DOCS_STAMP)

# the documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link or page fails
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# kdcore by itself: a fresh virtualenv with kdcore, torch and numpy only (docs/api.md); pip's
# cache and the local torch wheel make it quick
# (installed from a copy: pip builds a local folder in place, leaving build/ and an egg-info)
kdcore-alone:
	rm -rf .venv-kdcore
	$(PY) -m venv .venv-kdcore
	mkdir -p .venv-kdcore/src && cp -r kdcore .venv-kdcore/src/kdcore
	.venv-kdcore/bin/python -m pip install -q -c constraints.txt .venv-kdcore/src/kdcore
	.venv-kdcore/bin/python tests/kdcore_alone.py

clean:
	rm -rf $(VENV) .venv-kdcore .pytest_cache .ruff_cache .mypy_cache site
