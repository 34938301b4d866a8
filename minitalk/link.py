"""The link: what a driver needs of the world, and the order in which each driver moves things.

A *link* is what a driver needs of the world: wait for a signal with its sender, take one that
is pending, send one, look at the other process (/proc), and the two tight loops of the bulk
path. The real signals implement it (``server.SignalServerLink``, ``client.SignalClientLink``)
and so does the simulated kernel of the tests (``tests/simlink.py``), so the stateful test and
the fuzzers run the very drivers users run (``server.ServerDriver``, ``client.ClientDriver``),
not a copy of their rules.

A driver decides nothing: every rule is the machine's (what to send, when a run may start,
when the ACK may go, when to give up). What a driver owns is the order in which it moves
things, the same for every link:

* a step waits for one signal (or the machine's deadline) and hands it to the machine; a
  server then takes whatever else is pending (a stranger's signal still pending when its
  answer lets the peer send its next one would swallow it), a client does so before it sends;
  every drain is bounded (``DRAIN``), and a deadline that passed applies even in a step that
  took a signal, so a flood of strays cannot hold off --timeout;
* when a deadline passes it looks at the other process *before* it takes what is pending
  here, so an answer that came meanwhile is taken and the look is not acted on;
* before it sends, a client takes what is pending at it: a stray still pending when the
  server's answer lands would swallow it, and a signal of the server's goes to the machine
  first (an answer before our symbol went out: the machine decides what that means);
* replies go out as the machine offers them, events are acted on after them (a message is
  handed to ``on_message``; the machine then offers its ACK), and a tight loop runs only when
  the machine offers one, after everything else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from minitalk.protocol import PeerView, ServerView

Signal = tuple[int, int]  # (sender PID, symbol)

# At most this many signals are taken in one step before the answers go out (the peer is
# waiting for its answer; only strangers or other clients can have more pending).
DRAIN = 8


class Link(Protocol):
    """What both roles need of the world."""

    @property
    def polls(self) -> bool:
        """Whether the tight loops may run (they only poll: never on one CPU)."""

    @property
    def forged(self) -> int:
        """Signals dropped so far because the kernel did not vouch for their sender."""

    def now(self) -> float: ...

    def wait(self, deadline: float | None, *, spin: bool) -> Signal | None:
        """A signal, or None once ``deadline`` passed (or a stop came, for a server)."""

    def take_pending(self) -> Signal | None:
        """A signal already pending, without waiting."""


class ServerLink(Link, Protocol):
    @property
    def stop_requested(self) -> bool: ...

    @property
    def stops(self) -> int:
        """Stop signals taken so far."""

    def admit(self, pid: int) -> bool:
        """Hold a new client if it is a minitalk process we may signal."""

    def send(self, pid: int, symbol: int) -> bool:
        """Signal a held client; False if it has exited or may no longer be signalled."""

    def peer_view(self, pid: int) -> PeerView: ...

    def collect(self, pid: int, count: int, answer: int) -> tuple[list[int], Signal | None]:
        """Take up to ``count`` symbols from ``pid``, answering each at once."""

    def forget(self, pid: int) -> None: ...

    def uid(self, pid: int) -> int: ...

    def writing(self) -> AbstractContextManager[None]:
        """Around a write (or the caller's code): a stop is kept for later, not lost."""


class ClientLink(Link, Protocol):
    @property
    def pid(self) -> int:
        """The server's PID."""

    def send(self, symbol: int) -> OSError | None:
        """Signal the server; the error if that failed."""

    def server_view(self, last_symbol: int | None) -> ServerView: ...

    def bounce(
        self, symbols: Sequence[int], expect: int
    ) -> tuple[int, Signal | None, OSError | None]:
        """Send ``symbols``, each once the answer ``expect`` to the one before came."""


class ServerSteps(ABC):
    """The skeleton of a server's step, the one both server drivers run (``server.ServerDriver``
    for the framed protocol, ``classic_link.ClassicServerDriver`` for the plain one): wait for
    a signal or the machine's deadline, take what else is pending before answering anything,
    apply the deadline (after a look at the peer, where there is one), send what the machine
    offers and act on its events, then a tight loop if the machine offers one."""

    link: Link
    _early: Signal | None = None  # a signal that broke a tight loop: the next one
    # Whether the last step sent anything: only then is an answer due soon, and worth a spin.
    # A step woken by a stray or a deadline that sent nothing blocks at once, so that the
    # other side's look finds this process asleep in its wait, the proof it needs.
    _sent = False

    @property
    def holding_signal(self) -> bool:
        """A signal taken by a tight loop is in hand: the next step acts on it first."""
        return self._early is not None

    def step(self, until: float | None = None) -> None:
        """Wait for one signal or the next deadline (at the latest ``until``), and act."""
        link = self.link
        deadline = earliest(self._timer(), until)
        got, self._early = self._early, None
        if got is None:
            got = link.wait(deadline, spin=self._sent and self._busy())
        now = link.now()
        taken = 0
        while got is not None:
            self._take(got, now)
            taken += 1
            got = link.take_pending() if taken < DRAIN else None
        self._count_forged(now)
        if deadline is not None and now >= deadline:
            self._deadline(now)
        self._flush(now)
        self._bulk()

    @abstractmethod
    def _timer(self) -> float | None:
        """The machine's next deadline."""

    @abstractmethod
    def _busy(self) -> bool:
        """Whether a signal is expected soon (the wait may spin)."""

    @abstractmethod
    def _take(self, got: Signal, now: float) -> None:
        """Hand one signal to the machine."""

    @abstractmethod
    def _count_forged(self, now: float) -> None:
        """Tell the machine of the forged signals the link dropped, if it cares."""

    @abstractmethod
    def _deadline(self, now: float) -> None:
        """The machine's deadline passed."""

    @abstractmethod
    def _flush(self, now: float) -> None:
        """Send what the machine offers; act on its events."""

    @abstractmethod
    def _bulk(self) -> None:
        """A tight loop, where the machine offers one."""


def earliest(first: float | None, second: float | None) -> float | None:
    """The earlier of two optional deadlines."""
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)
