"""Whom minitalk may signal, checked here once for both sides (docs/protocol.md, "Trust").

A process is signalled only once it is held by a pidfd opened *before* its checks, is seen to
ignore both signals (``SigIgn``: a process that catches them, like an interactive shell or a
daemon, would act on them, and one that only blocks them dies when it unblocks them) and to
block ``PEER_MARK`` (``SigBlk``: every minitalk process does while it runs; a process that
merely inherited the ignoring does not), has passed a signal-0 probe through that pidfd, and
is still alive after all that, so the /proc entry read was its own. In classic mode a plain
minitalk catches the signals, so there (and only there) catching counts, and the caller asks
before each signal.
"""

from __future__ import annotations

import os
import pwd
import signal
import time
from collections.abc import Callable

from minitalk.errors import ServerGoneError, TargetError
from minitalk.procview import (
    DATA_SIGNALS,
    MARK_MASK,
    PEER_MARK,
    USR_MASK,
    ancestors,
    handles,
    is_shell,
    mask,
    read_status,
    serving_mode,
)
from minitalk.transport import Process

_CAP_KILL = 5  # capability bit in CapEff: may signal any process
PID_MAX_LIMIT = 4_194_304  # the kernel's ceiling for pid_max on 64-bit Linux
# A target whose command line is `minitalk serve` but which has not set up its signals yet is
# starting (`serve & send $!`): it is watched (never signalled) this long, this often.
STARTING_WAIT = 5.0
STARTING_POLL = 0.01


def not_a_peer_because(fields: dict[str, str]) -> str | None:  # noqa: PLR0911 (one per reason)
    """Why the process whose /proc/PID/status ``fields`` these are is not a minitalk
    process, or None if it is one (it ignores both SIGUSR1 and SIGUSR2, as every minitalk
    process does). A process that catches the signals acts on them (an interactive shell
    exits, a daemon reopens its logs or reloads); one that only blocks them dies of them once
    it unblocks them; one that does neither dies at once."""
    if not fields:
        return "its /proc status cannot be read"
    if fields.get("Kthread") == "1" or "VmSize" not in fields:
        return "it is a kernel thread or a zombie, with no memory of its own"
    if mask(fields, "SigIgn") & USR_MASK == USR_MASK:
        if mask(fields, "SigBlk") & MARK_MASK:
            return None
        return (
            "it ignores SIGUSR1/SIGUSR2 but runs no minitalk 2 (which also blocks signal "
            f"{PEER_MARK} while it runs): a child of a program that once used minitalk's API, "
            "say, which inherited the ignoring, or a minitalk older than 2.0"
        )
    if mask(fields, "SigCgt") & USR_MASK:
        return (
            "it catches SIGUSR1/SIGUSR2 with a handler of its own (as a shell or a daemon "
            "does, acting on them), where minitalk ignores them"
        )
    if mask(fields, "SigBlk") & USR_MASK == USR_MASK:
        return "it blocks them without ignoring them, so it would die of them once it unblocks"
    return "it does not block or ignore SIGUSR1 and SIGUSR2, so the first bit would kill it"


def may_signal_us(fields: dict[str, str]) -> bool:
    """True if the process with these /proc/PID/status ``fields`` may send this process a
    signal: the kernel's rule (kill(2)) is that its real or effective UID is our real or saved
    UID, or that it holds CAP_KILL."""
    try:
        real, effective = (int(uid) for uid in fields["Uid"].split()[:2])
    except (KeyError, ValueError):
        return False
    our_real, _, our_saved = os.getresuid()
    if {real, effective} & {our_real, our_saved}:
        return True
    return bool(mask(fields, "CapEff") & (1 << _CAP_KILL))


def _hold(pid: int) -> Process:
    """A pidfd for ``pid``, or ``TargetError`` saying why there is none."""
    try:
        return Process(pid)
    except ProcessLookupError:
        raise TargetError(f"no process has PID {pid}") from None
    except OSError as error:
        raise TargetError(f"cannot open PID {pid}: {error.strerror}") from None


def _probe(process: Process) -> None:
    """Signal 0 through the pidfd: raise ``TargetError`` if we may not signal the process.
    One that has exited passes here; the caller's "still alive?" check says so."""
    try:
        process.probe()
    except PermissionError:
        raise TargetError(
            f"PID {process.pid} belongs to another user; not allowed to signal it"
        ) from None
    except ProcessLookupError:
        pass
    except OSError as error:
        raise TargetError(f"cannot signal PID {process.pid}: {error.strerror}") from None


def _unset(fields: dict[str, str]) -> bool:
    """Neither blocks, ignores nor catches either data signal: what a process that has not
    yet set up its signals shows (a Python server still importing its modules)."""
    return not (mask(fields, "SigBlk") | mask(fields, "SigIgn") | mask(fields, "SigCgt")) & USR_MASK


def _starting_server(process: Process, ready: Callable[[], bool]) -> bool:
    """``process`` runs `minitalk serve` but is not ready: wait for it, up to
    ``STARTING_WAIT``, watching /proc (never signalling it). True once ``ready()``; False if
    it is no minitalk server, exits or is not ready in time."""
    if serving_mode(process.pid) is None:
        return False
    deadline = time.monotonic() + STARTING_WAIT
    while time.monotonic() < deadline and process.alive():
        time.sleep(STARTING_POLL)
        if ready():
            return True
    return False


def open_peer(
    pid: int, *, check_ignores: bool = True, wait_starting: bool = False
) -> tuple[Process, dict[str, str]]:
    """Hold ``pid`` by pidfd and check that it is a minitalk process we may signal; return it
    with the /proc/PID/status fields read for the check.

    The order matters. The pidfd is opened first, so it stands for one process whatever
    happens to the PID; then /proc is read; then the pidfd must still be alive, which proves
    the /proc entry read was that process's (a PID is not reused while its process lives).
    Raise ``TargetError`` saying why not (``ServerGoneError`` if it exited meanwhile).
    ``check_ignores=False`` skips the is-it-minitalk check (``send --force``).
    ``wait_starting``: a client's check of its target, which may be a server still starting
    (never the server's check of a client: the server would stall for everyone).
    """
    process = _hold(pid)
    try:
        _probe(process)
        fields = read_status(pid)
        reason = not_a_peer_because(fields) if check_ignores else None
        if (
            reason is not None
            and wait_starting
            and _unset(fields)
            and _starting_server(process, lambda: not_a_peer_because(read_status(pid)) is None)
        ):
            fields, reason = read_status(pid), None  # `serve & send $!`: it was starting
        if reason is not None and process.alive():
            if serving_mode(pid) is not None:
                raise TargetError(
                    f"PID {pid} runs minitalk serve but was not ready within "
                    f"{STARTING_WAIT:g} s: {reason}"
                )
            raise TargetError(f"PID {pid} is not a minitalk server: {reason}{_hint(pid, fields)}")
        if not process.alive():
            raise ServerGoneError(f"PID {pid} exited")
        process.uid = int(fields.get("Uid", "-1 -1").split()[1])
    except BaseException:
        process.close()
        raise
    return process, fields


def _hint(pid: int, fields: dict[str, str]) -> str:
    """For a process that catches both signals and is no shell: the mark of a plain
    minitalk server (the exercise's handlers), which speaks the classic protocol."""
    if mask(fields, "SigCgt") & USR_MASK != USR_MASK or is_shell(pid):
        return ""
    return "; if it is a plain minitalk server (they catch both), send with --classic"


def _user(uid: int) -> str:
    if uid < 0:
        return "a user /proc does not show"
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def open_server(pid: int, *, force: bool = False) -> Process:
    """Check that ``pid`` is a process we may safely signal as a server, and hold it.

    Refuses PID 0, 1, negatives, our own PID, processes that do not exist or belong to
    someone else, processes that do not ignore both signals (unless ``force``: they would be
    killed by SIGUSR1, or act on it), and servers that may not signal us back (a root client
    of an ordinary user's server: every answer would fail).
    """
    _check_pid_number(pid)
    if serving_mode(pid) == "classic":
        raise TargetError(
            f"PID {pid} is a classic-mode server (minitalk serve --classic): send with --classic"
        )
    process, fields = open_peer(pid, check_ignores=not force, wait_starting=True)
    if not may_signal_us(fields):
        process.close()
        raise TargetError(
            f"the server (PID {pid}) runs as {_user(process.uid)} and may not signal this "
            f"client, which runs as {_user(os.geteuid())}: send as the server's user"
        )
    return process


def _check_pid_number(pid: int) -> None:
    if pid <= 0:
        raise TargetError(f"PID {pid} is not a process: 0 and negative PIDs name process groups")
    if pid == 1:
        raise TargetError("PID 1 is init, never a minitalk server")
    if pid == os.getpid():
        raise TargetError(f"PID {pid} is this client itself")
    if pid > PID_MAX_LIMIT:
        raise TargetError(f"PID {pid} is larger than any PID Linux can give")


def open_plain_peer(pid: int) -> Process:
    """Hold a plain minitalk process by pidfd: a classic server answering a client it has
    just heard from, and nothing else. The caller checks ``handles`` before each signal, from
    /proc files it opens after this (so they are this process's own while it lives). Cheap,
    for it runs as the sender's first bit is taken, while its next bits arrive: its user
    (``read_uid``) is read when a message is printed."""
    process = _hold(pid)
    if not process.alive():
        process.close()
        raise ServerGoneError(f"PID {pid} exited")
    return process


def read_uid(process: Process) -> int:
    """The effective UID of a held process (read once, while it lives), or -1."""
    if process.uid < 0:
        fields = read_status(process.pid)
        if fields and process.alive():
            process.uid = int(fields.get("Uid", "-1 -1").split()[1])
    return process.uid


def open_plain_server(pid: int, *, force: bool = False) -> Process:
    """Check that ``pid`` is a process a classic client may signal, and hold it.

    A plain minitalk server catches both signals, so in this mode (and only in it) catching
    counts: it must block, ignore or catch each of them (unless ``force``). Never this client,
    PID 0, 1 or a process group, and never one of this client's ancestors: an interactive bash
    catches both signals and exits on them, so `send --classic $$` would close the terminal.
    """
    _check_pid_number(pid)
    if pid in ancestors():
        raise TargetError(
            f"PID {pid} is this client's own parent shell or one of its ancestors, never a "
            "minitalk server (an interactive shell exits on SIGUSR1)"
        )
    if is_shell(pid):
        raise TargetError(
            f"PID {pid} is a shell, never a minitalk server (a shell exits on SIGUSR1)"
        )
    if serving_mode(pid) == "framed":
        raise TargetError(
            f"PID {pid} is a framed minitalk server (minitalk serve): send without --classic"
        )
    process = open_plain_peer(pid)
    try:
        if not force and _unset(read_status(pid)):
            _starting_server(  # `serve --classic & send --classic $!`: it may be starting
                process, lambda: all(handles(pid, signum) for signum in DATA_SIGNALS)
            )
        for signum in DATA_SIGNALS:
            if not force and not handles(pid, signum):
                raise TargetError(
                    f"PID {pid} is not a minitalk server: it does not block, ignore or catch "
                    f"{signal.Signals(signum).name}, so the first bit would kill it"
                )
        _probe(process)
        if not process.alive():
            raise ServerGoneError(f"PID {pid} exited")
    except BaseException:
        process.close()
        raise
    return process
