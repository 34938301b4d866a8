"""Every fuzz target runs in the ordinary suite too: its @example regressions are replayed and a
modest number of fresh inputs are generated, so `make test` catches what `make fuzz` once found."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fuzz.targets import RUNS, TARGETS


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_replays_and_holds(name: str) -> None:
    target: Callable[[], None] = TARGETS[name]
    before = RUNS[name]
    target()  # under the suite's hypothesis profile (tests/conftest.py)
    assert RUNS[name] > before  # the target really ran
