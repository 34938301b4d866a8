"""A stop (SIGTERM, SIGINT, SIGHUP) takes effect between the server's steps, never inside one.

The hard case is a server writing a message to a full pipe that nobody reads: the write must
finish (the message printed whole, once, and its client told it was delivered) when the
reader comes back, however the stop fell; a second stop while the write is stuck ends the
server at once. Real processes, real signals; every process is ended by its own PID.
"""

from __future__ import annotations

import fcntl
import signal
import subprocess
from pathlib import Path

import pytest

from minitalk.errors import ExitCode
from tests.conftest import (
    HANG_GUARD,
    MINITALK,
    SERVER_STDERR,
    Processes,
    _read_line,
    admitted_send,
    first_number,
    signal_masks,
    wait_for,
    wchan_visible,
)

pytestmark = pytest.mark.e2e

PAGE = 4096  # the smallest pipe the kernel makes (F_SETPIPE_SZ rounds up to a page)
# Four pipes' worth: the server's write of it blocks until the test reads.
TEXT = "stuck ✓ " * (4 * PAGE // len("stuck ✓ ".encode()))
TERM = 1 << (signal.SIGTERM - 1)


def _stuck_server(procs: Processes) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """A server whose stdout is a one-page pipe the test does not read, and a client whose
    message the server is now blocked writing there (its ACK not yet sent)."""
    if not wchan_visible():
        pytest.skip("the kernel hides /proc/PID/wchan here: cannot see the server block")
    server = procs.popen([*MINITALK, "serve"])
    assert server.stdout is not None
    line = _read_line(server.stdout, HANG_GUARD)
    assert first_number(line) == server.pid
    fcntl.fcntl(server.stdout.fileno(), fcntl.F_SETPIPE_SZ, PAGE)
    client = procs.popen([*MINITALK, "send", str(server.pid), TEXT, "--quiet"])
    wait_for(lambda: _writing(server), "the server is blocked writing to the full pipe")
    return server, client


def _writing(server: subprocess.Popen[bytes]) -> bool:
    try:
        return Path(f"/proc/{server.pid}/wchan").read_text().endswith("pipe_write")
    except OSError:
        return False


def _took_term(server: subprocess.Popen[bytes]) -> bool:
    """The SIGTERM sent is no longer pending: the server has taken it (and, if it went on
    writing, is blocked in the pipe again) or has exited."""
    if server.poll() is not None:
        return True
    try:
        pending = signal_masks(server.pid)["pending"]
    except OSError:
        return server.poll() is not None
    return not pending & TERM and (_writing(server) or server.poll() is not None)


def _read_all(server: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    out, err = server.communicate(timeout=HANG_GUARD)
    return out, err


def test_a_stop_while_the_message_is_written_lets_it_finish_and_be_acknowledged(
    procs: Processes,
) -> None:
    server, client = _stuck_server(procs)
    server.send_signal(signal.SIGTERM)  # Popen.send_signal: exactly server.pid, if alive
    wait_for(lambda: _took_term(server), "the server took the SIGTERM")
    out, err = _read_all(server)  # the reader comes back
    _, client_err = client.communicate(timeout=HANG_GUARD)
    assert out == TEXT.encode() + b"\n"  # whole, once
    assert client.returncode == 0, client_err  # told it was delivered
    assert server.returncode == 0
    assert err == SERVER_STDERR


def test_a_second_stop_while_the_write_is_stuck_exits_at_once(procs: Processes) -> None:
    server, client = _stuck_server(procs)
    server.send_signal(signal.SIGTERM)
    wait_for(lambda: _took_term(server), "the server took the first SIGTERM")
    server.send_signal(signal.SIGTERM)  # nobody reads: only the second stop can end it
    assert server.stderr is not None
    code = server.wait(timeout=HANG_GUARD)
    err = server.stderr.read()
    assert (code, err) == (ExitCode.INTERRUPTED, b"minitalk: interrupted\n")
    assert server.stdout is not None
    out = server.stdout.read()
    assert (TEXT.encode() + b"\n").startswith(out)  # cut short, never more
    _, client_err = client.communicate(timeout=HANG_GUARD)
    assert client.returncode == ExitCode.SERVER_GONE, client_err  # never told "delivered"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP])
def test_sigint_and_sighup_stop_between_steps_and_tell_the_queue(
    procs: Processes, tmp_path: Path, stop: signal.Signals
) -> None:
    server = procs.serve()
    big = tmp_path / "big.txt"
    big.write_text("first " + "✓" * 100_000)  # 300 kB: still sending when the server stops
    first = admitted_send(procs, server, "--file", str(big))
    queued = admitted_send(procs, server, "second")
    server.process.send_signal(stop)
    _, err = queued.communicate(timeout=HANG_GUARD)
    first.communicate(timeout=HANG_GUARD)
    out, server_err, code = server.finish()
    assert (code, server_err) == (0, SERVER_STDERR)
    assert queued.returncode == ExitCode.SERVER_GONE
    assert b"the server is shutting down" in err or b"exited" in err
    assert (first.returncode == 0) == (out != b"")


def test_a_stop_ignored_at_start_stays_ignored(procs: Processes) -> None:
    # `nohup` and a shell's background jobs start a server with SIGHUP or SIGINT ignored;
    # taking them through sigtimedwait must not turn them back into stops.
    script = "import signal, sys, runpy; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
    script += "sys.argv = ['minitalk', 'serve']; runpy.run_module('minitalk', run_name='__main__')"
    process = procs.popen([MINITALK[0], "-c", script])
    assert process.stdout is not None
    assert first_number(_read_line(process.stdout, HANG_GUARD)) == process.pid
    assert signal_masks(process.pid)["SigIgn"] & (1 << (signal.SIGHUP - 1))
    process.send_signal(signal.SIGHUP)
    assert procs.send(str(process.pid), "still serving", "--quiet").returncode == 0
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=HANG_GUARD)
    assert (process.returncode, err) == (0, SERVER_STDERR)
    assert out == b"still serving\n"


def test_a_client_waits_for_a_server_blocked_writing_and_is_told_delivered(
    procs: Processes,
) -> None:
    """User trial: with the server blocked writing the message (its reader away), the client
    gave up after its attempts ("did not answer", exit 6) and the message was printed whole
    once the reader came back, so a retry would print it twice. The server asleep outside
    its signal wait now costs the client no attempt: it waits, like for a stopped server."""
    if not wchan_visible():
        pytest.skip("the kernel hides /proc/PID/wchan here: cannot see the server block")
    server = procs.popen([*MINITALK, "serve"])
    assert server.stdout is not None
    assert first_number(_read_line(server.stdout, HANG_GUARD)) == server.pid
    fcntl.fcntl(server.stdout.fileno(), fcntl.F_SETPIPE_SZ, PAGE)
    quick = ["--reply-timeout", "0.2", "--attempts", "2"]  # gave up in about 1 s before
    client = procs.popen([*MINITALK, "send", str(server.pid), TEXT, "--quiet", *quick])
    wait_for(lambda: _writing(server), "the server is blocked writing to the full pipe")
    with pytest.raises(subprocess.TimeoutExpired):
        client.wait(timeout=3.0)  # still waiting, not given up
    server.send_signal(signal.SIGTERM)  # ends the server once the write is done
    out, serr = _read_all(server)
    assert out.count(TEXT.encode()) == 1, (server.returncode, serr)
    _, err = client.communicate(timeout=HANG_GUARD)
    assert client.returncode == 0, (err, server.returncode, serr)
