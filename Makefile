# Everything a fresh machine needs: Python 3.11+ and pip. `make demo` and
# `make test` create .venv and install the project on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the example labeling job end to end against the embedded simulator.
demo: $(STAMP)
	$(BIN)/orchestrator demo

## The whole suite: lint, types, then every test (SQLite and PostgreSQL).
test: lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## Benchmarks (not part of `make test`); recorded results in bench/RESULTS-*.md.
bench: $(STAMP)
	$(BIN)/python bench/simulator_throughput.py
	$(BIN)/python bench/job_throughput.py --items 100000

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
