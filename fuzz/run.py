"""Run the fuzz targets for a time budget and report, per target, inputs run and failures.

    make fuzz                          # all targets, FUZZ_SECONDS (default 60) split among them
    FUZZ_SECONDS=600 make fuzz         # a longer run
    .venv/bin/python -m fuzz.run round_trip --seconds 30       # one target
    .venv/bin/python -m fuzz.run frame_decoder --engine atheris # coverage-guided, if installed

The hypothesis engine calls each target in rounds of generated inputs until its share of the
budget is spent, keeping failures in the example database (.hypothesis/, not in git) so the
next run replays them first. On a failure it prints hypothesis's minimal failing example and
exits 1. The atheris engine hands the same target to libFuzzer through
``fuzz_one_input`` (one target per process, as libFuzzer owns the process).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

DATABASE = DirectoryBasedExampleDatabase(".hypothesis/fuzz")
# ``@given`` takes the settings in force when a target is *decorated*, so the profile is loaded
# before the targets are imported (loaded after, it governed nothing: the default 200 ms
# deadline failed rounds on a busy machine). Each round replays the database's examples first.
settings.register_profile(
    "fuzz-round",
    max_examples=200,
    deadline=None,
    database=DATABASE,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
settings.load_profile("fuzz-round")

from fuzz.targets import RUNS, TARGETS  # noqa: E402 (after the profile: see above)


def fuzz_with_hypothesis(name: str, target: Callable[[], None], seconds: float) -> bool:
    """Run ``target`` for ``seconds``; True if nothing failed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            target()
        except Exception:
            print(f"\n{name}: FAILED; the minimal failing example is above this traceback:")
            traceback.print_exc()
            return False
    return True


def fuzz_with_atheris(target: Any, seconds: float) -> None:
    import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: PLC0415

    atheris.Setup(
        [sys.argv[0], f"-max_total_time={int(seconds)}"], target.hypothesis.fuzz_one_input
    )
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description="Fuzz minitalk's codec and protocol.")
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], default=[])
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("FUZZ_SECONDS", "60")),
        help="total budget, split evenly among the targets (default: $FUZZ_SECONDS or 60)",
    )
    parser.add_argument("--engine", choices=["hypothesis", "atheris"], default="hypothesis")
    options = parser.parse_args()
    names = options.targets or list(TARGETS)
    share = options.seconds / len(names)

    if options.engine == "atheris":
        if len(names) != 1:
            parser.error("atheris runs one target per process: name it")
        fuzz_with_atheris(TARGETS[names[0]], share)
        return 0

    print(f"fuzzing {len(names)} targets for {share:.0f} s each (hypothesis engine)")
    results = []
    for name in names:
        started = time.monotonic()
        passed = fuzz_with_hypothesis(name, TARGETS[name], share)
        results.append((name, RUNS[name], time.monotonic() - started, passed))
        print(f"  {name:<18} {RUNS[name]:>9,} inputs  {'ok' if passed else 'FAILED'}", flush=True)
    print(f"\n{'target':<18} {'inputs':>9} {'seconds':>8}  result")
    for name, runs, seconds, passed in results:
        print(f"{name:<18} {runs:>9,} {seconds:>8.1f}  {'ok' if passed else 'FAILED'}")
    return 0 if all(passed for *_, passed in results) else 1


if __name__ == "__main__":
    sys.exit(main())
