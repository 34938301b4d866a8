"""The docs' runnable examples work as they stand, with real processes, every time.

Each ```sh block marked ``<!-- runnable -->`` in README.md and docs/usage.md is run with
``sh -eu`` in a fresh directory. ``minitalk`` there is a wrapper that records the PID of every
minitalk process the example starts, so that whatever happens each one is ended by its PID
(held by pidfd, checked to still be minitalk) and nothing else is ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import HANG_GUARD, Processes

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
RUNNABLE = re.compile(r"^<!-- runnable -->\n```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
DOCS = ["README.md", "docs/usage.md"]


def _blocks() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for number, match in enumerate(RUNNABLE.finditer((ROOT / doc).read_text()), start=1):
            found.append((f"{doc}#{number}", match[1]))
    return found


BLOCKS = _blocks()

# What the README's script leaves in messages.log after its PID line.
README_MESSAGES = ["hello from a script", "-1", "from a pipe", "sent when there is room"]


def test_each_doc_has_a_runnable_example() -> None:
    assert {name.split("#")[0] for name, _ in BLOCKS} == set(DOCS)


@pytest.mark.parametrize(("name", "script"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_runnable_example(procs: Processes, tmp_path: Path, name: str, script: str) -> None:
    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    bin_dir.mkdir()
    work.mkdir()
    started = tmp_path / "started.pids"
    wrapper = bin_dir / "minitalk"
    wrapper.write_text(
        f'#!/bin/sh\necho $$ >> "{started}"\nexec "{sys.executable}" -m minitalk "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    shell = subprocess.Popen(
        ["/bin/sh", "-eu", "-c", script],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    procs.started.append(shell)
    try:
        out, err = shell.communicate(timeout=HANG_GUARD)
        assert shell.returncode == 0, err.decode()
        assert err == b""
        pids = [int(line) for line in started.read_text().split()]
        assert not [pid for pid in pids if _still_minitalk(pid)], "the example left a process"
    finally:
        _end_recorded(started)
    log = (work / "messages.log").read_text().splitlines()
    assert log[0] == f"PID {pids[0]}"  # the server, started first
    assert not (work / "mt.pid").exists()  # removed on the clean exit
    if name == "README.md#1":
        assert log[1:] == README_MESSAGES
        assert out.decode().splitlines()[-len(log) :] == log  # the script's `cat`


def _still_minitalk(pid: int) -> bool:
    """True if ``pid`` is still a running (not zombie) minitalk process."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return b"minitalk" in cmdline and state != "Z"


def _end_recorded(started: Path) -> None:
    """Kill every recorded minitalk process still running, by pidfd, after checking (through
    that pidfd's process) that it is still the minitalk process the example started."""
    if not started.exists():
        return
    for pid in (int(line) for line in started.read_text().split()):
        if pid <= 1:
            continue
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue  # gone already
        try:
            if _still_minitalk(pid):
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)
