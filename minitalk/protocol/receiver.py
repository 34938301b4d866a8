"""The server's state machine: (PID, symbol, time) in; (PID, symbol) replies and events out.

It composes three pieces: ``Line`` (who holds the line: queue, refusals owed, shutting down),
``FrameDecoder`` (the frame's bits, checked at field boundaries) and ``MessageAssembly`` (the
message, frame by frame; the verdict each frame earns). What this module adds is the link with
the current peer: which symbol means what in which state, and what each silence means.

Every state, what each symbol from the peer does in it, which deadline it keeps, what happens
when that deadline passes and which states it may lead to, is one row of ``RECEIVER_TABLE`` at
the end of this module (docs/protocol.md shows the same table). Every session state also keeps
the session deadline: the session ends once no frame has brought new bytes for
``session_timeout``, or once it has held the line longer than ``session_timeout`` plus one
second per ``MIN_RATE`` bytes taken.

The driver pulls what the machine produces: ``replies()`` (the signals to send, drained) and
``next_event()``. A finished message is handed out as ``MessageReceived`` and the machine then
waits in WRITING, with nothing owed to the peer, until the driver says ``message_written`` (or
``message_not_written``): only then is the verdict that leads to the ACK offered, so no driver
can acknowledge a message before it is printed (h11's ``PAUSED`` and ``start_next_cycle``).
A ``Released`` PID is handed out only once the machine no longer knows it, after every reply
to it that came before; ``bulk()`` offers a run only right after a plain frame bit was answered
CONTINUE and that answer was pulled. The server's look (``protocol.look``) is a deadline too.
"""

# The transition tables at the end name the machine's own (private) transitions.
# ruff: noqa: SLF001

from __future__ import annotations

from collections import deque
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
from minitalk.protocol.line import Line, Reply
from minitalk.protocol.look import Look, LookResult
from minitalk.protocol.verdicts import Verdict, detail_bits, verdict_bits


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


@dataclass(frozen=True, slots=True)
class PeerView:
    """What the server's driver saw of its peer when a deadline passed."""

    alive: bool = True
    asleep: bool = False  # asleep in its signal wait: nothing it waits for is pending there


class ReceiverState(Enum):
    IDLE = auto()  # no peer
    AWAITING_FRAME = auto()  # granted (or a verdict dropped): the peer may be anywhere yet
    NEXT_FRAME_DUE = auto()  # a verdict was just clocked out: the peer's next frame is due now
    IN_FRAME = auto()  # reading a frame's bits
    POLLING = auto()  # the peer polls a verdict; the session goes on after it
    POLLING_FINAL = auto()  # the peer polls the ACK of its whole, printed message
    POLLING_LAST = auto()  # the peer polls a verdict after which the session ends
    WRITING = auto()  # the message is complete and handed out: nothing is owed until it is written
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
    checked: float = 0.0  # when the driver last found the peer alive (see PEER_CHECK)
    bad_frames: int = 0  # failed frames in a row
    resends: int = 0
    printed: bool = False  # this session handed a message out


Handler = Callable[["Receiver", _Session, int], None]
Expiry = Callable[["Receiver", _Session, float], None]


@dataclass(frozen=True, slots=True)
class Row:
    """One state of the receiver: what a 0 and a 1 from the peer do, its deadline, whether
    its answer is looked after, and the states it may lead to (IDLE: the session ends)."""

    zero: Handler
    one: Handler
    clock: Clock
    expire: Expiry | None  # None: only the session deadline applies
    looks: bool  # the peer's next symbol is due at once after our answer
    to: frozenset[ReceiverState]


class _ReceiverCore:
    """The receiver's bookkeeping: its state and table row, the session, the line, and the
    replies and events it owes the driver (pulled with ``replies()`` and ``next_event()``)."""

    _state: ReceiverState
    _row: Row | None

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
        self._replies: list[Reply] = []
        self._events: deque[ReceiverEvent] = deque()
        self.max_message = max_message
        self.stall_timeout = stall_timeout
        self.frame_timeout = frame_timeout
        self.session_timeout = session_timeout
        self.line = Line(max_queue=max_queue, max_notices=max_notices)
        self.session: _Session | None = None
        self.memory = DeliveredMemory()
        self.look = Look()  # was our last answer to the peer eaten? (protocol.look)
        self._decoder = FrameDecoder(max_message=max_message)
        self._delays = {Clock.NONE: None, Clock.STALL: stall_timeout, Clock.VERDICT: frame_timeout}
        self._last_answer: Reply | None = None  # the last reply to the peer, for the look
        self._run_ready = False  # a plain frame bit was just answered CONTINUE (see bulk)
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
        previous: Row | None = getattr(self, "_row", None)
        if previous is not None and state not in previous.to:
            raise LocalProtocolError(f"{self._state} cannot lead to {state}")
        self._state = state
        self._row = row
        self._delay = None if row is None else self._delays[row.clock]
        # Every state but the stalls (shorter) also looks at the peer every PEER_CHECK.
        self._checks = row is not None and row.clock is not Clock.STALL
        self._run_ready = False

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

    def replies(self) -> list[Reply]:
        """The (PID, symbol) signals to send now, in order (drained)."""
        replies, self._replies = self._replies, []
        return replies

    def next_event(self) -> ReceiverEvent | None:
        """The next event, or None. A ``Released`` PID is held back while replies are owed
        (the last may be to it: pull ``replies()`` first), and one known again (it asked anew
        meanwhile) is never handed out: its handle is still needed."""
        events = self._events
        while events:
            event = events[0]
            if isinstance(event, Released):
                if self._replies:
                    return None
                events.popleft()
                if event.pid in self.known():
                    continue
                return event
            return events.popleft()
        return None

    def _reply(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    def _answered(self, now: float) -> None:
        """After an input from the peer or a deadline: if the peer was answered, remember the
        answer and look after it when the state expects the peer's next symbol at once."""
        session = self.session
        if session is None or not self._replies:
            return
        answer = self._replies[-1]
        if answer[0] != session.pid:
            return
        self._last_answer = answer
        self.look.sent(now, expects_answer=self._row is not None and self._row.looks)

    def _grant(self, pid: int, now: float) -> None:
        assembly = MessageAssembly(pid, self.memory)
        deadline = now + self.session_timeout
        self.session = _Session(pid, now, assembly, now, deadline, now, checked=now)
        self._decoder.reset()
        self.state = ReceiverState.AWAITING_FRAME
        self._reply((pid, GRANT))
        self.look.answered()
        self._answered(now)

    def _going_away(self, session: _Session, now: float, *, granted: bool) -> None:
        """End the session and owe its client GOING_AWAY: its next frame bit (or, if it asks
        again, its GRANT) starts the refusal."""
        self._reply(*self.line.refuse(session.pid, Verdict.GOING_AWAY, granted=granted))
        self._end_session("the server is shutting down", now)

    def _end_session(self, reason: str, now: float) -> None:
        session = self.session
        if session is None:
            return
        self._events.append(SessionEnded(session.pid, session.printed, reason))
        self.session = None
        self.state = ReceiverState.IDLE
        self.look.cancel()
        self._last_answer = None
        self._decoder.reset()
        if session.pid not in self.line.notices:
            self._events.append(Released(session.pid))
        following = self.line.next_in_line(now)
        self._collect_released()  # those that stopped asking, let go on the way
        if following is not None:
            self._grant(following, now)

    def _collect_released(self) -> None:
        self._events.extend(Released(pid) for pid in self.line.take_released())


class _PeerTransitions(_ReceiverCore):
    """The cells of ``RECEIVER_TABLE``: what each symbol from the peer, and each deadline,
    does in each state."""

    def _asks_again(self, session: _Session, symbol: int) -> None:
        """A 1 where a frame (which starts with a 0) or a poll (a 0) was due: the peer asks
        for the line again after a silence; any verdict is dropped and it sends its frame
        again, unchanged, so a frame already taken is recognised as a repeat."""
        session.verdict = []
        if self.line.closing:
            self._going_away(session, session.since, granted=False)  # GRANT, then the refusal
            return
        self.state = ReceiverState.AWAITING_FRAME
        self._reply((session.pid, GRANT))

    def _asks_again_last(self, session: _Session, symbol: int) -> None:
        """A 1 while a verdict that ends the session is polled: the client lost an answer
        and asks again. Going on would hand it the next bits as if they were the first (the
        detail after TOO_LARGE could then read as ACK), so the whole verdict is owed again
        from its start, as a refusal: GRANT now, then FRAME_OVER and every bit."""
        verdict, detail = session.told
        self._reply(*self.line.refuse(session.pid, verdict, detail=detail))
        self._end_session(session.end, session.since)

    def _asks_again_final(self, session: _Session, symbol: int) -> None:
        """A 1 while the final ACK is polled: the peer lost part of it and asks again. It
        will send its last frame again (acknowledged as a repeat) or its BYE."""
        session.verdict = []
        self.state = ReceiverState.AWAITING_BYE
        self._reply((session.pid, GRANT))

    def _ignore(self, session: _Session, symbol: int) -> None:
        """WRITING: the peer has no answer yet; a symbol now is a repeat of its last (a look
        of its own), which was taken: answering it would answer one symbol twice."""

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
            self._replies.append((session.pid, CONTINUE))
            self._run_ready = True
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
            self._events.append(
                MessageReceived(
                    session.pid,
                    outcome.message.decode("utf-8"),
                    len(outcome.message),
                    assembly.frames,
                    session.resends,
                    session.since - session.started,
                )
            )
            self.state = ReceiverState.WRITING  # the ACK waits for message_written
        elif outcome.end:
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
        self._reply((session.pid, FRAME_OVER))

    def _poll(self, session: _Session, symbol: int) -> None:
        """The next verdict bit; after the last, the state the verdict leads to."""
        bits = session.verdict
        if not bits:
            raise LocalProtocolError(f"{self._state} without a verdict")
        self._reply((session.pid, bits.pop(0)))
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
        self._reply((session.pid, BYE_ACK))
        self._end_session("delivered" if session.printed else "already delivered", session.since)

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


class Receiver(_PeerTransitions):
    """Serves one peer at a time, queues the others in arrival order, and never lets a symbol
    from anyone but the current peer count as data. The driver sends ``replies()`` as they
    come, hands each ``MessageReceived`` to its output and then calls ``message_written``, and
    closes the handle of each ``Released`` PID.
    """

    def receive(self, pid: int, symbol: int, now: float) -> None:
        """One signal arrived from ``pid``: 0 for SIGUSR1, 1 for SIGUSR2."""
        session = self.session
        if session is not None and pid == session.pid:
            session.since = now
            self.look.answered()
            self._run_ready = False
            row = self._row
            assert row is not None
            (row.one if symbol else row.zero)(self, session, symbol)
            self._answered(now)
            return
        self.look.stray()  # anyone else's signal may have eaten the peer's next one
        self.line.listening(now)  # (the peer's bits need not: handle_timer runs every 0.1 s)
        if pid in self.line.notices:
            self._reply(self.line.notice_symbol(pid, symbol))
        elif symbol == REQUEST:
            replies = self.line.ask(pid, line_free=session is None, now=now)
            if replies is None:
                self._grant(pid, now)
            else:
                self._reply(*replies)
        elif pid in self.line.asked:  # LEAVE: a queued client gave up its place
            self._reply(self.line.leave(pid))
        # Any other 0 from anyone but the peer is a stray or a stale repeat: never data, no
        # answer.
        self._collect_released()

    def stray(self, now: float) -> None:
        """A signal that never reaches ``receive`` (a forged one, a request from a process
        that may not be answered) was taken: it may have eaten the peer's next signal."""
        self.look.stray()

    def bulk(self) -> int:
        """How many of the peer's next symbols are plain frame data, each to be answered
        CONTINUE: the rest of a frame whose header has passed its checks, but its last bit
        (which ends the frame and earns a verdict). Offered only right after a plain frame bit
        was answered CONTINUE and that answer was pulled with ``replies()``: a step woken by
        anything else answered nothing, and spinning then would only keep the server from
        looking asleep to a client that lost a bit. 0 when nothing may go in bulk. The driver
        takes them in a tight loop, answering each at once, and hands them over with
        ``bulk_received`` before anything else reaches the machine."""
        if not self._run_ready or self._replies or self._state is not ReceiverState.IN_FRAME:
            return 0
        return max(self._decoder.bits_to_frame_end() - 1, 0)

    def bulk_received(self, symbols: list[int], now: float) -> None:
        """Symbols of a run ``bulk()`` announced, each already answered CONTINUE."""
        self._run_ready = False
        if not symbols:
            return
        session = self.session
        if session is None or self._state is not ReceiverState.IN_FRAME:
            raise LocalProtocolError(f"{len(symbols)} bulk symbols in {self._state}")
        if len(symbols) >= self._decoder.bits_to_frame_end():
            raise LocalProtocolError(f"{len(symbols)} bulk symbols reach the frame's end")
        session.since = now
        if self._decoder.feed_many(symbols) is not None:
            raise LocalProtocolError("a bulk run completed a frame")
        self.look.answered()
        self._last_answer = (session.pid, CONTINUE)
        self.look.sent(now, expects_answer=True)

    def get_timer(self) -> float | None:
        """When the receiver next needs ``handle_timer``, or None (no session, or a message
        being written: nothing may end the session before the driver says how the write
        went)."""
        session = self.session
        if session is None or self._state is ReceiverState.WRITING:
            return None
        deadline = session.deadline
        if self._delay is not None:
            deadline = min(deadline, session.since + self._delay)
        if self._checks:
            deadline = min(deadline, session.checked + PEER_CHECK)
        look = self.look.due
        return deadline if look is None else min(deadline, look)

    def handle_timer(self, now: float, view: PeerView | None = None) -> None:
        """Apply every deadline that has passed at ``now``, given what the driver saw of the
        peer (``view``; None: alive, not seen asleep)."""
        self.line.listening(now)
        view = PeerView() if view is None else view
        session = self.session
        if self._state is ReceiverState.WRITING:
            # The message is complete and handed out: a deadline that passed meanwhile (a
            # server stopped past the session's end, its last bit taken in the same step)
            # must not end the session as delivered before the write is known to have worked,
            # or a failed write would be acknowledged to the client's retry.
            return
        if session is not None and not view.alive:
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
                self._answered(now)
                continue
            look = self.look.due
            if look is not None and now >= look:
                self._look(now, view)
                continue
            session.checked = now  # the peer check: the driver found it alive

    def _look(self, now: float, view: PeerView) -> None:
        if self.look.decide(now, asleep=view.asleep) is LookResult.RESEND:
            if self._last_answer is None:
                raise LocalProtocolError("a look with nothing answered")
            self._replies.append(self._last_answer)
            self._run_ready = False
            self.look.sent(now, expects_answer=True)

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
        self._reply(*self.line.close(now))
        session = self.session
        if session is not None and self._state in _SENDING_STATES and not session.assembly.complete:
            self._going_away(session, now, granted=True)
        # A verdict being polled is told whole first (a refusal spliced onto its first bits
        # could read as another verdict); the session then ends in GOING_AWAY (_poll).
        self._collect_released()

    def message_written(self, now: float) -> None:
        """The message of the last ``MessageReceived`` is written out, at ``now``: the
        verdict that leads to its ACK is offered now. A write can block for long (a full pipe
        whose reader is away), and the client, seeing the server busy, waits for it; the
        session's deadlines count from here, not from the frame's last bit."""
        self.line.listening(now)  # after a write that may have blocked for long
        session = self.session
        if session is None or self._state is not ReceiverState.WRITING:
            return  # the session ended meanwhile (its client exited): nobody to tell
        session.since = session.checked = now
        session.deadline = now + self.session_timeout
        self._start_verdict(session, Verdict.ACK, ReceiverState.POLLING_FINAL)
        self._answered(now)

    def message_not_written(self, now: float) -> None:
        """The message of the last ``MessageReceived`` could not be written out: answer its
        polls with NOT_WRITTEN instead of ACK, and end the session after it."""
        self.line.listening(now)  # after a write that may have blocked for long
        session = self.session
        if session is None or self._state is not ReceiverState.WRITING:
            return  # the session ended meanwhile (its client exited): nobody to tell
        session.assembly.not_written()
        session.printed = False
        session.since = now
        self._verdict(session, Verdict.NOT_WRITTEN, "the message could not be written")
        self._answered(now)


# The states in which the peer is sending a frame or about to: a shutdown refuses it at once.
_SENDING_STATES = frozenset(
    {ReceiverState.AWAITING_FRAME, ReceiverState.NEXT_FRAME_DUE, ReceiverState.IN_FRAME}
)

R = Receiver
S = ReceiverState
C = Clock
# Where each state may lead (IDLE: the session ends, and the next client may be granted). A
# frame's first bit moves to IN_FRAME first, and on from there.
_TO_FRAME = frozenset({S.IN_FRAME, S.AWAITING_FRAME, S.IDLE})
_TO_DUE = frozenset({S.IN_FRAME, S.AWAITING_FRAME, S.POLLING, S.POLLING_LAST, S.IDLE})
_TO_BIT = frozenset({S.POLLING, S.POLLING_FINAL, S.POLLING_LAST, S.WRITING, S.IDLE})
_TO_NEXT = frozenset({S.NEXT_FRAME_DUE, S.AWAITING_FRAME, S.IDLE})
_TO_BYE = frozenset({S.AWAITING_BYE, S.IDLE})
_TO_END = frozenset({S.IDLE})
_TO_VERDICT = frozenset({S.POLLING_FINAL, S.POLLING_LAST, S.IDLE})
_TO_REPEAT = frozenset({S.IN_FRAME, S.IDLE})
# The receiver's whole behaviour with its peer, one row per state (docs/protocol.md): what a
# 0 and a 1 do, the deadline, what its expiry does, whether our answers are looked after, and
# every state the row may lead to.
# fmt: off
RECEIVER_TABLE: dict[ReceiverState, Row] = {
    S.AWAITING_FRAME: Row(R._frame_starts, R._asks_again, C.NONE, None, True, _TO_FRAME),
    S.NEXT_FRAME_DUE: Row(R._frame_starts, R._asks_again, C.STALL, R._stalled, True, _TO_DUE),
    S.IN_FRAME: Row(R._frame_bit, R._frame_bit, C.STALL, R._stalled, True, _TO_BIT),
    S.POLLING: Row(R._poll, R._asks_again, C.VERDICT, R._verdict_unpolled, True, _TO_NEXT),
    S.POLLING_FINAL: Row(R._poll, R._asks_again_final, C.VERDICT, R._final_unpolled, True, _TO_BYE),
    S.POLLING_LAST: Row(R._poll, R._asks_again_last, C.VERDICT, R._last_unpolled, True, _TO_END),
    S.WRITING: Row(R._ignore, R._ignore, C.NONE, None, False, _TO_VERDICT),
    S.AWAITING_BYE: Row(R._frame_starts, R._bye, C.NONE, None, True, _TO_REPEAT),
}
# fmt: on
del R, S, C
