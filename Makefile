# Everything a fresh machine needs: Python 3.11+ and pip. `make demo` and
# `make test` create .venv and install the project on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test guard reliability lint typecheck unit bench clean wheel-check sqlite-head

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the example labeling job end to end against the embedded simulator.
demo: $(STAMP)
	$(BIN)/orchestrator demo

## The whole suite: lint, types, every test (SQLite and PostgreSQL), then the built wheel.
## Tests run in PYTEST_WORKERS processes (pytest-xdist): most of their time is spent waiting
## on a simulator's processing delay, so four workers fit on two cores.
PYTEST_WORKERS ?= 4
test: lint typecheck
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)
	$(MAKE) --no-print-directory wheel-check

## The kill and fault suite (README, Reliability): SIGKILLs, fault storms, shared stores and keys.
## The performance guards alone (tests/perf, also part of `make test`): memory, HTTP calls
## and query work bounded, never time.
guard: $(STAMP)
	$(BIN)/python -m pytest tests/perf

reliability: $(STAMP)
	ORCHESTRATOR_RELIABILITY_SUITE=1 $(BIN)/python -m pytest \
		tests/acceptance/test_reliability.py tests/acceptance/test_postgres_daemons.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## What `pip install .` ships: build the wheel from a copy of the sources, install it in a
## fresh venv (dependencies from PyPI) and, from a directory outside the checkout, run
## `orchestrator db upgrade` and `orchestrator demo`. Fails on a file left out of the wheel,
## a stray top-level package, a setuptools deprecation warning, or a demo job not done.
## Leaves nothing behind (temp dir removed); does not touch .venv.
WHEEL_CHECK_FILES := orchestrator/migrations/env.py orchestrator/migrations/script.py.mako \
	orchestrator/migrations/versions/0001_initial_schema.py orchestrator/store/sqlite_head.sql \
	orchestrator/jobs/review-sentiment/spec.toml orchestrator/jobs/review-sentiment/reviews.jsonl \
	orchestrator/jobs/review-labels/spec.toml orchestrator/jobs/review-labels/reviews.csv \
	orchestrator/jobs/review-labels/label.schema.json

wheel-check:
	@set -eu; start=$$(date +%s); \
	tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/wheel-check.XXXXXX"); tmp=$$(cd "$$tmp" && pwd -P); \
	trap 'rm -rf "$$tmp"' EXIT; trap 'exit 130' HUP INT TERM; \
	unset PYTHONPATH; export PIP_DISABLE_PIP_VERSION_CHECK=1; \
	mkdir "$$tmp/src" "$$tmp/dist" "$$tmp/run"; \
	tar -cf - --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
		--exclude=./out --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache \
		--exclude=.ruff_cache --exclude=.pytest_cache --exclude='*.db' --exclude='*.db-*' . \
		| tar -xf - -C "$$tmp/src"; \
	$(PYTHON) -m venv "$$tmp/venv"; py="$$tmp/venv/bin/python"; \
	echo "wheel-check: building the wheel in $$tmp"; \
	"$$py" -m pip wheel -v --no-deps -w "$$tmp/dist" "$$tmp/src" >"$$tmp/build.log" 2>&1 \
		|| { cat "$$tmp/build.log"; echo "wheel-check: the wheel did not build"; exit 1; }; \
	if grep -iE 'DeprecationWarning|is deprecated' "$$tmp/build.log"; then \
		echo "wheel-check: the build prints deprecation warnings (above)"; exit 1; fi; \
	whl=$$(ls "$$tmp"/dist/*.whl); \
	"$$py" -c 'import sys, zipfile; print(*zipfile.ZipFile(sys.argv[1]).namelist(), sep="\n")' \
		"$$whl" | LC_ALL=C sort >"$$tmp/wheel.txt"; \
	if grep -vE '^(orchestrator/|batch_orchestrator-[^/]*\.dist-info/)' "$$tmp/wheel.txt"; then \
		echo "wheel-check: files outside orchestrator/ in the wheel (above)"; exit 1; fi; \
	( cd "$$tmp/src" && find orchestrator -name '*.py' \
		&& find migrations jobs -type f \( -name '*.py' -o -name '*.mako' -o -name '*.toml' \
			-o -name '*.jsonl' -o -name '*.csv' -o -name '*.json' -o -name '*.md' \) \
			| sed 's|^|orchestrator/|' \
		&& printf '%s\n' $(WHEEL_CHECK_FILES) ) | LC_ALL=C sort -u >"$$tmp/expected.txt"; \
	if LC_ALL=C comm -23 "$$tmp/expected.txt" "$$tmp/wheel.txt" | grep .; then \
		echo "wheel-check: missing from the wheel (above); see [tool.setuptools] in pyproject.toml"; \
		exit 1; fi; \
	echo "wheel-check: installing $${whl##*/} ($$(wc -l <"$$tmp/wheel.txt") files) in a fresh venv"; \
	"$$py" -m pip install -q --no-compile "$$whl"; \
	cd "$$tmp/run"; \
	where=$$("$$py" -c 'import orchestrator; print(orchestrator.__file__)'); \
	case "$$where" in "$$tmp/venv/"*) ;; \
		*) echo "wheel-check: orchestrator imported from $$where"; exit 1;; esac; \
	ORCHESTRATOR_DATABASE_URL="sqlite:///$$tmp/store.db" "$$tmp/venv/bin/orchestrator" db upgrade; \
	TERM=dumb "$$tmp/venv/bin/orchestrator" demo --db "$$tmp/demo.db" --processing-seconds 0.5 \
		>"$$tmp/demo.log" 2>&1 || { cat "$$tmp/demo.log"; echo "wheel-check: demo failed"; exit 1; }; \
	grep -E 'job review-labels \(id [0-9]+\): done' "$$tmp/demo.log" \
		|| { cat "$$tmp/demo.log"; echo "wheel-check: the demo job is not done"; exit 1; }; \
	echo "wheel-check: ok in $$(( $$(date +%s) - start ))s"

## After a new migration: write orchestrator/store/sqlite_head.sql again, the schema a new
## SQLite store is made from (the migrations run on an empty file, their result dumped).
sqlite-head: $(STAMP)
	$(BIN)/python -m orchestrator.store.bootstrap

## Benchmarks (not part of `make test`); recorded results in bench/RESULTS-*.md.
bench: $(STAMP)
	$(BIN)/python bench/simulator_throughput.py
	$(BIN)/python bench/job_throughput.py --items 100000

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
