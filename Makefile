# Every target sets itself up: a virtual environment under .venv, filled from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench fuzz soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

## demo: start a server, send three messages through it (text, file, stdin), show what it printed
demo: $(STAMP)
	@set -eu; log=$$(mktemp); \
	$(BIN)/minitalk serve --count 3 > "$$log" & srv=$$!; \
	trap 'kill $$srv 2>/dev/null || true; rm -f "$$log"' EXIT; \
	until grep -q '^PID' "$$log"; do kill -0 $$srv; sleep 0.05; done; \
	pid=$$(awk '{print $$2; exit}' "$$log"); echo "server started: PID $$pid"; \
	$(BIN)/minitalk send "$$pid" "emoji 🎉 and 日本語, ça marche"; \
	$(BIN)/minitalk send "$$pid" --file README.md; \
	echo "hello from standard input" | $(BIN)/minitalk send "$$pid" -; \
	wait $$srv; echo "--- the server printed:"; sed 1d "$$log" | head -n 12; echo "[...]"

## test: lint, type-check and run the whole test suite
test: $(STAMP)
	$(BIN)/ruff check minitalk tests fuzz bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

## bench: raw signal ceiling, throughput, CPU, memory and start-up figures (a few minutes)
bench: $(STAMP)
	$(BIN)/python bench/bench.py

## fuzz: every fuzz target for FUZZ_SECONDS in all (default 60); non-zero exit on a failure
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/python -m fuzz.run --seconds $(FUZZ_SECONDS)

## soak: the reliability scenarios, repeated (SOAK_ROUNDS, default 3), with a summary table
soak: $(STAMP)
	$(BIN)/python -m tests.soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
