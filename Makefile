# Every target sets itself up: a virtual environment under .venv, filled from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

## demo: start a server, send messages through it, stop it
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## test: lint, type-check and run the whole test suite
test: $(STAMP)
	$(BIN)/ruff check minitalk tests fuzz
	$(BIN)/mypy
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
