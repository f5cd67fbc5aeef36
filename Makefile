# make run      the whole stack in the foreground (Temporal dev server + UI, worker, API); Ctrl-C stops it
# make test     lint, then every test (on 2 cores); the tests start the servers they need
# make lint     ruff check + ruff format --check
# make fmt      ruff format + ruff check --fix
# make clean    remove .venv and caches (never the data)
# make clean-data  remove .data: the Temporal SQLite file, grant store and keys of make run
#
# Needs only python3 (3.11+) and make: the venv is created on first use, and
# reinstalled whenever pyproject.toml is newer than the last install.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run test lint fmt clean clean-data

help:
	@sed -n 's/^# \(make .*\)/\1/p' $(firstword $(MAKEFILE_LIST))

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/python -m devstack

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.data/*' -exec rm -rf {} +

clean-data:
	rm -rf .data
