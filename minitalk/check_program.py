"""The programs `minitalk check` runs: started, watched, held and stopped, and nothing else.

A tester must never hurt what it did not start. Each program is started here in a session of
its own (a Ctrl-C at the check's terminal reaches the check, which then stops it), held by a
pidfd from the moment it exists, and stopped at the end (SIGTERM, then SIGKILL) through that
pidfd: no signal ever goes to a PID that could have been reused. A server's PID is read from
its first line of output and accepted only if it is the program started or one of its own
descendants. Output is read through a pseudo-terminal, as a user running it in a terminal sees
it: C stdio then flushes each line (into a pipe it would hold a `printf` until the exit), and
the terminal's own line-end translation is turned off so that the bytes are the program's.

The reading thread is started after the data signals are blocked (``transport.block_signals``):
a thread inherits the mask, and one that did not block them would die of the first answer.
"""

from __future__ import annotations

import ctypes
import os
import pty
import re
import select
import signal
import tempfile
import threading
import tty
from collections.abc import Callable
from contextlib import suppress
from typing import IO

from minitalk.errors import MinitalkError
from minitalk.procview import read_status
from minitalk.transport import monotonic

PID_WAIT = 5.0  # seconds for a server to print its first line
STOP_WAIT = 1.0  # seconds after SIGTERM before SIGKILL
KILL_WAIT = 5.0  # seconds for a SIGKILL to take effect (a process in the kernel may linger)


class ProgramError(MinitalkError):
    """The program under test could not be started or did not show its PID."""


def _descends_from(pid: int, root: int) -> bool:
    """Whether ``pid`` is ``root`` or one of its descendants (by the parents /proc lists)."""
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        if pid == root:
            return True
        seen.add(pid)
        try:
            pid = int(read_status(pid).get("PPid", "0"))
        except ValueError:
            return False
    return False


_PID_LIMIT = 1 << 22  # PID_MAX_LIMIT of linux/threads.h


def session_of(pid: int) -> int:
    """The session ``pid`` belongs to (/proc/PID/stat), or 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        return int(fields[3])  # after the name: state, ppid, pgrp, session
    except (OSError, IndexError, ValueError):
        return 0


def how_it_ended(returncode: int) -> str:
    """A process's end in words: its exit code, or the signal that killed it."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


class Child:
    """A process this check started, the leader of a process group (and session) of its own,
    held by a pidfd from its start.

    Started with ``posix_spawn``, which can hand it a clean signal mask: this process blocks
    SIGUSR1 and SIGUSR2 (to take them with sigwaitinfo), and a child would inherit that mask
    through fork and exec, and sleep through every bit sent to it. Dispositions this process
    ignores (SIGPIPE, as Python does) go back to their defaults, as for any program started
    from a shell.

    It is never reaped before ``end``: polled with WNOWAIT, an exited child stays a zombie
    that keeps its PID, and with it the number of its process group, from being reused. So
    ``end`` can signal the whole group (what a wrapper started: `sh -c 'server & ...'`)
    without hitting anyone else, and nothing ever looks up a PID that may be another's."""

    def __init__(self, argv: list[str], *, stdout: int, stderr: int) -> None:
        stdin = os.open(os.devnull, os.O_RDONLY)
        try:
            self.pid = os.posix_spawnp(
                argv[0],
                argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, stdin, 0),
                    (os.POSIX_SPAWN_DUP2, stdout, 1),
                    (os.POSIX_SPAWN_DUP2, stderr, 2),
                ],
                setsid=True,  # a session of its own: a Ctrl-C here reaches the check only
                setsigmask=set(),
                setsigdef={signal.SIGPIPE, signal.SIGXFSZ, signal.SIGUSR1, signal.SIGUSR2},
            )
        except (OSError, ValueError) as error:  # ValueError: an empty program name
            why = error.strerror if isinstance(error, OSError) else str(error)
            raise ProgramError(f"cannot start {argv[0]!r}: {why}") from None
        finally:
            os.close(stdin)
        self.pidfd = os.pidfd_open(self.pid)  # our child, unreaped: it is this process
        self.returncode: int | None = None
        self.stderr: IO[bytes] | None = None  # a client's standard error, kept

    def poll(self) -> int | None:
        """Its exit code (negative: the signal that killed it), or None while it runs; it is
        not reaped (see the class)."""
        if self.returncode is None and self.pidfd >= 0:
            found = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if found is not None and found.si_pid == self.pid:
                code = found.si_status
                self.returncode = -code if found.si_code != os.CLD_EXITED else code
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for it to end (at most ``timeout`` seconds); its exit code, or None."""
        if self.poll() is None:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            poller.poll(None if timeout is None else max(timeout, 0.0) * 1000)
        return self.poll()

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to its process group: the number is its own unreaped PID, so the
        group is the one it leads (some of it may have left, by setsid: see ``end_strays``)."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def end(self, grace: float = 0.0) -> bool:
        """Stop it and its process group if it runs (SIGTERM, then SIGKILL after ``grace``
        seconds; at once with none) and reap it; return whether it had to be stopped. An
        interrupt meanwhile (a second Ctrl-C) goes straight to SIGKILL before it is raised."""
        if self.pidfd < 0:
            return False
        running = self.poll() is None
        try:
            if running and grace:
                self.signal_group(signal.SIGTERM)
                self.wait(grace)
        finally:
            self.signal_group(signal.SIGKILL)  # the group's stragglers too, leader or not
            if self.poll() is None:
                with suppress(ProcessLookupError, PermissionError):
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                self.wait(KILL_WAIT)
            if self.poll() is not None:  # reaped only now: the group number held till here
                os.waitpid(self.pid, 0)
            os.close(self.pidfd)  # (one that cannot be stopped, setuid, is let go)
            self.pidfd = -1
        return running


def become_subreaper() -> None:
    """Make this process the one that inherits its descendants' orphans (a server that
    daemonizes: fork, setsid, the parent exits), so that ``end_strays`` can still end them."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def end_strays() -> None:
    """Kill and reap every child this process has left: called when none of the programs it
    started should run any more, it ends what they left behind (orphans that came back to
    this subreaper; each one killed may leave its own: until none is left). Each is held by
    a pidfd first: an unreaped child of ours cannot be another process. For the CLI only: it
    ends every child of this process."""
    seen: set[int] = set()
    for _ in range(64):
        children = [pid for pid in _own_children() if pid not in seen]
        if not children:
            return
        seen.update(children)  # (one that cannot be ended is tried once)
        _kill_and_reap(children)


def _kill_and_reap(children: list[int]) -> None:
    for pid in children:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            with suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            if select.select([pidfd], [], [], KILL_WAIT)[0]:  # (not one it may not signal)
                with suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        except PermissionError:
            pass  # a setuid child: let go
        finally:
            os.close(pidfd)


def _own_children() -> list[int]:
    found: list[int] = []
    with suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with suppress(OSError), open(f"/proc/self/task/{task}/children") as children:
                found += [int(pid) for pid in children.read().split()]
    return found


class Program:
    """A server under test: its output (through a pseudo-terminal, read by a thread into a
    buffer), its standard error (kept in a file) and its process (a ``Child``)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.output = bytearray()
        self.changed = threading.Condition()
        self.last_output = monotonic()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        master, child_end = pty.openpty()
        tty.setraw(child_end)  # the bytes as written: no "\r\n" for "\n", no echo
        try:
            self.child = Child(argv, stdout=child_end, stderr=self._stderr.fileno())
        except ProgramError:
            os.close(master)
            self._stderr.close()
            raise
        finally:
            os.close(child_end)
        self.server_pidfd: int | None = None  # a descendant that printed its PID, held
        self.pid_read = 0  # the server's PID, once read
        self._master = master
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.child.pid

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: every writer closed its end
                chunk = b""
            with self.changed:
                self.output += chunk
                self.last_output = monotonic()
                self.changed.notify_all()
            if not chunk:
                return

    def wait_for(self, ready: Callable[[bytes], bool], until: float) -> bytes:
        """Wait (at the latest ``until``) for the output to satisfy ``ready`` or for the program
        to end; return the output so far."""
        with self.changed:
            while not ready(bytes(self.output)) and self.running():
                left = until - monotonic()
                if left <= 0:
                    break
                self.changed.wait(min(left, 0.05))  # 0.05: also see an exit without output
            return bytes(self.output)

    def since(self, mark: int) -> bytes:
        with self.changed:
            return bytes(self.output[mark:])

    def running(self) -> bool:
        """Whether the server runs: the process that printed its PID (the program itself,
        or a descendant that serves for it)."""
        if self.server_pidfd is not None:
            return not select.select([self.server_pidfd], [], [], 0)[0]
        return self.child.poll() is None or (self.pid_read == 0 and self._reader.is_alive())

    def ended(self) -> str:
        """How the program ended ("" while it runs), with the last line of its stderr."""
        if self.running():
            return ""
        code = self.child.poll()
        if code is None or self.server_pidfd is not None:
            return "exited (the process that printed its PID)"
        if self._stderr.closed:
            return how_it_ended(code)
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        said = f"; its last words on stderr: {lines[-1][:200]!r}" if lines else ""
        return how_it_ended(code) + said

    def read_pid(self) -> int:
        """The server's PID from its first line: a number in it that is this program's PID or
        one of its descendants' (held by a pidfd from here on)."""
        output = self.wait_for(lambda out: b"\n" in out, monotonic() + PID_WAIT)
        line = output.split(b"\n", 1)[0]
        if b"\n" not in output:
            if not self.running():
                raise ProgramError(f"the program {self.ended()} before printing its PID")
            raise ProgramError(
                f"the program printed no whole line within {PID_WAIT:g} s (expected its PID "
                f"first); it printed {output[:80]!r}"
            )
        for number in re.findall(rb"\d+", line):
            pid = int(number)
            if pid > _PID_LIMIT:
                continue  # no PID: the kernel's limit is 2^22
            if pid == self.pid:
                self.pid_read = pid
                return pid
            if pid > 1 and self._hold_own(pid):
                self.pid_read = pid
                return pid
        raise ProgramError(
            f"its first line holds no PID of the program started (PID {self.pid}) or of its "
            f"children: {line[:80]!r}"
        )

    def _hold_own(self, pid: int) -> bool:
        """Hold ``pid`` by a pidfd, then keep it only if it is the program's: a descendant,
        or a process of the session the program leads (a wrapper's child, orphaned when the
        wrapper exits: the session's number is the unreaped program's own PID)."""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return False
        if _descends_from(pid, self.pid) or session_of(pid) == self.pid:
            self.server_pidfd = pidfd
            return True
        os.close(pidfd)
        return False

    def stop(self) -> None:
        """End the program, its process group, the descendant that served (if one did) and
        whatever they left behind: SIGTERM, then SIGKILL after ``STOP_WAIT``; through
        pidfds and the group the unreaped program leads, so nothing else can be hit."""
        if self.child.pidfd < 0:
            return  # stopped already
        try:
            if self.server_pidfd is not None:
                with suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self.server_pidfd, signal.SIGTERM)
            self.child.end(STOP_WAIT)
        finally:
            if self.server_pidfd is not None:
                with suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self.server_pidfd, signal.SIGKILL)
                os.close(self.server_pidfd)
                self.server_pidfd = None
            end_strays()
        self._reader.join(1.0)  # the terminal's last bytes (a grandchild may keep it open)
        if not self._reader.is_alive():
            os.close(self._master)
        self._stderr.close()


def spawn_client(argv: list[str]) -> Child:
    """Start a client under test, its output thrown away and its standard error kept (its
    last line is quoted when it fails: ``last_words``)."""
    null = os.open(os.devnull, os.O_WRONLY)
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (read and closed by last_words)
    try:
        child = Child(argv, stdout=null, stderr=stderr.fileno())
    except ProgramError:
        stderr.close()
        raise
    finally:
        os.close(null)
    child.stderr = stderr
    return child


def last_words(child: Child) -> str:
    """The last line a client wrote to its standard error ("" if none), and close it."""
    if child.stderr is None:
        return ""
    with child.stderr as file:
        file.seek(0)
        lines = file.read().decode("utf-8", "replace").strip().splitlines()
    child.stderr = None
    return lines[-1][:200] if lines else ""


def _answer(peer: int, usr1: set[signal.Signals]) -> bool:
    """Poll for a SIGUSR1 (for at most a second) and answer it; False if none came."""
    give_up = monotonic() + 1.0
    while signal.sigtimedwait(usr1, 0) is None:
        if monotonic() > give_up:
            return False
    os.kill(peer, signal.SIGUSR1)
    return True


def round_trips(seconds: float = 0.3) -> float:
    """Signal round trips per second between this process and a forked child, both polling
    with sigtimedwait, for about ``seconds``: this machine's ping-pong from Python, the
    reference a per-bit speed is shown against. Called before any thread starts, with
    SIGUSR1 blocked."""
    parent = os.getpid()
    usr1 = {signal.SIGUSR1}
    child = os.fork()
    if child == 0:  # the child answers until the parent goes quiet
        try:
            while _answer(parent, usr1):
                pass
        finally:
            os._exit(0)
    rounds = 0
    try:
        started = monotonic()
        stop_at = started + seconds
        os.kill(child, signal.SIGUSR1)
        while monotonic() < stop_at and _answer(child, usr1):
            rounds += 1
        return rounds / (monotonic() - started)
    finally:
        os.kill(child, signal.SIGTERM)  # our own fork, not yet reaped: its PID is still its
        os.waitpid(child, 0)
        while signal.sigtimedwait(usr1, 0) is not None:
            pass  # its last answer: not to be taken later for a client's first bit
