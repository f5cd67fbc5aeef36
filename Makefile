# make run      the whole stack in the foreground (Temporal dev server + UI, worker, API); Ctrl-C stops it
# make test     lint, then every test (on 2 cores); the tests start the servers they need
#               (Debian's chromium and nginx are installed once, for the browser and Temporal TLS tests)
# make bench    benchmarks against a fresh Temporal dev server, loopback only (~60 min on 2 cores:
#               revocation with 1,000 and 5,000 grants active, their expiries over 5 minutes; the
#               service, policies, token algorithms, notifications on/off, PostgreSQL state and two
#               workers): prints the figures and writes docs/benchmarks.md and its plots (not in make test)
# make chaos    chaos run (~10 min on 2 cores): the Temporal dev server, worker and API SIGKILLed and
#               restarted while grants expire and are read, extended, revoked; prints the results table
#               and writes bench/results/chaos.json (ARGS="--requests 40 --minutes 2" for a shorter one)
# make demo-db  a PostgreSQL to try provisioning on (orders database, access_admin role), in the
#               foreground: run it in a second terminal, Ctrl-C stops it (JIT_DEMO_DB_PORT, default 5433)
# make lint     ruff check + ruff format --check
# make fmt      ruff format + ruff check --fix
# make clean    remove .venv and caches (never the data)
# make clean-data  remove .data (the Temporal SQLite file, grant store and keys of make run) and .demo-db
#
# Needs only python3 (3.11+) and make: the venv is created on first use, and
# reinstalled whenever pyproject.toml is newer than the last install.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run demo-db test bench chaos lint fmt clean clean-data chromium nginx

help:
	@sed -n 's/^# \(make .*\)/\1/p' $(firstword $(MAKEFILE_LIST))

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/python -m devstack

demo-db: $(STAMP)
	$(BIN)/python -m devstack.demo_db

test: $(STAMP) chromium nginx
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2

# Debian's chromium, which tests/test_temporal_ui.py drives with Playwright (never
# `playwright install`: no browser download). Installed once, quietly; a no-op after.
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (apt-get) for the Temporal UI test"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Debian's nginx, the TLS-terminating proxy in front of the Temporal dev server in
# tests/test_temporal_tls.py (TLS, mutual TLS, an API key). Installed once, quietly.
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "installing nginx (apt-get) for the Temporal TLS test"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }

# wrk (Debian's) drives the introspection benchmark; chromium turns the plots into PNGs.
bench: $(STAMP) chromium
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (apt-get) for the introspection benchmark"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/revocation.py
	$(BIN)/python bench/run.py
	$(BIN)/python bench/policy_bench.py
	$(BIN)/python bench/token_algorithms.py
	$(BIN)/python bench/notifications_bench.py
	$(BIN)/python bench/scale_bench.py

chaos: $(STAMP)
	$(BIN)/python bench/chaos.py $(ARGS)

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
	rm -rf .data .demo-db
