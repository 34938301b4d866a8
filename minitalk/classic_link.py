"""Classic mode over real signals: the plain-protocol server's driver and link, and the client.

The machines in ``classic`` decide what is sent and when; the server's driver
(``ClassicServerDriver``) runs the same step skeleton as the framed server's
(``link.ServerSteps``) and only moves signals. What this mode adds is its safety rule, kept by
its link (``SignalClassicLink``): plain minitalk clients *catch* the signals
(some install their handler late, some exit on the first signal they did not expect), so before
every answer the server checks, fresh from /proc, that the process handles that very signal,
is alive (held by a pidfd opened before the check) and is not a shell. Signals count only if
the kernel stamped their sender (``SignalWaiter``), so senders are told apart by a PID that
cannot be forged.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from minitalk.classic import (
    Ack,
    ClassicEvent,
    ClassicFormat,
    ClassicMessage,
    ClassicReceiver,
    ClassicRun,
    ClassicSender,
    EndAt,
    SenderDropped,
    SenderRecord,
    describe_send,
)
from minitalk.classic_limits import (
    ANSWER_HOLD,
    ANSWER_RETRY_FOR,
    DEFAULT_DELAY,
    DEFAULT_MAX_MESSAGE,
    END_WAIT,
    IDLE_TIMEOUT,
    PROBE_WAIT,
    REFUSAL_STANDS,
    REPLY_TIMEOUT,
)
from minitalk.errors import MinitalkError, NoAnswerError, ServerGoneError
from minitalk.link import ServerSteps, Signal
from minitalk.procview import (
    DATA_SIGNALS,
    USR_MASK,
    StatFile,
    is_shell,
    process_state,
    start_ticks,
)
from minitalk.transport import Process, SignalWaiter, WaiterLink, block_signals, monotonic
from minitalk.trust import open_plain_peer, open_plain_server, read_uid


@dataclass(frozen=True, slots=True)
class ClassicServerConfig:
    """What a classic server accepts and how it answers."""

    fmt: ClassicFormat = field(default_factory=ClassicFormat)
    ack: Ack = Ack.BIT
    ack_symbol: int = 0  # the signal that answers: 0 = SIGUSR1, 1 = SIGUSR2
    end_symbol: int | None = None  # the end-of-message signal, if one is sent
    end_at: EndAt = EndAt.INSTEAD  # with Ack.BIT: where the end signal goes
    answer_delay: float = 0.0  # seconds before each answer
    detect: bool = False  # find each sender's variant (fmt is then the default)
    # answer a client asleep in sigwait/sigtimedwait, which /proc shows not blocking the
    # signal: the user vouches that it blocked it before its wait (see procview.StatFile)
    answer_sigwait: bool = False
    idle_timeout: float = IDLE_TIMEOUT
    max_message: int = DEFAULT_MAX_MESSAGE
    max_messages: int | None = None  # stop after this many messages

    def receiver(self) -> ClassicReceiver:
        """A classic receiver machine with these settings."""
        return ClassicReceiver(
            self.fmt,
            ack=self.ack,
            ack_symbol=self.ack_symbol,
            end_symbol=self.end_symbol,
            end_at=self.end_at,
            answer_delay=self.answer_delay,
            detect=self.detect,
            idle_timeout=self.idle_timeout,
            max_message=self.max_message,
        )


def serve_classic(
    config: ClassicServerConfig,
    *,
    on_ready: Callable[[int], None],
    on_message: Callable[[ClassicMessage, int], None],
    on_trace: Callable[[ClassicEvent], None] | None = None,
) -> int:
    """Receive the plain protocol until SIGINT/SIGTERM or ``config.max_messages`` messages;
    return the number of messages delivered. ``on_message(message, uid)`` prints one;
    ``on_trace`` is told of every message and every dropped sender."""
    block_signals()
    link = SignalClassicLink(answer_sigwait=config.answer_sigwait)
    driver = ClassicServerDriver(config.receiver(), link, on_message, on_trace)
    on_ready(os.getpid())
    try:
        while config.max_messages is None or driver.delivered < config.max_messages:
            driver.step()
        # --count reached: the answers still due go out first, a refused one tried again
        # while its client is silent (bounded: a sender that goes on does not keep it)
        stop_at = monotonic() + config.answer_delay + ANSWER_HOLD + ANSWER_RETRY_FOR
        while driver.receiver.owing and monotonic() < stop_at:
            driver.step(until=stop_at)
    except KeyboardInterrupt:  # plain senders cannot be told anything: stop at once
        driver.print_held()
    finally:
        driver.trace_the_rest()
        link.close()
    return driver.delivered


class ClassicServerDriver(ServerSteps):
    """Runs a ``ClassicReceiver`` over a ``SignalClassicLink``, with the framed server's
    skeleton (``link.ServerSteps``): answers go out as the machine offers them (it holds a
    finished message's answers until ``message_written``), each checked by the link first."""

    link: SignalClassicLink

    def __init__(
        self,
        receiver: ClassicReceiver,
        link: SignalClassicLink,
        on_message: Callable[[ClassicMessage, int], None],
        on_trace: Callable[[ClassicEvent], None] | None = None,
    ) -> None:
        self.receiver = receiver
        self.link = link
        self.on_message = on_message
        self.on_trace = on_trace
        self.delivered = 0
        self._untraced: list[ClassicEvent] = []  # traced once no answer to it is owed

    def print_held(self) -> None:
        """On a stop: print the messages --detect held (complete, but a NUL or a longer
        prefix might have followed), with no answer: the server is going."""
        self.receiver.end_held(self.link.now())
        while (event := self.receiver.next_event()) is not None:
            self._untraced.append(event)
            if isinstance(event, ClassicMessage):
                self.on_message(event, self.link.uid(event.pid))
                self.delivered += 1

    def trace_the_rest(self) -> None:
        """On the way out: trace the messages whose last answers are still owed."""
        if self.on_trace is not None:
            for event in self._untraced:
                self.on_trace(event)
        self._untraced = []

    def _timer(self) -> float | None:
        return self.receiver.get_timer()

    def _busy(self) -> bool:
        return bool(self.receiver.senders)

    def _take(self, got: Signal, now: float) -> None:
        pid, symbol = got
        if self.link.accepts(pid):
            if self.receiver.ack is not Ack.NONE:
                self.link.hold(pid)
            self.receiver.receive(pid, symbol, now)

    def _count_forged(self, now: float) -> None:
        """A forged signal is dropped by the link; a plain sender's lost bit is not ours to
        recover (the plain protocol has no resend), so the machine is not told."""

    def _deadline(self, now: float) -> None:
        looked = self.receiver.looks_at()
        pending = looked is not None and self.link.holding(*looked)
        self.receiver.handle_timer(now, still_pending=pending)

    def _bulk(self) -> None:
        """A tight loop where the machine offers one (``ClassicReceiver.bulk``): each bit
        still checked before its answer, in the loop."""
        receiver, link = self.receiver, self.link
        run = receiver.bulk()
        if run is None or not link.polls:
            return
        symbols, times, answered, self._early = link.collect_run(run)
        if symbols:
            receiver.bulk_received(run, symbols, times, answered)
            self._flush(link.now())  # the answer owed to a last bit left unanswered
            self._sent = self._sent or answered > 0

    def _flush(self, now: float) -> None:
        receiver, link = self.receiver, self.link
        self._sent = False
        while True:
            replies = receiver.replies()
            self._answer(replies, now)
            event = receiver.next_event()
            if event is None:
                if not replies:
                    break
                continue
            if isinstance(event, SenderDropped) and event.reason.startswith("silent"):
                event = replace(event, reason=f"{event.reason}; {link.why_silent(event.record)}")
            self._untraced.append(event)
            if isinstance(event, ClassicMessage):
                self.on_message(event, link.uid(event.pid))
                self.delivered += 1
                receiver.message_written(event.pid, now)
        for pid in link.held():
            if pid not in receiver.senders and not receiver.owes(pid):
                link.forget(pid)  # done with it: its pidfd is closed
        self._trace_done()

    def _answer(self, replies: list[tuple[int, int]], now: float) -> None:
        receiver, link = self.receiver, self.link
        for pid, symbol in replies:
            why = link.answer(pid, symbol, now)
            if why:  # (may release the next answer)
                receiver.not_answered(pid, now, why, may_change=link.may_change(pid))
            else:
                receiver.answered(pid)
                self._sent = True

    def _trace_done(self) -> None:
        """Trace each event once no answer to its sender is owed: the trace counts them all
        (a delay, an end signal or a retry may hold the last)."""
        if self.on_trace is None:
            self._untraced = []
            return
        owed = self.receiver.owes
        done = [event for event in self._untraced if not owed(event.pid)]
        self._untraced = [event for event in self._untraced if owed(event.pid)]
        for event in done:
            self.on_trace(event)


@dataclass(slots=True)
class PlainPeer:
    """A sender the server may answer, held from its first signal on: its pidfd, and its
    /proc/PID/stat kept open for the check before each answer; or why it is never answered."""

    process: Process | None
    stat: StatFile | None
    refused: str = ""
    # Why the last answer was not sent, when it did not handle the signal (worked out once,
    # with a look at the other signal for the hint), and until when that look stands: a
    # refusal is never re-read sooner than REFUSAL_STANDS after it, so that refusing a timed
    # client that catches nothing costs next to nothing. Only a refusal is kept: an answer
    # is always checked afresh, and a refused one is tried again (the machine's retry).
    not_handled: str = ""
    refused_signal: int = 0  # the signal that look refused
    refused_until: float = 0.0

    def close(self) -> None:
        if self.stat is not None:
            self.stat.close()
        if self.process is not None:
            self.process.close()


class SignalClassicLink(WaiterLink):
    """The real link of a classic server: a ``SignalWaiter``, and the plain peers held by
    pidfd. Its one rule of its own is this mode's safety: plain minitalk clients *catch* the
    signals (some install their handler late, some exit on the first signal they did not
    expect), so before every answer it checks, fresh from /proc, that the process handles
    that very signal, is alive (held by a pidfd) and is not a shell.

    A sender is held the moment its first signal is taken (``hold``), not when the answer
    goes: a PID freed meanwhile could otherwise be answered in its new holder. The one
    window left is the signal's own time in flight, long if this server was stopped: SIGCONT
    is blocked here and taken by the waiter (after every pending data signal: lower numbers
    come first), so a signal taken while it is still pending waited across a stop, and its
    sender, if it started after this server was last seen running, may be a newcomer on a
    freed PID: it is not answered. (A server held up without a stop, by a write to a full
    pipe, ptrace or the cgroup freezer, sends no SIGCONT: that window stays open, as narrow
    as PID reuse within it.)
    """

    def __init__(self, *, answer_sigwait: bool = False) -> None:
        self.answer_sigwait = answer_sigwait  # see ClassicServerConfig
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCONT})
        super().__init__(SignalWaiter(wakes={signal.SIGCONT}))
        self.peers: dict[int, PlainPeer] = {}
        self.own = os.getpid()
        self._awake = _boot_seconds()  # when this server last began a wait, running
        self._stopped_since: float | None = None  # a stop seen: began no earlier than this
        self._continues = 0  # SIGCONTs taken by the waiter
        # The first sender's checks run as its first bits arrive: run them once beforehand,
        # on this process, so that they do not run cold then (300 µs cold, 60 µs warm).
        warm = self._open(self.own)
        if warm.stat is not None:
            warm.stat.handles(signal.SIGUSR1)
        warm.close()

    def accepts(self, pid: int) -> bool:
        """Signals from init, from ourselves or from PID 0 are never data."""
        return pid > 1 and pid != self.own

    def wait(self, deadline: float | None, *, spin: bool) -> tuple[int, int] | None:
        # The clock first: a stop takes effect on the way out of any system call, so a time
        # read after the look could already be after a stop the look did not see.
        now = _boot_seconds()
        if signal.SIGCONT not in signal.sigpending():  # else stopped since: keep the time before
            self._awake = now
        got = self.waiter.wait(deadline, spin=spin)
        self._after_continue()
        return got

    def take_pending(self) -> tuple[int, int] | None:
        got = self.waiter.take_pending()
        self._after_continue()
        return got

    def _after_continue(self) -> None:
        """The waiter takes SIGCONT only once no data signal is pending (it hands out the
        lower-numbered ones first): every signal pending across a stop has been taken, and
        later ones are fresh."""
        if self.waiter.woken != self._continues:
            self._continues = self.waiter.woken
            self._stopped_since = None

    def collect_run(self, run: ClassicRun) -> tuple[list[int], list[float], int, Signal | None]:
        """Take ``run`` in the waiter's tight loop (``SignalWaiter.classic_collect``), each
        answer checked there as ``answer`` checks it; nothing for a sender not answered."""
        peer = self.peers.get(run.pid)
        if peer is None or peer.process is None or peer.stat is None or peer.refused:
            return [], [], 0, None
        now = _boot_seconds()  # the clock first, as in wait
        if signal.SIGCONT not in signal.sigpending():
            self._awake = now
        loop = (run.count, run.answer, run.zero, run.in_byte, run.has_one)
        # the boot clock runs ahead of the monotonic one only through a suspend: this offset,
        # taken before, can only place ``awake`` earlier than it was (the safe side)
        offset = _boot_seconds() - monotonic()
        symbols, times, answered, got, awake = self.waiter.classic_collect(
            peer.process, peer.stat, loop
        )
        if awake:  # running then, as a wait begun then would have noted
            self._awake = max(self._awake, awake + offset)
        self._after_continue()
        return symbols, times, answered, got

    def hold(self, pid: int) -> None:
        """Hold the sender of a signal just taken (once per sender), or note why it will
        never be answered."""
        if pid in self.peers:
            return
        if signal.SIGCONT in signal.sigpending() and self._stopped_since is None:
            # stopped and continued since it last began a wait, running: this signal may
            # have waited across the stop (SIGCONT is taken after every pending data signal)
            self._stopped_since = self._awake
        self.peers[pid] = self._open(pid)

    def _open(self, pid: int) -> PlainPeer:
        if is_shell(pid):
            return PlainPeer(None, None, "never answered: a shell")
        try:
            process = open_plain_peer(pid)
        except MinitalkError as error:
            return PlainPeer(None, None, str(error))
        try:
            stat = StatFile(pid)
        except OSError:
            process.close()
            return PlainPeer(None, None, "it exited")
        peer = PlainPeer(process, stat)
        if not process.alive():
            peer.refused = "it exited"
        elif self._stopped_since is not None and _started_after(pid, self._stopped_since):
            peer.refused = (
                "it started while this server was stopped: its PID may have been freed by the "
                "sender and taken by it, so it is not answered"
            )
        return peer

    def answer(self, pid: int, symbol: int, now: float) -> str:
        """Send ``symbol`` to ``pid`` only if that cannot kill or upset it; return "" once
        sent, else why not."""
        peer = self.peers.get(pid)
        if peer is None:
            return "never answered: not held (a shell, init or this server)"
        if peer.process is None or peer.stat is None or peer.refused:
            return peer.refused
        why = self._refusal(peer, peer.process, peer.stat, DATA_SIGNALS[symbol], now)
        if why:
            return why
        try:
            peer.process.send(symbol)
        except OSError as error:
            return f"cannot signal it: {error.strerror}"
        return ""

    def _refusal(
        self,
        peer: PlainPeer,
        process: Process,
        stat: StatFile,
        signum: signal.Signals,
        now: float,
    ) -> str:
        """Why ``signum`` must not be sent to the peer now, or "" if it may."""
        if now < peer.refused_until and signum == peer.refused_signal:
            return peer.not_handled  # looked at just now
        if stat.handles(signum, waiting=self.answer_sigwait):
            peer.not_handled, peer.refused_until = "", 0.0
            return ""
        if stat.exiting or not process.alive():
            peer.not_handled = ""
            return "it exited"
        peer.refused_until = now + REFUSAL_STANDS
        if signum != peer.refused_signal or not peer.not_handled:
            peer.refused_signal = signum
            other = DATA_SIGNALS[1 - DATA_SIGNALS.index(signum)]
            hint = f"; it does handle {other.name}: --ack-signal"
            asleep = process_state(process.pid, status=False).asleep_waiting
            blocks_all = stat.blocks_every_signal
            peer.not_handled = (
                (_ALL_BLOCKED_WORDS if blocks_all else "it does not block, ignore or catch ")
                + signum.name
                + (hint if stat.handles(other) else "")
                + (_WAITER_HINT if asleep and not self.answer_sigwait else "")
            )
        return peer.not_handled

    def why_silent(self, record: SenderRecord) -> str:
        """What the sender of ``record``, gone silent mid-message, is doing now, in words."""
        peer = self.peers.get(record.pid)
        process = peer.process if peer is not None else None
        if process is None:
            return "it was never answered" if peer is not None else "it was not answered"
        if not process.alive():
            if record.answered and record.answered >= record.signals:
                return (
                    f"it exited after our answer to its signal {record.signals}: a client "
                    "that exits on the first signal it gets needs --ack end or --ack none"
                )
            return "it exited mid-message"
        state = process_state(record.pid)
        if state.stopped:
            return "it is stopped (Ctrl-Z, or a debugger)"
        if record.answered and record.answered >= record.signals:
            return (
                "it got our answer to its last signal and sent nothing more: it missed that "
                "answer (a lost wake-up: it paused, or began to wait, after the answer had "
                "come; try --answer-delay-us 100 to see it happen more often) or is stuck"
            )
        return "it runs, and sent nothing more"

    def may_change(self, pid: int) -> bool:
        """Whether the last answer refused to ``pid`` was refused for a reason that may pass:
        it did not handle the signal (yet)."""
        peer = self.peers.get(pid)
        return peer is not None and bool(peer.not_handled)

    def holding(self, pid: int, symbol: int) -> bool:
        """Whether the signal of ``symbol`` sent to ``pid`` is still pending there (or it is
        stopped): then another of that kind would merge into it."""
        peer = self.peers.get(pid)
        return peer is not None and peer.process is not None and peer.process.holding(symbol)

    def uid(self, pid: int) -> int:
        peer = self.peers.get(pid)
        return read_uid(peer.process) if peer is not None and peer.process is not None else -1

    def held(self) -> list[int]:
        return list(self.peers)

    def forget(self, pid: int) -> None:
        peer = self.peers.pop(pid, None)
        if peer is not None:
            peer.close()

    def close(self) -> None:
        for pid in list(self.peers):
            self.forget(pid)


_TICK = 1 / os.sysconf("SC_CLK_TCK")


# Said of a client refused while asleep in sigtimedwait/sigwait(info): it may well have blocked
# the signal, which the kernel lifts while it waits (docs/classic.md, "Never a fatal answer").
_ALL_BLOCKED_WORDS = (
    "it blocks every signal, as a thread does only for a moment around pthread_create or "
    "posix_spawn (not proof that it will still block it): catch it, even with an empty "
    "handler, to be answered: "
)
_WAITER_HINT = (
    " (asleep in sigwait/sigtimedwait, which shows it unblocked, and one that did not block it "
    "first dies of it: catch it, even with an empty handler, to be answered, or, if it blocks "
    "the signal before it waits, serve with --answer-sigwait)"
)


def _boot_seconds() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _started_after(pid: int, moment: float) -> bool:
    """Whether ``pid`` may have started after ``moment`` (boot-clock seconds): its start is
    known to a clock tick, so one within a tick before counts as after. Unknown counts too."""
    ticks = start_ticks(pid)
    return ticks is None or (ticks + 1) * _TICK > moment


@dataclass(frozen=True, slots=True)
class ClassicClientConfig:
    """How a classic send is framed and paced (seconds)."""

    fmt: ClassicFormat = field(default_factory=ClassicFormat)
    delay: float = DEFAULT_DELAY
    probe_wait: float = PROBE_WAIT
    reply_timeout: float = REPLY_TIMEOUT
    end_wait: float = END_WAIT
    answer_gap: float = 0.0  # paced: a pause after each answer, before the next bit
    timeout: float | None = None  # bound on the whole send
    force: bool = False  # skip the does-it-handle-the-signals check


@dataclass(frozen=True, slots=True)
class ClassicReceipt:
    """What a classic send did, and how it was paced."""

    pid: int
    size: int
    symbols: list[int]
    sender: ClassicSender
    seconds: float


def send_classic(
    pid: int,
    data: bytes,
    config: ClassicClientConfig,
    *,
    on_trace: Callable[[list[str]], None] | None = None,
) -> ClassicReceipt:
    """Send ``data`` to the plain minitalk server ``pid`` in the plain protocol; return once
    every signal is sent (a plain server cannot acknowledge a message as a whole).
    ``on_trace`` gets the account of the send (``describe_send``), even when it fails."""
    block_signals()
    server = open_plain_server(pid, force=config.force)
    symbols = config.fmt.encode(data)
    sender = ClassicSender(
        symbols,
        delay=config.delay,
        probe_wait=config.probe_wait,
        reply_timeout=config.reply_timeout,
        end_wait=config.end_wait,
        answer_gap=config.answer_gap,
    )
    try:
        started = monotonic()
        _run_sender(server, sender, config, started)
        return ClassicReceipt(pid, len(data), symbols, sender, monotonic() - started)
    finally:
        server.close()
        if on_trace is not None:
            on_trace([f"to PID {pid}: {line}" for line in describe_send(sender, config.fmt, data)])


def _run_sender(
    server: Process, sender: ClassicSender, config: ClassicClientConfig, started: float
) -> None:
    waiter = SignalWaiter()
    give_up_at = None if config.timeout is None else started + config.timeout
    sender.start(started)
    while True:
        for symbol in sender.outbox:
            try:
                server.send(symbol)
            except OSError:
                raise ServerGoneError(f"the server (PID {server.pid}) exited") from None
        sender.outbox.clear()
        if sender.finished:
            break
        deadline = sender.get_timer()
        if give_up_at is not None:
            deadline = give_up_at if deadline is None else min(deadline, give_up_at)
        got = waiter.wait(deadline, spin=sender.paced)
        now = monotonic()
        if got is not None:
            if got[0] == server.pid:
                sender.receive(now, got[1])
            continue
        if give_up_at is not None and now >= give_up_at:
            raise NoAnswerError(f"gave up after the --timeout of {config.timeout:g} s")
        looked = not sender.paced and sender.next_symbol is not None
        state = process_state(server.pid) if looked else None
        holding = state is not None and (state.stopped or bool(state.pending & USR_MASK))
        stopped = state is not None and state.stopped
        sender.handle_timer(now, server_holding=holding, server_stopped=stopped)
    if sender.error is not None:
        if not server.alive():
            raise ServerGoneError(f"the server (PID {server.pid}) exited")
        raise sender.error
