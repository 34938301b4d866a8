"""The progress bar speaks one family of units, and rich is loaded only to draw it."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from rich.console import Console

from minitalk import progress
from minitalk.progress import BarDisplay, amount_kib, rate_kib
from tests.conftest import HANG_GUARD


def test_sizes_and_rates_are_kib() -> None:
    assert amount_kib(0, 300 * 1024) == "0.0/300.0 KiB"
    assert amount_kib(1536, 3 * 1024 * 1024) == "1.5/3,072.0 KiB"
    assert rate_kib(25.5 * 1024) == "25.5 KiB/s"
    assert rate_kib(None) == "? KiB/s"


def test_the_bar_shows_only_kib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    bar = BarDisplay()
    try:
        bar.update(10 * 1024, 300 * 1024)
        bar.update(20 * 1024, 300 * 1024)
        console = Console(file=io.StringIO(), width=120, color_system=None)
        console.print(bar._progress.get_renderable())
        shown = console.file.getvalue()  # type: ignore[attr-defined]
    finally:
        bar.stop()
    assert "20.0/300.0 KiB" in shown
    assert "KiB/s" in shown
    for other in ("MiB", "kB", "MB"):
        assert other not in shown


@pytest.mark.parametrize(
    ("module", "absent"),
    [("minitalk", {"typer", "rich", "click"}), ("minitalk.cli", {"rich"})],
)
def test_imports_stay_lazy(module: str, absent: set[str]) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=HANG_GUARD, check=True
    )
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert not loaded & absent


def test_no_bar_flashes_for_a_send_already_done(monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-frame message that waited in the queue is done at its first progress: a bar
    then would only flash "0.0/0.0 KiB"."""
    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    bar = BarDisplay()
    for done, total in ((2, 2), (0, 0)):
        bar.update(done, total)
    assert bar._progress is None
    bar.stop()
