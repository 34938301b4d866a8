"""The client loop: the sender state machine driven by real signals and a real clock.

It checks the target before the first signal, blocks the reply signals before sending
anything (so a fast reply cannot arrive before we wait for it), ignores signals from anyone
but the server, and notices through the server's pidfd when the server exits.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from minitalk.errors import NoAnswerError, TargetError
from minitalk.protocol import (
    BIT_TIMEOUT,
    CONTINUE,
    MAX_ATTEMPTS,
    QUEUE_POLL,
    REPLY_TIMEOUT,
    Sender,
    SenderState,
    ServerView,
)
from minitalk.transport import (
    Process,
    SignalWaiter,
    block_signals,
    monotonic,
    open_server,
)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Timeouts and retry limits of a send (seconds)."""

    reply_timeout: float = REPLY_TIMEOUT
    queue_poll: float = QUEUE_POLL
    max_attempts: int = MAX_ATTEMPTS
    timeout: float | None = None  # bound on the whole send: queueing, a stopped server, all
    force: bool = False  # skip the is-it-a-minitalk-server check


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a successful send did."""

    pid: int
    size: int
    frames: int
    resends: int
    seconds: float


def send_message(
    pid: int,
    message: bytes,
    config: ClientConfig = ClientConfig(),
    *,
    on_progress: Callable[[int, int], None] | None = None,
    on_queued: Callable[[], None] | None = None,
) -> Receipt:
    """Send ``message`` to the server ``pid``; return once every frame is acknowledged.

    Raises a ``MinitalkError`` subclass on any failure. ``on_progress(acked, total)`` is
    called after each acknowledged frame, and ``on_queued()`` once, if the server puts this
    send in its queue (another client has the line).
    """
    block_signals()
    server = open_server(pid, force=config.force)
    try:
        return _SendLoop(server, message, config, on_progress, on_queued).run()
    finally:
        server.close()


class _SendLoop:
    """Moves the sender machine's symbols out and the server's answers in, and tells the
    machine what it sees: each stray, each send, and the server's state when a deadline
    passes. Every decision is the machine's; the loop only bounds the whole send by
    ``--timeout``."""

    def __init__(
        self,
        server: Process,
        message: bytes,
        config: ClientConfig,
        on_progress: Callable[[int, int], None] | None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        self.size = len(message)
        self.config = config
        self.on_progress = on_progress
        self.on_queued = on_queued
        self.waiter = SignalWaiter()
        self.early: tuple[int, int] | None = None  # a server signal taken while sending
        self.forged_seen = 0  # forged signals the machine has been told of, as strays
        self.queued = False  # told to wait for our turn, and not granted the line since
        self.sender = Sender(
            message,
            nonce=int.from_bytes(os.urandom(8), "big"),  # 64 random bits
            reply_timeout=config.reply_timeout,
            bit_timeout=min(BIT_TIMEOUT, config.reply_timeout),
            queue_poll=config.queue_poll,
            max_attempts=config.max_attempts,
        )

    def run(self) -> Receipt:
        sender, server = self.sender, self.server
        started = monotonic()
        give_up_at = None if self.config.timeout is None else started + self.config.timeout
        sender.start(started)
        acked = 0
        now = started
        while True:
            if sender.outbox:
                self._flush_outbox(now)
                if self.early is None and sender.state is SenderState.SENDING:
                    now = self._bulk(now)
            if sender.finished:
                break
            if self.on_progress is not None and sender.bytes_acked != acked:
                acked = sender.bytes_acked
                self.on_progress(acked, self.size)
            deadline = sender.get_timer()
            got = self._next_signal(_earliest(deadline, give_up_at))
            now = monotonic()
            self._report_forged(now)
            if got is not None:
                self._take(got, now)
                continue
            if give_up_at is not None and now >= give_up_at:
                raise NoAnswerError(
                    f"gave up after the --timeout of {self.config.timeout:g} s{self._why()}"
                )
            if deadline is not None and now >= deadline:
                # Look at the server first, then take what is pending here: an answer that
                # came in between is then taken, and the look is not acted on.
                view = self._look_at_server()
                while (got := self.waiter.take_pending()) is not None:
                    self._take(got, now)
                self._report_forged(now)
                if (timer := sender.get_timer()) is not None and now >= timer:
                    sender.handle_timer(now, view)
        if sender.error is not None:
            raise sender.error
        frames = sender.frame_index
        return Receipt(server.pid, self.size, frames, sender.resends, monotonic() - started)

    def _bulk(self, now: float) -> float:
        """Move the run of plain frame bits the machine offers in the waiter's tight loop;
        tell the machine how far it got, and keep what broke the run for the next turn."""
        if not self.waiter.polls:  # one CPU: the tight loop would only cost
            return now
        run = self.sender.bulk()
        if not run:
            return now
        count, got = self.waiter.bounce(self.server, run, CONTINUE)
        now = monotonic()
        if count:
            self.sender.bulk_done(count, now)
            self.sender.sent(now)
        self._report_forged(now)
        self.early = got
        if (error := self.waiter.send_error) is not None:
            self.waiter.send_error = None
            self._send_failed(error)
        return now

    def _next_signal(self, deadline: float | None) -> tuple[int, int] | None:
        if self.early is not None:  # taken while sending, before our signal went out
            got, self.early = self.early, None
            return got
        return self.waiter.wait(deadline, spin=self.sender.awaiting_reply)

    def _take(self, got: tuple[int, int], now: float) -> None:
        sender = self.sender
        if got[0] != self.server.pid:
            sender.stray(now)  # never data; but it may have swallowed the server's answer
            return
        sender.receive(got[1], now)
        state = sender.state
        if state is SenderState.QUEUED:
            self.queued = True
            if self.on_queued is not None:
                self.on_queued()
                self.on_queued = None  # once
        elif state is not SenderState.REQUESTING:  # granted: no longer in the queue
            self.queued = False

    def _report_forged(self, now: float) -> None:
        """A forged signal is dropped by the waiter, but it was pending here like any stray
        and may have swallowed an answer: the machine counts it as one."""
        while self.forged_seen < self.waiter.forged:
            self.forged_seen += 1
            self.sender.stray(now)

    def _look_at_server(self) -> ServerView:
        server, symbol = self.server, self.sender.last_symbol
        if not server.alive():
            return ServerView(alive=False)
        return ServerView(
            stopped=server_stopped(server.pid),
            holding=symbol is not None and server.holding(symbol),
            asleep=server.asleep_waiting(),
            away=server.asleep_elsewhere(),
        )

    def _flush_outbox(self, now: float) -> None:
        # Take the strays pending now: one still pending when the server's answer lands would
        # swallow it (standard signals merge). A signal of the server's found here is kept
        # for the loop, which takes it after this send as it always would have.
        sender = self.sender
        while self.early is None and (got := self.waiter.take_pending()) is not None:
            if got[0] == self.server.pid:
                self.early = got
            else:
                sender.stray(now)
        self._report_forged(now)
        outbox = sender.outbox
        for symbol in outbox:
            self._send(symbol)
        outbox.clear()
        sender.sent(monotonic())

    def _send(self, symbol: int) -> None:
        try:
            self.server.send(symbol)
        except OSError as error:
            self._send_failed(error)

    def _send_failed(self, error: OSError) -> None:
        if isinstance(error, ProcessLookupError):
            self.sender.server_gone(monotonic())
            return
        raise TargetError(  # it changed its user since we checked it
            f"cannot signal the server (PID {self.server.pid}): {error.strerror}"
        ) from None

    def _why(self) -> str:
        """What the send was waiting for when it gave up, in plain words."""
        if server_stopped(self.server.pid):
            return " (the server is stopped)"
        if self.server.asleep_elsewhere():
            return " (the server is blocked, most likely writing to an output nobody reads)"
        if self.queued:  # told WAIT, not granted since (it may be asking again right now)
            return " (still waiting for its turn)"
        return ""


def server_stopped(pid: int) -> bool:
    """True if the process is stopped (SIGSTOP, Ctrl-Z) or stopped under a tracer: it will
    answer once it runs again. The state is the field after the command name, which is in
    parentheses and may itself contain spaces or parentheses."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            state = stat.read().rpartition(")")[2].split()[:1]
    except OSError:
        return False
    return state in (["T"], ["t"])


def _earliest(first: float | None, second: float | None) -> float | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)
