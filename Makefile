# `make run` and `make test` work on a fresh machine: each creates the virtual
# environment when missing and reinstalls when setup.cfg changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test coverage install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/connector serve

# Tests run in TEST_WORKERS processes (pytest-xdist; 0: in this one). Many wait on servers starting, the
# browser and fakes' clocks, so on two cores the run keeps about 1.5 of them busy with three workers: a fresh
# clone's `.ci/run` took 568 s with three, 632 s with two (2026-11-27).
TEST_WORKERS ?= 3

# PostgreSQL too when one answers where CI has it (127.0.0.1:5432, trust auth, database `test`), unless
# TEST_DATABASE_URL names another; without one, the PostgreSQL half is skipped and the run says so at its end.
LOCAL_POSTGRES := postgresql+psycopg://postgres@127.0.0.1:5432/test

test: install-test
	@if [ -z "$${TEST_DATABASE_URL:-}" ] && command -v pg_isready >/dev/null 2>&1 \
	    && pg_isready -q -h 127.0.0.1 -p 5432 -d test; then export TEST_DATABASE_URL="$(LOCAL_POSTGRES)"; fi; \
	echo "TEST_DATABASE_URL=$${TEST_DATABASE_URL:-<unset: SQLite only>}"; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=30 $(PYTEST_ARGS)

# The suite with line and branch coverage, printed at the end (slower: every line is traced).
coverage:
	$(MAKE) test PYTEST_ARGS="--cov=connector --cov=web --cov=webui --cov=commands --cov=app --cov-branch \
	    --cov-report=term:skip-covered $(PYTEST_ARGS)"

clean:
	rm -rf $(VENV) var/*.db
