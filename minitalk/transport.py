"""The only module that touches signals: block them, wait for one with its sender, send one.

Linux only. Standard signals do not queue and a Python signal handler is not told who sent a
signal, so minitalk blocks SIGUSR1 and SIGUSR2 and takes them one at a time with
``sigtimedwait``, which reports the sender's PID. Sends go through a pidfd, so a PID that was
recycled after its process exited is never hit. This module knows nothing of frames.

Stops (SIGINT, SIGTERM, SIGHUP) raise ``KeyboardInterrupt`` wherever they land, for a client
and the classic server. The framed server must not stop inside a step (between printing a
message and sending its ACK, or halfway through printing it), so it blocks them too and takes
them in the same ``sigtimedwait`` as the data signals (``block_signals(stops=True)``,
``SignalWaiter(stops=...)``): a stop then ends a wait and is acted on between steps. While it
writes a message (a pipe nobody reads can block that forever) it lets them in for the
write's length (``SignalWaiter.stoppable``): the first is recorded for later and the write
goes on, a second raises ``KeyboardInterrupt`` at once.

A signal counts only if the kernel stamped its sender (``si_code`` SI_USER, what ``kill`` and
``pidfd_send_signal`` produce): ``rt_sigqueueinfo`` lets anyone write any PID into a signal, so
such a signal is dropped here (``SignalWaiter._classify``, the one reading of a siginfo) and
never reaches the protocol machines. Who may be signalled is ``trust``'s business; what /proc
says of a process is ``procview``'s. The tight loops (``bounce``, ``collect``) keep their
checks inline: each costs a function call per bit otherwise, on the path `make bench` measures.
They run compiled (minitalk/_inner.c, the same loops and checks in C) when the extension was
built, which `pip install` does where a C compiler is present; otherwise, or with
MINITALK_PURE_PYTHON=1 in the environment, in Python. ``INNER_LOOP`` says which.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from array import array
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType, ModuleType

from minitalk.errors import UnsupportedPlatformError
from minitalk.procview import DATA_SIGNALS, PEER_MARK, StatFile, process_state

_WAITED = frozenset(DATA_SIGNALS)
_SYMBOL: dict[int, int] = {signal.SIGUSR1: 0, signal.SIGUSR2: 1}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, kill, terminal closed

SI_USER = 0  # si_code of a signal whose sender the kernel wrote itself (kill, pidfd_send_signal)

# Waiting: poll up to _SPIN_POLLS times before blocking, when another CPU can run the peer
# meanwhile: a polled round trip takes a few microseconds, a blocked process pays a wake-up of
# tens of microseconds on every bit. When a whole spin finds nothing, the machine may be
# crowded (the peer waiting for a CPU that we hold), so later spins yield the CPU after each
# empty poll, until _PROMPT_STREAK answers in a row arrive within _PROMPT_POLLS polls. Measured
# for a 64 KiB send: plain spinning 2.2 s idle but 17 s beside one CPU hog; yielding always
# 2.8 s and 6.2 s; this switch 2.2 s and 7.5 s.
_SPIN_POLLS = 200
_PROMPT_POLLS = 16
_PROMPT_STREAK = 64
_LATE = 0.005  # a reply within this after a failed spin was late, not lost
# A poll from C costs about a third of one from Python: the compiled loops poll this many
# times more, so that a spin lasts about as long on either path.
_C_POLLS_PER_PY_POLL = 3


def _compiled_loops() -> ModuleType | None:
    """minitalk._inner, unless it was not built or MINITALK_PURE_PYTHON is set (not 0)."""
    if os.environ.get("MINITALK_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        import minitalk._inner as inner  # noqa: PLC0415 - optional, built by pip with a cc
    except ImportError:
        return None
    return inner


_COMPILED = _compiled_loops()
INNER_LOOP = "compiled" if _COMPILED is not None else "pure Python"


def require_linux() -> None:
    """Raise ``UnsupportedPlatformError`` unless the sender-aware signal calls exist."""
    needed = (
        hasattr(signal, "sigtimedwait"),
        hasattr(signal, "pidfd_send_signal"),
        hasattr(os, "pidfd_open"),
    )
    if not sys.platform.startswith("linux") or not all(needed):
        raise UnsupportedPlatformError(
            f"minitalk needs Linux (sigtimedwait and pidfd); this is {sys.platform}"
        )


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def block_signals(*, stops: bool = False) -> frozenset[int]:
    """Block the data signals in this thread; do it before anyone can signal us.

    SIGTERM and SIGHUP are made to raise ``KeyboardInterrupt`` like SIGINT, so each stops a
    loop cleanly (a server then tells its clients and removes its PID file).

    SIGUSR1/SIGUSR2 are also set to SIG_IGN. Blocked signals are still queued for
    ``sigtimedwait`` (the kernel never ignores a blocked signal), but while a thread sleeps in
    ``sigtimedwait`` the kernel lifts the block, so ``SigBlk`` in /proc/PID/status no longer
    shows it; ``SigIgn`` does, and that is how a client recognises a minitalk peer.

    With ``stops`` the stop signals are blocked too, to be taken by a ``SignalWaiter`` given
    the set returned (empty without ``stops``): those that would stop us, that is, not one
    ignored (``nohup``, a shell's background job) or already blocked, which stays so, nor one
    with a handler of the caller's own, which stays the caller's.
    """
    require_linux()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED | {PEER_MARK})
    for signum in DATA_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    for stop in (signal.SIGTERM, signal.SIGHUP):  # a kill, or the terminal closed
        if signal.getsignal(stop) == signal.SIG_DFL:
            signal.signal(stop, _stop)
    if not stops:
        return frozenset()
    stopping = (signal.SIG_DFL, signal.default_int_handler, _stop)
    taken = frozenset(
        signum
        for signum in STOP_SIGNALS
        if signum not in before and signal.getsignal(signum) in stopping
    )
    signal.pthread_sigmask(signal.SIG_BLOCK, taken)
    return taken


def _may_spin() -> bool:
    return len(os.sched_getaffinity(0)) > 1


# CPython's sigtimedwait, interrupted (EINTR: a SIGSTOP and SIGCONT of this process is enough)
# and resumed after its deadline, returns a siginfo it never filled: whatever was on the C stack
# (zeros, which read as SIGNAL 0 from PID 0 with si_code SI_USER; pointers; or an earlier real
# siginfo, which would be a phantom repeat of an old signal). So a siginfo returned well after
# the deadline (_STOPPED_PAST: a stop, not a wake-up's latency) is not trusted: what is really
# pending is polled again, without a wait. A real signal taken just before a deadline that the
# process then overslept by that much is lost that way; a lost signal is what the protocol
# survives, a phantom one is not. (Discarding every siginfo returned after the deadline could
# lose a real answer that came within a wake-up's latency of the client's look (0.7 ms), on any
# bit; it is the suspected cause of one false "frames arrived out of order" in a 300 KiB send.)
_STOPPED_PAST = 0.02


class SignalWaiter:
    """Takes blocked signals one at a time, returning (sender PID, symbol).

    Only signals the kernel stamped count: one whose siginfo the sender wrote itself
    (``rt_sigqueueinfo``: any PID can be claimed there) is dropped and counted in ``forged``,
    as if it had never arrived.

    Adaptive: it polls (``sigtimedwait`` with a zero timeout) before it blocks, and yields
    the CPU while polling when the machine looks crowded (see ``_SPIN_POLLS``). It never
    polls on a single-CPU machine, where polling only takes the CPU from the peer.

    ``wakes``: other blocked signals that end a wait (as a timeout would) and are counted in
    ``woken``: SIGCONT, for a server that must know it was stopped.

    ``stops``: the stop signals to take in the same ``sigtimedwait`` (what
    ``block_signals(stops=True)`` returned; they must be blocked). One taken ends the wait at
    once, as a timeout would, sets ``stop_requested`` and is counted in ``stops``. Whoever
    may signal us may stop us, so a stop needs no SI_USER check.
    """

    def __init__(
        self,
        *,
        spin: bool | None = None,
        stops: Collection[int] = (),
        wakes: Collection[int] = (),
        compiled: bool | None = None,
    ) -> None:
        self._spins = range(_SPIN_POLLS if (_may_spin() if spin is None else spin) else 0)
        if compiled and _COMPILED is None:
            raise ValueError("the compiled inner loop was not built (or MINITALK_PURE_PYTHON)")
        self._compiled = _COMPILED if compiled is not False else None
        self._c_polls = len(self._spins) * _C_POLLS_PER_PY_POLL  # as long a spin, from C
        self._crowded = False
        self._prompt = 0
        self._stops = frozenset(stops)
        self._wakes = frozenset(wakes)
        self._waited = _WAITED | self._stops | self._wakes
        self.woken = 0  # ``wakes`` signals taken (each ended a wait, as a timeout would)
        # signals dropped here: their sender was not stamped by the kernel, or their siginfo
        # could not be trusted (see _STOPPED_PAST)
        self.forged = 0
        self.stops = 0  # stop signals taken
        self.stop_requested = False
        self.send_error: OSError | None = None  # a send in ``bounce`` failed (see there)

    @property
    def polls(self) -> bool:
        """Whether it polls before it blocks (never on one CPU). The tight loops of the bulk
        path only poll, so without it they would only cost."""
        return bool(self._spins)

    @property
    def inner_loop(self) -> str:
        """Which tight loops it runs: "compiled" or "pure Python"."""
        return "compiled" if self._compiled is not None else "pure Python"

    def wait(self, deadline: float | None, *, spin: bool = True) -> tuple[int, int] | None:
        """Wait until ``deadline`` (a ``monotonic()`` time; None: forever) for a signal.

        Return (sender PID, symbol), the symbol 0 for SIGUSR1 and 1 for SIGUSR2, or None
        once the deadline has passed or a stop signal was taken. ``spin=False`` blocks at
        once (nothing is expected soon, as for a queued client).
        """
        if spin and self._spins:
            crowded = self._crowded
            waited = self._waited
            for polls in self._spins:
                info = signal.sigtimedwait(waited, 0)
                if info is not None:
                    got, ends = self._classify(info)
                    if not ends:
                        continue
                    if crowded and got is not None:
                        self._prompt = self._prompt + 1 if polls < _PROMPT_POLLS else 0
                        if self._prompt >= _PROMPT_STREAK:
                            self._crowded = False
                    return got
                if crowded:
                    os.sched_yield()
            blocked_at = time.monotonic()
            got = self._block(deadline)
            # A reply that came soon after the spin gave up was late: the peer is short of
            # CPU. A long silence is something else (a lost signal, a stall) and says
            # nothing about the CPU; yielding then would only slow the recovery down.
            if got is not None and time.monotonic() - blocked_at < _LATE:
                self._crowded = True
                self._prompt = 0
            return got
        return self._block(deadline)

    def _block(self, deadline: float | None) -> tuple[int, int] | None:
        waited = self._waited
        while True:
            if deadline is None:
                info: signal.struct_siginfo | None = signal.sigwaitinfo(waited)
            else:
                info = signal.sigtimedwait(waited, max(deadline - time.monotonic(), 0.0))
                if info is not None and time.monotonic() >= deadline + _STOPPED_PAST:
                    # maybe never filled: see above (a real stop lost there is one a user
                    # sent at the very moment we were continued; the next one counts). It
                    # may have been a real answer: counted with the forged ones, so that a
                    # client never takes its absence for proof that its signal was lost.
                    self.forged += 1
                    info = signal.sigtimedwait(waited, 0)
            if info is None:
                return None
            got, ends = self._classify(info)
            if ends:
                return got

    # -- bulk: the tight loops for runs of plain data (the machines say when) ----------------

    def bounce(
        self, peer: Process, symbols: Sequence[int], expect: int
    ) -> tuple[int, tuple[int, int] | None]:
        """Send ``symbols`` to ``peer`` one by one, each once ``peer``'s answer ``expect`` to
        the one before has come (the first: to the signal already out). Return how many were
        sent, and the signal that broke the run, if one did (as ``wait`` returns it; None
        also after a forged or a stop signal, or when no answer came within one spin: the
        caller then waits with its deadlines). If a send fails, the answer to the symbol
        before it has been taken: the error is left in ``send_error`` for the caller. Polls
        only: on a crowded machine it yields after each empty poll, as ``wait`` does."""
        if self._compiled is not None:
            count, broken, errno = self._compiled.bounce(
                peer.fd, peer.pid, bytes(symbols), DATA_SIGNALS[expect], self._c_polls,
                self._crowded, self._waited,
            )  # fmt: skip
        else:
            count, broken, errno = _bounce(
                peer.fd, peer.pid, symbols, DATA_SIGNALS[expect], self._spins, self._crowded,
                self._waited,
            )  # fmt: skip
        if errno:
            self.send_error = OSError(errno, os.strerror(errno))  # its subclass, by errno
        return count, self._broken(broken)

    def collect(
        self, peer: Process, count: int, answer: int
    ) -> tuple[list[int], tuple[int, int] | None]:
        """Take up to ``count`` symbols from ``peer``, answering each with ``answer`` at once.
        Return the symbols taken, and the signal that broke the run, if one did (see
        ``bounce``). A failed answer ends the run (the peer exited or changed its user: the
        caller finds out)."""
        reply = DATA_SIGNALS[answer]
        if self._compiled is not None:
            taken, broken = self._compiled.collect(
                peer.fd, peer.pid, count, reply, self._c_polls, self._crowded, self._waited
            )
            return list(taken), self._broken(broken)
        symbols, broken = _collect(
            peer.fd, peer.pid, count, reply, self._spins, self._crowded, self._waited
        )
        return symbols, self._broken(broken)

    def classic_collect(
        self, peer: Process, stat: StatFile, run: tuple[int, int, int, int, bool]
    ) -> tuple[list[int], list[float], int, tuple[int, int] | None, float]:
        """A classic server's tight loop. ``run``: (count, answer, zero, in_byte, has_one).
        Take up to ``count`` symbols from ``peer`` and answer each with ``answer`` once
        ``stat`` shows that cannot kill it, except one that completes a byte of eight
        ``zero`` symbols (a NUL, which ends a message: its answer waits until it is printed;
        ``in_byte`` symbols of the current byte came before, ``has_one``: one of them was not
        ``zero``). A symbol taken and not answered ends the run: that one, one the check
        refused (the compiled loop also leaves a process of several threads that catches
        nothing to the caller's full check), and one taken while another waited-for signal
        is pending (the caller takes that first, as its step does). Return the symbols, the
        ``monotonic()`` time each was taken, how many were answered (all, or all but the
        last), the signal that broke the run, if one did (see ``bounce``), and the last of
        those times at which no SIGCONT was pending (0.0 if none: see
        ``classic_link.SignalClassicLink``)."""
        count, answer, zero, in_byte, has_one = run
        signum = DATA_SIGNALS[answer]
        if self._compiled is not None:
            symbols, stamps, answered, broken, awake = self._compiled.classic_collect(
                peer.fd, peer.pid, stat.fd, count, signum, zero, in_byte, has_one,
                self._c_polls, self._crowded, self._waited,
            )  # fmt: skip
            times = array("d", stamps).tolist()
        else:
            symbols, times, answered, broken, awake = _classic_collect(
                peer.fd, peer.pid, stat, run, self._spins, self._crowded, self._waited
            )
        return list(symbols), times, answered, self._broken(broken), awake

    def _broken(self, broken: tuple[int, int, int] | None) -> tuple[int, int] | None:
        """What a tight loop's breaking signal, (signo, code, pid), is to the caller."""
        return None if broken is None else self._classify_fields(*broken)[0]

    def _classify(self, info: signal.struct_siginfo) -> tuple[tuple[int, int] | None, bool]:
        """The one reading of a siginfo: (the data signal as (sender PID, symbol), or None;
        whether it ends a wait). A stop ends it (recorded); a signal whose sender the kernel
        did not stamp is counted in ``forged`` and does not. The tight loops (``bounce``,
        ``collect``) test the common case inline first and call this for anything else."""
        return self._classify_fields(info.si_signo, info.si_code, info.si_pid)

    def _classify_fields(
        self, signo: int, code: int, pid: int
    ) -> tuple[tuple[int, int] | None, bool]:
        if signo not in _SYMBOL:
            self._stopped(signo)
            return None, True
        if code != SI_USER:
            self.forged += 1
            return None, False
        return (pid, _SYMBOL[signo]), True

    def take_pending(self) -> tuple[int, int] | None:
        """One signal already pending, as (sender PID, symbol), or None (nothing pending, or
        a stop signal taken); never waits."""
        while (info := signal.sigtimedwait(self._waited, 0)) is not None:
            got, ends = self._classify(info)
            if ends:
                return got
        return None

    def _stopped(self, signo: int) -> None:
        if signo in self._stops:
            self._note_stop()
        elif signo in self._wakes:
            self.woken += 1

    def _note_stop(self) -> None:
        self.stops += 1
        self.stop_requested = True

    @contextmanager
    def stoppable(self) -> Iterator[None]:
        """Let the stop signals in while the body runs: a write that may block for good (a
        full pipe nobody reads) stays stoppable. The first stop is only recorded
        (``stop_requested``, to be acted on after the body, between steps) and the body goes
        on, an interrupted write resumed; the next raises ``KeyboardInterrupt`` at once, as a
        second Ctrl-C does. After the body they are blocked again (one that comes later
        waits, pending, for ``sigtimedwait``) and their handlers are put back.
        """
        if not self._stops:
            yield
            return

        def on_stop(signum: int, frame: FrameType | None) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self._note_stop()

        # Blocked first, put back after: pthread_sigmask runs the Python handlers of signals
        # already caught before it returns, so one that came at the very end of the body is
        # still recorded by on_stop, never raised by the handler put back.
        previous = {signum: signal.signal(signum, on_stop) for signum in self._stops}
        owner = threading.get_ident()
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self._stops)
            yield
        finally:
            # Not on another thread (a generator body closed there, api.serve): that
            # thread's mask is not ours to change, nor may it set handlers; the API says so.
            if threading.get_ident() == owner:
                try:
                    signal.pthread_sigmask(signal.SIG_BLOCK, self._stops)
                finally:
                    for signum, handler in previous.items():
                        if handler is not None:  # always set: block_signals took only these
                            signal.signal(signum, handler)


# -- the tight loops in Python: the fallback of the compiled ones (minitalk/_inner.c), with
# the same arguments and results (a breaking signal as (signo, code, pid), unread). The spin
# is written out in each: a function call per bit costs a few percent of a transfer.


def _unread(info: signal.struct_siginfo) -> tuple[int, int, int]:
    return info.si_signo, info.si_code, info.si_pid


def _bounce(
    fd: int,
    pid: int,
    symbols: Sequence[int],
    want: int,
    spins: range,
    crowded: bool,
    waited: frozenset[int],
) -> tuple[int, tuple[int, int, int] | None, int]:
    poll, send, kinds = signal.sigtimedwait, signal.pidfd_send_signal, DATA_SIGNALS
    for index, symbol in enumerate(symbols):
        for _ in spins:
            info = poll(waited, 0)
            if info is not None:
                break
            if crowded:
                os.sched_yield()
        else:
            return index, None, 0
        if info.si_signo != want or info.si_pid != pid or info.si_code != SI_USER:
            return index, _unread(info), 0
        try:
            send(fd, kinds[symbol])
        except OSError as error:  # the answer to the last one sent was taken: say so
            return index, None, error.errno or 0
    return len(symbols), None, 0


def _collect(
    fd: int, pid: int, count: int, reply: int, spins: range, crowded: bool, waited: frozenset[int]
) -> tuple[list[int], tuple[int, int, int] | None]:
    poll, send, symbol_of = signal.sigtimedwait, signal.pidfd_send_signal, _SYMBOL
    taken: list[int] = []
    for _ in range(count):
        for _ in spins:
            info = poll(waited, 0)
            if info is not None:
                break
            if crowded:
                os.sched_yield()
        else:
            break
        symbol = symbol_of.get(info.si_signo)
        if symbol is None or info.si_pid != pid or info.si_code != SI_USER:
            return taken, _unread(info)
        taken.append(symbol)
        try:
            send(fd, reply)
        except OSError:
            break
    return taken, None


def _classic_collect(
    fd: int,
    pid: int,
    stat: StatFile,
    run: tuple[int, int, int, int, bool],
    spins: range,
    crowded: bool,
    waited: frozenset[int],
) -> tuple[list[int], list[float], int, tuple[int, int, int] | None, float]:
    count, answer, zero, in_byte, has_one = run
    poll, send, symbol_of = signal.sigtimedwait, signal.pidfd_send_signal, _SYMBOL
    reply = DATA_SIGNALS[answer]
    taken: list[int] = []
    times: list[float] = []
    answered, awake = 0, 0.0
    for _ in range(count):
        for _ in spins:
            info = poll(waited, 0)
            if info is not None:
                break
            if crowded:
                os.sched_yield()
        else:
            break
        symbol = symbol_of.get(info.si_signo)
        if symbol is None or info.si_pid != pid or info.si_code != SI_USER:
            return taken, times, answered, _unread(info), awake
        times.append(monotonic())
        taken.append(symbol)
        has_one = has_one or symbol != zero
        in_byte += 1
        if in_byte == 8:
            if not has_one:  # a NUL: the message ends here
                break
            in_byte, has_one = 0, False
        pending = signal.sigpending()
        if signal.SIGCONT not in pending:
            awake = times[-1]
        if not waited.isdisjoint(pending):  # taken first, as the server's step does
            break
        if not stat.handles(reply):
            break
        try:
            send(fd, reply)
        except OSError:
            break
        answered += 1
    return taken, times, answered, None, awake


class WaiterLink:
    """What every real link shares: a ``SignalWaiter`` for the waits, and the clock. The
    links of ``server``, ``client`` and ``classic_link`` add what their role sends."""

    def __init__(self, waiter: SignalWaiter) -> None:
        self.waiter = waiter
        self.now = monotonic

    @property
    def polls(self) -> bool:
        return self.waiter.polls

    @property
    def forged(self) -> int:
        return self.waiter.forged

    def wait(self, deadline: float | None, *, spin: bool) -> tuple[int, int] | None:
        return self.waiter.wait(deadline, spin=spin)

    def take_pending(self) -> tuple[int, int] | None:
        return self.waiter.take_pending()


class Process:
    """A process we signal, held by pidfd so that PID reuse cannot redirect our signals."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.uid = -1  # its effective UID, once ``open_peer`` has read it
        self.fd = os.pidfd_open(pid)
        self._poller = select.poll()
        self._poller.register(self.fd, select.POLLIN)

    def send(self, symbol: int) -> None:
        """Send 0 as SIGUSR1, 1 as SIGUSR2. Raise ``ProcessLookupError`` if it has exited,
        ``PermissionError`` if we may not signal it."""
        signal.pidfd_send_signal(self.fd, DATA_SIGNALS[symbol])

    def probe(self) -> None:
        """Check that we may signal it, sending nothing (signal 0)."""
        signal.pidfd_send_signal(self.fd, 0)

    def holding(self, symbol: int) -> bool:
        """True if the process is stopped, or the signal that carries ``symbol`` is still
        pending at it: it has not taken what we sent yet, so its silence is not a loss."""
        return process_state(self.pid).holding(symbol)

    def asleep_waiting(self) -> bool:
        """True if the process is asleep in sigtimedwait/sigwaitinfo (see ``ProcState``)."""
        return process_state(self.pid, status=False).asleep_waiting

    def asleep_elsewhere(self) -> bool:
        """True if the process sleeps outside its signal wait (see ``ProcState``)."""
        return process_state(self.pid).asleep_elsewhere

    def alive(self) -> bool:
        """False once the process has exited (its pidfd polls readable)."""
        return not self._poller.poll(0)

    def close(self) -> None:
        os.close(self.fd)


monotonic = time.monotonic  # the clock the loops feed to the state machines
