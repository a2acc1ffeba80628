# Two commands do all set-up: `make run` and `make test`. Both (re)build .venv from the lock file.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench lock clean

$(STAMP): requirements.lock requirements-geo.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), "ewspipe needs Python 3.11, got %s" % sys.version.split()[0]'
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements-geo.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

## The main job on the embedded default: build and import the demo world (summary and
## validation report), then the monthly run (ewspipe run: train, forecast, ensembles, QA, store).
run: $(STAMP)
	$(BIN)/ewspipe data demo
	$(BIN)/ewspipe run

## Lint, check the import layers and the public API's types (mypy), run the whole test suite.
test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

## Benchmarks (not tests): figures go to docs/benchmarks.md. The VIEWS peers install on demand
## into benchmarks/peers/.venvs; the two slow ones (views-stepshifter pair, run profile) run once.
SLOW_BENCH := peers_stepshifter peers_profile
bench: $(STAMP)
	$(BIN)/python -m benchmarks $$($(BIN)/python -m benchmarks --list | cut -d' ' -f1 | \
		grep -vxF $(SLOW_BENCH:%=-e %)); fast=$$?; \
		$(BIN)/python -m benchmarks $(SLOW_BENCH) --repeats 1 && exit $$fast

## Re-pin every dependency (needs the package registry).
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra dev --extra api --extra dask --extra optuna \
		--generate-hashes --no-emit-index-url \
		--no-emit-find-links --strip-extras -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .ewspipe .pytest_cache .ruff_cache .mypy_cache .hypothesis
