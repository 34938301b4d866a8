"""The look: was the signal I am waiting on eaten by a stray? One rule, used by both machines.

Standard signals of one kind merge while pending (signal(7)), so a stranger's signal pending at
a process can swallow the next signal of that kind sent to it. Either side may then wait for an
answer that will never come. Each side proves a loss the same way, from what it can see: its
last signal went out ``LOOK_AFTER`` ago with nothing back; the other process is asleep in its
signal wait (so nothing it waits for is pending there, and it has acted on all it took); and no
stray reached *this* side since that signal went out (one could have eaten the other side's
next signal, which would mean ours was taken after all). Then ours was eaten, and sending it
once more is safe. The two proofs exclude each other: the client's needs no stray at the
client, the server's none at the server, and an answer is lost only through a stray at the
side that waits for it. The loops look at the other process before they take what is pending
at their own, so an answer that came meanwhile cancels the look.
"""

from __future__ import annotations

from enum import Enum, auto

from minitalk.protocol.limits import LOOK_AFTER, MAX_LOOK_RESENDS


class LookResult(Enum):
    RESEND = auto()  # proven eaten: send the same symbol again
    AGAIN = auto()  # not asleep yet (running, or on its way to its wait): look again soon
    GIVE_UP = auto()  # not provable (a stray came, or the resends are used up): deadlines decide


class Look:
    """The bookkeeping of one side's look at the other; pure, time as an argument."""

    __slots__ = ("_again", "_at", "_strays", "resends")

    def __init__(self) -> None:
        self._at: float | None = None
        self._strays = 0  # strays taken since our last signal went out
        self._again = 0  # resends in a row of the same symbol
        self.resends = 0  # in all, for the figures

    @property
    def due(self) -> float | None:
        """When the look is due, or None."""
        return self._at

    def sent(self, now: float, *, expects_answer: bool) -> None:
        """Our signal went out at ``now``; look after it only if an answer is due at once."""
        self._strays = 0
        self._at = now + LOOK_AFTER if expects_answer else None

    def answered(self) -> None:
        """The other side answered: nothing was eaten."""
        self._at = None
        self._again = 0

    def stray(self) -> None:
        """A signal from anyone but the other side reached us."""
        self._strays += 1

    def cancel(self) -> None:
        self._at = None

    def decide(self, now: float, *, asleep: bool) -> LookResult:
        """The look is due at ``now``: was our signal eaten?"""
        if not asleep:
            self._at = now + LOOK_AFTER
            return LookResult.AGAIN
        self._at = None
        if self._strays or self._again >= MAX_LOOK_RESENDS:
            return LookResult.GIVE_UP
        self._again += 1
        self.resends += 1
        return LookResult.RESEND
