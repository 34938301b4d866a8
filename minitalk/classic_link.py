"""The classic loops: a plain-protocol server and client driven by real signals and a clock.

The machines in ``classic`` decide what is sent and when; these loops only move signals. The
one thing they add is the safety rule of this mode: plain minitalk clients *catch* the signals
(some install their handler late, some exit on the first signal they did not expect), so before
every answer the server checks, fresh from /proc, that the process handles that very signal,
is alive (held by a pidfd opened before the check) and is not a shell. Signals count only if
the kernel stamped their sender (``SignalWaiter``), so senders are told apart by a PID that
cannot be forged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from minitalk.classic import (
    Ack,
    ClassicEvent,
    ClassicFormat,
    ClassicMessage,
    ClassicReceiver,
    ClassicSender,
    describe_send,
)
from minitalk.classic_limits import (
    DEFAULT_DELAY,
    DEFAULT_MAX_MESSAGE,
    END_WAIT,
    IDLE_TIMEOUT,
    PROBE_WAIT,
    REPLY_TIMEOUT,
)
from minitalk.errors import MinitalkError, NoAnswerError, ServerGoneError
from minitalk.procview import DATA_SIGNALS, handles, is_shell
from minitalk.transport import Process, SignalWaiter, block_signals, monotonic
from minitalk.trust import open_plain_peer, open_plain_server

# At most this many signals are taken in one step before the answers go out.
_DRAIN = 8


@dataclass(frozen=True, slots=True)
class ClassicServerConfig:
    """What a classic server accepts and how it answers."""

    fmt: ClassicFormat = field(default_factory=ClassicFormat)
    ack: Ack = Ack.BIT
    ack_symbol: int = 0  # the signal that answers: 0 = SIGUSR1, 1 = SIGUSR2
    idle_timeout: float = IDLE_TIMEOUT
    max_message: int = DEFAULT_MAX_MESSAGE
    max_messages: int | None = None  # stop after this many messages


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
    loop = _ClassicServerLoop(config, on_message, on_trace)
    on_ready(os.getpid())
    try:
        while config.max_messages is None or loop.delivered < config.max_messages:
            loop.step()
    except KeyboardInterrupt:  # plain senders cannot be told anything: stop at once
        pass
    finally:
        loop.close()
    return loop.delivered


class _ClassicServerLoop:
    def __init__(
        self,
        config: ClassicServerConfig,
        on_message: Callable[[ClassicMessage, int], None],
        on_trace: Callable[[ClassicEvent], None] | None,
    ) -> None:
        self.receiver = ClassicReceiver(
            config.fmt,
            ack=config.ack,
            ack_symbol=config.ack_symbol,
            idle_timeout=config.idle_timeout,
            max_message=config.max_message,
        )
        self.on_message = on_message
        self.on_trace = on_trace
        self.waiter = SignalWaiter()
        self.peers: dict[int, Process] = {}
        self.delivered = 0
        self.own = os.getpid()

    def step(self) -> None:
        receiver = self.receiver
        deadline = receiver.get_timer()
        got = self.waiter.wait(deadline, spin=bool(receiver.senders))
        now = monotonic()
        taken = 0
        while got is not None:  # take what else is pending before the slower work below
            if got[0] > 1 and got[0] != self.own:
                receiver.receive(got[0], got[1], now)
            taken += 1
            got = self.waiter.take_pending() if taken < _DRAIN else None
        if deadline is not None and now >= deadline:
            receiver.handle_timer(now)
        events = receiver.events[:]
        receiver.events.clear()
        for event in events:  # printed before the answers that follow them go out
            if isinstance(event, ClassicMessage):
                peer = self.peers.get(event.pid)
                self.on_message(event, peer.uid if peer is not None else -1)
                self.delivered += 1
        outbox = receiver.outbox
        while outbox:
            pid, symbol = outbox.pop(0)
            why = self._answer(pid, symbol)
            if not why:
                receiver.answered(pid, events)
            else:
                receiver.not_answered(pid, events, now, why)  # may release the next answer
        for pid in [pid for pid in self.peers if pid not in receiver.senders]:
            if not receiver.owes(pid):
                self._forget(pid)  # done with it: its pidfd is closed
        if self.on_trace is not None:
            for event in events:
                self.on_trace(event)

    def _answer(self, pid: int, symbol: int) -> str:
        """Send ``symbol`` to ``pid`` only if that cannot kill or upset it; return "" once
        sent, else why not."""
        process = self.peers.get(pid)
        if process is None:
            if pid <= 1 or pid == self.own or is_shell(pid):
                return "never answered: a shell, init or this server"
            try:
                process = self.peers[pid] = open_plain_peer(pid)
            except MinitalkError as error:
                return str(error)
        signum = DATA_SIGNALS[symbol]
        if not process.alive():
            return "it exited"
        if not handles(pid, signum):
            other = DATA_SIGNALS[1 - symbol]
            hint = f"; it does handle {other.name}: --ack-signal" if handles(pid, other) else ""
            return f"it does not block, ignore or catch {signum.name}{hint}"
        try:
            process.send(symbol)
        except OSError as error:
            return f"cannot signal it: {error.strerror}"
        return ""

    def _forget(self, pid: int) -> None:
        process = self.peers.pop(pid, None)
        if process is not None:
            process.close()

    def close(self) -> None:
        for pid in list(self.peers):
            self._forget(pid)


@dataclass(frozen=True, slots=True)
class ClassicClientConfig:
    """How a classic send is framed and paced (seconds)."""

    fmt: ClassicFormat = field(default_factory=ClassicFormat)
    delay: float = DEFAULT_DELAY
    probe_wait: float = PROBE_WAIT
    reply_timeout: float = REPLY_TIMEOUT
    end_wait: float = END_WAIT
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
                sender.receive(now)
            continue
        if give_up_at is not None and now >= give_up_at:
            raise NoAnswerError(f"gave up after the --timeout of {config.timeout:g} s")
        holding = not sender.paced and sender.next_symbol is not None and server.holding_any()
        sender.handle_timer(now, server_holding=holding)
    if sender.error is not None:
        if not server.alive():
            raise ServerGoneError(f"the server (PID {server.pid}) exited")
        raise sender.error
