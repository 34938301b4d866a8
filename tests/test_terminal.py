"""On a terminal, and only there, a send says what it is waiting for (on stderr)."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import HANG_GUARD, MINITALK, Processes, admitted_send

pytestmark = pytest.mark.e2e


def _on_terminal(
    procs: Processes, args: list[str], *, stdin_too: bool
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `minitalk send` with stderr (and stdin if asked) on a new pseudo-terminal;
    return the process and the terminal's master side."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        [*MINITALK, "send", *args],
        stdin=slave if stdin_too else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    procs.started.append(process)
    return process, master


def _read_until(master: int, words: bytes) -> bytes:
    """What the terminal shows, read until ``words`` appear (a hang guard, not a timing)."""
    seen = b""
    selector = selectors.DefaultSelector()
    selector.register(master, selectors.EVENT_READ)
    deadline = time.monotonic() + HANG_GUARD
    while words not in seen:
        if not selector.select(max(deadline - time.monotonic(), 0)):
            raise AssertionError(f"never shown: {words!r}; the terminal showed {seen!r}")
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the process closed the terminal
            chunk = b""
        if not chunk:
            raise AssertionError(f"never shown: {words!r}; the terminal showed {seen!r}")
        seen += chunk
    selector.close()
    return seen


def test_reading_a_terminal_says_it_waits_for_end_of_input(procs: Processes) -> None:
    server = procs.serve("--count", "2")
    client, master = _on_terminal(procs, [str(server.pid), "-", "--quiet"], stdin_too=False)
    client.communicate(timeout=HANG_GUARD)  # stdin not a terminal: no hint, empty message
    os.close(master)
    client, master = _on_terminal(procs, [str(server.pid), "-"], stdin_too=True)
    try:
        shown = _read_until(master, b"(Ctrl-D)")
        assert shown.startswith(b"minitalk: reading the text to send from the terminal")
        os.write(master, b"typed\n\x04")  # a line, then end of input
        out, _ = client.communicate(timeout=HANG_GUARD)
    finally:
        os.close(master)
    assert client.returncode == 0
    assert out.startswith(b"delivered 6 bytes")
    printed, _, code = server.finish()
    assert code == 0
    assert printed == b"\ntyped\n\n"  # the empty message, then the typed line


def test_a_queued_send_says_it_waits_for_its_turn(procs: Processes, tmp_path: Path) -> None:
    server = procs.serve("--count", "3")
    big = tmp_path / "long.txt"
    big.write_text("long " + "✓" * 20_000)  # about 60 kB: the line stays busy while we look
    first = admitted_send(procs, server, "--file", str(big))
    piped = admitted_send(procs, server, "piped")  # queued, not on a terminal
    queued, master = _on_terminal(procs, [str(server.pid), "on a terminal"], stdin_too=False)
    try:
        shown = _read_until(master, b"waiting for our turn")
        assert b"minitalk: queued: the server is busy with another client" in shown
        out, _ = queued.communicate(timeout=HANG_GUARD)
    finally:
        os.close(master)
    assert queued.returncode == 0, out
    # Not on a terminal: a queued send says nothing.
    for client in (first, piped):
        _, err = client.communicate(timeout=HANG_GUARD)
        assert client.returncode == 0
        assert err == b""
    server.finish()
