"""The classic protocol that plain minitalks speak, as pure code: a codec and two machines.

A plain minitalk (the exercise's C client and server) sends each byte of the text as 8 signals,
with no frame, no check and no sequence number, and ends the message with a NUL byte. About
half of them send a length prefix first; some send bits least significant first, or use
SIGUSR2 for 0 (docs/classic.md, from 40 public implementations). ``ClassicFormat``
(``classic_format``) says which variant is spoken and turns text into symbols.
``ClassicReceiver`` assembles the bytes of each sender apart, by the PID the kernel stamped on
its signals, and owes answers; its ``AnswerSchedule`` (``classic_answers``) says when each
goes, and with ``detect`` a ``VariantFinder`` (``classic_detect``) reads each sender in every
variant at once. ``ClassicSender`` sends one message and decides how to pace it: by the
server's answers when it gives them, else by a fixed delay. It never sends a bit twice: a
plain server has no way to tell a repeat from the next bit.

Sans-I/O like ``protocol``: a symbol is a signal (0 = SIGUSR1, 1 = SIGUSR2, as everywhere in
minitalk); time is an argument; the driver pulls answers (``replies()``) and events
(``next_event()``). Each sender's timing is recorded so that ``describe`` can explain what
crossed the line (``--trace``).
"""

from __future__ import annotations

import statistics
from array import array
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from minitalk.classic_answers import AnswerSchedule
from minitalk.classic_detect import VariantFinder, pinning_flags
from minitalk.classic_format import Ack, ClassicFormat, EndAt, bits_of, value_of
from minitalk.classic_limits import (
    CLASSIC_RUN,
    DEFAULT_DELAY,
    DEFAULT_MAX_MESSAGE,
    END_WAIT,
    IDLE_TIMEOUT,
    MAX_GAPS,
    MAX_TRACE_BYTES,
    PROBE_WAIT,
    REPLY_TIMEOUT,
    SIGNAL_NAMES,
)
from minitalk.errors import LocalProtocolError, NoAnswerError

__all__ = [  # with the variants (classic_format) and the finder (classic_detect) it builds on
    "Ack",
    "ClassicEvent",
    "ClassicFormat",
    "ClassicMessage",
    "ClassicReceiver",
    "ClassicRun",
    "ClassicSender",
    "ClassicSenderState",
    "EndAt",
    "SenderDropped",
    "SenderRecord",
    "VariantFinder",
    "describe",
    "describe_send",
    "gap_summary",
    "pinning_flags",
]

_PLAIN = ClassicFormat()  # the exercise's own variant

# ---------------------------------------------------------------------------------------------
# Receiving: one assembly per sender


@dataclass(slots=True)
class SenderRecord:
    """What one sender has sent so far: its bits, bytes and their timing."""

    pid: int
    started: float
    last: float
    signals: int = 0
    answered: int = 0
    unanswered: int = 0  # answers owed that the server could not safely send
    answered_late: int = 0  # of the answered: refused first, sent once it handled the signal
    answered_in_runs: int = 0  # of the answered: by a tight loop (ClassicReceiver.bulk)
    finder: VariantFinder | None = None  # --detect: every reading of its signals at once
    detected: ClassicFormat | None = None  # --detect: the variant its message was read in
    end_signal: str = ""  # the end-of-message signal: "sent", or why it was not
    unanswered_why: str = ""  # the last reason one could not be sent
    pending_bits: list[int] = field(default_factory=list)
    length: int | None = None  # from the prefix, once read
    data: bytearray = field(default_factory=bytearray)
    # Refused (over --max-bytes): why; the rest of its message is counted, not kept (only
    # the bytes that may still end it), so that none of it is taken for a message of its own.
    refused: str = ""
    skipped: int = 0  # bytes of a refused message counted and let go

    @property
    def received(self) -> int:
        """Bytes of the current message received (kept or, once refused, let go)."""
        return self.skipped + len(self.data)

    # Seconds between consecutive signals (the first MAX_GAPS), the longest gap before each
    # byte's bits, and the bits of the first MAX_TRACE_BYTES bytes as they arrived.
    gaps: array[float] = field(default_factory=lambda: array("d"))
    byte_gaps: array[float] = field(default_factory=lambda: array("d"))
    byte_bits: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ClassicMessage:
    """A whole message from one sender; ``text`` is its UTF-8, with bad bytes shown as U+FFFD."""

    pid: int
    data: bytes
    seconds: float
    record: SenderRecord

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def utf8_error(self) -> int | None:
        """The offset of the first byte that breaks UTF-8, or None if the text is valid."""
        try:
            self.data.decode("utf-8")
        except UnicodeDecodeError as error:
            return error.start
        return None


@dataclass(frozen=True, slots=True)
class SenderDropped:
    """A sender went silent mid-message (or broke a limit); its partial message is dropped."""

    pid: int
    reason: str
    record: SenderRecord


ClassicEvent = ClassicMessage | SenderDropped


@dataclass(frozen=True, slots=True)
class ClassicRun:
    """Bits of one sender that a tight loop may take and answer itself (``ClassicReceiver.bulk``):
    up to ``count``, each answered with ``answer`` once the driver's check allows it, but a bit
    that completes a byte of eight ``zero`` symbols (a NUL: the message's end), taken and left
    unanswered. ``in_byte``: symbols of the current byte already in; ``has_one``: one of them
    was not ``zero``."""

    pid: int
    count: int
    answer: int
    zero: int
    in_byte: int
    has_one: bool


class ClassicReceiver:
    """Assembles the plain protocol, one sender apart from another: (pid, symbol, now) in;
    answers (pid, symbol) and events out.

    Senders are told apart by the PID the kernel stamped on each signal (the transport hands
    over nothing else), so two clients sending at once never mix; their *signals* can still
    merge (two SIGUSR1 pending at once are one). When each owed answer goes is its
    ``AnswerSchedule``'s business: one at a time, a finished message's held until the driver
    says ``message_written`` (so none tells a client its message arrived before it is
    printed). A sender silent for ``idle_timeout`` mid-message is dropped; with no terminator
    and no length prefix that silence ends its message. The driver checks before each answer
    that the process handles that signal and reports ``answered`` or ``not_answered``.
    """

    def __init__(
        self,
        fmt: ClassicFormat = _PLAIN,
        *,
        ack: Ack = Ack.BIT,
        ack_symbol: int = 0,
        end_symbol: int | None = None,
        end_at: EndAt = EndAt.INSTEAD,
        answer_delay: float = 0.0,
        idle_timeout: float = IDLE_TIMEOUT,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_senders: int = 64,
        detect: bool = False,
    ) -> None:
        _check_receiver(fmt, ack, ack_symbol, end_symbol, answer_delay, idle_timeout, detect)
        self.fmt = fmt
        self.detect = detect
        self.ack = ack
        self.ack_symbol = ack_symbol
        self.end_symbol = end_symbol
        self.end_at = end_at
        self.answer_delay = answer_delay
        self.idle_timeout = idle_timeout
        self.max_message = max_message
        self.max_senders = max_senders
        self.senders: dict[int, SenderRecord] = {}
        self._events: deque[ClassicEvent] = deque()
        self.answers = AnswerSchedule(
            self.senders,
            ack=ack,
            ack_symbol=ack_symbol,
            end_symbol=end_symbol,
            end_at=end_at,
            answer_delay=answer_delay,
        )

    def receive(self, pid: int, symbol: int, now: float) -> None:
        """One signal from ``pid``: symbol 0 for SIGUSR1, 1 for SIGUSR2."""
        if symbol not in (0, 1):
            raise LocalProtocolError(f"a symbol is 0 or 1, not {symbol!r}")
        record = self.senders.get(pid)
        if record is None:
            if len(self.senders) >= self.max_senders:  # bounded: forget the quietest
                quiet = min(self.senders.values(), key=lambda sender: sender.last)
                self._drop(quiet, "too many senders at once; the quietest was dropped")
            record = self.senders[pid] = SenderRecord(pid=pid, started=now, last=now)
        elif len(record.gaps) < MAX_GAPS:
            record.gaps.append(now - record.last)
        record.last = now
        record.signals += 1
        record.pending_bits.append(symbol ^ self.fmt.zero_symbol)
        self.answers.bit_from(record, now)
        self._assemble(record, now)
        self.answers.release(now)

    def bulk(self) -> ClassicRun | None:
        """A run a tight loop may take (one sender mid-message, its last bit answered and
        nothing else owed: ``AnswerSchedule.quiet_for``; ``Ack.BIT``, no delay, a known
        NUL-terminated variant: each of its answers is the one this machine would give)."""
        fmt = self.fmt
        if self.ack is not Ack.BIT or self.answer_delay or self.detect or len(self.senders) != 1:
            return None
        record = next(iter(self.senders.values()))
        if fmt.length_bits or fmt.terminator != b"\0" or not self.answers.quiet_for(record.pid):
            return None
        bits = record.pending_bits
        return ClassicRun(
            record.pid, CLASSIC_RUN, self.ack_symbol, fmt.zero_symbol, len(bits), any(bits)
        )

    def bulk_received(
        self, run: ClassicRun, symbols: list[int], times: list[float], answered: int
    ) -> None:
        """What a tight loop took for ``run``: ``symbols`` at ``times``, the first
        ``answered`` answered by it (all, or all but the last: its answer is owed as usual)."""
        record = self.senders.get(run.pid)
        if record is None or len(times) != len(symbols) or not 0 <= len(symbols) - answered <= 1:
            raise LocalProtocolError(f"a run of {len(symbols)} bits, {answered} answered")
        if not set(symbols) <= {0, 1} or len(symbols) > run.count:
            raise LocalProtocolError("a run's symbols are 0 or 1, at most its count")
        self.answers.ran(record, answered, times[answered - 1] if answered else record.last)
        bits, zero = record.pending_bits, self.fmt.zero_symbol
        for symbol, when in zip(symbols[:answered], times, strict=False):
            if len(record.gaps) < MAX_GAPS:
                record.gaps.append(when - record.last)
            record.last = when
            record.signals += 1
            bits.append(symbol ^ zero)
            if len(bits) == 8:
                if not any(bits):
                    raise LocalProtocolError("a run answered the bit that ended a message")
                self._assemble(record, when)
        for symbol, when in zip(symbols[answered:], times[answered:], strict=True):
            self.receive(run.pid, symbol, when)

    def replies(self) -> list[tuple[int, int]]:
        """The (PID, symbol) answers to send now, in order (drained)."""
        replies, self.answers.outbox = self.answers.outbox, []
        return replies

    def next_event(self) -> ClassicEvent | None:
        return self._events.popleft() if self._events else None

    def message_written(self, pid: int, now: float) -> None:
        """The message of ``pid``'s last ``ClassicMessage`` is printed: its answers may go."""
        self.answers.written(pid, now)

    def _assemble(self, record: SenderRecord, now: float) -> None:
        if self.detect:
            self._find_variant(record, now)
            return
        fmt = self.fmt
        if fmt.length_bits and record.length is None:
            if len(record.pending_bits) == fmt.length_bits:
                record.length = value_of(record.pending_bits, msb_first=fmt.prefix_msb_first)
                record.pending_bits.clear()
                counted = len(fmt.terminator) if fmt.length_counts_terminator else 0
                if record.length - counted > self.max_message:
                    self._refuse(
                        record,
                        f"its length prefix announces {record.length} bytes, over the limit "
                        f"of {self.max_message} bytes",
                    )
                if self._complete(record):
                    self._finish(record, now)
            return
        if len(record.pending_bits) < 8:
            return
        bits = record.pending_bits
        record.data.append(value_of(bits, msb_first=fmt.msb_first))
        if len(record.byte_bits) < MAX_TRACE_BYTES:
            record.byte_bits.append("".join(map(str, bits)))
        record.byte_gaps.append(max(record.gaps[-8:], default=0.0))
        bits.clear()
        if self._complete(record):
            self._finish(record, now)
        elif record.refused:
            self._let_go(record)
        elif len(record.data) > self.max_message + len(fmt.terminator):
            self._refuse(record, f"its message passed the limit of {self.max_message} bytes")

    def end_held(self, now: float) -> None:
        """On the way out: deliver what --detect held (see ``VariantFinder.held``)."""
        for record in list(self.senders.values()):
            held = record.finder.at_silence() if record.finder and record.finder.held else None
            if held is not None:
                self._deliver_found(record, held, now, by_bit=False)

    def _find_variant(self, record: SenderRecord, now: float) -> None:
        """--detect: the symbol just received (raw: the mapping is found too) goes to the
        sender's ``VariantFinder``; a reading that ends a valid message here delivers it."""
        if record.refused:  # the rest of a refused message: its end is unknown, silence ends it
            record.pending_bits.clear()
            return
        finder = record.finder
        if finder is None:
            finder = record.finder = VariantFinder(self.max_message)
        found = finder.add(record.pending_bits.pop())
        if found is not None:
            self._deliver_found(record, found, now, by_bit=not finder.leftover)
        elif finder.too_long:
            self._refuse(
                record, f"no variant ended a message within the limit of {self.max_message} bytes"
            )
            record.finder = None

    def _deliver_found(
        self, record: SenderRecord, found: tuple[ClassicFormat, bytes], now: float, *, by_bit: bool
    ) -> None:
        fmt, data = found
        record.detected = fmt
        record.data = bytearray(data)
        symbols = record.finder.symbols if record.finder is not None else []
        start = fmt.length_bits
        for index in range(min(len(data), MAX_TRACE_BYTES)):
            bits = symbols[start + 8 * index : start + 8 * index + 8]
            record.byte_bits.append("".join(str(s ^ fmt.zero_symbol) for s in bits))
        if fmt.length_bits:
            record.length = len(data) + (1 if fmt.length_counts_terminator else 0)
        leftover = record.finder.leftover if record.finder is not None else []
        record.finder = None
        self._finish(record, now, by_bit=by_bit)
        if leftover:  # the first signals of its next message
            nextone = self.senders[record.pid] = SenderRecord(record.pid, now, now)
            for symbol in leftover:
                nextone.signals += 1
                nextone.pending_bits.append(symbol)
                self._find_variant(nextone, now)

    def _complete(self, record: SenderRecord) -> bool:
        fmt = self.fmt
        if fmt.length_bits and record.length is not None:
            expected = record.length
            if fmt.terminator and not fmt.length_counts_terminator:
                expected += len(fmt.terminator)
            return record.received >= expected
        return bool(fmt.terminator) and record.data.endswith(fmt.terminator)

    def _refuse(self, record: SenderRecord, reason: str) -> None:
        """The message is over the limit: say so now, and swallow the rest of it (its bits
        are answered as usual, so a client that waits for each answer still gets to its
        end), printing nothing of it."""
        record.refused = reason
        self._events.append(SenderDropped(record.pid, f"{reason}; none of it is printed", record))
        self._let_go(record)

    def _let_go(self, record: SenderRecord) -> None:
        keep = len(self.fmt.terminator)  # what may still be the start of the terminator
        extra = len(record.data) - keep
        if extra > 0:
            del record.data[:extra]
            record.skipped += extra

    def _finish(self, record: SenderRecord, now: float, *, by_bit: bool = True) -> None:
        """``record``'s message is complete: by the bit just received (its answer is the
        last owed), or by its silence (``by_bit`` False)."""
        if record.refused:  # the end of a refused message: nothing of it is printed
            del self.senders[record.pid]
            return
        data = bytes(record.data)
        terminator = b"" if record.detected is not None else self.fmt.terminator
        if terminator and data.endswith(terminator):
            data = data[: -len(terminator)]
        del self.senders[record.pid]
        self._events.append(ClassicMessage(record.pid, data, now - record.started, record))
        self.answers.message_ended(record, now, by_bit=by_bit)

    def _drop(self, record: SenderRecord, reason: str) -> None:
        del self.senders[record.pid]
        self._events.append(SenderDropped(record.pid, reason, record))

    def answered(self, pid: int) -> None:
        """The driver sent an answer owed to ``pid`` (the oldest one handed out by
        ``replies``: the driver reports them in order); noted for the trace."""
        self.answers.answered(pid)

    def not_answered(
        self, pid: int, now: float, why: str = "", *, may_change: bool = False
    ) -> None:
        """The driver could not safely send an answer owed to ``pid`` (``why``): see
        ``AnswerSchedule.not_answered`` (``may_change``: tried again while it is silent)."""
        self.answers.not_answered(pid, now, why, may_change=may_change)

    @property
    def owing(self) -> bool:
        """True while any answer is still owed (an answer delay may hold the last ones)."""
        return self.answers.owing

    def owes(self, pid: int) -> bool:
        """True while an answer to ``pid`` is still owed (it may not be sent yet)."""
        return self.answers.owes(pid)

    def looks_at(self) -> tuple[int, int] | None:
        """See ``AnswerSchedule.looks_at``."""
        return self.answers.looks_at()

    def get_timer(self) -> float | None:
        """The next deadline: the answer schedule's (``AnswerSchedule.deadlines``), or the
        quietest sender's silence passing ``idle_timeout``; None with neither."""
        deadlines = [record.last + self.idle_timeout for record in self.senders.values()]
        deadlines.extend(self.answers.deadlines())
        return min(deadlines, default=None)

    def handle_timer(self, now: float, *, still_pending: bool = False) -> None:
        """The answer schedule's deadlines (``still_pending``: the driver's look, see
        ``looks_at``); then every sender silent for ``idle_timeout`` ends: with no terminator
        and no length prefix that silence ends its message, otherwise its partial message is
        dropped."""
        self.answers.on_timer(now, still_pending=still_pending)
        self._end_silent(now)
        self.answers.release(now)

    def _end_silent(self, now: float) -> None:
        for record in list(self.senders.values()):
            if now < record.last + self.idle_timeout:  # the very sum get_timer gives
                continue
            fmt = self.fmt
            found = record.finder.at_silence() if record.finder is not None else None
            if found is not None:
                self._deliver_found(record, found, now, by_bit=False)
            elif self.detect and not record.refused:
                self._drop(record, _why_no_variant(record, self.idle_timeout))
            elif record.refused or (not fmt.terminator and not fmt.length_bits and record.data):
                self._finish(record, now, by_bit=False)  # ended (a refused one: in silence)
            else:
                self._drop(record, _why_silent(record, fmt, self.idle_timeout))


def _check_receiver(
    fmt: ClassicFormat,
    ack: Ack,
    ack_symbol: int,
    end_symbol: int | None,
    answer_delay: float,
    idle_timeout: float,
    detect: bool,
) -> None:
    """Raise ``LocalProtocolError`` for settings a ``ClassicReceiver`` cannot keep."""
    if idle_timeout <= 0:
        raise LocalProtocolError("idle_timeout must be positive")
    if answer_delay < 0:
        raise LocalProtocolError("answer_delay must not be negative")
    if ack_symbol not in (0, 1) or end_symbol not in (None, 0, 1):
        raise LocalProtocolError("an answer is 0 (SIGUSR1) or 1 (SIGUSR2)")
    if end_symbol is not None and ack is Ack.NONE:
        raise LocalProtocolError("an end signal is an answer: not with Ack.NONE")
    if detect and fmt != _PLAIN:
        raise LocalProtocolError("detect finds the variant: no format with it")


def _why_no_variant(record: SenderRecord, idle_timeout: float) -> str:
    silent = f"silent for {idle_timeout:g} s after {record.signals} signals"
    return (
        f"{silent}: no variant reads them as a whole message of valid UTF-8 (a signal "
        "lost or merged, a message cut short, or a variant --detect does not know: a "
        "newline terminator, a handshake)"
    )


def _why_silent(record: SenderRecord, fmt: ClassicFormat, idle_timeout: float) -> str:
    bits = len(record.pending_bits)
    where = f"{len(record.data)} bytes and {bits} bits"
    if fmt.length_bits and record.length is None:
        where = f"{bits} bits of its {fmt.length_bits}-bit length prefix"
    elif fmt.length_bits and record.length is not None:
        body = record.length + (0 if fmt.length_counts_terminator else len(fmt.terminator))
        announced = fmt.length_bits + 8 * body
        where += (
            f"; {announced - record.signals} signals short of the {announced} its length "
            f"prefix ({record.length}) announces"
        )
    ending = "no NUL arrived" if fmt.terminator == b"\0" else "the message never ended"
    silent = f"silent for {idle_timeout:g} s after {record.signals} signals"
    return f"{silent} ({where}): {ending}"


# ---------------------------------------------------------------------------------------------
# Sending: one message, paced by answers or by a delay


class ClassicSenderState(Enum):
    PROBING = "first bit sent; an answer within probe_wait means paced by answers"
    PACED = "each bit waits for the server's answer to the one before"
    GAP = "answered: the next bit waits answer_gap first, as some servers need"
    TIMED = "bits go out a fixed delay apart"
    ENDING = "all sent; waiting briefly for an end-of-message signal"
    DONE = "sent"
    FAILED = "gave up"


class ClassicSender:
    """Sends ``symbols`` to a plain server: symbols and time in, symbols out.

    After the first bit it waits ``probe_wait``: any signal from the server within that time
    means the server answers each bit, and from then on every signal from it lets the next bit
    go. Otherwise bits go out ``delay`` apart. A paced send whose answer does not come within
    ``reply_timeout`` fails; nothing is ever sent twice (a plain server would take a repeat for
    the next bit). With ``answer_gap`` a paced send waits that long after each answer before
    the next bit (a server still busy after its answer, as its own client never shows it). After
    the last bit it waits ``end_wait`` for an end signal, which it counts but does not require.
    """

    def __init__(
        self,
        symbols: list[int],
        *,
        delay: float = DEFAULT_DELAY,
        probe_wait: float = PROBE_WAIT,
        reply_timeout: float = REPLY_TIMEOUT,
        end_wait: float = END_WAIT,
        answer_gap: float = 0.0,
    ) -> None:
        if min(delay, probe_wait, end_wait, answer_gap) < 0 or reply_timeout <= 0:
            raise LocalProtocolError("delays must not be negative, reply_timeout positive")
        self.answer_gap = answer_gap
        self.symbols = symbols
        self.delay = delay
        self.probe_wait = probe_wait
        self.reply_timeout = reply_timeout
        self.end_wait = end_wait
        self.outbox: list[int] = []
        self.sent = 0
        self.answers = 0  # signals from the server, whatever they meant
        self.answer_kinds = [0, 0]  # the answers that let a bit go, by signal
        self.last_answer: int | None = None  # the signal that answered the last bit
        self.after_last: list[int] = []  # signals after the last bit's answer (an end signal)
        self.round_trips: list[float] = []  # paced: from each bit to its answer
        self.error: NoAnswerError | None = None
        self.state = ClassicSenderState.DONE
        self._deadline: float | None = None
        self._sent_at = 0.0
        self._held_since: float | None = None  # timed: when the server began holding ours

    @property
    def finished(self) -> bool:
        return self.state in (ClassicSenderState.DONE, ClassicSenderState.FAILED)

    @property
    def next_symbol(self) -> int | None:
        """The symbol to go out next, if any (its signal must not be pending at the server)."""
        return self.symbols[self.sent] if self.sent < len(self.symbols) else None

    @property
    def paced(self) -> bool:
        """True once the server has shown it answers each bit."""
        return bool(self.round_trips) or self.state is ClassicSenderState.PACED

    def start(self, now: float) -> None:
        if not self.symbols:
            self.state = ClassicSenderState.DONE
            return
        self._send_next(now)
        self.state = ClassicSenderState.PROBING
        self._deadline = now + self.probe_wait

    def get_timer(self) -> float | None:
        return None if self.finished else self._deadline

    def receive(self, now: float, symbol: int | None = None) -> None:
        """A signal from the server, ``symbol`` saying which if known: whichever it is, it
        answers the bit in flight (plain servers differ), and is noted for the trace. One
        after the last bit's answer is an end-of-message signal: counted, never an error."""
        self.answers += 1
        state = self.state
        if state in (ClassicSenderState.PROBING, ClassicSenderState.PACED):
            self.round_trips.append(now - self._sent_at)
            if symbol is not None:
                self.answer_kinds[symbol] += 1
            self.state = ClassicSenderState.PACED
            if self.sent >= len(self.symbols):
                self.last_answer = symbol
                self._end(now)
            elif self.answer_gap > 0:
                self.state = ClassicSenderState.GAP
                self._deadline = now + self.answer_gap
            else:
                self._send_next(now)
                self._deadline = now + self.reply_timeout
        elif symbol is not None and self.sent >= len(self.symbols):
            self.after_last.append(symbol)  # TIMED or ENDING: at the end of the message
        # GAP, or TIMED mid-message: late or stray; counted only.

    def handle_timer(
        self, now: float, *, server_holding: bool = False, server_stopped: bool = False
    ) -> None:
        """The deadline passed. ``server_holding``: a signal of ours is still pending at the
        server (it is stopped, or has not run since): the next one would merge into it if of
        the same kind, and could be taken before it if not (the kernel hands out the lower
        signal first), so a send paced by the delay waits instead, up to ``reply_timeout``.
        ``server_stopped``: it is stopped (said if the send gives up)."""
        if self._deadline is None or now < self._deadline:
            return
        state = self.state
        if state in (ClassicSenderState.PROBING, ClassicSenderState.TIMED):
            if server_holding and self.sent < len(self.symbols):
                self._held_since = self._held_since if self._held_since is not None else now
                if now - self._held_since >= self.reply_timeout:
                    self.state = ClassicSenderState.FAILED
                    why = (
                        "it is stopped"
                        if server_stopped
                        else "it runs but leaves it pending: it blocks that signal, or is stuck "
                        "in its own handler"
                    )
                    self.error = NoAnswerError(
                        f"the server has not taken signal {self.sent} of {len(self.symbols)} "
                        f"for {self.reply_timeout:g} s ({why}); the next would merge into it "
                        "and be lost"
                    )
                    return
                self._deadline = now + max(self.delay, 0.0001)
                return
            self._held_since = None
            if self.sent < len(self.symbols):
                self.state = ClassicSenderState.TIMED
                self._send_next(now)
                self._deadline = now + self.delay
            else:
                self._end(now)
        elif state is ClassicSenderState.GAP:
            self.state = ClassicSenderState.PACED
            self._send_next(now)
            self._deadline = now + self.reply_timeout
        elif state is ClassicSenderState.PACED:
            self.state = ClassicSenderState.FAILED
            self.error = NoAnswerError(
                f"the server stopped answering after signal {self.sent} of "
                f"{len(self.symbols)} (waited {self.reply_timeout:g} s; a bit is never "
                "sent twice)"
            )
        elif state is ClassicSenderState.ENDING:
            self.state = ClassicSenderState.DONE
            self._deadline = None

    def _send_next(self, now: float) -> None:
        self.outbox.append(self.symbols[self.sent])
        self.sent += 1
        self._sent_at = now

    def _end(self, now: float) -> None:
        self.state = ClassicSenderState.ENDING
        self._deadline = now + self.end_wait


# ---------------------------------------------------------------------------------------------
# Explaining what crossed the line (--trace)


def _show(value: int) -> str:
    """A byte as hex, and as its character when it is printable ASCII."""
    return f"0x{value:02x} {chr(value)!r}" if 32 <= value < 127 else f"0x{value:02x}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def gap_summary(gaps: array[float] | list[float]) -> str:
    """Smallest, median and largest gap, in words."""
    if not gaps:
        return "no gaps (one signal)"
    return (
        f"gaps smallest {_ms(min(gaps))}, median {_ms(statistics.median(gaps))}, "
        f"largest {_ms(max(gaps))}"
    )


def describe(event: ClassicEvent, fmt: ClassicFormat, ack: Ack) -> list[str]:
    """The trace of one sender's message (or of what it left unfinished), line by line."""
    record = event.record
    head = f"PID {record.pid}:"
    lines: list[str] = []
    if record.length is not None:
        lines.append(f"{head} length prefix says {record.length} bytes")
    for index, (bits, value) in enumerate(
        zip(record.byte_bits[:MAX_TRACE_BYTES], record.data[:MAX_TRACE_BYTES], strict=False)
    ):
        lines.append(f"{head} byte {index}: bits {bits} = {_show(value)}")
    if len(record.data) > MAX_TRACE_BYTES:
        lines.append(f"{head} ... {len(record.data) - MAX_TRACE_BYTES} more bytes")
    lines.append(f"{head} {record.signals} signals, {gap_summary(record.gaps)}")
    if ack is not Ack.NONE:
        owed = record.answered + record.unanswered
        why = f": {record.unanswered_why}" if record.unanswered_why else ""
        missing = f", {record.unanswered} not sent (unsafe{why})" if record.unanswered else ""
        late = (
            f" ({record.answered_late} late: tried again once it handled the signal)"
            if record.answered_late
            else ""
        )
        runs = f"; {record.answered_in_runs} in a tight loop" if record.answered_in_runs else ""
        lines.append(f"{head} answers sent {record.answered} of {owed}{late}{missing}{runs}")
    if record.end_signal:
        lines.append(f"{head} {record.end_signal}")
    if isinstance(event, SenderDropped):
        lines.append(f"{head} dropped: {event.reason}")
        return lines
    bad = event.utf8_error
    if bad is not None:
        lines.append(f"{head} {_utf8_break(record, bad)}")
    size = f"{event.size} byte" + ("" if event.size == 1 else "s")
    spoken = record.detected or fmt
    lines.append(f"{head} complete: {size} in {event.seconds:.3f} s ({spoken.describe()})")
    if record.detected is not None:
        lines.append(
            f"{head} detected: {spoken.describe()}; the flags that pin it: " + pinning_flags(spoken)
        )
    return lines


def _utf8_break(record: SenderRecord, offset: int) -> str:
    byte = record.data[offset]
    where = f"byte {offset} (0x{byte:02x}) breaks UTF-8"
    if offset >= len(record.byte_gaps) or len(record.gaps) < 2:
        return where
    # The sequence that starts at ``offset`` is broken by it or by the byte after it.
    gap, median = max(record.byte_gaps[offset : offset + 2]), statistics.median(record.gaps)
    if gap > 5 * median:
        return (
            f"{where} right after a gap of {_ms(gap)} (median {_ms(median)}): a signal was "
            "probably lost or merged there, and every byte after it is shifted"
        )
    if offset >= _DECODED_RIGHT:
        # So many bytes decoded as UTF-8 before it: if they read as what was sent, the variant
        # is right and a signal went missing; a wrong bit order can decode for a while, too.
        return (
            f"{where} after {offset} bytes that decoded as UTF-8, with no unusual gap (largest "
            f"{_ms(gap)}): if they are what was sent, a signal was lost or merged there (two "
            "of one kind pending at once are one) and every byte after it is shifted; if not, "
            "check the bit order and signals"
        )
    return f"{where} with no unusual gap (largest {_ms(gap)}): check the bit order and signals"


# A break this far into the text may be a lost signal rather than the wrong variant.
_DECODED_RIGHT = 16


def describe_send(sender: ClassicSender, fmt: ClassicFormat, data: bytes) -> list[str]:
    """The trace of one classic send: what went out, how it was paced, what came back."""
    lines = [f"sending {len(data)} bytes as {len(sender.symbols)} signals ({fmt.describe()})"]
    wire = data + fmt.terminator
    for index, value in enumerate(wire[:MAX_TRACE_BYTES]):
        bits = "".join(map(str, bits_of(value, 8, msb_first=fmt.msb_first)))
        lines.append(f"byte {index}: bits {bits} = {_show(value)}")
    if len(wire) > MAX_TRACE_BYTES:
        lines.append(f"... {len(wire) - MAX_TRACE_BYTES} more bytes")
    lines.append(f"signals sent {sender.sent} of {len(sender.symbols)}")
    if sender.paced:
        lines.append(
            f"paced by the server's answers: {sender.answers} received; round trips "
            + gap_summary(sender.round_trips).removeprefix("gaps ")
        )
    else:
        lines.append(
            f"paced by a delay of {sender.delay * 1e6:.0f} µs (no answer within "
            f"{_ms(sender.probe_wait)} of the first bit); {sender.answers} answers received"
            + (" (an end-of-message signal)" if sender.answers == 1 else "")
        )
    ending = _end_signal(sender)
    if ending:
        lines.append(ending)
    if sender.error is not None:
        lines.append(f"stopped: {sender.error}")
    return lines


def _end_signal(sender: ClassicSender) -> str:
    """What the server sent to end the message, by where it came among its answers."""
    after = ", ".join(SIGNAL_NAMES[symbol] for symbol in sender.after_last)
    if not sender.paced:
        return f"at the end: {after} (an end-of-message signal)" if after else ""
    kinds = sender.answer_kinds
    usual = 0 if kinds[0] >= kinds[1] else 1
    last = sender.last_answer
    if last is None:
        return ""
    if last != usual and kinds[last] == 1:  # the last bit's answer was not the usual one
        if not sender.after_last:
            return f"end signal: {SIGNAL_NAMES[last]} in place of the last bit's answer"
        return (
            f"end signal: {SIGNAL_NAMES[last]} just before the last bit's answer ({after} after it)"
        )
    if sender.after_last:
        same = " again" if sender.after_last[0] == last else ""
        return f"end signal: {after}{same} after the last bit's answer"
    return ""
