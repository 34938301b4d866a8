"""The server's state machine: (PID, symbol, time) in; (PID, symbol) replies and events out.

It composes three pieces: ``Line`` (who holds the line: queue, refusals owed, shutting down),
``FrameDecoder`` (the frame's bits, checked at field boundaries) and ``MessageAssembly`` (the
message, frame by frame; the verdict each frame earns). What this module adds is the link with
the current peer: which symbol means what in which state, and what each silence means.

Every state, what each symbol from the peer does in it, which deadline it keeps and what
happens when that deadline passes, is one row of ``RECEIVER_TABLE`` at the end of this module
(docs/protocol.md shows the same table). Every session state also keeps the session deadline:
the session ends once no frame has brought new bytes for ``session_timeout``, or once it has
held the line longer than ``session_timeout`` plus one second per ``MIN_RATE`` bytes taken.
"""

# The transition tables at the end name the machine's own (private) transitions.
# ruff: noqa: SLF001

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto

from minitalk.errors import FrameError, LocalProtocolError, OversizeError
from minitalk.frame import MAX_MESSAGE, Frame, FrameDecoder
from minitalk.protocol.assembly import DeliveredMemory, MessageAssembly
from minitalk.protocol.limits import (
    BYE_ACK,
    CONTINUE,
    DEFAULT_MAX_MESSAGE,
    FRAME_OVER,
    FRAME_TIMEOUT,
    GRANT,
    MAX_BAD_FRAMES,
    MAX_NOTICES,
    MAX_QUEUE,
    MIN_RATE,
    PEER_CHECK,
    REQUEST,
    SESSION_TIMEOUT,
    STALL_TIMEOUT,
)
from minitalk.protocol.line import Line
from minitalk.protocol.verdicts import VERDICT_BITS, Verdict, detail_bits, verdict_bits


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A whole message arrived and checked; the server must print it before the ACK goes out."""

    pid: int
    text: str
    size: int
    frames: int
    resends: int
    seconds: float


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The server finished with a peer; ``delivered`` is True if this session printed a
    message (a repeat of one printed before is acknowledged, not delivered again)."""

    pid: int
    delivered: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Released:
    """The receiver no longer knows ``pid`` (session over, refusal told or forgotten, gone):
    whoever holds a handle to it may close it."""

    pid: int


ReceiverEvent = MessageReceived | SessionEnded | Released


class ReceiverState(Enum):
    IDLE = auto()  # no peer
    AWAITING_FRAME = auto()  # granted (or a verdict dropped): the peer may be anywhere yet
    NEXT_FRAME_DUE = auto()  # a verdict was just clocked out: the peer's next frame is due now
    IN_FRAME = auto()  # reading a frame's bits
    POLLING = auto()  # the peer polls a verdict; the session goes on after it
    POLLING_FINAL = auto()  # the peer polls the ACK of its whole, printed message
    POLLING_LAST = auto()  # the peer polls a verdict after which the session ends
    AWAITING_BYE = auto()  # the final ACK was clocked out: BYE is due (or a repeat frame)


class Clock(Enum):
    """Which deadline a state keeps besides the session's, counted from its last event."""

    NONE = auto()  # only the session's deadline
    STALL = auto()  # stall_timeout: silence in or right before a frame means a bit was eaten
    VERDICT = auto()  # frame_timeout: a verdict nobody polls is dropped


@dataclass(slots=True)
class _Session:
    pid: int
    started: float
    assembly: MessageAssembly
    since: float  # the peer's last symbol, or the last deadline that passed
    deadline: float  # the session's own end (see the module docstring)
    last_progress: float
    verdict: list[int] = field(default_factory=list)  # verdict bits still to be polled
    told: tuple[Verdict, list[int]] = (Verdict.ACK, [])  # the verdict polled, and its detail
    end: str = ""  # POLLING_LAST: why the session ends after the verdict
    checked: float = 0.0  # when the loop last found the peer alive (see PEER_CHECK)
    bad_frames: int = 0  # failed frames in a row
    resends: int = 0
    printed: bool = False  # this session handed a message out


Handler = Callable[["Receiver", _Session, int], None]
Expiry = Callable[["Receiver", _Session, float], None]


@dataclass(frozen=True, slots=True)
class Row:
    """One state of the receiver: what a 0 and a 1 from the peer do, and its deadline."""

    zero: Handler
    one: Handler
    clock: Clock
    expire: Expiry | None  # None: only the session deadline applies


class Receiver:
    """Serves one peer at a time, queues the others in arrival order, and never lets a symbol
    from anyone but the current peer count as data. Whoever drives it must print each
    ``MessageReceived`` before sending the outbox that follows it (the ACK of the message's
    last frame is in it), and close the handle of each ``Released`` PID.
    """

    def __init__(
        self,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        stall_timeout: float = STALL_TIMEOUT,
        frame_timeout: float = FRAME_TIMEOUT,
        session_timeout: float = SESSION_TIMEOUT,
        max_queue: int = MAX_QUEUE,
        max_notices: int = MAX_NOTICES,
    ) -> None:
        if not 0 <= max_message <= MAX_MESSAGE:
            raise LocalProtocolError(f"max_message must be within 0..{MAX_MESSAGE}")
        if not 0 < frame_timeout < session_timeout:
            raise LocalProtocolError("need 0 < frame_timeout < session_timeout")
        if not 0 < stall_timeout < frame_timeout:
            raise LocalProtocolError("need 0 < stall_timeout < frame_timeout")
        self.max_message = max_message
        self.stall_timeout = stall_timeout
        self.frame_timeout = frame_timeout
        self.session_timeout = session_timeout
        self.outbox: list[tuple[int, int]] = []
        self.events: list[ReceiverEvent] = []
        self.line = Line(self.outbox, max_queue=max_queue, max_notices=max_notices)
        self.session: _Session | None = None
        self.memory = DeliveredMemory()
        self._decoder = FrameDecoder(max_message=max_message)
        self._delays = {Clock.NONE: None, Clock.STALL: stall_timeout, Clock.VERDICT: frame_timeout}
        self.state = ReceiverState.IDLE

    @property
    def state(self) -> ReceiverState:
        return self._state

    @state.setter
    def state(self, state: ReceiverState) -> None:
        # The table is consulted here, on each change of state, not on every bit.
        row = RECEIVER_TABLE.get(state)
        if row is None and state is not ReceiverState.IDLE:
            raise LocalProtocolError(f"no row for {state} in the receiver's table")
        self._state = state
        self._row = row
        self._delay = None if row is None else self._delays[row.clock]
        # Every state but the stalls (shorter) also looks at the peer every PEER_CHECK.
        self._checks = row is not None and row.clock is not Clock.STALL

    @property
    def peer(self) -> int | None:
        """The PID that has the line, if any."""
        return self.session.pid if self.session else None

    @property
    def queue(self) -> list[int]:
        return list(self.line.queue)

    @property
    def closing(self) -> bool:
        return self.line.closing

    @property
    def idle(self) -> bool:
        """No session and no refusal still owed: nothing is in flight."""
        return self.session is None and not self.line.notices

    def known(self) -> set[int]:
        """Every PID the receiver may still answer: the peer, the queue, refusals owed."""
        known = self.line.known()
        if self.session is not None:
            known.add(self.session.pid)
        return known

    # -- inputs --------------------------------------------------------------------------------

    def receive(self, pid: int, symbol: int, now: float) -> None:
        """One signal arrived from ``pid``: 0 for SIGUSR1, 1 for SIGUSR2."""
        session = self.session
        if session is not None and pid == session.pid:
            session.since = now
            row = self._row
            assert row is not None
            (row.one if symbol else row.zero)(self, session, symbol)
        elif pid in self.line.notices:
            self.line.notice_symbol(pid, symbol)
            self._collect_released()
        elif symbol == REQUEST:
            if self.line.ask(pid, line_free=session is None):
                self._grant(pid, now)
            self._collect_released()
        # A 0 from anyone but the peer is a stray or a stale repeat: never data, no answer.

    # -- bulk: runs of plain data, moved by the loop in a tight loop ---------------------------

    def bulk(self) -> int:
        """How many of the peer's next symbols are plain frame data, each to be answered
        CONTINUE: the rest of a frame whose header has passed its checks, but its last bit
        (which ends the frame and earns a verdict). 0 when nothing may go in bulk. A loop may
        take them in a tight loop, answering each at once, and must then hand them over with
        ``bulk_received`` before anything else reaches the machine."""
        if self._state is not ReceiverState.IN_FRAME:
            return 0
        return max(self._decoder.bits_to_frame_end() - 1, 0)

    def bulk_received(self, symbols: list[int], now: float) -> None:
        """Symbols of a run ``bulk()`` announced, each already answered CONTINUE."""
        if not symbols:
            return
        session = self.session
        if session is None or len(symbols) > self.bulk():
            raise LocalProtocolError(f"{len(symbols)} bulk symbols in {self._state}")
        session.since = now
        if self._decoder.feed_many(symbols) is not None:
            raise LocalProtocolError("a bulk run completed a frame")

    def get_timer(self) -> float | None:
        """When the receiver next needs ``handle_timer``, or None (no session: no timer)."""
        session = self.session
        if session is None:
            return None
        deadline = session.deadline
        if self._delay is not None:
            deadline = min(deadline, session.since + self._delay)
        if self._checks:
            deadline = min(deadline, session.checked + PEER_CHECK)
        return deadline

    def handle_timer(self, now: float, *, peer_alive: bool = True) -> None:
        """Apply every deadline that has passed at ``now``. The I/O loop passes
        ``peer_alive=False`` once it sees that the peer's process has exited."""
        session = self.session
        if session is not None and not peer_alive:
            self._end_session("delivered" if session.printed else "the client exited", now)
        while (session := self.session) is not None:
            deadline = self.get_timer()
            if deadline is None or now < deadline:
                return
            if now >= session.deadline:
                self._session_expired(session, now)
                continue
            if self._delay is not None and now >= session.since + self._delay:
                expire = self._row.expire if self._row is not None else None
                if expire is None:
                    raise LocalProtocolError(f"a deadline without a transition in {self._state}")
                expire(self, session, now)
                continue
            session.checked = now  # the peer check: the loop found it alive (peer_alive)

    def peer_gone(self, pid: int, now: float) -> None:
        """The process ``pid`` exited (a signal to it failed): forget it wherever it is."""
        session = self.session
        if session is not None and session.pid == pid:
            self._end_session("delivered" if session.printed else "the client exited", now)
        else:
            self.line.gone(pid)
            self._collect_released()

    def shut_down(self, now: float) -> None:
        """Stop: every client, queued or sending or asking later, is told GOING_AWAY; a
        partial message is dropped, never printed. A session whose message is complete keeps
        the line until its final ACK is polled and its BYE arrives (or its deadline passes),
        and a verdict that ends the session anyway (a refusal, NOT_WRITTEN) is still told."""
        self.line.close()
        session = self.session
        if (
            session is not None
            and self._state in _SENDING_STATES
            and not session.assembly.complete
        ):
            self._going_away(session, now, granted=True)
        # A verdict being polled is told whole first (a refusal spliced onto its first bits
        # could read as another verdict); the session then ends in GOING_AWAY (_poll).
        self._collect_released()

    def _going_away(self, session: _Session, now: float, *, granted: bool) -> None:
        """End the session and owe its client GOING_AWAY: its next frame bit (or, if it asks
        again, its GRANT) starts the refusal."""
        self.line.refuse(session.pid, Verdict.GOING_AWAY, granted=granted)
        self._end_session("the server is shutting down", now)

    def message_written(self, now: float) -> None:
        """The message of the last ``MessageReceived`` is written out, at ``now``: its ACK
        goes out now. A write can block for long (a full pipe whose reader is away), and the
        client, seeing the server busy, waits for it; the session's deadlines count from
        here, not from the frame's last bit."""
        session = self.session
        if session is None or self._state is not ReceiverState.POLLING_FINAL:
            return  # the session ended meanwhile (its client exited): nobody to tell
        session.since = session.checked = now
        session.deadline = now + self.session_timeout

    def message_not_written(self, now: float) -> None:
        """The message of the last ``MessageReceived`` could not be written out: answer its
        polls with NOT_WRITTEN instead of ACK, and end the session after it."""
        session = self.session
        if session is None or self._state is not ReceiverState.POLLING_FINAL:
            return  # the session ended meanwhile (its client exited): nobody to tell
        if len(session.verdict) != VERDICT_BITS:
            raise LocalProtocolError("the final ACK is already being told")
        session.assembly.not_written()
        session.printed = False
        session.verdict = verdict_bits(Verdict.NOT_WRITTEN)
        session.told = (Verdict.NOT_WRITTEN, [])
        session.end = "the message could not be written"
        self.state = ReceiverState.POLLING_LAST

    # -- transitions (the table's cells) ---------------------------------------------------------

    def _grant(self, pid: int, now: float) -> None:
        assembly = MessageAssembly(pid, self.memory)
        deadline = now + self.session_timeout
        self.session = _Session(pid, now, assembly, now, deadline, now, checked=now)
        self._decoder.reset()
        self.state = ReceiverState.AWAITING_FRAME
        self.outbox.append((pid, GRANT))

    def _asks_again(self, session: _Session, symbol: int) -> None:
        """A 1 where a frame (which starts with a 0) or a poll (a 0) was due: the peer asks
        for the line again after a silence; any verdict is dropped and it sends its frame
        again, unchanged, so a frame already taken is recognised as a repeat."""
        session.verdict = []
        if self.line.closing:
            self._going_away(session, session.since, granted=False)  # GRANT, then the refusal
            return
        self.state = ReceiverState.AWAITING_FRAME
        self.outbox.append((session.pid, GRANT))

    def _asks_again_last(self, session: _Session, symbol: int) -> None:
        """A 1 while a verdict that ends the session is polled: the client lost an answer
        and asks again. Going on would hand it the next bits as if they were the first (the
        detail after TOO_LARGE could then read as ACK), so the whole verdict is owed again
        from its start, as a refusal: GRANT now, then FRAME_OVER and every bit."""
        verdict, detail = session.told
        self.line.refuse(session.pid, verdict, detail=detail)
        self._end_session(session.end, session.since)

    def _asks_again_final(self, session: _Session, symbol: int) -> None:
        """A 1 while the final ACK is polled: the peer lost part of it and asks again. It
        will send its last frame again (acknowledged as a repeat) or its BYE."""
        session.verdict = []
        self.state = ReceiverState.AWAITING_BYE
        self.outbox.append((session.pid, GRANT))

    def _frame_starts(self, session: _Session, symbol: int) -> None:
        self.state = ReceiverState.IN_FRAME
        self._frame_bit(session, symbol)

    def _frame_bit(self, session: _Session, symbol: int) -> None:
        try:
            frame = self._decoder.feed(symbol)
        except OversizeError:
            self._verdict(session, Verdict.TOO_LARGE, "the message was too large", self.max_message)
            return
        except FrameError:  # a bad header or a failed CRC: ask for the whole frame again
            self._frame_failed(session)
            return
        if frame is None:
            self.outbox.append((session.pid, CONTINUE))
            return
        self._frame_checked(session, frame)

    def _frame_checked(self, session: _Session, frame: Frame) -> None:
        session.bad_frames = 0  # a frame that passed its checks: the peer speaks the protocol
        assembly = session.assembly
        outcome = assembly.take(frame)
        if outcome.repeat:
            session.resends += 1
        else:  # new bytes taken (or the message finished): the session made progress
            session.last_progress = session.since
            session.deadline = min(
                session.since + self.session_timeout,
                session.started + self.session_timeout + assembly.taken / MIN_RATE,
            )
        if outcome.message is not None:
            session.printed = True
            self.events.append(
                MessageReceived(
                    session.pid,
                    outcome.message.decode("utf-8"),
                    len(outcome.message),
                    assembly.frames,
                    session.resends,
                    session.since - session.started,
                )
            )
            session.deadline = session.since + self.session_timeout  # BYE is due, no more
        if outcome.end:
            self._verdict(session, outcome.verdict, outcome.end)
        elif assembly.complete:
            self._start_verdict(session, outcome.verdict, ReceiverState.POLLING_FINAL)
        else:
            self._start_verdict(session, outcome.verdict, ReceiverState.POLLING)

    def _frame_failed(self, session: _Session) -> None:
        """A frame that failed its checks or stalled: RESEND, or end the session once the
        peer has failed ``MAX_BAD_FRAMES`` in a row (a stranger feeding noise)."""
        self._decoder.reset()
        session.resends += 1
        session.bad_frames += 1
        if session.bad_frames >= MAX_BAD_FRAMES:
            self._verdict(session, Verdict.RESEND, "too many failed frames")
        else:
            self._start_verdict(session, Verdict.RESEND, ReceiverState.POLLING)

    def _verdict(
        self, session: _Session, verdict: Verdict, end: str, detail: int | None = None
    ) -> None:
        """A verdict after which the session ends with ``end``."""
        self._start_verdict(session, verdict, ReceiverState.POLLING_LAST)
        session.end = end
        if detail is not None:
            session.told = (verdict, detail_bits(detail))
            session.verdict += session.told[1]

    def _start_verdict(self, session: _Session, verdict: Verdict, state: ReceiverState) -> None:
        session.verdict = verdict_bits(verdict)
        session.told = (verdict, [])
        self.state = state
        self.outbox.append((session.pid, FRAME_OVER))

    def _poll(self, session: _Session, symbol: int) -> None:
        """The next verdict bit; after the last, the state the verdict leads to."""
        bits = session.verdict
        if not bits:
            raise LocalProtocolError(f"{self._state} without a verdict")
        self.outbox.append((session.pid, bits.pop(0)))
        if bits:
            return
        state = self._state
        if state is ReceiverState.POLLING and self.line.closing:
            self._going_away(session, session.since, granted=True)
        elif state is ReceiverState.POLLING:
            self.state = ReceiverState.NEXT_FRAME_DUE
        elif state is ReceiverState.POLLING_FINAL:
            self.state = ReceiverState.AWAITING_BYE
        else:
            self._end_session(session.end, session.since)

    def _bye(self, session: _Session, symbol: int) -> None:
        self.outbox.append((session.pid, BYE_ACK))
        self._end_session("delivered" if session.printed else "already delivered", session.since)

    # -- deadlines ---------------------------------------------------------------------------

    def _stalled(self, session: _Session, now: float) -> None:
        """Silence mid-frame, or where the peer's next frame was due right after a verdict:
        its last bit was most likely eaten by a stray of the same kind pending here (standard
        signals merge), and it waits for the answer. Send FRAME_OVER now, unprompted, and
        answer its polls with RESEND, so both sides restart the frame in step within
        ``stall_timeout``. (Right after a GRANT the peer may be anywhere, even queued and
        polling, so there the server waits: AWAITING_FRAME has no stall deadline.)"""
        session.since = now
        self._frame_failed(session)

    def _verdict_unpolled(self, session: _Session, now: float) -> None:
        """Nobody polled the verdict: drop it; the peer will ask for the line again."""
        session.since = now
        session.verdict = []
        session.bad_frames += 1
        if self.line.closing:
            self._going_away(session, now, granted=True)
        elif session.bad_frames >= MAX_BAD_FRAMES:
            self._end_session("too many failed frames", now)
        else:
            self.state = ReceiverState.AWAITING_FRAME

    def _final_unpolled(self, session: _Session, now: float) -> None:
        session.since = now
        session.verdict = []
        self.state = ReceiverState.AWAITING_BYE

    def _last_unpolled(self, session: _Session, now: float) -> None:
        self._end_session(session.end, now)

    def _session_expired(self, session: _Session, now: float) -> None:
        if session.assembly.complete:
            reason = "delivered" if session.printed else "already delivered"
        elif now >= session.last_progress + self.session_timeout:
            reason = "no valid frame within the session timeout"
        else:
            reason = "too little progress: the line is shared"
        self._end_session(reason, now)

    def _end_session(self, reason: str, now: float) -> None:
        session = self.session
        if session is None:
            return
        self.events.append(SessionEnded(session.pid, session.printed, reason))
        self.session = None
        self.state = ReceiverState.IDLE
        self._decoder.reset()
        if session.pid not in self.line.notices:
            self.events.append(Released(session.pid))
        following = self.line.next_in_line()
        if following is not None:
            self._grant(following, now)

    def _collect_released(self) -> None:
        released = self.line.released
        if released:
            self.events.extend(Released(pid) for pid in released)
            released.clear()


# The states in which the peer is sending a frame or about to: a shutdown refuses it at once.
_SENDING_STATES = frozenset(
    {ReceiverState.AWAITING_FRAME, ReceiverState.NEXT_FRAME_DUE, ReceiverState.IN_FRAME}
)

R = Receiver
S = ReceiverState
# The receiver's whole behaviour with its peer, one row per state (docs/protocol.md).
RECEIVER_TABLE: dict[ReceiverState, Row] = {
    S.AWAITING_FRAME: Row(R._frame_starts, R._asks_again, Clock.NONE, None),
    S.NEXT_FRAME_DUE: Row(R._frame_starts, R._asks_again, Clock.STALL, R._stalled),
    S.IN_FRAME: Row(R._frame_bit, R._frame_bit, Clock.STALL, R._stalled),
    S.POLLING: Row(R._poll, R._asks_again, Clock.VERDICT, R._verdict_unpolled),
    S.POLLING_FINAL: Row(R._poll, R._asks_again_final, Clock.VERDICT, R._final_unpolled),
    S.POLLING_LAST: Row(R._poll, R._asks_again_last, Clock.VERDICT, R._last_unpolled),
    S.AWAITING_BYE: Row(R._frame_starts, R._bye, Clock.NONE, None),
}
del R, S
