"""Who holds the line: the queue of waiting clients, the refusals owed, and shutting down.

The receiver serves one peer at a time; everyone else who asks is queued in arrival order
(one place per PID, so a flood of requests pushes nobody back), or, when the queue is full or
the server is closing, owed a refusal. A queued client keeps its place by asking again (every
``queue_poll``); one silent for ``QUEUE_PLACE_KEPT`` has left and is never granted, and one
that gives up says so (LEAVE) and is answered LEFT: after that nothing is sent to it. A
refusal travels like any verdict: the client is sent GRANT, its first frame bit is answered
with FRAME_OVER and its polls with the verdict's bits, so an ordinary sender needs no special
case. Everything here is bounded: ``max_queue`` waiting
clients and ``max_notices`` refusals, the oldest refusal forgotten first. Each PID this piece
lets go of is kept for ``take_released`` so the driver can close its handle. Each method returns
the replies it produces; the receiver passes them on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from enum import Enum, auto

from minitalk.protocol.limits import (
    FRAME_OVER,
    GRANT,
    LEFT,
    MAX_NOTICES,
    MAX_QUEUE,
    PEER_CHECK,
    QUEUE_PLACE_KEPT,
    REQUEST,
    WAIT,
)
from minitalk.protocol.verdicts import Verdict, verdict_bits

Reply = tuple[int, int]  # (PID, symbol)


class LineState(Enum):
    OPEN = auto()  # sessions are granted
    CLOSING = auto()  # shutting down: every asker is refused with GOING_AWAY


class Line:
    """The queue and the refusals owed."""

    def __init__(self, *, max_queue: int = MAX_QUEUE, max_notices: int = MAX_NOTICES) -> None:
        self.max_queue = max_queue
        self.max_notices = max_notices
        self.state = LineState.OPEN
        self.queue: deque[int] = deque()
        self.asked: dict[int, float] = {}  # queued PID -> when it last asked
        self._listened = 0.0  # when the server last took a signal or a deadline
        # PID -> (the whole refusal: FRAME_OVER and the verdict's bits, replies still owed)
        self.notices: dict[int, tuple[list[int], list[int]]] = {}
        self._released: list[int] = []  # PIDs let go of since the receiver last looked

    @property
    def closing(self) -> bool:
        return self.state is LineState.CLOSING

    def take_released(self) -> list[int]:
        """The PIDs let go of since the last call (drained)."""
        released, self._released = self._released, []
        return released

    def ask(self, pid: int, line_free: bool, now: float) -> list[Reply] | None:
        """A REQUEST from ``pid``, which is not the peer and owed nothing. None if it is to be
        granted the line now; otherwise the replies that queue (WAIT) or refuse it."""
        if self.state is LineState.CLOSING:
            return self.refuse(pid, Verdict.GOING_AWAY)
        if line_free:
            return None
        self._forget_silent(now)
        if pid in self.asked:
            self.asked[pid] = now
            return [(pid, WAIT)]
        if len(self.queue) < self.max_queue:
            self.queue.append(pid)
            self.asked[pid] = now
            return [(pid, WAIT)]
        return self.refuse(pid, Verdict.BUSY)

    def listening(self, now: float) -> None:
        """The server takes signals and deadlines at ``now``. A gap since the last time is a
        time it could hear nobody (stopped, blocked writing): queued clients asked all the
        same, their requests merging while pending, so the gap is not counted against them."""
        gap = now - self._listened
        self._listened = now
        if gap > PEER_CHECK * 2:
            for pid in self.asked:
                self.asked[pid] += gap

    def leave(self, pid: int) -> Reply:
        """A LEAVE from the queued ``pid``: it gave up. Out of the queue, answered LEFT."""
        self.queue.remove(pid)
        del self.asked[pid]
        self._released.append(pid)
        return (pid, LEFT)

    def next_in_line(self, now: float) -> int | None:
        """The next client to grant once the line is free, or None (empty, or closing); those
        that stopped asking are let go on the way."""
        if self.state is LineState.CLOSING:
            return None
        self._forget_silent(now)
        if not self.queue:
            return None
        pid = self.queue.popleft()
        del self.asked[pid]
        return pid

    def _forget_silent(self, now: float) -> None:
        """Let go of every queued client that has not asked for ``QUEUE_PLACE_KEPT``."""
        for pid in [pid for pid in self.queue if now - self.asked[pid] >= QUEUE_PLACE_KEPT]:
            self.queue.remove(pid)
            del self.asked[pid]
            self._released.append(pid)

    def refuse(
        self, pid: int, verdict: Verdict, *, granted: bool = False, detail: Sequence[int] = ()
    ) -> list[Reply]:
        """Owe ``pid`` a refusal: GRANT it (unless it is mid-frame already, ``granted``), then
        answer its next symbol with FRAME_OVER and its polls with the verdict (and
        ``detail``, the bits that follow TOO_LARGE)."""
        if pid not in self.notices and len(self.notices) >= self.max_notices:
            oldest = next(iter(self.notices))
            del self.notices[oldest]
            self._released.append(oldest)
        whole = [FRAME_OVER, *verdict_bits(verdict), *detail]
        self.notices[pid] = (whole, whole[:])
        return [] if granted else [(pid, GRANT)]

    def notice_symbol(self, pid: int, symbol: int) -> Reply:
        """A symbol from a client owed a refusal: the next reply of its refusal. A 1 is never
        a poll nor a frame's first bit (both are 0s): the client lost an answer and asks for
        the line again, so it is granted again and told the whole refusal from its start;
        going on from where it was would splice later bits onto what it read."""
        whole, replies = self.notices[pid]
        if symbol == REQUEST:
            self.notices[pid] = (whole, whole[:])
            return (pid, GRANT)
        reply = (pid, replies.pop(0))
        if not replies:
            del self.notices[pid]
            self._released.append(pid)
        return reply

    def close(self, now: float) -> list[Reply]:
        """Shut down: refuse every queued client with GOING_AWAY, and every later asker."""
        self.state = LineState.CLOSING
        self._forget_silent(now)  # gone: nothing is sent to them
        replies: list[Reply] = []
        while self.queue:
            pid = self.queue.popleft()
            del self.asked[pid]
            replies += self.refuse(pid, Verdict.GOING_AWAY)
        return replies

    def gone(self, pid: int) -> None:
        """``pid`` exited: owe it nothing, keep no place for it."""
        if self.notices.pop(pid, None) is not None or pid in self.queue:
            if pid in self.queue:
                self.queue.remove(pid)
                del self.asked[pid]
            self._released.append(pid)

    def known(self) -> set[int]:
        return set(self.queue) | set(self.notices)
