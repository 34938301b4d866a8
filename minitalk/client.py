"""The client: its driver, and the real signals it runs over.

``ClientDriver`` runs the sender machine over any ``link.ClientLink``; the tests' simulated
kernel runs this very class. ``SignalClientLink`` is the real one: the target is checked before
the first signal (``transport.open_server``), the reply signals are blocked before anything is
sent (so a fast reply cannot arrive before we wait for it), only signals whose sender the
kernel stamped count, and the server is held by a pidfd, which also says when it exits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from minitalk.errors import MinitalkError, TargetError
from minitalk.link import DRAIN, ClientLink, Signal
from minitalk.procview import process_state
from minitalk.protocol import (
    BIT_TIMEOUT,
    CONTINUE,
    MAX_ATTEMPTS,
    QUEUE_POLL,
    REPLY_TIMEOUT,
    Sender,
    ServerView,
)
from minitalk.protocol.sender import Delivered, Progress, Queued
from minitalk.transport import Process, SignalWaiter, WaiterLink, block_signals
from minitalk.trust import open_server


def new_nonce() -> int:
    """A message's identity: 64 random bits."""
    return int.from_bytes(os.urandom(8), "big")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Timeouts and retry limits of a send (seconds)."""

    reply_timeout: float = REPLY_TIMEOUT
    queue_poll: float = QUEUE_POLL
    max_attempts: int = MAX_ATTEMPTS
    timeout: float | None = None  # bound on the whole send: queueing, a stopped server, all
    force: bool = False  # skip the is-it-a-minitalk-server check

    def sender(self, message: bytes, nonce: int | None = None) -> Sender:
        """A sender machine for ``message`` with these limits, and ``nonce`` (a retry of a
        message the server may have printed) or a fresh random one."""
        return Sender(
            message,
            nonce=new_nonce() if nonce is None else nonce,
            reply_timeout=self.reply_timeout,
            bit_timeout=min(BIT_TIMEOUT, self.reply_timeout),
            queue_poll=self.queue_poll,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
        )


def send_message(
    pid: int,
    message: bytes,
    config: ClientConfig = ClientConfig(),
    *,
    on_progress: Callable[[int, int], None] | None = None,
    on_queued: Callable[[], None] | None = None,
    nonce: int | None = None,
) -> Receipt:
    """Send ``message`` to the server ``pid``; return once every frame is acknowledged.
    ``nonce``: the message's identity (see ``ClientConfig.sender``).

    Raises a ``MinitalkError`` subclass on any failure. ``on_progress(acked, total)`` is
    called after each acknowledged frame, and ``on_queued()`` once, if the server puts this
    send in its queue (another client has the line).
    """
    block_signals()
    server = open_server(pid, force=config.force)
    try:
        link = SignalClientLink(server)
        driver = ClientDriver(
            config.sender(message, nonce), link, on_progress=on_progress, on_queued=on_queued
        )
        try:
            return driver.run()
        except KeyboardInterrupt:
            # Ctrl-C, or a program's own interrupt: leave the server's queue if it may hold
            # us (a program goes on living, and a late GRANT would land in its handlers).
            # Bounded; a second interrupt ends it at once.
            driver.abandon(MinitalkError("the send was interrupted"))
            raise
    finally:
        server.close()


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a successful send did."""

    pid: int
    size: int
    frames: int
    resends: int
    seconds: float


class ClientDriver:
    """Runs a ``Sender`` over a ``ClientLink``; ``on_progress(acked, total)`` after each
    acknowledged frame, ``on_queued()`` once if the server queues the send."""

    def __init__(
        self,
        sender: Sender,
        link: ClientLink,
        *,
        on_progress: Callable[[int, int], None] | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.sender = sender
        self.link = link
        self.on_progress = on_progress
        self.on_queued = on_queued
        self.delivered: Delivered | None = None
        self.error: MinitalkError | None = None
        self.started = 0.0
        self._early: Signal | None = None  # a signal that broke a tight loop: the next one
        self._sent = False  # the last step sent something: an answer is due soon (a spin)
        self._forged = link.forged
        self._running = False  # started

    @property
    def finished(self) -> bool:
        return self.delivered is not None or self.error is not None

    def start(self) -> None:
        self._running = True
        self.started = self.link.now()
        self.sender.start(self.started)
        self._flush()

    def run(self) -> Receipt:
        """Send the whole message; return once the server acknowledged it, or raise the
        ``MinitalkError`` the machine failed with."""
        self.start()
        while not self.finished:
            self.step()
        if self.error is not None:
            raise self.error
        assert self.delivered is not None
        done = self.delivered
        seconds = self.link.now() - self.started
        return Receipt(self.link.pid, done.size, done.frames, done.resends, seconds)

    def abandon(self, error: MinitalkError) -> None:
        """Stop the send (the caller was interrupted): the machine leaves the queue if it
        may be in it (see ``Sender.abandon``), then fails; run until it has."""
        if self.finished or not self._running:
            return
        self.sender.abandon(error, self.link.now())
        self._flush()
        while not self.finished:
            self.step()

    @property
    def holding_signal(self) -> bool:
        """A signal taken by a tight loop is in hand: the next step acts on it first."""
        return self._early is not None

    def step(self) -> None:
        """Wait for one signal or the next deadline, act on it, and send what follows."""
        sender, link = self.sender, self.link
        deadline = sender.get_timer()
        got, self._early = self._early, None
        if got is None:  # a spin only right after a send (see link.ServerSteps._sent)
            got = link.wait(deadline, spin=sender.awaiting_reply and self._sent)
        now = link.now()
        self._count_forged(now)
        if got is not None:
            self._take(got, now)
        # The deadline applies even if a signal came with it: a flood of strays, one pending
        # at every wake-up, must not keep --timeout or a look from ever happening. (Taking a
        # signal only sets deadlines after ``now``, so one not passed before cannot be now:
        # the per-bit path pays nothing for this.)
        if (
            deadline is not None
            and now >= deadline
            and (timer := sender.get_timer()) is not None
            and now >= timer
        ):
            view = link.server_view(sender.last_symbol)  # looked at before the drain
            self._drain(now)
            timer = sender.get_timer()
            if timer is not None and now >= timer:
                sender.handle_timer(now, view)
        self._flush()

    def _drain(self, now: float) -> None:
        """Take what is pending here, at most ``DRAIN`` signals (a flood cannot hold us)."""
        for _ in range(DRAIN):
            got = self.link.take_pending()
            if got is None:
                break
            self._take(got, now)
        self._count_forged(now)

    def _take(self, got: Signal, now: float) -> None:
        if got[0] == self.link.pid:
            self.sender.receive(got[1], now)
        else:
            self.sender.stray(now)  # never data; but it may have swallowed the server's answer

    def _count_forged(self, now: float) -> None:
        """A forged signal is dropped by the link, but it was pending here like any stray
        and may have swallowed an answer: the machine counts it as one."""
        while self._forged < self.link.forged:
            self._forged += 1
            self.sender.stray(now)

    def _flush(self) -> None:
        """Send what the machine offers, after taking what is pending here: a stray still
        pending when the server's answer lands would swallow it, and a signal of the
        server's found now goes to the machine before our symbol goes out (it decides)."""
        sender, link = self.sender, self.link
        self._sent = False
        if sender.has_symbols:
            self._drain(link.now())
            symbols = sender.symbols_to_send()
            for symbol in symbols:
                error = link.send(symbol)
                if error is not None:
                    self._send_failed(error)
                    break
            if symbols:
                self._sent = True
                sender.sent(link.now())
                self._bulk()
        self._events()

    def _bulk(self) -> None:
        sender, link = self.sender, self.link
        run = sender.bulk() if link.polls else []
        if not run:
            return
        count, self._early, error = link.bounce(run, CONTINUE)
        now = link.now()
        sender.bulk_done(count, now)
        self._count_forged(now)
        if error is not None:
            self._send_failed(error)

    def _send_failed(self, error: OSError) -> None:
        if isinstance(error, ProcessLookupError):
            self.sender.server_gone(self.link.now())
            return
        raise TargetError(  # it changed its user since we checked it
            f"cannot signal the server (PID {self.link.pid}): {error.strerror}"
        ) from None

    def _events(self) -> None:
        while (event := self.sender.next_event()) is not None:
            if isinstance(event, Progress):
                if self.on_progress is not None:
                    self.on_progress(event.acked, event.total)
            elif isinstance(event, Queued):
                if self.on_queued is not None:
                    self.on_queued()
            elif isinstance(event, Delivered):
                self.delivered = event
            else:
                self.error = event.error


class SignalClientLink(WaiterLink):
    """The real ``ClientLink``: a ``SignalWaiter`` and the server held by its pidfd."""

    def __init__(self, server: Process) -> None:
        super().__init__(SignalWaiter())
        self.server = server

    @property
    def pid(self) -> int:
        return self.server.pid

    def send(self, symbol: int) -> OSError | None:
        try:
            self.server.send(symbol)
        except OSError as error:
            return error
        return None

    def server_view(self, last_symbol: int | None) -> ServerView:
        """What /proc says of the server, read once (``transport.process_state``)."""
        if not self.server.alive():
            return ServerView(alive=False)
        state = process_state(self.server.pid)
        return ServerView(
            stopped=state.stopped,
            holding=last_symbol is not None and state.holding(last_symbol),
            asleep=state.asleep_waiting,
            away=state.asleep_elsewhere,
        )

    def bounce(
        self, symbols: Sequence[int], expect: int
    ) -> tuple[int, Signal | None, OSError | None]:
        count, got = self.waiter.bounce(self.server, symbols, expect)
        error, self.waiter.send_error = self.waiter.send_error, None
        return count, got, error
