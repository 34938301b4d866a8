"""The client loop: the sender state machine driven by real signals and a real clock.

It checks the target before the first signal, blocks the reply signals before sending
anything (so a fast reply cannot arrive before we wait for it), ignores signals from anyone
but the server, and notices through the server's pidfd when the server exits.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from minitalk.errors import NoAnswerError, ServerGoneError, TargetError
from minitalk.protocol import (
    BIT_TIMEOUT,
    MAX_ATTEMPTS,
    QUEUE_POLL,
    REPLY_TIMEOUT,
    Sender,
    SenderState,
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
    """Feeds the sender machine the server's replies and the clock, and sends its symbols."""

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
        self.last_symbol: int | None = None
        self.resent = 0  # times in a row the last symbol was sent again after a stray ate it
        self.waiter = SignalWaiter()
        self.strays = 0  # signals from others than the server, taken and dropped
        self.strays_at_send = (0, 0)  # (strays, forged) when our last signal went out
        self.early: tuple[int, int] | None = None  # a server signal taken while sending
        self.queued = False  # told to wait for our turn, and not granted the line since
        self.sender = Sender(
            message,
            nonce=secrets.randbits(32),
            reply_timeout=config.reply_timeout,
            bit_timeout=min(BIT_TIMEOUT, config.reply_timeout),
            queue_poll=config.queue_poll,
            max_attempts=config.max_attempts,
        )

    def run(self) -> Receipt:
        sender, server, waiter = self.sender, self.server, self.waiter
        started = monotonic()
        give_up_at = None if self.config.timeout is None else started + self.config.timeout
        sender.start(started)
        acked = 0
        now = started
        look_at: float | None = None  # when to look whether our last signal was eaten
        while True:
            if sender.outbox:
                self._flush_outbox()
                look_at = now + _LOOK_AFTER if sender.awaiting_reply else None
            if sender.finished:
                break
            if self.on_progress is not None and sender.bytes_acked != acked:
                acked = sender.bytes_acked
                self.on_progress(acked, self.size)
            deadline = _earliest(sender.deadline, give_up_at)
            got = self._next_signal(_earliest(deadline, look_at))
            now = monotonic()
            if got is not None and got[0] == server.pid:
                look_at = None
                self._answered(got[1], now)
                continue
            if got is not None:
                self.strays += 1  # never data; but it may have swallowed the server's answer
            if look_at is not None and now >= look_at:
                look_at, got = self._look_for_loss(waiter, now)
                if got is not None:  # the answer came after all
                    sender.receive(got[1], now)
                    continue
            if give_up_at is not None and now >= give_up_at:
                raise NoAnswerError(
                    f"gave up after the --timeout of {self.config.timeout:g} s{self._why()}"
                )
            if deadline is not None and now >= deadline:
                self._check_alive()
                stopped = server_stopped(server.pid)
                busy = self.last_symbol is not None and server.holding(self.last_symbol)
                sender.handle_timer(now, server_busy=busy, server_stopped=stopped)
        if sender.error is not None:
            self._check_alive()
            raise sender.error
        frames = sender.frame_index
        return Receipt(server.pid, self.size, frames, sender.resends, monotonic() - started)

    def _next_signal(self, deadline: float | None) -> tuple[int, int] | None:
        if self.early is not None:  # taken while sending, before our signal went out
            got, self.early = self.early, None
            return got
        return self.waiter.wait(deadline, spin=self.sender.awaiting_reply)

    def _answered(self, symbol: int, now: float) -> None:
        self.resent = 0
        self.sender.receive(symbol, now)
        state = self.sender.state
        if state is SenderState.QUEUED:
            self.queued = True
            if self.on_queued is not None:
                self.on_queued()
                self.on_queued = None  # once
        elif state is not SenderState.REQUESTING:  # granted: no longer in the queue
            self.queued = False

    def _look_for_loss(
        self, waiter: SignalWaiter, now: float
    ) -> tuple[float | None, tuple[int, int] | None]:
        """No answer yet: did a stray eat our last signal? Return when to look again (or
        None), and the server's answer if it arrived meanwhile.

        A stray's signal still pending at the server swallows ours if it is of the same kind
        (standard signals merge). If the server is asleep in sigtimedwait it has no signal
        pending and has answered everything it took; so if its answer is not here either,
        ours never reached it, and sending it again cannot make the server see one symbol
        twice. A server that is running, stopped or busy is looked at again later; the
        sender's own timeouts still apply.
        """
        symbol = self.last_symbol
        if self.resent >= _MAX_RESENDS or symbol is None:
            return None, None
        if not self.server.asleep_waiting():
            return now + _LOOK_AFTER, None
        got = self._take_strays()  # taken after the look, not before
        if got is not None:
            self.resent = 0
            return None, got
        # A stray (forged or not) that reached us since our signal went out may have been
        # pending here when the server's answer came, and swallowed it (standard signals
        # merge): then the server did take our signal, and sending it again would show it one
        # symbol twice. Only a loss with no stray here is provable; otherwise the timeouts
        # and the frame resync recover, as for any lost signal.
        if (self.strays, waiter.forged) != self.strays_at_send:
            return None, None
        self.resent += 1
        self._send(symbol)
        return now + _LOOK_AFTER, None

    def _flush_outbox(self) -> None:
        # Take the strays pending now: one still pending when the server's answer lands would
        # swallow it (standard signals merge). A signal of the server's found here is kept
        # for the loop, which takes it after this send as it always would have.
        if self.early is None:
            self.early = self._take_strays()
        outbox = self.sender.outbox
        for symbol in outbox:
            self._send(symbol)
            self.last_symbol = symbol
        outbox.clear()

    def _take_strays(self) -> tuple[int, int] | None:
        """Take every pending signal up to the first of the server's, which is returned;
        the others are strays, counted."""
        while (got := self.waiter.take_pending()) is not None:
            if got[0] == self.server.pid:
                return got
            self.strays += 1
        return None

    def _send(self, symbol: int) -> None:
        self.strays_at_send = (self.strays, self.waiter.forged)
        try:
            self.server.send(symbol)
        except ProcessLookupError:
            raise self._gone() from None
        except OSError as error:  # it changed its user since we checked it
            raise TargetError(
                f"cannot signal the server (PID {self.server.pid}): {error.strerror}"
            ) from None

    def _gone(self) -> ServerGoneError:
        # The protocol has no verdict for "could not write it" (a new code would read as
        # garbled to older clients), so the exit is all we learn: say what it means for us.
        return ServerGoneError(
            f"the server (PID {self.server.pid}) exited before it acknowledged the message; "
            "it may not have been written"
        )

    def _why(self) -> str:
        """What the send was waiting for when it gave up, in plain words."""
        if server_stopped(self.server.pid):
            return " (the server is stopped)"
        if self.queued:  # told WAIT, not granted since (it may be asking again right now)
            return " (still waiting for its turn)"
        return ""

    def _check_alive(self) -> None:
        if not self.server.alive():
            raise self._gone()


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


# How long after a signal without an answer the client looks whether a stray ate it (a
# round trip takes 10-60 µs), and how often in a row it sends one symbol again that way.
_LOOK_AFTER = 0.002
_MAX_RESENDS = 3


def _earliest(first: float | None, second: float | None) -> float | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)
