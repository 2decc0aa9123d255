# Two commands matter: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-planner cluster test lint typecheck imports unit bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11+ or run 'make PYTHON=python3 ...'" >&2; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The whole system: central system (SQLite) + a simulated site replaying a real day at 60x.
demo: $(STAMP)
	$(BIN)/python -m demo

# Cluster mode on this machine: 3 workers sharing PostgreSQL and Redis, behind nginx (OCPP on
# 9000, console on 8000). Needs nginx (apt-get install nginx-light), PostgreSQL and Redis running.
# Options go in ARGS, e.g. make cluster ARGS="--workers 2 --simulate"; see python -m deploy.cluster -h.
cluster: $(STAMP)
	$(BIN)/python -m deploy.cluster $(ARGS)

# The planner alone on the example scenarios.
demo-planner: $(STAMP)
	$(BIN)/python -m optimizer plan examples/workplace_40.json --out out/plan.json
	$(BIN)/python -m optimizer compare examples/acn_caltech_2019-06-14.json

test: lint typecheck imports unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m optimizer bench

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache .hypothesis
