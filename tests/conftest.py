"""Helpers for the end-to-end tests: real `minitalk` processes, ended by PID whatever happens.

Every process a test starts is recorded in ``Processes`` and killed (by its own PID, through
its ``Popen`` object) at teardown if it is still running. Nothing here signals PID 0, a
negative PID, or any process the test did not start.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from hypothesis import HealthCheck, settings

# The suite's hypothesis profile: no per-example deadline (the machine is shared and noisy;
# speed lives in bench/), and a modest example count that keeps `make test` in minutes.
settings.register_profile(
    "suite", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("suite")

MINITALK = [sys.executable, "-m", "minitalk"]
# What a server prints on stderr in normal operation: nothing, for root too.
SERVER_STDERR = b""
# Guards against a hung child, never a measure of speed: generous on a loaded 2-core machine.
HANG_GUARD = 120.0


class Server:
    """A running `minitalk serve`; its output pipes are drained as it writes, so a large
    message can never fill the pipe and stall the server."""

    def __init__(self, process: subprocess.Popen[bytes], pid: int, first_line: bytes) -> None:
        self.process = process
        self.pid = pid
        self.first_line = first_line
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        assert process.stdout is not None
        assert process.stderr is not None
        self._readers = [
            threading.Thread(target=_drain, args=(process.stdout, self._out), daemon=True),
            threading.Thread(target=_drain, args=(process.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def finish(self) -> tuple[bytes, bytes, int]:
        """Wait for the server to exit by itself (``--count``); return stdout, stderr, code."""
        code = self.process.wait(timeout=HANG_GUARD)
        for reader in self._readers:
            reader.join(timeout=HANG_GUARD)
        return b"".join(self._out), b"".join(self._err), code

    def stop(self) -> tuple[bytes, bytes, int]:
        """SIGTERM the server (by its PID) and collect what it wrote."""
        self.process.terminate()
        return self.finish()


@dataclass
class Processes:
    """Starts minitalk servers and clients and guarantees they end."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(self, args: list[str], stdin: int | None = None) -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = subprocess.Popen(
            args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.started.append(process)
        return process

    def serve(self, *options: str) -> Server:
        process = self.popen([*MINITALK, "serve", *options])
        assert process.stdout is not None
        line = _read_line(process.stdout, HANG_GUARD)
        pid = first_number(line)
        assert pid == process.pid
        return Server(process, pid, line)

    def send(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        process = self.popen(
            [*MINITALK, "send", *args],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        )
        out, err = process.communicate(stdin, timeout=HANG_GUARD)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def end_all(self) -> None:
        for process in self.started:
            if process.poll() is None and process.pid > 1:
                process.kill()  # Popen.kill signals exactly process.pid
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=HANG_GUARD)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def first_number(line: bytes) -> int:
    """The PID a server announces: the first number on its first line, as testers read it
    (``PID 4242`` in text mode, ``{"pid": 4242}`` with --json)."""
    found = re.search(rb"\d+", line)
    assert found is not None, f"no number in the first line {line!r}"
    return int(found[0])


def _drain(stream: IO[bytes], into: list[bytes]) -> None:
    while chunk := os.read(stream.fileno(), 65536):
        into.append(chunk)


def _read_line(stream: object, timeout: float) -> bytes:
    """Read one line from a pipe, giving up (not failing a timing check) after ``timeout``."""
    fd = stream.fileno()  # type: ignore[attr-defined]
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        if not selector.select(max(deadline - time.monotonic(), 0)):
            raise AssertionError(f"no complete line within {timeout} s: {line!r}")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        line += chunk
    selector.close()
    return line


def wait_for(condition: object, what: str) -> None:
    """Poll ``condition()`` until true: synchronises on an observable state, not on time."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


def pending_signals(pid: int) -> int:
    """The process-wide pending-signal mask of ``pid`` (ShdPnd in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            return int(line.split()[1], 16)
    return 0


@pytest.fixture
def procs() -> Iterator[Processes]:
    processes = Processes()
    try:
        yield processes
    finally:
        processes.end_all()


def admitted_send(procs: Processes, server: Server, *args: str) -> subprocess.Popen[bytes]:
    """Start `minitalk send` and return once the server has admitted it (peer or queued)."""
    client = procs.popen([*MINITALK, "send", str(server.pid), *args, "--quiet"])
    wait_for(lambda: client.pid in clients_held(server.pid), f"the server admitted {args}")
    return client


def clients_held(server: int) -> set[int]:
    """The PIDs the server holds a pidfd for: the clients it has admitted (peer or queued)."""
    held = set()
    for info in Path(f"/proc/{server}/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            for line in info.read_text().splitlines():
                if line.startswith("Pid:"):
                    held.add(int(line.split()[1]))
    return held
