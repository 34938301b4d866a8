# Every target sets itself up: a virtual environment under .venv, filled from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check-fallback bench bench-classic fuzz soak clean

# setup.py builds the optional compiled inner loop (minitalk/_inner.c) when a C compiler works.
$(STAMP): pyproject.toml setup.py minitalk/_inner.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	@$(BIN)/python -c 'from minitalk.transport import INNER_LOOP as loop; \
		print(f"minitalk installed with its {loop} inner loop (see README: Speed)")'
	touch $(STAMP)

## demo: start a server, send three short messages through it (text, file, stdin), show its output
demo: $(STAMP)
	@set -eu; dir=$$(mktemp -d); srv=; \
	trap '[ -z "$$srv" ] || kill $$srv 2>/dev/null || true; rm -rf "$$dir"' EXIT; \
	$(BIN)/minitalk serve --count 3 --pid-file "$$dir/mt.pid" > "$$dir/log" & srv=$$!; \
	until [ -s "$$dir/mt.pid" ]; do kill -0 $$srv; sleep 0.05; done; \
	pid=$$(cat "$$dir/mt.pid"); echo "server started: PID $$pid"; \
	printf 'a short file, sent with --file' > "$$dir/note.txt"; \
	$(BIN)/minitalk send "$$pid" "emoji 🎉 and 日本語, ça marche"; \
	$(BIN)/minitalk send "$$pid" --file "$$dir/note.txt"; \
	printf 'hello from standard input' | $(BIN)/minitalk send "$$pid" -; \
	wait $$srv; srv=; echo "--- the server printed:"; cat "$$dir/log"

## test: lint, type-check and run the whole test suite
test: $(STAMP)
	$(BIN)/ruff check minitalk tests fuzz bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

## check-fallback: the pure-Python path as a user without a C compiler gets it: a copy of the
##                 tree built with CC=false runs the demo, the loop tests and the e2e tests
##                 (framed and classic)
check-fallback:
	@set -eu; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	tar --exclude=./.venv --exclude=./.git --exclude='*.so' --exclude=./build -cf - . \
		| tar -C "$$dir" -xf -; \
	cd "$$dir"; CC=false $(MAKE) --no-print-directory demo; \
	$(BIN)/minitalk --version; \
	$(BIN)/minitalk --version | grep -q 'pure Python inner loop'; \
	$(BIN)/python -m pytest -q tests/test_inner_loop.py tests/test_transport.py \
		tests/test_classic_e2e.py tests/test_e2e.py -k "not test_e2e.py or every_script or \
		300_kib or four_clients or dies or sigterm"

## bench: raw signal ceiling, throughput, CPU, memory and start-up figures (a few minutes)
bench: $(STAMP)
	$(BIN)/python bench/bench.py

## bench-classic: classic mode against the C peers of tests/classic_c, beside a C receiver or
##                sender in alternating rounds (BENCH_ROUNDS, default 3; a few minutes)
BENCH_ROUNDS ?= 3
bench-classic: $(STAMP)
	$(BIN)/python bench/classic_peers.py --rounds $(BENCH_ROUNDS)

## fuzz: every fuzz target for FUZZ_SECONDS in all (default 60); non-zero exit on a failure
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/python -m fuzz.run --seconds $(FUZZ_SECONDS)

## soak: the reliability scenarios, repeated (SOAK_ROUNDS, default 3), with a summary table
##       (SOAK_ONLY=TEXT runs only the scenarios whose name contains TEXT)
soak: $(STAMP)
	$(BIN)/python -m tests.soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build minitalk/*.so
