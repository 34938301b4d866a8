"""The client's state machine: the server's answers, what the loop sees of the server, and time
in; symbols to send out.

Every state, what an answer does in it, which deadline it keeps and what happens when that
passes, is one row of ``SENDER_TABLE`` at the end of this module (docs/protocol.md shows it).
Besides the answers, the machine takes what only the I/O loop can observe, and decides on it:

* ``sent(now)``: the loop's signal went out (the clock for "no answer yet" starts here);
* ``stray(now)``: a signal from anyone but the server reached the client;
* ``handle_timer(now, view)`` with a ``ServerView``: is the server alive, stopped, still holding
  our last signal, or asleep waiting (so it has taken and answered all it got)?

From these it decides the one case where a single symbol is sent again (``protocol.look``: no
answer ``LOOK_AFTER`` after the send, the server asleep waiting, and no stray here since the
send), and when the whole send ends: ``timeout`` bounds it from ``start``, whatever the server
does. The driver pulls what the machine produces: ``symbols_to_send()`` (drained) and
``next_event()`` (``Queued``, ``Progress``, ``Delivered``, ``Failed``).
"""

# The transition tables at the end name the machine's own (private) transitions.
# ruff: noqa: SLF001

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto

from minitalk.errors import (
    LocalProtocolError,
    MinitalkError,
    NoAnswerError,
    RefusedError,
    ServerGoneError,
    TryLaterError,
)
from minitalk.frame import MAX_PAYLOAD, encode_frame, next_frame, to_bits
from minitalk.protocol.limits import (
    BIT_TIMEOUT,
    BYE,
    CONTINUE,
    GRANT,
    LEAVE,
    LEFT,
    MAX_ATTEMPTS,
    MIN_PAYLOAD,
    POLL,
    QUEUE_POLL,
    REPLY_TIMEOUT,
    REQUEST,
    STALL_TIMEOUT,
)
from minitalk.protocol.look import Look, LookResult
from minitalk.protocol.verdicts import (
    DETAIL_BITS,
    VERDICT_BITS,
    Verdict,
    parse_detail,
    parse_verdict,
)

VERDICT_REASONS = {
    Verdict.NOT_UTF8: "a frame was not valid UTF-8",
    Verdict.OUT_OF_ORDER: "its frames arrived out of order",
}


@dataclass(frozen=True, slots=True)
class Queued:
    """The server put this send in its queue: another client has the line (told once)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """A frame was acknowledged: ``acked`` of ``total`` bytes are through."""

    acked: int
    total: int


@dataclass(frozen=True, slots=True)
class Delivered:
    """Every frame was acknowledged and the session closed: the message was printed."""

    size: int
    frames: int
    resends: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The send gave up; ``error`` says why."""

    error: MinitalkError


SenderEvent = Queued | Progress | Delivered | Failed


def refusal(verdict: Verdict, detail: int, size: int) -> MinitalkError:
    """The error a refusing verdict means to the sender of a ``size``-byte message."""
    if verdict is Verdict.BUSY:
        return TryLaterError("the server's queue of waiting clients is full; try again later")
    if verdict is Verdict.GOING_AWAY:
        return ServerGoneError(
            "the server is shutting down; the message was not printed (any part it had is dropped)"
        )
    if verdict is Verdict.NOT_WRITTEN:
        return RefusedError("the server could not write the message out; it was not printed")
    if verdict is Verdict.TOO_LARGE:
        limit = parse_detail(detail)
        said = "" if limit is None else f"; the server accepts at most {limit} bytes"
        return RefusedError(f"the message is {size} bytes{said}")
    reason = VERDICT_REASONS.get(verdict, f"verdict {verdict.name}")
    return RefusedError(f"the server refused the message: {reason}")


@dataclass(frozen=True, slots=True)
class ServerView:
    """What the client loop saw of the server when a deadline passed."""

    alive: bool = True
    stopped: bool = False  # SIGSTOP, Ctrl-Z, a tracer: it answers once it runs again
    holding: bool = False  # a signal of our last symbol's kind is still pending there
    asleep: bool = False  # asleep in sigtimedwait: nothing pending, all it took answered
    away: bool = False  # asleep elsewhere (a write to a full pipe): it answers once back


class SenderState(Enum):
    IDLE = auto()  # not started
    REQUESTING = auto()  # REQUEST sent, awaiting GRANT or WAIT
    QUEUED = auto()  # told to wait; awaiting an unprompted GRANT
    SENDING = auto()  # a frame bit is outstanding
    POLLING = auto()  # polling the verdict bits
    RESYNC = auto()  # confused: silent until the server has dropped the partial frame
    CLOSING = auto()  # every frame acknowledged, BYE sent: its answer is awaited, briefly
    LEAVING = auto()  # gave up while queued: LEAVE sent, its answer (LEFT) awaited, briefly
    LINGERING = auto()  # gave up, but granted as it left: silent while the server lets go
    DONE = auto()  # BYE answered (or its answer overdue: the message is through either way)
    FAILED = auto()  # gave up; ``error`` says why


class Patience(Enum):
    """How a state's deadline may be stretched by what the loop sees."""

    NONE = auto()  # the deadline is final (queued, resyncing)
    STOPPED = auto()  # waits on, at no cost, while the server is stopped
    HOLDING = auto()  # also waits on while the server still holds our signal, up to reply_timeout


@dataclass(frozen=True, slots=True)
class SenderRow:
    """One state: what an answer does, how long it waits, what happens then."""

    answer: Callable[[Sender, int, float], None]
    patience: Patience
    looks: bool  # looks whether a stray ate our signal (an answer is due at once)
    expire: Callable[[Sender, float], None] | None
    to: frozenset[SenderState]  # the states it may lead to


class _SenderCore:
    """The sender's bookkeeping: its state and table row, the frame being sent, and the
    symbols and events it owes the driver (pulled with ``symbols_to_send`` and
    ``next_event``)."""

    _state: SenderState
    _row: SenderRow

    def __init__(
        self,
        message: bytes,
        *,
        nonce: int = 0,
        max_payload: int = MAX_PAYLOAD,
        reply_timeout: float = REPLY_TIMEOUT,
        bit_timeout: float = BIT_TIMEOUT,
        queue_poll: float = QUEUE_POLL,
        max_attempts: int = MAX_ATTEMPTS,
        timeout: float | None = None,
    ) -> None:
        if not MIN_PAYLOAD <= max_payload <= MAX_PAYLOAD:
            raise LocalProtocolError(f"max_payload must be within {MIN_PAYLOAD}..{MAX_PAYLOAD}")
        if not 0 < bit_timeout <= reply_timeout:
            raise LocalProtocolError("need 0 < bit_timeout <= reply_timeout")
        if timeout is not None and not timeout > 0:
            raise LocalProtocolError("need timeout > 0")
        self.message = message
        self.nonce = nonce
        self.max_payload = max_payload
        self.payload_size = max_payload  # the current frame size limit, adapted to the link
        self.reply_timeout = reply_timeout
        self.bit_timeout = bit_timeout
        self.queue_poll = queue_poll
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.error: MinitalkError | None = None
        self.frame_index = 0  # frames acknowledged so far
        self.bytes_acked = 0
        self.attempts = 0  # tries of the current frame that failed (shrinking tries excluded)
        self.resends = 0  # total frame resends, for the receipt
        self.look = Look()  # was our last symbol eaten? (protocol.look)
        self.last_symbol: int | None = None
        self.deadline: float | None = None
        self.give_up_at: float | None = None  # start + timeout
        self.queued = False  # told WAIT, and not granted the line since
        self._outbox: list[int] = []
        self._events: deque[SenderEvent] = deque()
        self._heard = False  # the server has answered this send at least once
        self._failing_since = 0.0  # when the current frame first failed
        self._last_view = ServerView()  # what the driver saw when the last deadline passed
        self._unanswered = 0  # requests in a row that got no answer at all
        self._leaving: MinitalkError | None = None  # gave up while queued: the error, once out
        self._leave_by = 0.0  # leaving: when to stop waiting for the server to take our signal
        self._waiting_since = 0.0  # when the outstanding symbol was sent (or the server ran)
        self.frame = next_frame(message, 0, nonce, max_payload)
        self._bits = to_bits(encode_frame(self.frame))
        self._bit = 0
        self._verdict = 0
        self._verdict_count = 0
        self._verdict_need = VERDICT_BITS
        self.state = SenderState.IDLE

    @property
    def state(self) -> SenderState:
        return self._state

    @state.setter
    def state(self, state: SenderState) -> None:
        # The table is consulted here, on each change of state, not on every bit.
        row = SENDER_TABLE.get(state)
        if row is None:
            raise LocalProtocolError(f"no row for {state} in the sender's table")
        previous: SenderRow | None = getattr(self, "_row", None)
        if previous is not None and state not in previous.to:
            raise LocalProtocolError(f"{self._state} cannot lead to {state}")
        self._state = state
        self._row = row

    @property
    def awaiting_reply(self) -> bool:
        """True while the last symbol sent must be answered at once."""
        return self._row.looks

    @property
    def finished(self) -> bool:
        return self._state is SenderState.DONE or self._state is SenderState.FAILED

    @property
    def look_resends(self) -> int:
        """Symbols sent again because a stray provably ate them."""
        return self.look.resends

    @property
    def has_symbols(self) -> bool:
        """Whether ``symbols_to_send`` has anything."""
        return bool(self._outbox)

    def symbols_to_send(self) -> list[int]:
        """The symbols to send now, in order (drained); report them with ``sent``."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> SenderEvent | None:
        return self._events.popleft() if self._events else None

    def _emit(self, symbol: int, now: float, wait: float) -> None:
        self._outbox.append(symbol)
        self.last_symbol = symbol
        self._waiting_since = now
        self.deadline = now + wait

    def _fail(self, error: MinitalkError) -> None:
        self.state = SenderState.FAILED
        self.error = error
        self.deadline = None
        self.look.cancel()
        self._events.append(Failed(error))

    def _closed(self, symbol: int, now: float) -> None:
        self.state = SenderState.DONE
        self.deadline = None
        self.look.cancel()
        self._events.append(Delivered(len(self.message), self.frame_index, self.resends))


class _SenderTransitions(_SenderCore):
    """The cells of ``SENDER_TABLE``: what each answer, and each deadline, does in each
    state."""

    def _send_request(self, now: float) -> None:
        self.state = SenderState.REQUESTING
        self._emit(REQUEST, now, self.reply_timeout)

    def _request_unanswered(self, now: float) -> None:
        if self._leaving is not None:  # no answer to the request out as we gave up
            if self._still_out(now):
                return
            if self._last_view.holding:  # the server takes nothing: it cannot be told
                self._gone(now)
            else:  # the request was lost (merged), or its WAIT was eaten: we may be queued
                self._send_leave(now)
            return
        self._unanswered += 1
        if self._unanswered >= self.max_attempts:
            self._fail(
                NoAnswerError(
                    f"the server is running but did not answer: asked {self._unanswered} "
                    f"times, {self.reply_timeout:g} s apart{_why(self, self._last_view)}"
                )
            )
        else:
            self._send_request(now)

    def _queue_poll(self, now: float) -> None:
        self._send_request(now)

    def _requesting_answer(self, symbol: int, now: float) -> None:
        self._unanswered = 0
        if self._leaving is not None:  # the request was out when the --timeout passed
            if symbol == GRANT:
                self._linger(now)
            else:
                self._send_leave(now)
            return
        if symbol == GRANT:
            self._start_frame(now)
            return
        self.state = SenderState.QUEUED
        self.deadline = now + self.queue_poll
        if not self.queued:
            self.queued = True
            self._events.append(Queued())

    def _queued_answer(self, symbol: int, now: float) -> None:
        if symbol == GRANT:
            self._start_frame(now)

    def _leave(self, error: MinitalkError, now: float) -> None:
        """The --timeout passed while queued. Leaving without a word would leave our place in
        the queue, and the server would grant it later to a process that went on with other
        things (a program's ``send()`` that timed out): its GRANT would reach the program's
        own handler. So LEAVE, and fail once it is answered LEFT; a request still out is
        answered first (two answers outstanding could merge), for ``bit_timeout`` at most."""
        self._leaving = error
        self._leave_by = now + self.reply_timeout
        self.give_up_at = None
        if self._state is SenderState.QUEUED:
            self._send_leave(now)
        elif self.deadline is not None:
            self.deadline = min(self.deadline, self._waiting_since + self.bit_timeout)

    def _still_out(self, now: float) -> bool:
        """Leaving, and our last symbol is still pending at a server that runs (``holding``,
        busy): wait for it to be taken, up to ``reply_timeout`` after giving up. A LEAVE sent
        while our REQUEST is pending would be taken first (SIGUSR1 before SIGUSR2), and the
        REQUEST would queue us again. A stopped or blocked server is not waited for: it may
        take nothing for as long as it likes, and the --timeout has passed."""
        view = self._last_view
        if not view.holding or view.stopped or view.away or now >= self._leave_by:
            return False  # taken; or it takes nothing now (stopped, blocked): cannot be told
        self.deadline = min(now + self.bit_timeout / 3, self._leave_by)
        return True

    def _send_leave(self, now: float) -> None:
        self.state = SenderState.LEAVING
        self._emit(LEAVE, now, self.bit_timeout)

    def _leave_answered(self, symbol: int, now: float) -> None:
        if symbol == LEFT:
            self._gone(now)
        else:  # GRANT crossed our LEAVE, which the server takes for a frame's first bit
            self._linger(now)

    def _linger(self, now: float) -> None:
        """Granted as we left: the server answers our LEAVE as a frame bit, then sends a
        stall notice after ``STALL_TIMEOUT``, and falls silent (it ends the session once its
        timeout passes, sending nothing). Take all that before failing, so none of it
        reaches whoever has the process next."""
        self.state = SenderState.LINGERING
        self.look.cancel()
        self.deadline = now + 2 * STALL_TIMEOUT + self.bit_timeout

    def _leave_unanswered(self, now: float) -> None:
        if not self._still_out(now):
            self._gone(now)

    def _gone(self, now: float) -> None:
        error = self._leaving
        if error is None:
            raise LocalProtocolError(f"{self._state} without giving up")
        self._fail(error)

    def _start_frame(self, now: float) -> None:
        self.state = SenderState.SENDING
        self.queued = False
        self._bit = 0
        self._emit(self._bits[0], now, self.bit_timeout)

    def _sending_answer(self, symbol: int, now: float) -> None:
        if symbol == CONTINUE:  # the per-bit path: keep it to a few operations
            bit = self._bit + 1
            self._bit = bit
            if bit < len(self._bits):
                self._emit(self._bits[bit], now, self.bit_timeout)
            else:
                self._resync(now)  # CONTINUE after the last bit: we are out of step
            return
        self.state = SenderState.POLLING
        self._verdict = 0
        self._verdict_count = 0
        self._verdict_need = VERDICT_BITS
        self._emit(POLL, now, self.bit_timeout)

    def _polling_answer(self, symbol: int, now: float) -> None:
        self._verdict = (self._verdict << 1) | symbol
        count = self._verdict_count = self._verdict_count + 1
        if count == VERDICT_BITS and parse_verdict(self._verdict) is Verdict.TOO_LARGE:
            self._verdict_need = VERDICT_BITS + DETAIL_BITS  # the limit follows
        if count < self._verdict_need:
            self._emit(POLL, now, self.bit_timeout)
            return
        verdict = parse_verdict(self._verdict >> (count - VERDICT_BITS))
        if verdict is None:
            self._resync(now)
        elif verdict is Verdict.ACK:
            self._frame_acknowledged(now)
        elif verdict is Verdict.RESEND:
            self._frame_rejected(now)
        elif verdict is Verdict.RESTART:
            self._restart_message(now)
        else:
            detail = self._verdict & ((1 << DETAIL_BITS) - 1)
            self._fail(refusal(verdict, detail, len(self.message)))

    def _frame_acknowledged(self, now: float) -> None:
        frame = self.frame
        self.bytes_acked += len(frame.payload)
        self.frame_index += 1
        self._events.append(Progress(self.bytes_acked, len(self.message)))
        if self.attempts == 0:  # through at the first try: let the next frame be longer
            self.payload_size = min(self.payload_size * 2, self.max_payload)
        self.attempts = 0
        if frame.last:
            # BYE's answer is awaited, so that it does not reach a process that has moved on
            # (a caller of the API whose SIGUSR1 may have its default action again).
            self.state = SenderState.CLOSING
            self._emit(BYE, now, self.bit_timeout)
            return
        self._cut_frame()
        self._start_frame(now)

    def _cut_frame(self) -> None:
        """Cut the next unacknowledged frame at the current size."""
        self.frame = next_frame(self.message, self.bytes_acked, self.nonce, self.payload_size)
        self._bits = to_bits(encode_frame(self.frame))

    def _frame_rejected(self, now: float) -> None:
        """RESEND: the server is at a frame start, in session, and did not take the frame.

        A long frame on a lossy link rarely gets through whole (a stray signal that merges
        with one of ours eats it), so it is cut again at half the size; those shrinking tries
        do not count against ``max_attempts``.
        """
        if self.payload_size > MIN_PAYLOAD and len(self.frame.payload) > MIN_PAYLOAD:
            shorter = min(self.payload_size, len(self.frame.payload)) // 2
            self.payload_size = max(shorter, MIN_PAYLOAD)
            self._cut_frame()
            self.resends += 1
            self._start_frame(now)
        else:
            self._retry(now, ask_first=False)

    def _silence(self, now: float) -> None:
        self._retry(now, ask_first=True)

    def _retry(self, now: float, *, ask_first: bool) -> None:
        """Send the current frame again, whole; after silence, ask for the line first.

        The frame is given up on after ``max_attempts`` failed tries *and* as many
        ``reply_timeout`` periods since its first failure: amid a burst of stray signals a
        32-byte frame can fail ten times within a second and get through the next, and a send
        is given up on only when the link has stayed hopeless for that long.

        After silence we cannot know whether the server still counts us as its peer (it
        may have ended the session, or taken a stray 1 for our BYE), so the retry starts
        with REQUEST: in session the server answers GRANT at once; otherwise it queues or
        grants us anew, and the frame's nonce keeps a repeat from being printed twice.
        """
        if self.attempts == 0:
            self._failing_since = now
        self.attempts += 1
        self.resends += 1
        patience = self.max_attempts * self.reply_timeout
        if self.attempts >= self.max_attempts and now - self._failing_since >= patience:
            self._fail(
                NoAnswerError(
                    f"the frame at byte {self.bytes_acked} of {len(self.message)} failed "
                    f"{self.attempts} times; giving up"
                )
            )
        elif ask_first:
            self._send_request(now)
        else:
            self._start_frame(now)

    def _restart_message(self, now: float) -> None:
        # A new session began mid-message (the old one was dropped): start from byte 0.
        self.frame_index = 0
        self.bytes_acked = 0
        self._cut_frame()
        self._retry(now, ask_first=False)

    def _resync(self, now: float) -> None:
        # Say nothing for bit_timeout: the server abandons a partial frame after its shorter
        # stall_timeout, and any late reply still in flight arrives and is ignored.
        self.state = SenderState.RESYNC
        self.deadline = now + self.bit_timeout
        self.look.cancel()

    def _bye_unanswered(self, now: float) -> None:
        self._closed(BYE, now)  # the final ACK came: the message is through all the same

    def _ignore(self, symbol: int, now: float) -> None:
        """Answers that arrive while the machine is not listening change nothing."""

    def _not_started(self, symbol: int, now: float) -> None:
        raise LocalProtocolError("an answer before start()")


class Sender(_SenderTransitions):
    """``start(now)`` asks for the line; send every symbol of ``symbols_to_send()``, then
    report it with ``sent``; feed every answer from the server to ``receive``, every other
    signal to ``stray``, and call ``handle_timer`` when ``get_timer`` passes. The machine ends
    in DONE (a ``Delivered`` event) or FAILED (a ``Failed`` event; ``error`` says why).

    Frames are cut as they are sent, so their size can follow the link: each frame the server
    rejects (RESEND) is cut again at half the size, down to ``MIN_PAYLOAD``, and each frame
    acknowledged at its first try lets the next one grow back, up to ``max_payload``. Only a
    rejected frame is ever cut again: after silence the server may have accepted it, so it is
    sent again unchanged and the server can recognise the repeat.
    """

    def start(self, now: float) -> None:
        """Ask the server for the line; the ``timeout`` counts from here."""
        if self._state is not SenderState.IDLE:
            raise LocalProtocolError("start() called twice")
        if self.timeout is not None:
            self.give_up_at = now + self.timeout
        self._send_request(now)

    def receive(self, symbol: int, now: float) -> None:
        """One signal arrived from the server: 0 for SIGUSR1, 1 for SIGUSR2.

        An answer that comes before our last symbol went out (the driver takes what is
        pending before it sends) means the server spoke twice: in a frame or its verdict it
        sent something unprompted (a stall's FRAME_OVER) or again, and sending our symbol
        now would leave two outstanding and the sides one symbol apart for good. So the
        symbol is dropped and the machine resynchronises (silence, then REQUEST). While
        asking for the line, the answer is to the request before: the unsent one is dropped.
        """
        self.look.answered()
        self._heard = True
        if self._outbox:
            state = self._state
            if state is SenderState.SENDING or state is SenderState.POLLING:
                self._outbox.clear()
                self._resync(now)
                return
            if state in _ASKING_STATES:
                self._outbox.clear()
        self._row.answer(self, symbol, now)

    def sent(self, now: float) -> None:
        """The driver sent what ``symbols_to_send`` gave (the last one is ``last_symbol``)."""
        self.look.sent(now, expects_answer=self._row.looks)

    def stray(self, now: float) -> None:
        """A signal from anyone but the server reached the client and was dropped."""
        self.look.stray()

    def abandon(self, error: MinitalkError, now: float) -> None:
        """The caller stops the send (an interrupt): fail with ``error``, but first leave the
        queue if it may hold us, so the server grants nothing later to a process that went
        on with other things. The driver then runs until ``finished`` (``reply_timeout`` and
        ``bit_timeout`` at most)."""
        if self.finished or self._leaving is not None:
            return
        state = self._state
        if state is SenderState.QUEUED or state is SenderState.REQUESTING:
            self._leave(error, now)
        else:
            self._fail(error)

    def server_gone(self, now: float) -> None:
        """The server exited (a signal to it failed, or its pidfd says so)."""
        if self._state is SenderState.CLOSING:  # after the final ACK: through all the same
            self._closed(BYE, now)
        elif not self.finished:
            self._fail(
                ServerGoneError(
                    "the server exited before it acknowledged the message; "
                    "it may not have been written"
                )
            )

    def bulk(self) -> list[int]:
        """The symbols that follow the outstanding frame bit if each is answered CONTINUE:
        the rest of the frame but its last bit (whose answer is FRAME_OVER, and before which
        the driver takes pending strays as before any send); empty outside SENDING. The
        driver sends them in a tight loop, each after a CONTINUE from the server to the one
        before, and reports how many went out with ``bulk_done``; anything else it takes (a
        stray, another answer, a silence) leaves the run and goes through ``receive``,
        ``stray`` and ``handle_timer`` as usual, after ``bulk_done``."""
        if self._state is not SenderState.SENDING or self._outbox:
            return []
        return self._bits[self._bit + 1 : -1]

    def bulk_done(self, count: int, now: float) -> None:
        """``count`` symbols of ``bulk()`` were sent, each after a CONTINUE to the one
        before: the same as ``count`` calls of ``receive(CONTINUE)`` and ``sent``."""
        if count == 0:
            return
        left = len(self._bits) - self._bit - 1  # bits after the outstanding one
        if self._state is not SenderState.SENDING or not 0 < count < left:
            raise LocalProtocolError(f"bulk_done({count}) beyond the frame in {self._state}")
        self._bit += count
        self.last_symbol = self._bits[self._bit]
        self._waiting_since = now
        self.deadline = now + self.bit_timeout
        self._heard = True
        self.look.answered()
        self.look.sent(now, expects_answer=True)

    def get_timer(self) -> float | None:
        """When the sender next needs ``handle_timer``, or None."""
        found = [t for t in (self.look.due, self.deadline, self.give_up_at) if t is not None]
        return min(found) if found and not self.finished else None

    def handle_timer(self, now: float, view: ServerView = ServerView()) -> None:
        """Apply the deadline or the look that has passed at ``now``, given ``view``.

        A stopped server answers once it runs again, and so does one that has answered this
        send and then sleeps outside its signal wait (blocked writing the message to a full
        pipe, whose reader may come back any time: giving up then would report a failure for
        a message about to be printed), so such a silence costs no attempt and asks nothing
        again: the machine looks again every ``bit_timeout``, and once the server is back
        the usual patience starts afresh; only ``timeout`` or the server's exit bound this
        wait. A process that never answered is owed no such patience when it sleeps
        elsewhere: it may be no server at all (a process that ignores both signals and
        sleeps), and is given up on after ``max_attempts`` requests. A server still holding
        our last signal has not taken it yet: that silence is not a loss, so in a frame or
        its verdict the machine waits on, in short steps, up to ``reply_timeout`` after the
        signal, before it asks again.
        """
        if self.finished:
            return
        if not view.alive:
            self.server_gone(now)
            return
        if self.give_up_at is not None and now >= self.give_up_at:
            why = _why(self, view)
            error = NoAnswerError(f"gave up after the --timeout of {self.timeout:g} s{why}")
            state = self._state
            if state is SenderState.QUEUED or state is SenderState.REQUESTING:
                self._leave(error, now)  # the request out may have queued us
            else:
                self._fail(error)
            return
        deadline = self.deadline
        if deadline is None or now < deadline:
            look = self.look.due
            if look is not None and now >= look:
                self._look(now, view)
            return
        # Giving up: no more patience, only the last answer's short wait.
        patience = Patience.NONE if self._leaving is not None else self._row.patience
        # A server blocked writing still holds our REQUEST pending (minitalk blocks the
        # signals); a process that merely ignores them never holds one (an ignored,
        # unblocked signal is discarded when sent): only the first is waited for.
        waits = view.stopped or (view.away and (self._heard or view.holding))
        if waits and patience is not Patience.NONE:
            self.deadline = now + self.bit_timeout
            self._waiting_since = now  # once it runs, the usual patience starts afresh
            return
        if view.holding and patience is Patience.HOLDING:
            end = self._waiting_since + self.reply_timeout
            if now < end:
                self.deadline = min(now + self.bit_timeout / 3, end)
                return
        expire = self._row.expire
        if expire is None:
            raise LocalProtocolError(f"a deadline in {self._state}")
        self._last_view = view
        expire(self, now)

    def _look(self, now: float, view: ServerView) -> None:
        """No answer ``LOOK_AFTER`` after our signal (``protocol.look``). The driver looked
        at the server before it took the signals pending here, so an answer that came
        meanwhile has been received already and this look is not due any more."""
        if view.stopped or view.away:  # not before it runs again: the deadline looks then
            self.look.cancel()
            return
        if self.look.decide(now, asleep=view.asleep) is LookResult.RESEND:
            if self.last_symbol is None:
                raise LocalProtocolError("a look with nothing sent")
            self._outbox.append(self.last_symbol)


# Asking for the line, or leaving the queue: an answer before our symbol went out answers the
# one before; the unsent symbol is dropped.
_ASKING_STATES = frozenset({SenderState.REQUESTING, SenderState.QUEUED, SenderState.LEAVING})


def _why(sender: _SenderCore, view: ServerView) -> str:
    """What a send that gives up was waiting for, in plain words, from what the driver saw."""
    state = sender.state
    if state is SenderState.CLOSING or (state is SenderState.POLLING and sender.frame.last):
        return " (its last frame had gone out: the server may have printed it)"
    if view.stopped:
        return " (the server is stopped)"
    if view.away and (sender._heard or view.holding):
        return " (the server is blocked, most likely writing to an output nobody reads)"
    if view.away:
        return " (it sleeps outside a signal wait: it may not be a minitalk server)"
    if sender.queued:  # told WAIT, not granted since (it may be asking again right now)
        return " (still waiting for its turn)"
    return ""


M = Sender
S = SenderState
P = Patience
_ASKING = frozenset({S.SENDING, S.QUEUED, S.REQUESTING, S.LEAVING, S.LINGERING, S.FAILED})
_QUEUED = frozenset({S.SENDING, S.REQUESTING, S.LEAVING, S.FAILED})
_FRAMING = frozenset({S.POLLING, S.RESYNC, S.REQUESTING, S.FAILED})
_VERDICT = frozenset({S.SENDING, S.CLOSING, S.RESYNC, S.REQUESTING, S.FAILED})
_SILENT = frozenset({S.REQUESTING, S.FAILED})
_ENDED = frozenset({S.DONE, S.FAILED})
_LEAVING = frozenset({S.LINGERING, S.FAILED})
# The sender's whole behaviour, one row per state (docs/protocol.md): what an answer does, how
# the deadline may stretch, whether a look is kept, what the deadline's expiry does, and every
# state the row may lead to.
# fmt: off
SENDER_TABLE: dict[SenderState, SenderRow] = {
    S.IDLE: SenderRow(M._not_started, P.NONE, False, None, _SILENT),
    S.REQUESTING: SenderRow(M._requesting_answer, P.STOPPED, True, M._request_unanswered, _ASKING),
    S.QUEUED: SenderRow(M._queued_answer, P.NONE, False, M._queue_poll, _QUEUED),
    S.SENDING: SenderRow(M._sending_answer, P.HOLDING, True, M._silence, _FRAMING),
    S.POLLING: SenderRow(M._polling_answer, P.HOLDING, True, M._silence, _VERDICT),
    S.RESYNC: SenderRow(M._ignore, P.NONE, False, M._silence, _SILENT),
    S.CLOSING: SenderRow(M._closed, P.NONE, False, M._bye_unanswered, _ENDED),
    S.LEAVING: SenderRow(M._leave_answered, P.NONE, True, M._leave_unanswered, _LEAVING),
    S.LINGERING: SenderRow(M._ignore, P.NONE, False, M._gone, frozenset({S.FAILED})),
    S.DONE: SenderRow(M._ignore, P.NONE, False, None, frozenset()),
    S.FAILED: SenderRow(M._ignore, P.NONE, False, None, frozenset()),
}
# fmt: on
del M, S, P
