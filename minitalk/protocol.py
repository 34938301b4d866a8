"""The sans-I/O protocol: a sender and a receiver state machine, bits and time in, bits out.

Nothing here touches a signal or reads a clock. A *symbol* is 0 or 1; the transport sends 0 as
SIGUSR1 and 1 as SIGUSR2. Time is a float argument (seconds, any monotonic origin); each machine
says when its next deadline is (``get_timer``) and is told when it passed (``handle_timer``).
Output goes to an outbox the I/O loop drains; results come out as events.

The link rules (docs/protocol.md has the diagrams):

* Every symbol the client sends is answered by exactly one symbol from the server before the
  client sends the next, because standard signals merge while pending.
* Session: the client sends REQUEST (1). The server answers GRANT (0), or WAIT (1) and queues
  the client; a queued client is later sent GRANT unprompted and re-sends REQUEST every
  ``queue_poll`` seconds (a lost grant is then granted again). A 0 from a process that is not
  the current peer is never data and gets no answer.
* Frame: the client sends the frame's bits; the server answers CONTINUE (0) to each, or
  FRAME_OVER (1) once the frame is complete or the server has stopped reading it (bad header,
  oversized message). The client then clocks out an 8-bit verdict with 8 POLLs (0), each
  answered by one verdict bit: a 4-bit code followed by its complement, so a garbled verdict
  is recognised as such.
* Verdict ACK moves to the next frame; RESEND, a garbled verdict or a silent server makes the
  client resend the whole frame from its first bit (never a single bit: that is how slips are
  born), at most ``max_attempts`` times at the smallest size; a rejected frame is cut shorter
  first. A frame that stalls (a bit eaten by a stray) is abandoned by the server after
  ``stall_timeout``: it sends FRAME_OVER unprompted, then RESEND. A client that hears nothing
  for ``bit_timeout`` (longer) asks again with REQUEST, which the server answers with GRANT at
  a frame start or in the verdict state (polls are 0s), so both sides restart the frame
  together. (Sending a single symbol again when a stray provably ate it is the client loop's
  business, below this machine: the machine sees one answer per symbol either way.)
* A frame repeated because its ACK was lost is acknowledged again and not delivered twice
  (sequence numbers). After the last frame's ACK the client sends BYE (1), answered by 0; the
  server keeps the session until BYE or ``session_timeout``. Every frame carries its message's
  random nonce and the server remembers the nonces it delivered, so even a repeat that arrives
  after the session ended (a stale 1 taken for BYE) is acknowledged, never printed again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum, auto

from minitalk.errors import (
    FrameError,
    LocalProtocolError,
    MinitalkError,
    NoAnswerError,
    OversizeError,
    RefusedError,
    ServerGoneError,
    TryLaterError,
)
from minitalk.frame import (
    MAX_MESSAGE,
    MAX_PAYLOAD,
    SEQ_MODULUS,
    Frame,
    FrameDecoder,
    crc8,
    encode_frame,
    next_frame,
    to_bits,
)

# Symbols. Meanings depend on the state, which both sides know.
REQUEST = 1  # client -> server: may I have the line? (also a repeat of it)
GRANT = 0  # server -> client: the line is yours, send a frame
WAIT = 1  # server -> client: another client has the line; you are queued
CONTINUE = 0  # server -> client: bit received, send the next
FRAME_OVER = 1  # server -> client: frame finished or abandoned, poll the verdict
POLL = 0  # client -> server: send me the next verdict bit
BYE = 1  # client -> server: I have the final ACK, the session is over
BYE_ACK = 0  # server -> client: answer to BYE

VERDICT_BITS = 8
DETAIL_BITS = 40  # after TOO_LARGE: the server's limit (32 bits) and its CRC-8

# Defaults, in seconds. The ordering stall_timeout < frame_timeout < reply_timeout <
# session_timeout is what keeps the two sides in step after a lost signal; docs/protocol.md
# gives the reasoning for each value.
STALL_TIMEOUT = 0.05
BIT_TIMEOUT = 0.15
FRAME_TIMEOUT = 0.5
REPLY_TIMEOUT = 1.0
QUEUE_POLL = 1.0
SESSION_TIMEOUT = 3.0
MAX_ATTEMPTS = 10  # per frame, the XMODEM/Kermit convention
# The smallest frame payload the sender shrinks to on a lossy link: 32 bytes make a frame of
# 376 bits, which a stray signal a millisecond still lets through more often than not.
MIN_PAYLOAD = 32
# A peer whose frames fail this many times in a row loses the line (it may be a stranger
# feeding noise, or a client gone astray); a real client gives up after MAX_ATTEMPTS anyway.
MAX_BAD_FRAMES = 2 * MAX_ATTEMPTS
MAX_QUEUE = 64
DELIVERED_MEMORY = 1024  # nonces of recent messages; a repeat comes within seconds, not thousands
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024


class Verdict(IntEnum):
    """The server's answer to a frame; codes 1..15, sent as code + complement."""

    ACK = 1
    RESEND = 2
    TOO_LARGE = 3
    NOT_UTF8 = 4
    OUT_OF_ORDER = 5
    RESTART = 6  # a new session began mid-message: send the message again from frame 0
    BUSY = 7  # the queue is full: try again later
    GOING_AWAY = 8  # the server is shutting down


VERDICT_REASONS = {
    Verdict.NOT_UTF8: "a frame was not valid UTF-8",
    Verdict.OUT_OF_ORDER: "its frames arrived out of order",
}


def verdict_bits(verdict: Verdict) -> list[int]:
    """The 8 bits that carry ``verdict``: its 4-bit code, then the code's complement."""
    code = int(verdict)
    return to_bits(bytes(((code << 4) | (~code & 0x0F),)))


def detail_bits(value: int) -> list[int]:
    """The 40 bits that follow a TOO_LARGE verdict: ``value`` (32 bits) and its CRC-8."""
    data = value.to_bytes(4, "big")
    return to_bits(data + bytes((crc8(data),)))


def parse_detail(bits: int) -> int | None:
    """The value carried by 40 detail bits, or None if its check fails."""
    data = bits.to_bytes(5, "big")
    return int.from_bytes(data[:4], "big") if crc8(data[:4]) == data[4] else None


def parse_verdict(byte: int) -> Verdict | None:
    """The verdict an 8-bit value carries, or None if it is garbled or unknown."""
    code, check = byte >> 4, byte & 0x0F
    if code ^ check != 0x0F:
        return None
    try:
        return Verdict(code)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Events


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
    """The server finished with a peer, delivered or not; ``reason`` says why."""

    pid: int
    delivered: bool
    reason: str


ReceiverEvent = MessageReceived | SessionEnded


# ---------------------------------------------------------------------------------------------
# Receiver (server side)


class ReceiverState(Enum):
    IDLE = auto()  # no peer
    FRAME = auto()  # peer granted; reading frame bits (or the repeat request / BYE at a start)
    VERDICT = auto()  # frame over; peer is polling the verdict bits


@dataclass(slots=True)
class _Session:
    pid: int
    started: float
    last_activity: float  # the peer's last symbol
    last_progress: float  # the grant, or the last frame that passed its checks
    expected_seq: int = 0
    frames: int = 0
    resends: int = 0
    message_length: int = -1
    nonce: int = -1
    bad_frames: int = 0  # failed frames in a row
    complete: bool = False
    pending_verdict: list[int] | None = None
    end_after_verdict: str = ""  # non-empty: end the session with this reason after the verdict
    last_frame_size: int = 0  # payload bytes of the last frame taken
    after_verdict: bool = False  # at a frame start right after a verdict: the peer sends next
    buffer: bytearray = field(default_factory=bytearray)


class Receiver:
    """The server's state machine: (pid, symbol, now) in; (pid, symbol) replies and events out.

    It serves one peer at a time, queues the others in arrival order, and never lets a symbol
    from anyone but the current peer count as data. Whoever drives it must print each
    ``MessageReceived`` before sending the outbox that follows it: the ACK for a message's last
    frame goes out only after that.
    """

    def __init__(
        self,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        stall_timeout: float = STALL_TIMEOUT,
        frame_timeout: float = FRAME_TIMEOUT,
        session_timeout: float = SESSION_TIMEOUT,
        max_queue: int = MAX_QUEUE,
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
        self.max_queue = max_queue
        self.session: _Session | None = None
        self.queue: deque[int] = deque()
        self.outbox: list[tuple[int, int]] = []
        self.events: list[ReceiverEvent] = []
        self._decoder = FrameDecoder(max_message=max_message)
        self._delivered: deque[int] = deque(maxlen=DELIVERED_MEMORY)  # nonces, oldest first
        # Refusals owed to clients that are not the peer (full queue, shutting down): the
        # client is sent GRANT, and its first frame bit is answered with FRAME_OVER and then
        # the verdict, through the same steps as any verdict. PID -> replies still owed.
        self._notices: dict[int, list[int]] = {}
        self.closing = False
        # The transition table: what a symbol from the current peer does in each state.
        self._peer_transitions: dict[ReceiverState, Callable[[_Session, int], None]] = {
            ReceiverState.FRAME: self._frame_symbol,
            ReceiverState.VERDICT: self._verdict_symbol,
        }
        self.state = ReceiverState.IDLE

    @property
    def state(self) -> ReceiverState:
        return self._state

    @state.setter
    def state(self, state: ReceiverState) -> None:
        # The table is consulted here, on each change of state, not on every bit.
        self._state = state
        self._on_peer_symbol = self._peer_transitions.get(state, self._no_peer_transition)

    def _no_peer_transition(self, session: _Session, symbol: int) -> None:
        raise LocalProtocolError(f"no transition for a peer symbol in {self._state}")

    @property
    def peer(self) -> int | None:
        """The PID that has the line, if any."""
        return self.session.pid if self.session else None

    def receive(self, pid: int, symbol: int, now: float) -> None:
        """One signal arrived from ``pid``: 0 for SIGUSR1, 1 for SIGUSR2."""
        session = self.session
        if session is not None and pid == session.pid:
            session.last_activity = now
            self._on_peer_symbol(session, symbol)
        elif pid in self._notices:
            self._notice_symbol(pid, symbol)
        elif symbol == REQUEST:
            self._request(pid, now)
        # A 0 from anyone but the peer is a stray or a stale repeat: never data, no answer.

    def known(self) -> set[int]:
        """Every PID the receiver may still answer: the peer, the queue, refusals owed."""
        known = set(self.queue) | set(self._notices)
        if self.session is not None:
            known.add(self.session.pid)
        return known

    @property
    def idle(self) -> bool:
        """No session and no refusal still owed: nothing is in flight."""
        return self.session is None and not self._notices

    def shut_down(self, now: float) -> None:
        """Stop: every client, queued or sending or asking later, is told GOING_AWAY; a
        partial message is dropped, never printed. A session whose message was already
        printed is kept, so that its client can still poll the ACK and say BYE (or the
        session times out); ``closing`` keeps the next client from being granted after it."""
        self.closing = True
        session = self.session
        if session is not None and not session.complete:
            self._end_session("the server is shutting down", now)
            self._notify(session.pid, Verdict.GOING_AWAY, granted=True)
        while self.queue:
            self._notify(self.queue.popleft(), Verdict.GOING_AWAY)

    def get_timer(self) -> float | None:
        """When the receiver next needs ``handle_timer``, or None if it needs no timer.

        Three deadlines: a frame that stalls after ``stall_timeout`` of silence is abandoned
        (the peer is sent FRAME_OVER unprompted, then RESEND); a verdict nobody polls is
        dropped after ``frame_timeout``; and the session ends when no frame has passed its
        checks for ``session_timeout``. Activity alone does not extend a session, so a peer
        that only sends noise cannot keep the line.
        """
        session = self.session
        if session is None:
            return None
        session_deadline = session.last_progress + self.session_timeout
        if self.state is ReceiverState.VERDICT:
            return min(session.last_activity + self.frame_timeout, session_deadline)
        if not self._decoder.at_start or session.after_verdict:
            return min(session.last_activity + self.stall_timeout, session_deadline)
        return session_deadline

    def handle_timer(self, now: float) -> None:
        """Apply every deadline that has passed at ``now`` (a long silence passes both the
        frame and the session deadline)."""
        while (deadline := self.get_timer()) is not None and now >= deadline:
            self._deadline_passed(now)

    def _deadline_passed(self, now: float) -> None:
        session = self.session
        if session is None:
            return
        if now >= session.last_progress + self.session_timeout:
            if session.complete:
                self._end_session("delivered", now)
            else:
                self._end_session("no valid frame within the session timeout", now)
            return
        if self.state is ReceiverState.VERDICT:
            # Nobody polls the verdict: drop it; the client will ask for the line again.
            if session.end_after_verdict or self._frame_failed(session):
                self._end_session(session.end_after_verdict or "too many failed frames", now)
                return
            session.pending_verdict = None
            self.state = ReceiverState.FRAME
        elif not self._decoder.at_start or session.after_verdict:
            self._frame_stalled(session)

    def _frame_stalled(self, session: _Session) -> None:
        """Silence mid-frame, or where the peer should have started its next frame right
        after a verdict: its last bit was most likely eaten by a stray signal of the same
        kind that was pending here (standard signals merge). The peer is waiting for the
        answer to it; send FRAME_OVER now, unprompted, and answer its polls with RESEND, so
        that both sides restart the frame in step within ``stall_timeout`` instead of after
        the client's ``reply_timeout``. (Right after a GRANT the peer may be anywhere, even
        queued and polling, so there the server waits for it.) A peer that was only slow (not
        scheduled for ``stall_timeout``) finds our answer and the FRAME_OVER pending at once
        and reads them out of order; like any other lost or extra symbol, that ends in a
        check that fails (a garbled verdict, a header or CRC mismatch) and a resend."""
        self._decoder.reset()
        end = "too many failed frames" if self._frame_failed(session) else ""
        self._start_verdict(session, Verdict.RESEND, end=end)

    def peer_gone(self, pid: int, now: float) -> None:
        """The process ``pid`` exited: end its session or take it out of the queue."""
        self._notices.pop(pid, None)
        session = self.session
        if session is not None and session.pid == pid:
            self._end_session("delivered" if session.complete else "the client exited", now)
        elif pid in self.queue:
            self.queue.remove(pid)

    # -- transitions --------------------------------------------------------------------------

    def _request(self, pid: int, now: float) -> None:
        if self.closing:
            self._notify(pid, Verdict.GOING_AWAY)
        elif self.session is None:
            self._grant(pid, now)
        elif pid in self.queue:  # one place per PID: a flood of requests pushes nobody back
            self.outbox.append((pid, WAIT))
        elif len(self.queue) < self.max_queue:
            self.queue.append(pid)
            self.outbox.append((pid, WAIT))
        else:
            self._notify(pid, Verdict.BUSY)

    def _notify(self, pid: int, verdict: Verdict, *, granted: bool = False) -> None:
        """Owe ``pid`` a refusal: GRANT it (unless it is mid-frame already), then answer its
        next symbol with FRAME_OVER and its polls with the verdict."""
        if len(self._notices) >= self.max_queue:  # bounded: forget the oldest refusal
            del self._notices[next(iter(self._notices))]
        self._notices[pid] = [FRAME_OVER, *verdict_bits(verdict)]
        if not granted:
            self.outbox.append((pid, GRANT))

    def _notice_symbol(self, pid: int, symbol: int) -> None:
        replies = self._notices[pid]
        if symbol == REQUEST and len(replies) == 1 + VERDICT_BITS:  # no frame bit seen yet
            self.outbox.append((pid, GRANT))  # it asks again: the GRANT was lost
            return
        self.outbox.append((pid, replies.pop(0)))
        if not replies:
            del self._notices[pid]

    def _grant(self, pid: int, now: float) -> None:
        self.session = _Session(pid=pid, started=now, last_activity=now, last_progress=now)
        self._decoder.reset()
        self.state = ReceiverState.FRAME
        self.outbox.append((pid, GRANT))

    def _end_session(self, reason: str, now: float) -> None:
        session = self.session
        if session is not None:
            self.events.append(SessionEnded(session.pid, session.complete, reason))
        self.session = None
        self.state = ReceiverState.IDLE
        self._decoder.reset()
        if self.queue and not self.closing:
            self._grant(self.queue.popleft(), now)

    def _frame_symbol(self, session: _Session, symbol: int) -> None:
        decoder = self._decoder
        session.after_verdict = False
        if symbol == REQUEST and decoder.at_start:
            # Frames begin with a 0 bit, so a 1 here is a repeated request (its GRANT was
            # lost) or, once the message is complete, BYE. Both are answered with a 0.
            self.outbox.append((session.pid, GRANT))
            if session.complete:
                self._end_session("delivered", session.last_activity)
            return
        try:
            frame = decoder.feed(symbol)
        except OversizeError:
            self._start_verdict(
                session, Verdict.TOO_LARGE, end="the message was too large", detail=self.max_message
            )
            return
        except FrameError:  # a bad header or a failed CRC: ask for the whole frame again
            end = "too many failed frames" if self._frame_failed(session) else ""
            self._start_verdict(session, Verdict.RESEND, end=end)
            return
        if frame is None:
            self.outbox.append((session.pid, CONTINUE))
            return
        self._accept_frame(session, frame)

    def _frame_failed(self, session: _Session) -> bool:
        """Count a failed frame; True once the peer has failed too often in a row."""
        session.resends += 1
        session.bad_frames += 1
        return session.bad_frames >= MAX_BAD_FRAMES

    def _accept_frame(self, session: _Session, frame: Frame) -> None:
        session.bad_frames = 0  # a frame that passed its checks: the peer speaks the protocol
        session.last_progress = session.last_activity
        if frame.nonce in self._delivered:
            # A message already printed, repeated because the client never heard its final
            # ACK, perhaps in an earlier session: acknowledge again, print nothing.
            session.resends += 1
            session.complete = True
            self._start_verdict(session, Verdict.ACK)
            return
        if frame.seq != session.expected_seq and self._answered_out_of_step(session, frame):
            return
        if session.complete:  # a new sequence number after the last frame
            self._start_verdict(session, Verdict.OUT_OF_ORDER, end="frame after the last")
            return
        if session.frames == 0:
            session.message_length = frame.message_length
            session.nonce = frame.nonce
        received = len(session.buffer) + len(frame.payload)
        if (
            frame.nonce != session.nonce
            or frame.message_length != session.message_length
            or received > session.message_length
            or frame.last != (received == session.message_length)
        ):
            self._start_verdict(session, Verdict.OUT_OF_ORDER, end="inconsistent lengths")
            return
        try:
            frame.payload.decode("utf-8")
        except UnicodeDecodeError:
            self._start_verdict(session, Verdict.NOT_UTF8, end="a frame was not UTF-8")
            return
        session.buffer += frame.payload
        session.last_frame_size = len(frame.payload)
        session.frames += 1
        session.expected_seq = (session.expected_seq + 1) % SEQ_MODULUS
        if frame.last:
            session.complete = True
            self._delivered.append(frame.nonce)
            text = session.buffer.decode("utf-8")
            seconds = session.last_activity - session.started
            self.events.append(
                MessageReceived(
                    session.pid,
                    text,
                    len(session.buffer),
                    session.frames,
                    session.resends,
                    seconds,
                )
            )
            session.buffer = bytearray()
        self._start_verdict(session, Verdict.ACK)

    def _answered_out_of_step(self, session: _Session, frame: Frame) -> bool:
        """A frame with another sequence number than expected. Answer it and return True, or
        return False when it is to be taken in place of the last frame.

        No frame yet in this session: the client continues a message from a dropped
        session, RESTART. The last sequence number again: a plain repeat (its ACK was lost)
        is acknowledged; the same place cut shorter means the client heard RESEND for a
        repeat of a frame we had taken (a stray ate a bit of the repeat) and cut it again,
        and taking the new cut in place of the old one keeps both sides counting the same
        bytes. Anything else is out of order.
        """
        if not session.frames:
            session.resends += 1
            self._start_verdict(session, Verdict.RESTART)
            return True
        if frame.seq != (session.expected_seq - 1) % SEQ_MODULUS:
            self._start_verdict(session, Verdict.OUT_OF_ORDER, end="frames out of order")
            return True
        session.resends += 1
        start = len(session.buffer) - session.last_frame_size
        if frame.payload == session.buffer[start:] or frame.nonce != session.nonce:
            self._start_verdict(session, Verdict.ACK)
            return True
        del session.buffer[start:]
        session.frames -= 1
        session.expected_seq = frame.seq
        return False

    def _start_verdict(
        self, session: _Session, verdict: Verdict, end: str = "", detail: int | None = None
    ) -> None:
        session.pending_verdict = verdict_bits(verdict)
        if detail is not None:
            session.pending_verdict += detail_bits(detail)
        session.end_after_verdict = end
        self.state = ReceiverState.VERDICT
        self.outbox.append((session.pid, FRAME_OVER))

    def _verdict_symbol(self, session: _Session, symbol: int) -> None:
        bits = session.pending_verdict
        if not bits:
            raise LocalProtocolError("verdict state without a verdict")
        if symbol == REQUEST and not session.end_after_verdict:
            # Polls are 0s. A 1 is the client asking for the line again after a silence (a
            # poll or a verdict bit was lost): drop the verdict and let it resend the frame,
            # unchanged, so that a frame we already took is recognised as a repeat.
            session.pending_verdict = None
            self.state = ReceiverState.FRAME
            self.outbox.append((session.pid, GRANT))
            return
        self.outbox.append((session.pid, bits.pop(0)))
        if bits:
            return
        session.pending_verdict = None
        if session.end_after_verdict:
            self._end_session(session.end_after_verdict, session.last_activity)
        else:
            self.state = ReceiverState.FRAME
            session.after_verdict = not session.complete


# ---------------------------------------------------------------------------------------------
# Sender (client side)


class SenderState(Enum):
    IDLE = auto()  # not started
    REQUESTING = auto()  # REQUEST sent, awaiting GRANT or WAIT
    QUEUED = auto()  # told to wait; awaiting an unprompted GRANT
    SENDING = auto()  # a frame bit is outstanding
    VERDICT = auto()  # polling the verdict bits
    RESYNC = auto()  # confused: silent until the server has dropped the partial frame
    DONE = auto()  # every frame acknowledged, BYE sent
    FAILED = auto()  # gave up; ``error`` says why


class Sender:
    """The client's state machine: symbols and time in, symbols to send out.

    ``start(now)`` puts the first REQUEST in the outbox; feed every reply from the server to
    ``receive`` and call ``handle_timer`` when ``get_timer`` passes. The machine ends in DONE
    (``bytes_acked`` == the message size) or FAILED (``error`` is set).

    Frames are cut as they are sent, so their size can follow the link: each frame the server
    rejects (RESEND) is cut again at half the size, down to ``MIN_PAYLOAD``, and each frame
    acknowledged at its first try lets the next one grow back, up to ``max_payload``. Only a
    rejected frame is ever cut again: after silence the server may have accepted it, so it is
    sent again unchanged and the server can recognise the repeat.
    """

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
    ) -> None:
        if not MIN_PAYLOAD <= max_payload <= MAX_PAYLOAD:
            raise LocalProtocolError(f"max_payload must be within {MIN_PAYLOAD}..{MAX_PAYLOAD}")
        if not 0 < bit_timeout <= reply_timeout:
            raise LocalProtocolError("need 0 < bit_timeout <= reply_timeout")
        self.message = message
        self.nonce = nonce
        self.max_payload = max_payload
        self.payload_size = max_payload  # the current frame size limit, adapted to the link
        self.reply_timeout = reply_timeout
        self.bit_timeout = bit_timeout
        self.queue_poll = queue_poll
        self.max_attempts = max_attempts
        self.outbox: list[int] = []
        self.error: MinitalkError | None = None
        self.frame_index = 0  # frames acknowledged so far
        self.bytes_acked = 0
        self.attempts = 0  # tries of the current frame that failed (shrinking tries excluded)
        self._unanswered = 0  # requests in a row that got no answer at all
        self.resends = 0  # total frame resends, for the receipt
        self.deadline: float | None = None
        self._postponed_to = -1.0  # the deadline set by the last postponement, if any
        self._patience_end = 0.0  # how long the current wait may be postponed
        self.frame = next_frame(message, 0, 0, nonce, max_payload)
        self._bits = to_bits(encode_frame(self.frame))
        self._bit = 0
        self._verdict = 0
        self._verdict_count = 0
        self._verdict_need = VERDICT_BITS
        self._transitions: dict[SenderState, Callable[[int, float], None]] = {
            SenderState.REQUESTING: self._requesting_symbol,
            SenderState.QUEUED: self._queued_symbol,
            SenderState.SENDING: self._sending_symbol,
            SenderState.VERDICT: self._verdict_symbol,
            SenderState.RESYNC: _ignore,
            SenderState.DONE: _ignore,
            SenderState.FAILED: _ignore,
        }
        self._timers: dict[SenderState, Callable[[float], None]] = {
            SenderState.REQUESTING: self._request_timeout,
            SenderState.QUEUED: self._send_request,
            SenderState.SENDING: self._frame_timeout,
            SenderState.VERDICT: self._frame_timeout,
            SenderState.RESYNC: self._frame_timeout,
        }
        self.state = SenderState.IDLE

    @property
    def state(self) -> SenderState:
        return self._state

    @state.setter
    def state(self, state: SenderState) -> None:
        # The table is consulted here, on each change of state, not on every bit.
        self._state = state
        self._on_symbol = self._transitions.get(state, self._no_transition)

    def _no_transition(self, symbol: int, now: float) -> None:
        raise LocalProtocolError(f"no transition for a symbol in {self._state}")

    @property
    def awaiting_reply(self) -> bool:
        """True while the last symbol sent must be answered at once (not queued, resyncing
        or done)."""
        state = self._state
        return (
            state is SenderState.SENDING
            or state is SenderState.VERDICT
            or state is SenderState.REQUESTING
        )

    @property
    def finished(self) -> bool:
        return self._state is SenderState.DONE or self._state is SenderState.FAILED

    def start(self, now: float) -> None:
        """Ask the server for the line."""
        if self.state is not SenderState.IDLE:
            raise LocalProtocolError("start() called twice")
        self._send_request(now)

    def receive(self, symbol: int, now: float) -> None:
        """One signal arrived from the server: 0 for SIGUSR1, 1 for SIGUSR2."""
        self._on_symbol(symbol, now)

    def get_timer(self) -> float | None:
        """When the sender next needs ``handle_timer``, or None."""
        return self.deadline

    def handle_timer(
        self, now: float, *, server_busy: bool = False, server_stopped: bool = False
    ) -> None:
        """Apply the deadline if it has passed at ``now``.

        In session (a frame bit or a poll outstanding) the deadline is ``bit_timeout``. The
        I/O loop passes ``server_busy`` when it sees that the server has not yet taken our
        last signal: that silence is not a loss, so the machine waits on, in short steps, up
        to ``reply_timeout`` after the signal, before it asks again.

        It passes ``server_stopped`` when the server is stopped (SIGSTOP, Ctrl-Z): a stopped
        server answers once it runs again, so its silence costs no attempt and asks nothing
        again; the machine looks again every ``bit_timeout``, and once the server runs the
        usual patience starts afresh. Only the loop's overall timeout (``--timeout``) or the
        server's exit bound this wait.
        """
        deadline = self.deadline
        if deadline is None or now < deadline:
            return
        if server_stopped and self._state in _WAITS_FOR_AN_ANSWER:
            self.deadline = now + self.bit_timeout
            self._postponed_to = self.deadline
            self._patience_end = self.deadline + self.reply_timeout
            return
        if server_busy and (
            self._state is SenderState.SENDING or self._state is SenderState.VERDICT
        ):
            if deadline != self._postponed_to:  # the first expiry of this wait
                self._patience_end = deadline - self.bit_timeout + self.reply_timeout
            if now < self._patience_end:
                self.deadline = min(now + self.bit_timeout / 3, self._patience_end)
                self._postponed_to = self.deadline
                return
        handler = self._timers.get(self.state)
        if handler is None:
            raise LocalProtocolError(f"a deadline in {self.state}")
        handler(now)

    # -- transitions --------------------------------------------------------------------------

    def _send_request(self, now: float) -> None:
        self.state = SenderState.REQUESTING
        self.outbox.append(REQUEST)
        self.deadline = now + self.reply_timeout

    def _request_timeout(self, now: float) -> None:
        self._unanswered += 1
        if self._unanswered >= self.max_attempts:
            self._fail(
                NoAnswerError(
                    f"the server is running but did not answer: asked {self._unanswered} "
                    f"times, {self.reply_timeout:g} s apart"
                )
            )
        else:
            self._send_request(now)

    def _requesting_symbol(self, symbol: int, now: float) -> None:
        self._unanswered = 0
        if symbol == GRANT:
            self._start_frame(now)
        else:
            self.state = SenderState.QUEUED
            self.deadline = now + self.queue_poll

    def _queued_symbol(self, symbol: int, now: float) -> None:
        if symbol == GRANT:
            self._start_frame(now)
        # a 1 is a late WAIT: keep waiting

    def _start_frame(self, now: float) -> None:
        self.state = SenderState.SENDING
        self._bit = 0
        self.outbox.append(self._bits[0])
        self.deadline = now + self.bit_timeout

    def _sending_symbol(self, symbol: int, now: float) -> None:
        if symbol == CONTINUE:  # the per-bit path: keep it to a few operations
            bit = self._bit + 1
            self._bit = bit
            if bit < len(self._bits):
                self.outbox.append(self._bits[bit])
                self.deadline = now + self.bit_timeout
            else:
                self._resync(now)  # CONTINUE after the last bit: we are out of step
            return
        self.state = SenderState.VERDICT
        self._verdict = 0
        self._verdict_count = 0
        self._verdict_need = VERDICT_BITS
        self.outbox.append(POLL)
        self.deadline = now + self.bit_timeout

    def _verdict_symbol(self, symbol: int, now: float) -> None:
        self._verdict = (self._verdict << 1) | symbol
        count = self._verdict_count = self._verdict_count + 1
        if count == VERDICT_BITS and parse_verdict(self._verdict) is Verdict.TOO_LARGE:
            self._verdict_need = VERDICT_BITS + DETAIL_BITS  # the limit follows
        if count < self._verdict_need:
            self.outbox.append(POLL)
            self.deadline = now + self.bit_timeout
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
        elif verdict is Verdict.BUSY:
            self._fail(
                TryLaterError(
                    "the server's queue of waiting clients is full; try again later"
                )
            )
        elif verdict is Verdict.GOING_AWAY:
            self._fail(ServerGoneError("the server is shutting down; the message was not sent"))
        elif verdict is Verdict.TOO_LARGE:
            limit = parse_detail(self._verdict & ((1 << DETAIL_BITS) - 1))
            size = len(self.message)
            said = "" if limit is None else f"; the server accepts at most {limit} bytes"
            self._fail(RefusedError(f"the message is {size} bytes{said}"))
        else:
            reason = VERDICT_REASONS.get(verdict, f"verdict {verdict.name}")
            self._fail(RefusedError(f"the server refused the message: {reason}"))

    def _frame_acknowledged(self, now: float) -> None:
        frame = self.frame
        self.bytes_acked += len(frame.payload)
        self.frame_index += 1
        if self.attempts == 0:  # through at the first try: let the next frame be longer
            self.payload_size = min(self.payload_size * 2, self.max_payload)
        self.attempts = 0
        if frame.last:
            self.state = SenderState.DONE
            self.deadline = None
            self.outbox.append(BYE)
            return
        self._cut_frame()
        self._start_frame(now)

    def _cut_frame(self) -> None:
        """Cut the next unacknowledged frame at the current size."""
        self.frame = next_frame(
            self.message, self.bytes_acked, self.frame_index, self.nonce, self.payload_size
        )
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

    def _frame_timeout(self, now: float) -> None:
        self._retry(now, ask_first=True)

    def _retry(self, now: float, *, ask_first: bool) -> None:
        """Send the current frame again, whole; after silence, ask for the line first.

        After silence we cannot know whether the server still counts us as its peer (it
        may have ended the session, or taken a stray 1 for our BYE), so the retry starts
        with REQUEST: in session the server answers GRANT at once; otherwise it queues or
        grants us anew, and the frame's nonce keeps a repeat from being printed twice.
        """
        self.attempts += 1
        self.resends += 1
        if self.attempts >= self.max_attempts:
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
        # A new session began mid-message (the old one was dropped): start from frame 0.
        self.frame_index = 0
        self.bytes_acked = 0
        self._cut_frame()
        self._retry(now, ask_first=False)

    def _resync(self, now: float) -> None:
        # Say nothing for bit_timeout: the server abandons a partial frame after its shorter
        # stall_timeout, and any late reply still in flight arrives and is ignored.
        self.state = SenderState.RESYNC
        self.deadline = now + self.bit_timeout

    def _fail(self, error: MinitalkError) -> None:
        self.state = SenderState.FAILED
        self.error = error
        self.deadline = None


# The states in which the sender waits for an answer to its last symbol.
_WAITS_FOR_AN_ANSWER = frozenset(
    {SenderState.REQUESTING, SenderState.SENDING, SenderState.VERDICT}
)


def _ignore(symbol: int, now: float) -> None:
    """Symbols that arrive while a machine is not listening change nothing."""
