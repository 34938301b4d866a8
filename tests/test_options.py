"""Options out of range, or against each other's rules, meet a one-line usage error naming the
option, before anything starts: no traceback, no server, no signal."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from minitalk.errors import ExitCode
from tests.conftest import HANG_GUARD, MINITALK, OtherUser, Processes

pytestmark = pytest.mark.e2e

NO_SUCH_PID = "4194303"  # options are checked before the PID (and no process has it)

# (what is wrong, arguments, exit code, words the error must contain); {dir} is a directory.
CASES = [
    (
        "--max-bytes over the header's 32 bits",
        ["serve", "--max-bytes", "4294967296"],
        ExitCode.USAGE,
        "--max-bytes must be between 0 and 4294967295",
    ),
    ("--max-bytes negative", ["serve", "--max-bytes=-1"], ExitCode.USAGE, "--max-bytes must"),
    ("--frame-timeout 0", ["serve", "--frame-timeout", "0"], ExitCode.USAGE, "more than 0 s"),
    (
        "--frame-timeout not below --session-timeout",
        ["serve", "--frame-timeout", "3", "--session-timeout", "3"],
        ExitCode.USAGE,
        "--frame-timeout must be shorter than --session-timeout",
    ),
    (
        "--session-timeout within the queue poll",
        ["serve", "--frame-timeout", "0.2", "--session-timeout", "0.5"],
        ExitCode.USAGE,
        "--session-timeout must be longer than 1 s",
    ),
    ("--count 0", ["serve", "--count", "0"], ExitCode.USAGE, "--count must be at least 1"),
    (
        "--delay-us not a number",
        ["send", "--classic", NO_SUCH_PID, "hi", "--delay-us", "nan"],
        ExitCode.USAGE,
        "--delay-us must be a finite number",
    ),
    (
        "--delay-us over a second",
        ["send", "--classic", NO_SUCH_PID, "hi", "--delay-us", "1e300"],
        ExitCode.USAGE,
        "--delay-us",
    ),
    (
        "--idle-timeout not a number",
        ["serve", "--classic", "--idle-timeout", "nan"],
        ExitCode.USAGE,
        "--idle-timeout must be a finite number",
    ),
    (
        "--frame-timeout with --classic",
        ["serve", "--classic", "--frame-timeout", "1"],
        ExitCode.USAGE,
        "--frame-timeout is an option of framed mode only (not --classic)",
    ),
    (
        "--session-timeout with --classic",
        ["serve", "--session-timeout", "5", "--classic"],
        ExitCode.USAGE,
        "--session-timeout is an option of framed mode only (not --classic)",
    ),
    (
        "--session-timeout below the default frame timeout",
        ["serve", "--session-timeout", "0.1"],
        ExitCode.USAGE,
        "--session-timeout must be longer than the frame timeout, 0.5 s unless --frame-timeout",
    ),
    (
        "--session-timeout below the frame timeout given",
        ["serve", "--frame-timeout", "2", "--session-timeout", "1.5"],
        ExitCode.USAGE,
        "--frame-timeout must be shorter than --session-timeout",
    ),
    (
        "--trace without --classic",
        ["send", NO_SUCH_PID, "hi", "--trace"],
        ExitCode.USAGE,
        "--trace is an option of --classic mode only",
    ),
    ("--pid-file a directory", ["serve", "--pid-file", "{dir}"], ExitCode.USAGE, "a directory"),
    (
        "--pid-file unwritable",
        ["serve", "--pid-file", "{dir}/missing/mt.pid"],
        ExitCode.OUTPUT_FAILED,
        "cannot write the PID file",
    ),
    ("--timeout 0", ["send", NO_SUCH_PID, "hi", "--timeout", "0"], ExitCode.USAGE, "--timeout"),
    (
        "--timeout negative",
        ["send", NO_SUCH_PID, "hi", "--timeout=-1"],
        ExitCode.USAGE,
        "--timeout must be more than 0 s",
    ),
    (
        "--reply-timeout within the server's stall timeout",
        ["send", NO_SUCH_PID, "hi", "--reply-timeout", "0.05"],
        ExitCode.USAGE,
        "--reply-timeout must be longer than 0.05 s",
    ),
    (
        "--attempts 0",
        ["send", NO_SUCH_PID, "hi", "--attempts", "0"],
        ExitCode.USAGE,
        "--attempts must be at least 1",
    ),
]


@pytest.mark.parametrize(("what", "args", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_options(tmp_path: Path, what: str, args: list[str], code: int, words: str) -> None:
    result = subprocess.run(
        [*MINITALK, *(arg.format(dir=tmp_path) for arg in args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=HANG_GUARD,
        check=False,
    )
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith("minitalk: ")
    assert words in err
    assert result.stdout == b""
    assert tmp_path.is_dir()  # a directory named as the PID file is left alone
    assert list(tmp_path.iterdir()) == []  # and nothing is left behind


def test_serve_with_standard_output_closed_says_so() -> None:
    result = subprocess.run(
        ["/bin/sh", "-c", 'exec "$@" >&-', "sh", *MINITALK, "serve"],
        capture_output=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert result.returncode == ExitCode.OUTPUT_FAILED
    assert result.stderr == b"minitalk: cannot write to standard output: it is closed\n"


def test_a_pid_file_another_server_took_over_is_left_alone(tmp_path: Path) -> None:
    pid_file = tmp_path / "mt.pid"
    server = subprocess.Popen(
        [*MINITALK, "serve", "--pid-file", str(pid_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == f"PID {server.pid}\n".encode()
        assert pid_file.read_text() == f"{server.pid}\n"
        pid_file.write_text("999999\n")  # another server took the path over
    finally:
        server.terminate()
        server.communicate(timeout=HANG_GUARD)
    assert server.returncode == 0
    assert pid_file.read_text() == "999999\n"  # not ours any more: left alone


def test_a_second_server_on_a_running_servers_pid_file_is_refused(
    procs: Processes, tmp_path: Path
) -> None:
    """The pid-file convention: a file that names a running server is not taken over (the
    second server would point scripts at itself, then delete the first one's file on exit)."""
    pid_file = tmp_path / "mt.pid"
    first = procs.serve("--pid-file", str(pid_file))
    assert pid_file.read_text() == f"{first.pid}\n"
    second = procs.popen([*MINITALK, "serve", "--pid-file", str(pid_file)])
    out, err = second.communicate(timeout=HANG_GUARD)
    assert second.returncode == ExitCode.USAGE, err
    assert out == b""
    assert (
        err
        == (
            f"minitalk: --pid-file {pid_file} names minitalk server {first.pid}, which is running: "
            "stop it first, or give another file\n"
        ).encode()
    )
    assert pid_file.read_text() == f"{first.pid}\n"  # the first one's file stays
    _, _, code = first.stop()
    assert code == 0
    assert not pid_file.exists()  # and goes with it


@pytest.mark.parametrize("stale", ["999999999", "{me}", "not a pid"])
def test_a_stale_pid_file_is_replaced(procs: Processes, tmp_path: Path, stale: str) -> None:
    """A file naming a process that is gone, or one that is no minitalk server (this test's
    own process), is left over: the new server replaces it."""
    pid_file = tmp_path / "mt.pid"
    pid_file.write_text(stale.format(me=os.getpid()) + "\n")
    server = procs.serve("--pid-file", str(pid_file))
    assert pid_file.read_text() == f"{server.pid}\n"
    assert server.stop()[2] == 0


def test_an_unreachable_pid_file_gets_one_line(nobody: OtherUser) -> None:
    """As an ordinary user, a path under a directory one may not search (/root) gets the same
    one-line error as any unwritable path, not a traceback from looking at it first."""
    result = nobody.run(nobody.command("serve", "--pid-file", "/root/minitalk-test.pid"))
    assert result.returncode == ExitCode.OUTPUT_FAILED, result.stderr
    assert result.stderr == (
        b"minitalk: cannot write the PID file /root/minitalk-test.pid: Permission denied\n"
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["send", NO_SUCH_PID, "hi", "--json"],
            "No such option: --json (--json is an option of minitalk serve; "
            "see minitalk send --help)",
        ),
        (
            ["serve", "--file", "x"],
            "No such option: --file (Possible options: --pid-file) (--file is an option of "
            "minitalk send; see minitalk serve --help)",
        ),
        (
            ["send", NO_SUCH_PID, "-x"],
            "No such option: -x (to send text that starts with '-', put -- before it; "
            "see minitalk send --help)",
        ),
        (
            ["send", NO_SUCH_PID, "hi", "--bogus"],
            "No such option: --bogus (see minitalk send --help)",  # TEXT is there already
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_an_unknown_option_gets_the_hint_that_fits(args: list[str], line: str) -> None:
    result = subprocess.run(
        [*MINITALK, *args], capture_output=True, timeout=HANG_GUARD, check=False
    )
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.decode() == f"minitalk: {line}\n"


@pytest.mark.parametrize("args", [["-h"], ["send", "-h"], ["serve", "-h"]])
def test_dash_h_is_help(args: list[str]) -> None:
    result = subprocess.run(
        [*MINITALK, *args], capture_output=True, timeout=HANG_GUARD, check=False
    )
    assert result.returncode == 0, result.stderr
    assert b"Usage: minitalk" in result.stdout
    assert result.stderr == b""


def test_send_dash_checks_the_pid_before_reading_standard_input(procs: Processes) -> None:
    """`send PID -` at a terminal used to take the whole text first, then say the PID was
    wrong. Standard input is never closed here: the send must end without it."""
    sender = procs.popen([*MINITALK, "send", NO_SUCH_PID, "-"], stdin=subprocess.PIPE)
    assert sender.wait(timeout=HANG_GUARD) == ExitCode.BAD_TARGET
    assert sender.stderr is not None
    assert sender.stderr.read() == f"minitalk: no process has PID {NO_SUCH_PID}\n".encode()


def test_no_command_shows_the_help_and_fails_in_one_line() -> None:
    result = subprocess.run(MINITALK, capture_output=True, timeout=HANG_GUARD, check=False)
    assert result.returncode == ExitCode.USAGE
    assert b"Usage: minitalk" in result.stdout
    assert result.stderr == b"minitalk: no command given: serve, send or check\n"
