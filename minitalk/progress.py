"""Progress display for long sends: a rich bar on stderr, and a silent twin.

The bar appears only when stderr is a terminal, the send has already taken ``SHOW_AFTER``
seconds and some of the message is still to go (a one-frame message that waited in the queue
is done at its first progress), so short sends, pipes, logs and tests never see it. rich is imported
only when a bar is actually shown, to keep the start of a short send cheap.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

SHOW_AFTER = 0.5  # seconds: below this a bar would only flicker


class Display(Protocol):
    def update(self, done: int, total: int) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


class SilentDisplay:
    """Shows nothing: for --quiet, pipes and tests."""

    def update(self, done: int, total: int) -> None:
        """Ignore progress."""

    def note(self, text: str) -> None:
        """Say nothing."""

    def stop(self) -> None:
        """Nothing to stop."""


class BarDisplay:
    """A bar with bytes, rate and time left on stderr, started once the send is slow."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._progress: Any = None
        self._task: Any = None
        self._origin: tuple[float, int] | None = None  # (time, bytes) of the first progress

    def update(self, done: int, total: int) -> None:
        if self._progress is None:
            if time.monotonic() - self._started < SHOW_AFTER or done >= total:
                return  # short so far, or already done: a bar would only flash (0.0/0.0 KiB)
            self._start(total)
        now = time.monotonic()
        if self._origin is None:  # rates count from the first progress, not from the queue
            self._origin = (now, done)
        since, before = self._origin
        self._progress.update(
            self._task,
            completed=done,
            amount=amount_kib(done, total),
            rate=rate_kib((done - before) / (now - since) if now > since else None),
        )

    def note(self, text: str) -> None:
        """Tell the person watching what the send is waiting for (one line on stderr)."""
        if self._progress is not None:
            self._progress.console.print(f"minitalk: {text}", markup=False, highlight=False)
        else:
            print(f"minitalk: {text}", file=sys.stderr, flush=True)

    def _start(self, total: int) -> None:
        from rich.console import Console  # noqa: PLC0415 - only when a bar is shown
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            "sending",
            BarColumn(),
            TextColumn("{task.fields[amount]}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task(
            "send", total=total, amount=amount_kib(0, total), rate=rate_kib(None)
        )
        self._progress.start()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


# One family of units, binary: sizes in KiB and rates in KiB/s (rich's own columns mix MiB
# with decimal kB/s). minitalk moves tens of KiB a second, so KiB keeps the figures readable.


def amount_kib(done: int, total: int) -> str:
    """``12.5/300.0 KiB``: how much of the message is acknowledged."""
    return f"{done / 1024:,.1f}/{total / 1024:,.1f} KiB"


def rate_kib(bytes_per_second: float | None) -> str:
    """``25.3 KiB/s``, or ``? KiB/s`` before there is a rate to show."""
    if bytes_per_second is None:
        return "? KiB/s"
    return f"{bytes_per_second / 1024:,.1f} KiB/s"


def display_for(quiet: bool) -> Display:
    """The bar if a person is watching stderr, else the silent twin."""
    if quiet or not sys.stderr.isatty():
        return SilentDisplay()
    return BarDisplay()
