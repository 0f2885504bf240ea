# migrator — see README.md. Every target works from a fresh clone on Debian as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PGPASSWORD ?= migrator-test

.PHONY: venv bytecode deps test lint unit demo bench clean docs

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Bytecode up front (only what changed): where PYTHONDONTWRITEBYTECODE is set, every migrator
# process would otherwise compile the whole package again at start-up.
bytecode: venv
	$(PY) -m compileall -q migrator > /dev/null

venv: $(VENV)/.installed

deps: venv
	bash scripts/test-services.sh

lint: venv
	$(VENV)/bin/ruff check migrator tests bench
	$(VENV)/bin/ruff format --check migrator tests bench
	$(VENV)/bin/mypy migrator
	$(VENV)/bin/lint-imports

# The whole suite: lint, then pytest against real slapd, Dovecot, PostgreSQL and the EWS simulator,
# spread over TEST_WORKERS pytest-xdist processes, a test file to each at a time (its module
# fixtures are made once); TEST_WORKERS=0 runs it in one process. Where the time goes: docs/benchmarks.md.
TEST_WORKERS ?= 2
test: deps lint bytecode
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=15 -n $(TEST_WORKERS) --dist loadfile

demo: bytecode
	$(PY) -m migrator.samples.demo

bench: deps
	$(PY) -m bench.run_all

docs: venv
	$(PY) -m migrator.cli.docgen > docs/cli.md

clean:
	rm -rf $(VENV) demo build *.egg-info .pytest_cache .mypy_cache .ruff_cache
