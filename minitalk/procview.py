"""What /proc says of a process: the one reader of its state, for every loop and check.

Reading /proc never signals anything. Each reader opens the file afresh (a process's entry
changes all the time) and returns plain facts: the status fields and signal masks, whether it
is stopped, holding a signal of ours, asleep in its signal wait or asleep elsewhere, its command
line and name, its parent chain. Who may be trusted with a signal is ``trust``'s business; this
module only reads.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

DATA_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)  # symbol 0 travels as SIGUSR1, 1 as SIGUSR2
# /proc/PID/status masks: bit (signum - 1) is set when that signal is blocked/ignored/caught.
USR_MASK = (1 << (signal.SIGUSR1 - 1)) | (1 << (signal.SIGUSR2 - 1))
# Every minitalk process blocks this signal while it runs (transport.block_signals) and waits
# for nothing on it, so /proc shows it blocked even while it sleeps in sigtimedwait (which
# lifts the block of the signals waited for). Ignoring both data signals is not enough to be a
# peer: a program that used minitalk's API keeps them ignored, and its children inherit that.
PEER_MARK = signal.SIGRTMAX
MARK_MASK = 1 << (PEER_MARK - 1)


def read_status(pid: int | str) -> dict[str, str]:
    """The fields of /proc/PID/status (or of /proc/PID/task/TID/status, given "PID/task/TID"),
    by name; empty if it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as status:
            return dict(line.rstrip("\n").partition(":\t")[::2] for line in status)
    except OSError:
        return {}


def mask(fields: dict[str, str], name: str) -> int:
    try:
        return int(fields.get(name, "0"), 16)
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class ProcState:
    """What /proc says of a process at one moment: the one reader of "stopped", "holding"
    and "asleep" for every loop (each field is read once, status first, then wchan)."""

    state: str  # the letter of /proc/PID/status State: R, S, D, T, t, Z... ("" unread)
    pending: int  # the signals pending at it (ShdPnd | SigPnd)
    wchan: str  # where it sleeps ("" or "0": running, or the kernel hides it)

    @property
    def stopped(self) -> bool:
        """Stopped (SIGSTOP, Ctrl-Z) or stopped under a tracer: it answers once it runs."""
        return self.state in ("T", "t")

    def holding(self, symbol: int) -> bool:
        """Stopped, or the signal that carries ``symbol`` is still pending at it."""
        return self.stopped or bool(self.pending & (1 << (DATA_SIGNALS[symbol] - 1)))

    @property
    def asleep_waiting(self) -> bool:
        """Asleep in sigtimedwait/sigwaitinfo: then no signal it waits for is pending (one
        would have woken it), and a minitalk peer has acted on every signal it took. False
        if it runs, is stopped, sleeps elsewhere, or the kernel hides /proc/PID/wchan."""
        return self.wchan.startswith("do_sigtimedwait")

    @property
    def asleep_elsewhere(self) -> bool:
        """Asleep somewhere other than its signal wait: a minitalk server blocked writing a
        message to a full pipe or a stopped terminal answers once that returns (and a
        process that is no minitalk at all, ``sleep``, sleeps there for ever)."""
        return self.state in ("S", "D") and self.wchan not in ("", "0") and not self.asleep_waiting


def process_state(pid: int, *, status: bool = True) -> ProcState:
    """Read /proc/PID/status (unless ``status`` is False) and then /proc/PID/wchan."""
    fields = read_status(pid) if status else {}
    try:
        with open(f"/proc/{pid}/wchan", encoding="ascii") as wchan:
            where = wchan.read().strip()
    except OSError:
        where = ""
    pending = mask(fields, "ShdPnd") | mask(fields, "SigPnd")
    return ProcState(fields.get("State", "")[:1], pending, where)


def serving_mode(pid: int) -> str | None:
    """ "classic" or "framed" if ``pid`` runs `minitalk serve` (read from /proc/PID/cmdline),
    else None. Only to tell a user who picked the wrong mode, never to trust a process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            args = cmdline.read().decode("utf-8", errors="replace").split("\0")
    except OSError:
        return None
    # The interpreter runs it: `python .../bin/minitalk serve` (a console script's #! line)
    # or `python -m minitalk serve`. A wrapper (`timeout 9 minitalk serve`, sudo, strace) is
    # not the server, and neither is a command that merely mentions both words.
    if not args or not os.path.basename(args[0]).startswith("python"):
        return None
    if len(args) > 2 and args[1] == "-m" and args[2] == "minitalk":
        rest = args[3:]
    elif len(args) > 1 and (args[1] == "minitalk" or args[1].endswith("/minitalk")):
        rest = args[2:]
    else:
        return None
    command = next((arg for arg in rest if not arg.startswith("-")), None)
    if command != "serve":
        return None
    return "classic" if "--classic" in rest else "framed"


def handles(pid: int, signum: int) -> bool:
    """True if ``pid`` ignores or catches ``signum`` right now, or every thread of it blocks
    it or waits for it (read fresh from /proc), so that one such signal will not kill it.
    For plain minitalks only: they catch the signals; some install their handler late, so ask
    before each signal."""
    fields = read_status(pid)
    if fields.get("State", "Z")[:1] in ("Z", "X"):
        return False
    bit = 1 << (signum - 1)
    if (mask(fields, "SigIgn") | mask(fields, "SigCgt")) & bit:  # dispositions: process-wide
        return True
    return _every_thread_holds(pid, bit)


class StatFile:
    """/proc/PID/stat of one process, opened once and re-read before each signal sent to it.

    The check a classic server makes before *every* answer (a plain client may install its
    handler late) costs a read of this file. Opening, reading and parsing /proc/PID/status
    whole took about 50 µs, and twice that for a client that catches nothing (its threads
    were listed too), longer than a timed client's gap between bits: bits merged while the
    server looked. /proc/PID/stat carries the same facts (state, threads, and the blocked,
    ignored and caught masks, fields 3, 20 and 32-34) and costs the kernel half as much to
    write; kept open and re-read with ``pread`` it costs about 6 µs, and the threads are
    listed only for a process that has more than one. Opened after the process's pidfd and
    checked alive after, it reads that process and no later holder of its PID (the kernel
    fails the read once the process it was opened on is gone).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        self.exiting = False  # seen exiting or exited by the last read
        self.blocks_every_signal = False  # its one thread did, at the last read (_blocks)

    def handles(self, signum: int, *, waiting: bool = False) -> bool:
        """``handles(pid, signum)``, from this open file (``exiting`` tells why not, if it
        is exiting or gone). ``waiting``: a thread asleep in sigwait/sigtimedwait counts as
        blocking the signal (see ``_every_thread_holds``: /proc cannot show that it did)."""
        self.exiting, self.blocks_every_signal = True, False
        try:
            fields = os.pread(self.fd, 4096, 0).rpartition(b")")[2].split()
            if fields[0] in (b"Z", b"X") or int(fields[6]) & _PF_EXITING:
                return False
            self.exiting = False
            bit = 1 << (signum - 1)
            if (int(fields[30]) | int(fields[31])) & bit:  # ignored or caught: process-wide
                return True
            if fields[17] == b"1":  # its one thread's mask is this one
                blocked = int(fields[29])
                self.blocks_every_signal = blocked & _ALL_BLOCKED == _ALL_BLOCKED
                return _blocks(blocked, bit) or (waiting and _in_sigwait(self.pid))
        except (OSError, IndexError, ValueError):  # it exited, or an unreadable line
            return False
        return _every_thread_holds(self.pid, bit, waiting=waiting)

    def close(self) -> None:
        os.close(self.fd)


_PF_EXITING = 0x4  # /proc/PID/stat flags (field 9): the process is on its way out


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (/proc/PID/stat, field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        return int(fields[19])  # fields 3.. follow the command name: 22 is the 20th
    except (OSError, IndexError, ValueError):
        return None


def _in_sigwait(task: int | str) -> bool:
    """Process (or "PID/task/TID") ``task`` is asleep in sigwait/sigwaitinfo/sigtimedwait."""
    try:
        with open(f"/proc/{task}/wchan", encoding="ascii") as wchan:
            return wchan.read().startswith("do_sigtimedwait")
    except OSError:
        return False


def _every_thread_holds(pid: int, bit: int, *, waiting: bool = False) -> bool:
    """Blocking is per thread, and the kernel hands a signal sent to the process to any
    thread that does not block it: only if every thread blocks it is it safe.

    A thread asleep in sigtimedwait shows the signals it waits for as unblocked, and is not
    counted as holding them even when the set it waits for holds ours: the kernel kills the
    process for a signal whose action is the default one unless the thread had blocked it
    *before* its wait (``real_blocked``, which /proc does not show), and a client that waits
    without blocking first dies of the answer (a review reproduced it: exit 138). So a client
    that waits correctly in sigtimedwait, catching nothing, is not answered: safety first,
    unless ``waiting`` (serve --classic --answer-sigwait: the user vouches that the client
    blocked the signal before its wait, as it must for its own server's answer not to kill
    it), when a thread asleep there counts as holding it."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    return bool(tids) and all(
        _thread_holds(pid, tid, bit) or (waiting and _in_sigwait(f"{pid}/task/{tid}"))
        for tid in tids
    )


# /proc/PID/task/TID/stat field 32 shows signals 1-31: all of them blocked, but SIGKILL and
# SIGSTOP, which cannot be.
_ALL_BLOCKED = 0x7FFFFFFF & ~(1 << (signal.SIGKILL - 1)) & ~(1 << (signal.SIGSTOP - 1))


def _blocks(blocked: int, bit: int) -> bool:
    """A thread's mask (/proc stat field 32) holds the signal of ``bit``, and not as one that
    blocks every signal for a moment: glibc's (and musl's) pthread_create makes a new thread
    with every signal blocked, and it takes its creator's mask only once it runs, and the
    creating thread blocks them all around its clone too (posix_spawn, system and popen do
    the same); a signal answered meanwhile is delivered once the mask is put back, and kills
    the process (a test reproduces both). A mask of every signal is not counted as holding."""
    return bool(blocked & bit) and blocked & _ALL_BLOCKED != _ALL_BLOCKED


def _thread_holds(pid: int, tid: str, bit: int) -> bool:
    """Thread ``tid`` blocks the signal (read from its own /proc stat, field 32; ``_blocks``)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        return _blocks(int(fields[29]), bit)
    except (OSError, IndexError, ValueError):
        return False


# Shells catch SIGUSR1/SIGUSR2 and exit on them (bash, when interactive); none is a minitalk.
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "tcsh", "csh", "ash"})


def is_shell(pid: int) -> bool:
    """True if ``pid`` runs a shell: by the program it runs (/proc/PID/exe, which the kernel
    records with every symlink resolved: an `rbash` or `sh` that is a link to bash is bash), or
    by its command name (/proc/PID/comm) where exe cannot be read (another user's process)."""
    try:
        program = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        program = ""
    if program.removesuffix(" (deleted)") in _SHELLS:
        return True
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm:
            return comm.read().strip() in _SHELLS
    except OSError:
        return False


def ancestors() -> set[int]:
    """The PIDs of this process's parent, its parent's parent, and so on up to init: the
    caller's shell among them, which an interactive session must never be sent a signal."""
    found: set[int] = set()
    pid = os.getppid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int(read_status(pid).get("PPid", "0"))
        except ValueError:
            break
    return found
