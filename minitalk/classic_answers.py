"""When a classic server's answers go: owed, held, released, retried, spaced. Pure.

``classic.ClassicReceiver`` assembles what senders send and owes answers; this schedule decides
when each may go. A client that waits for each answer sends its next bit at once, so answers
are released one at a time: the next goes only once the sender answered last has sent its
next bit (or ``ANSWER_HOLD`` passed, for one that does not wait), so at most one waiting
client has a bit on its way and two cannot merge. A finished message's answers are held until
it is written (no answer tells a client its message arrived before it is printed); an answer
delay holds each a while; an end signal goes in place of, before or after the last bit's
answer, and one of the answers' own kind only once the client took the one before it (the
driver looks, ``looks_at``). The driver reports each answer sent or not (``answered``,
``not_answered``); one refused because the client does not handle the signal *yet* is tried
again while the client stays silent. Each answer is counted on the message it answers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from minitalk.classic_format import Ack, EndAt
from minitalk.classic_limits import (
    ANSWER_HOLD,
    ANSWER_RETRY,
    ANSWER_RETRY_FOR,
    SIGNAL_NAMES,
    SPACED_LOOK,
    SPACED_WAIT,
)

if TYPE_CHECKING:
    from minitalk.classic import SenderRecord


@dataclass(frozen=True, slots=True)
class Owed:
    """One answer owed to a sender: its signal, when it may go, and whether it ends the
    message (for the trace)."""

    pid: int
    symbol: int
    due: float
    ends: bool = False
    # Of the same kind as the answer just before it, with no bit of the sender's between:
    # it goes only once the sender has taken that one (two pending at once are one).
    spaced: bool = False
    retried_since: float | None = None  # refused then (the sender did not handle it yet)
    # the message it answers (counted there: its sender may be on its next one by then)
    record: SenderRecord | None = field(default=None, compare=False, repr=False)


class AnswerSchedule:
    """The answers owed to senders and when each goes (see the module's docstring).
    ``active``: the PIDs mid-message (the receiver's senders), whose next bit follows an
    answer."""

    def __init__(
        self,
        active: Container[int],
        *,
        ack: Ack,
        ack_symbol: int,
        end_symbol: int | None,
        end_at: EndAt,
        answer_delay: float,
    ) -> None:
        self.active = active
        self.ack = ack
        self.ack_symbol = ack_symbol
        self.end_symbol = end_symbol
        self.end_at = end_at
        self.answer_delay = answer_delay
        self.outbox: list[tuple[int, int]] = []
        self._writing: set[int] = set()  # a message handed out, not yet written
        self._owed: deque[Owed] = deque()  # the answers owed, oldest first
        self._owing: dict[int, int] = {}  # how many answers each PID is owed
        self._released: deque[Owed] = deque()  # handed out, not yet reported sent or not
        # Refused answers to try again (at the time given) while their sender stays silent:
        # one that installs its handler late, or just after its bit, waits for it.
        self._retries: list[tuple[Owed, float]] = []
        self._in_flight: int | None = None  # answered last; its next bit is on its way
        self._in_flight_since = 0.0
        self._spaced: Owed | None = None  # waits until the answer before it was taken
        self._spaced_since = 0.0
        self._spaced_look = 0.0  # the next look at the sender

    # -- what the receiver tells it ------------------------------------------------------------

    def bit_from(self, record: SenderRecord, now: float) -> None:
        """A bit arrived from ``record``'s sender: its answer is owed (``Ack.BIT``), and any
        answer of ours it was waiting for, or not, has done its work."""
        pid = record.pid
        if pid == self._in_flight:
            self._in_flight = None
        if self._retries:  # it sent on: it was not waiting for its refused answers
            kept = [(owed, due) for owed, due in self._retries if owed.pid != pid]
            for _ in range(len(self._retries) - len(kept)):
                self._owed_less(pid)
            self._retries = kept
        if self.ack is Ack.BIT:
            self._owe(Owed(pid, self.ack_symbol, now + self.answer_delay, record=record))

    def message_ended(self, record: SenderRecord, now: float, *, by_bit: bool) -> None:
        """The message of ``record`` is complete (``by_bit``: by the bit just received, whose
        answer is owed last; else by its silence) and handed out to be written: its answers
        wait for ``written``. With ``Ack.END`` its one answer is owed (the end signal's, or
        the usual); with ``Ack.BIT`` and an end signal, that signal goes in place of the last
        bit's answer, before it or after it, or alone after a silence."""
        pid, due = record.pid, now + self.answer_delay
        self._writing.add(pid)
        if self.ack is Ack.END:
            symbol = self.ack_symbol if self.end_symbol is None else self.end_symbol
            self._owe(Owed(pid, symbol, due, ends=True, record=record))
            return
        if self.ack is not Ack.BIT or self.end_symbol is None:
            return
        end = Owed(pid, self.end_symbol, due, ends=True, record=record)
        if not by_bit:
            self._owe(end)
            return
        last = self._owed.pop()  # the last bit's answer
        if self.end_at is EndAt.INSTEAD:
            self._owed.append(end)
            return
        same = self.end_symbol == last.symbol
        if self.end_at is EndAt.BEFORE:
            self._owed.extend((end, replace(last, spaced=same)))
        else:
            self._owed.extend((last, replace(end, spaced=same)))
        self._owing[pid] += 1

    def written(self, pid: int, now: float) -> None:
        """The message of ``pid`` is printed: its answers may go."""
        self._writing.discard(pid)
        self.release(now)

    # -- what the driver tells it -------------------------------------------------------------

    def answered(self, pid: int) -> None:
        """The driver sent an answer owed to ``pid`` (the oldest one handed out: the driver
        reports them in order); noted for the trace."""
        owed = self._reported(pid)
        record = owed.record if owed is not None else None
        if owed is None or record is None:
            return
        if owed.ends:
            record.end_signal = f"{self._end_words()}: sent"
            return
        record.answered += 1
        if owed.retried_since is not None:
            record.unanswered -= 1  # counted when it was refused
            record.answered_late += 1

    def not_answered(self, pid: int, now: float, why: str, *, may_change: bool) -> None:
        """The driver could not safely send an answer owed to ``pid`` (``why``): noted for the
        trace, and no bit of that sender is on its way because of it. ``may_change``: the
        sender does not handle that signal *yet* (it may install its handler late, or just
        after sending): the answer is tried again every ``ANSWER_RETRY`` while it stays
        silent, for ``ANSWER_RETRY_FOR`` at most."""
        owed = self._reported(pid)
        record = owed.record if owed is not None else None
        if record is not None and owed is not None:
            if owed.ends:
                record.end_signal = f"{self._end_words()}: not sent ({why or 'unsafe'})"
            elif owed.retried_since is None:  # (a retry was counted, and said why, before)
                record.unanswered += 1
                record.unanswered_why = why or record.unanswered_why
        if owed is not None and may_change:
            since = now if owed.retried_since is None else owed.retried_since
            if now - since < ANSWER_RETRY_FOR:
                self._retries.append((replace(owed, retried_since=since), now + ANSWER_RETRY))
                self._owing[pid] = self._owing.get(pid, 0) + 1
        if pid == self._in_flight:
            self._in_flight = None
            self.release(now)

    def ran(self, record: SenderRecord, count: int, now: float) -> None:
        """A tight loop answered ``count`` bits of ``record``'s sender itself (see
        ``quiet_for``): counted, the last of them in flight since ``now``."""
        record.answered += count
        record.answered_in_runs += count
        if count:
            self._in_flight_since = now

    # -- state ----------------------------------------------------------------------------------

    def quiet_for(self, pid: int) -> bool:
        """Whether a tight loop may answer ``pid``'s next bits itself: its last answer went
        out (its next bit follows it), and nothing else is owed, handed out, to be retried,
        spaced or held for a message being written."""
        return (
            self._in_flight == pid
            and not (self._owed or self._released or self._retries or self._writing)
            and self._spaced is None
        )

    @property
    def owing(self) -> bool:
        """True while any answer is still owed (an answer delay may hold the last ones)."""
        return bool(self._owed or self._retries) or self._spaced is not None

    def owes(self, pid: int) -> bool:
        """True while an answer to ``pid`` is still owed (it may not be sent yet)."""
        return pid in self._owing

    def looks_at(self) -> tuple[int, int] | None:
        """(PID, symbol) of an answer sent that must have been taken before the next one
        goes (see ``Owed.spaced``): when the timer passes, the driver looks whether that
        signal is still pending at that process and says so to ``on_timer``."""
        spaced = self._spaced
        return None if spaced is None else (spaced.pid, spaced.symbol)

    def deadlines(self) -> list[float]:
        """When this schedule must act next: a retry, an answer in flight while others wait
        (``ANSWER_HOLD``), a look before a spaced answer, or an answer delay ending."""
        found = [due for _, due in self._retries]
        if self._in_flight is not None and self._owed:
            found.append(self._in_flight_since + ANSWER_HOLD)
        elif self._spaced is not None:
            found.append(self._spaced_look)
        elif self.answer_delay and self._owed and self._owed[0].pid not in self._writing:
            found.append(self._owed[0].due)  # held for answer_delay
        return found

    def on_timer(self, now: float, *, still_pending: bool) -> None:
        """Stop waiting for the next bit of a sender that did not send one within
        ``ANSWER_HOLD`` of our answer; try again the refused answers due; send a spaced answer
        once the one before it is no longer pending (``still_pending``: the driver's look; not
        sent if still pending after ``SPACED_WAIT``: it would merge into that one)."""
        if self._in_flight is not None and now >= self._in_flight_since + ANSWER_HOLD:
            self._in_flight = None
        if self._retries:  # those still silent: try again (still owed: no new count)
            self._owed.extend(owed for owed, due in self._retries if now >= due)
            self._retries = [(owed, due) for owed, due in self._retries if now < due]
        spaced = self._spaced
        if spaced is not None and now >= self._spaced_look:
            waited = now - self._spaced_since
            if not still_pending:
                self._spaced = None
                self._hand_out(spaced)
            elif waited >= SPACED_WAIT:
                self._spaced = None
                self._hand_out(spaced, send=False)
                self.not_answered(
                    spaced.pid,
                    now,
                    f"the signal before it was still pending after {waited:g} s",
                    may_change=False,
                )
            else:
                self._spaced_look = now + SPACED_LOOK  # look again
        self.release(now)

    def release(self, now: float) -> None:
        """Send the oldest owed answers while no sender has a bit on its way, the next is
        not held for a message being written, and its ``answer_delay`` has passed."""
        owed = self._owed
        while self._in_flight is None and owed and owed[0].pid not in self._writing:
            if self._spaced is not None or (self.answer_delay and owed[0].due > now):
                return
            answer = owed.popleft()
            if answer.spaced:  # after a look at the sender: see looks_at
                self._spaced, self._spaced_since = answer, now
                self._spaced_look = now + SPACED_LOOK
                return
            self._hand_out(answer)
            if answer.pid in self.active:  # mid-message: its next bit follows our answer
                self._in_flight, self._in_flight_since = answer.pid, now

    # -- inside ---------------------------------------------------------------------------------

    def _owe(self, owed: Owed) -> None:
        self._owed.append(owed)
        self._owing[owed.pid] = self._owing.get(owed.pid, 0) + 1

    def _owed_less(self, pid: int) -> None:
        left = self._owing[pid] - 1
        if left:
            self._owing[pid] = left
        else:
            del self._owing[pid]

    def _hand_out(self, answer: Owed, *, send: bool = True) -> None:
        """``answer`` is no longer owed: it goes out (the driver reports how it went), or,
        without ``send``, it is reported at once as not sent."""
        self._owed_less(answer.pid)
        self._released.append(answer)
        if send:
            self.outbox.append((answer.pid, answer.symbol))

    def _reported(self, pid: int) -> Owed | None:
        """The answer to ``pid`` being reported (the oldest handed out)."""
        released = self._released
        if released and released[0].pid == pid:
            return released.popleft()
        return None

    def _end_words(self) -> str:
        if self.ack is Ack.END:
            symbol = self.ack_symbol if self.end_symbol is None else self.end_symbol
            return f"end signal {SIGNAL_NAMES[symbol]} (the one answer)"
        where = {
            EndAt.INSTEAD: "in place of the last bit's answer",
            EndAt.BEFORE: "just before the last bit's answer",
            EndAt.AFTER: "just after the last bit's answer",
        }[self.end_at]
        return f"end signal {SIGNAL_NAMES[self.end_symbol or 0]} {where}"
