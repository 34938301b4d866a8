"""The server: its driver, and the real signals it runs over.

``ServerDriver`` runs the receiver machine over any ``link.ServerLink``; the tests' simulated
kernel runs this very class. ``SignalServerLink`` is the real one: it admits a process that asks
for a session only after ``transport.open_peer`` has checked it (it ignores SIGUSR1/SIGUSR2 as
minitalk does, we may signal it, the pidfd holds the process that was checked), holds each peer
by that pidfd, and takes only signals whose sender the kernel stamped (``SignalWaiter``). No
CLI, no printing policy: the caller decides what to do with a message.

A stop (SIGINT, SIGTERM, SIGHUP) is taken in the same wait as the data signals and acted on
between steps, never inside one: the receiver is then told to shut down and the driver drains.
So a message is never half printed by a stop, and one printed is still acknowledged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from minitalk.errors import MinitalkError
from minitalk.link import DRAIN, ServerLink, ServerSteps, Signal
from minitalk.protocol import (
    CONTINUE,
    DEFAULT_MAX_MESSAGE,
    FRAME_TIMEOUT,
    MAX_QUEUE,
    REQUEST,
    SESSION_TIMEOUT,
    STALL_TIMEOUT,
    MessageReceived,
    PeerView,
    Receiver,
    Released,
)
from minitalk.transport import Process, SignalWaiter, WaiterLink, block_signals
from minitalk.trust import open_peer


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

    def receiver(self) -> Receiver:
        """A receiver machine with these limits."""
        return Receiver(
            max_message=self.max_message,
            stall_timeout=self.stall_timeout,
            frame_timeout=self.frame_timeout,
            session_timeout=self.session_timeout,
            max_queue=self.max_queue,
        )


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

    While ``on_ready`` or ``on_message`` runs (a write to a pipe nobody reads can block),
    a first stop is recorded and acted on once it returns; a second raises
    ``KeyboardInterrupt`` out of ``serve`` at once.
    """
    link = SignalServerLink(block_signals(stops=True))
    try:
        driver = ServerDriver(config.receiver(), link, on_message)
        with link.writing():
            on_ready(os.getpid())
        delivered = driver.run(config.max_messages, config.session_timeout)
    finally:
        link.close()
    if driver.failure is not None:
        raise driver.failure
    return delivered


class ServerDriver(ServerSteps):
    """Runs a ``Receiver`` over a ``ServerLink``; ``on_message(event, uid)`` writes each
    message (a ``MinitalkError`` from it means the output is gone: the client is told)."""

    link: ServerLink

    def __init__(
        self,
        receiver: Receiver,
        link: ServerLink,
        on_message: Callable[[MessageReceived, int], None],
    ) -> None:
        self.receiver = receiver
        self.link = link
        self.on_message = on_message
        self.delivered = 0  # messages handed to on_message
        self.finished = 0  # sessions that ended with their message delivered
        self.failure: MinitalkError | None = None  # on_message could not write a message
        self._forged = link.forged

    def run(self, max_messages: int | None, grace: float) -> int:
        """Serve until a stop, a failed write or ``max_messages`` finished sessions; then
        drain for at most ``grace`` seconds. Return the number of messages delivered."""
        link = self.link
        while (
            not link.stop_requested
            and self.failure is None
            and (max_messages is None or self.finished < max_messages)
        ):
            self.step()
        if link.stop_requested or self.failure is not None:
            self.drain(grace)
        return self.delivered

    def drain(self, grace: float) -> None:
        """Refuse new sessions, tell every waiting client we are going away, let the current
        session finish (one whose message was printed: until its client has the ACK), for at
        most ``grace`` seconds. Another stop signal ends it at once."""
        link = self.link
        until, stops = link.now() + grace, link.stops
        self.shut_down()
        while not self.receiver.idle and link.now() < until and link.stops == stops:
            self.step(until)

    def shut_down(self) -> None:
        """Tell the receiver to shut down, and send what it owes everyone now (after taking
        what is pending, as before any answer)."""
        link = self.link
        now = link.now()
        for _ in range(DRAIN):  # bounded: a flood of strays cannot hold the server here
            if (got := link.take_pending()) is None:
                break
            self._take(got, now)
        self._count_forged(now)
        self.receiver.shut_down(now)
        self._flush(now)

    def _timer(self) -> float | None:
        return self.receiver.get_timer()

    def _busy(self) -> bool:
        return self.receiver.session is not None

    def _take(self, got: Signal, now: float) -> None:
        pid, symbol = got
        receiver = self.receiver
        if pid == receiver.peer or symbol != REQUEST or self.link.admit(pid):
            receiver.receive(pid, symbol, now)
        else:
            receiver.stray(now)  # not ours to answer, but it was pending here all the same

    def _count_forged(self, now: float) -> None:
        while self._forged < self.link.forged:
            self._forged += 1
            self.receiver.stray(now)

    def _deadline(self, now: float) -> None:
        receiver, link = self.receiver, self.link
        peer = receiver.peer
        view = None if peer is None else link.peer_view(peer)  # looked at before the drain
        for _ in range(DRAIN):  # bounded: a flood of strays cannot hold the server here
            if (got := link.take_pending()) is None:
                break
            self._take(got, now)
        self._count_forged(now)
        timer = receiver.get_timer()
        if timer is not None and now >= timer:
            receiver.handle_timer(now, view)

    def _flush(self, now: float) -> None:
        """Send the replies as they come; act on each event after them."""
        receiver, link = self.receiver, self.link
        self._sent = False
        while True:
            replies = receiver.replies()
            for pid, symbol in replies:
                if link.send(pid, symbol):
                    self._sent = True
                else:
                    receiver.peer_gone(pid, now)  # may grant the next client
            event = receiver.next_event()
            if event is None:
                if not replies:
                    return
                continue  # a failed send may have granted the next client
            if isinstance(event, MessageReceived):
                self._write(event, now)
            elif isinstance(event, Released):
                link.forget(event.pid)
            elif event.delivered:  # SessionEnded
                self.finished += 1

    def _write(self, event: MessageReceived, now: float) -> None:
        try:
            with self.link.writing():
                self.on_message(event, self.link.uid(event.pid))
        except MinitalkError as error:  # its output is gone: the client is told so
            self.receiver.message_not_written(now)
            self.failure = error
            return
        self.delivered += 1
        self.receiver.message_written(self.link.now())  # however long the write took

    def _bulk(self) -> None:
        receiver, link = self.receiver, self.link
        count = receiver.bulk()
        peer = receiver.peer
        if count == 0 or peer is None or not link.polls:
            return
        taken, self._early = link.collect(peer, count, CONTINUE)
        self._sent = self._sent or bool(taken)
        now = link.now()
        receiver.bulk_received(taken, now)
        self._count_forged(now)


class SignalServerLink(WaiterLink):
    """The real ``ServerLink``: a ``SignalWaiter`` and the clients' pidfds, opened on their
    first request (``transport.open_peer``) and closed when the receiver releases them."""

    def __init__(self, stops: frozenset[int] = frozenset()) -> None:
        super().__init__(SignalWaiter(stops=stops))  # stops end a wait: see transport
        self._open: dict[int, Process] = {}

    @property
    def stops(self) -> int:
        return self.waiter.stops

    @property
    def stop_requested(self) -> bool:
        return self.waiter.stop_requested

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

    def send(self, pid: int, symbol: int) -> bool:
        process = self._open.get(pid)
        if process is None:
            return False
        try:
            process.send(symbol)
        except OSError:  # exited, or no longer ours to signal: gone either way
            return False
        return True

    def peer_view(self, pid: int) -> PeerView:
        process = self._open.get(pid)
        if process is None or not process.alive():
            return PeerView(alive=False)
        return PeerView(asleep=process.asleep_waiting())

    def collect(self, pid: int, count: int, answer: int) -> tuple[list[int], Signal | None]:
        process = self._open.get(pid)
        if process is None:
            return [], None
        return self.waiter.collect(process, count, answer)

    def forget(self, pid: int) -> None:
        process = self._open.pop(pid, None)
        if process is not None:
            process.close()

    def uid(self, pid: int) -> int:
        process = self._open.get(pid)
        return process.uid if process is not None else -1

    def writing(self) -> AbstractContextManager[None]:
        return self.waiter.stoppable()

    def close(self) -> None:
        """Close every pidfd still held."""
        for pid in list(self._open):
            self.forget(pid)
