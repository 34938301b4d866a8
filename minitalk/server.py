"""The server loop: the receiver state machine driven by real signals and a real clock.

It admits a process that asks for a session only after ``transport.open_peer`` has checked it
(it ignores SIGUSR1/SIGUSR2 as minitalk does, we may signal it, the pidfd holds the process
that was checked), holds each peer by that pidfd, and hands every complete message to
``on_message`` before the acknowledgement goes out. Signals reach it only if the kernel
stamped their sender (``SignalWaiter``). No CLI, no printing policy: the caller decides what
to do with a message.

A stop (SIGINT, SIGTERM, SIGHUP) is taken in the same wait as the data signals and acted on
between steps, never inside one: after the step in which it came, the receiver is told to shut
down and the loop drains. So a message is never half printed by a stop, and one printed is
still acknowledged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from minitalk.errors import MinitalkError
from minitalk.protocol import (
    CONTINUE,
    DEFAULT_MAX_MESSAGE,
    FRAME_TIMEOUT,
    MAX_QUEUE,
    REQUEST,
    SESSION_TIMEOUT,
    STALL_TIMEOUT,
    MessageReceived,
    Receiver,
    Released,
)
from minitalk.transport import (
    Process,
    SignalWaiter,
    block_signals,
    monotonic,
    open_peer,
)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Limits and timeouts of a server (seconds and bytes)."""

    max_message: int = DEFAULT_MAX_MESSAGE
    stall_timeout: float = STALL_TIMEOUT
    frame_timeout: float = FRAME_TIMEOUT
    session_timeout: float = SESSION_TIMEOUT
    max_queue: int = MAX_QUEUE
    max_messages: int | None = None  # stop after this many messages

    @classmethod
    def from_options(
        cls, max_bytes: int, frame_timeout: float, session_timeout: float, count: int | None
    ) -> ServerConfig:
        """The config the user-facing options describe: a frame that stalls is asked for
        again after ``STALL_TIMEOUT``, or half the frame timeout if that is shorter."""
        return cls(
            max_message=max_bytes,
            stall_timeout=min(STALL_TIMEOUT, frame_timeout / 2),
            frame_timeout=frame_timeout,
            session_timeout=session_timeout,
            max_messages=count,
        )


# At most this many signals are taken in one step before the answers go out (the peer is
# waiting for its answer; only strangers or other clients can have more pending).
_DRAIN = 8


class _Clients:
    """Pidfds of the peer and the queued clients, opened on their first request."""

    def __init__(self) -> None:
        self._open: dict[int, Process] = {}

    def uid(self, pid: int) -> int:
        """The user ID of a known client, or -1."""
        process = self._open.get(pid)
        return process.uid if process is not None else -1

    def admit(self, pid: int) -> bool:
        """Hold a new client by pidfd if it is a minitalk process we may signal (see
        ``transport.open_peer``); False if it must be ignored: never answered, never held."""
        if pid in self._open:
            return True
        if pid <= 1 or pid == os.getpid():
            return False
        try:
            self._open[pid], _ = open_peer(pid)
        except MinitalkError:
            return False
        return True

    def get(self, pid: int) -> Process | None:
        return self._open.get(pid)

    def alive(self, pid: int) -> bool:
        """False once a known client has exited (its pidfd polls readable)."""
        process = self._open.get(pid)
        return process is not None and process.alive()

    def send(self, pid: int, symbol: int) -> bool:
        """Signal a client; False if it has exited or may no longer be signalled."""
        process = self._open.get(pid)
        if process is None:
            return False
        try:
            process.send(symbol)
        except OSError:  # exited, or no longer ours to signal: gone either way
            return False
        return True

    def forget(self, pid: int) -> None:
        """Close the pidfd of a client the receiver no longer knows."""
        process = self._open.pop(pid, None)
        if process is not None:
            process.close()


def serve(
    config: ServerConfig,
    *,
    on_ready: Callable[[int], None],
    on_message: Callable[[MessageReceived, int], None],
) -> int:
    """Serve until SIGINT/SIGTERM/SIGHUP, or until ``config.max_messages`` sessions have
    delivered their message and finished; return the number of messages delivered.

    ``on_ready`` is called with our PID once the signals are blocked, so that no client can
    signal us before we are ready. ``on_message`` must write the message durably; if it
    raises a ``MinitalkError`` (its output is gone), the client is told NOT_WRITTEN instead of
    the ACK, the server drains, and the error propagates.

    A stop is taken between steps, never inside one: the server then drains (``drain``).
    While ``on_ready`` or ``on_message`` runs (a write to a pipe nobody reads can block),
    a first stop is recorded and acted on once it returns; a second raises
    ``KeyboardInterrupt`` out of ``serve`` at once.
    """
    stops = block_signals(stops=True)
    loop = _ServerLoop(config, on_message, stops=stops)
    with loop.waiter.stoppable():
        on_ready(os.getpid())
    while (
        not loop.stop_requested
        and loop.failure is None
        and (config.max_messages is None or loop.finished < config.max_messages)
    ):
        loop.step()
    if loop.stop_requested or loop.failure is not None:
        loop.drain(config.session_timeout)
    if loop.failure is not None:
        raise loop.failure
    return loop.delivered


class _ServerLoop:
    """One receiver, the clients' pidfds, and the order in which their effects happen."""

    def __init__(
        self,
        config: ServerConfig,
        on_message: Callable[[MessageReceived, int], None],
        *,
        stops: frozenset[int] = frozenset(),
    ) -> None:
        self.receiver = Receiver(
            max_message=config.max_message,
            stall_timeout=config.stall_timeout,
            frame_timeout=config.frame_timeout,
            session_timeout=config.session_timeout,
            max_queue=config.max_queue,
        )
        self.on_message = on_message
        self.clients = _Clients()
        self.waiter = SignalWaiter(stops=stops)  # stops end a wait: see transport
        self.delivered = 0  # messages handed to on_message
        self.finished = 0  # sessions that ended with their message delivered
        self.failure: MinitalkError | None = None  # on_message could not write a message
        self.early: tuple[int, int] | None = None  # a signal that broke a bulk run, next

    @property
    def stop_requested(self) -> bool:
        """A stop signal was taken (the loop's owner drains, then ends)."""
        return self.waiter.stop_requested

    def drain(self, grace: float) -> None:
        """Refuse new sessions, tell every waiting client we are going away, let the current
        session finish (one whose message was printed: until its client has the ACK), for at
        most ``grace`` seconds. Another stop signal ends it at once."""
        until = monotonic() + grace
        stops = self.waiter.stops
        self.receiver.shut_down(monotonic())
        self._send_all(monotonic())
        while not self.receiver.idle and monotonic() < until and self.waiter.stops == stops:
            self.step(until)

    def step(self, until: float | None = None) -> None:
        """Wait for one signal or the next deadline (at the latest ``until``), and act on it."""
        receiver = self.receiver
        deadline = receiver.get_timer()
        if until is not None:
            deadline = until if deadline is None else min(deadline, until)
        got, self.early = self.early, None
        if got is None:
            got = self.waiter.wait(deadline, spin=receiver.session is not None)
        now = monotonic()
        taken = 0
        while got is not None:
            pid, symbol = got
            if pid == receiver.peer or symbol != REQUEST or self.clients.admit(pid):
                receiver.receive(pid, symbol, now)
            # Take whatever else came in meanwhile before we answer: a stranger's signal
            # still pending when our answer lets the peer send its next one would swallow
            # that one if it is of the same kind (standard signals merge).
            taken += 1
            got = self.waiter.take_pending() if taken < _DRAIN else None
        if deadline is not None and now >= deadline:
            peer = receiver.peer
            receiver.handle_timer(now, peer_alive=peer is None or self.clients.alive(peer))
        if not receiver.events:
            # A run of plain bits follows only the answer to one of the peer's frame bits
            # (a step woken by a stray answered nothing: spinning then only keeps the
            # server from looking asleep to a client that lost a bit).
            answered_a_bit = receiver.outbox == [(receiver.peer, CONTINUE)]
            self._send_all(now)
            if answered_a_bit:
                self._bulk()
            return
        self._act_on_events(now)

    def _act_on_events(self, now: float) -> None:
        """Print each message before the outbox (its ACK) goes out; count sessions; close
        the handles of clients the receiver let go of, once their last answer is sent."""
        receiver = self.receiver
        released = []
        for event in receiver.events:
            if isinstance(event, MessageReceived):
                # printed before the ACK in the outbox is sent; a stop meanwhile waits
                try:
                    with self.waiter.stoppable():
                        self.on_message(event, self.clients.uid(event.pid))
                except MinitalkError as error:  # its output is gone: tell the client so
                    receiver.message_not_written(now)
                    self.failure = error
                    continue
                receiver.message_written(monotonic())  # however long the write took
                self.delivered += 1
            elif isinstance(event, Released):
                released.append(event.pid)
            elif event.delivered:
                self.finished += 1
        receiver.events.clear()
        self._send_all(now)  # may still answer a client whose session just ended
        known = receiver.known()
        for pid in released:
            if pid not in known:  # not asked again meanwhile
                self.clients.forget(pid)

    def _bulk(self) -> None:
        """Take the run of plain frame bits the machine expects in the waiter's tight loop,
        answering each at once; hand them over, and keep what broke the run for the next
        step."""
        count = self.receiver.bulk()
        peer = self.receiver.peer
        process = None if peer is None else self.clients.get(peer)
        if count == 0 or process is None or not self.waiter.polls:
            return
        taken, self.early = self.waiter.collect(process, count, CONTINUE)
        self.receiver.bulk_received(taken, monotonic())

    def _send_all(self, now: float) -> None:
        receiver = self.receiver
        outbox = receiver.outbox
        if len(outbox) == 1:  # the per-bit case: one answer to the peer
            pid, symbol = outbox.pop()
            if self.clients.send(pid, symbol):
                return
            receiver.peer_gone(pid, now)
        while receiver.outbox:
            outbox = receiver.outbox[:]
            receiver.outbox.clear()
            for pid, symbol in outbox:
                if not self.clients.send(pid, symbol):
                    receiver.peer_gone(pid, now)  # may grant the next client: loop again
