"""The Python API: ``minitalk.send(pid, text)`` and ``for message in minitalk.serve(): ...``.

Both borrow the process's signal state while they run: they block SIGUSR1 and SIGUSR2 (and
set them to SIG_IGN, which is how a client recognises a minitalk peer) and make SIGTERM and
SIGHUP raise ``KeyboardInterrupt`` if nothing else handles them. ``serve`` also blocks SIGINT,
SIGTERM and SIGHUP while it works (those the caller neither ignores, blocks nor handles
itself), so that a stop lands between its steps (see ``serve``). When they are done, however
they end, the caller's signal mask and the dispositions of those signals are put back as they
were, with one exception: SIGUSR1/SIGUSR2 that had the default action (terminate) stay ignored,
because a server may still answer late (after a send that gave up mid-message, or a lost BYE)
and a client may still ask after a serve, and that signal must not kill the caller. Children
started later inherit the ignoring; it does not make them pass for minitalk peers, which also
block ``procview.PEER_MARK`` while they run. A data signal still pending at the end is taken
first, so it cannot reach the caller's own handler; a send that gives up while queued leaves
the queue (LEAVE) before it returns, so it is never granted later. The restore is done on the
borrowing thread whatever interrupts it (a ``KeyboardInterrupt`` is held until it is done).

Main thread only, and this is why: ``signal.signal`` may only be called from the main thread,
and Python runs signal handlers only there; ``pthread_sigmask`` blocks the signals in the
calling thread alone, and the kernel hands a signal sent to the process to any thread that
does not block it, so a thread that left SIGUSR1/SIGUSR2 unblocked would swallow minitalk's
signals. Threads started while the API runs inherit the block; threads started before it
should block both signals themselves (``signal.pthread_sigmask``). One send or one server per
process at a time.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from minitalk.client import ClientConfig, Receipt, new_nonce, send_message
from minitalk.errors import InputError, UsageError
from minitalk.frame import MAX_MESSAGE
from minitalk.procview import DATA_SIGNALS
from minitalk.protocol import (
    DEFAULT_MAX_MESSAGE,
    FRAME_TIMEOUT,
    MAX_ATTEMPTS,
    QUEUE_POLL,
    REPLY_TIMEOUT,
    SESSION_TIMEOUT,
    STALL_TIMEOUT,
)
from minitalk.transport import STOP_SIGNALS, block_signals

if TYPE_CHECKING:
    from minitalk.protocol import MessageReceived

__all__ = ["Message", "Receipt", "send", "serve"]

_BORROWED = (*DATA_SIGNALS, *STOP_SIGNALS)


@dataclass(frozen=True, slots=True)
class Message:
    """One message a server received whole and acknowledged."""

    text: str
    pid: int  # the sender's PID
    uid: int  # the sender's user ID (-1 if it could not be read)
    size: int  # bytes of UTF-8
    frames: int
    resends: int
    seconds: float


# -- option rules: shared with the CLI, which names the options its own way (--max-bytes) ---------


def check_options(rules: list[tuple[bool, str]]) -> None:
    """Raise a ``UsageError`` naming the first rule broken."""
    for holds, problem in rules:
        if not holds:
            raise UsageError(problem)


def _same(name: str) -> str:
    return name


def serve_rules(
    max_bytes: int,
    frame_timeout: float,
    session_timeout: float,
    count: int | None,
    *,
    name: Callable[[str], str] = _same,
) -> list[tuple[bool, str]]:
    """The rules a server's options must keep, each with the problem it names."""
    return [
        (
            0 <= max_bytes <= MAX_MESSAGE,
            f"{name('max_bytes')} must be between 0 and {MAX_MESSAGE} "
            "(the largest message length a frame header can carry)",
        ),
        (frame_timeout > 0, f"{name('frame_timeout')} must be more than 0 s"),
        (
            frame_timeout < session_timeout,
            f"{name('frame_timeout')} must be shorter than {name('session_timeout')}",
        ),
        (
            session_timeout > QUEUE_POLL,
            f"{name('session_timeout')} must be longer than {QUEUE_POLL:g} s, "
            "the time in which a queued client asks for the line again",
        ),
        (count is None or count >= 1, f"{name('count')} must be at least 1"),
    ]


def send_rules(
    reply_timeout: float,
    attempts: int,
    timeout: float | None,
    *,
    name: Callable[[str], str] = _same,
) -> list[tuple[bool, str]]:
    """The rules a send's options must keep, each with the problem it names."""
    return [
        (
            reply_timeout > STALL_TIMEOUT,
            f"{name('reply_timeout')} must be longer than {STALL_TIMEOUT:g} s, the longest a "
            "server waits before it abandons a stalled frame",
        ),
        (attempts >= 1, f"{name('attempts')} must be at least 1"),
        (timeout is None or timeout > 0, f"{name('timeout')} must be more than 0 s"),
    ]


def send(
    pid: int,
    text: str | bytes,
    *,
    timeout: float | None = None,
    reply_timeout: float = REPLY_TIMEOUT,
    attempts: int = MAX_ATTEMPTS,
    force: bool = False,
) -> Receipt:
    """Send ``text`` to the minitalk server ``pid``; return once it acknowledged every frame
    (it has then received the whole message).

    ``text`` is a string, or UTF-8 bytes. ``timeout`` bounds the whole send in seconds
    (waiting for one's turn and for a stopped server included); None waits as long as the
    server lives. Raises a ``minitalk.errors.MinitalkError`` subclass on failure; its
    ``exit_code`` says which kind. A send that failed (or was interrupted) may still have
    been printed, if its last frame had gone out; calling ``send`` again with the same text
    and server is its retry: the server prints it once in all. Main thread only (see the
    module's docstring).
    """
    if isinstance(text, str):
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InputError(f"the text is not valid UTF-8 (character {error.start})") from None
    else:
        data = bytes(text)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"the bytes are not UTF-8: bad byte at offset {error.start}") from None
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise UsageError(f"pid must be an int, got {pid!r}")
    check_options(send_rules(reply_timeout, attempts, timeout))
    config = ClientConfig(
        reply_timeout=reply_timeout, max_attempts=attempts, timeout=timeout, force=force
    )
    # A send that failed may still have been printed (its last ACK lost, its timeout hit
    # while the last frame was answered): the same bytes sent again to the same server are
    # its retry, under the same nonce, which the server recognises and does not print twice.
    identity = (len(data), hash(data))  # within this process: the same bytes, the same pair
    earlier = _UNCONFIRMED.pop(pid, None)
    nonce = earlier[1] if earlier is not None and earlier[0] == identity else new_nonce()
    with _borrowed_signals():
        try:
            return send_message(pid, data, config, nonce=nonce)
        except BaseException:
            _UNCONFIRMED[pid] = (identity, nonce)
            while len(_UNCONFIRMED) > _UNCONFIRMED_KEPT:
                del _UNCONFIRMED[next(iter(_UNCONFIRMED))]
            raise


# Per server PID, the last send that failed: its bytes' length and hash, and its nonce.
_UNCONFIRMED: dict[int, tuple[tuple[int, int], int]] = {}
_UNCONFIRMED_KEPT = 16


def serve(
    *,
    count: int | None = None,
    max_bytes: int = DEFAULT_MAX_MESSAGE,
    frame_timeout: float = FRAME_TIMEOUT,
    session_timeout: float = SESSION_TIMEOUT,
    on_ready: Callable[[int], None] | None = None,
) -> Iterator[Message]:
    """Serve minitalk clients and yield each message they send, in the order received.

    ``on_ready(pid)`` is called once the server is ready to be signalled (tell clients the PID
    then, not before). A message is acknowledged to its sender once it is here, whole, and
    yielded right after. The generator ends after ``count`` messages (None: never); closing
    it (``break`` out of the loop, or ``close()``) or an exception tells every waiting client
    the server is going away, lets the current session finish for at most
    ``session_timeout`` (a client whose message was yielded still gets its ACK), and restores
    the caller's signal state.

    SIGINT, SIGTERM and SIGHUP stop it between its steps: every message already
    acknowledged is yielded, the server drains as on ``close()``, then ``KeyboardInterrupt``
    is raised out of it. While the loop's body runs, the first such signal is kept for when
    the body gives control back; a second raises ``KeyboardInterrupt`` in the body at once.
    (A stop signal the caller ignores, blocks or handles itself is left alone.) Main thread
    only (see the module's docstring). Iterate it to the end or close it: a generator left
    open keeps the signals borrowed until it is garbage-collected.
    """
    from minitalk.server import (  # noqa: PLC0415 (a send needs none of it)
        ServerConfig,
        ServerDriver,
        SignalServerLink,
    )

    check_options(serve_rules(max_bytes, frame_timeout, session_timeout, count))
    config = ServerConfig.from_options(max_bytes, frame_timeout, session_timeout, count)
    with _borrowed_signals():
        link = SignalServerLink(block_signals(stops=True))
        received: list[Message] = []
        driver = ServerDriver(
            config.receiver(), link, lambda event, uid: received.append(_message(event, uid))
        )
        try:
            if on_ready is not None:
                with link.writing():
                    on_ready(os.getpid())
            while not link.stop_requested and (count is None or driver.finished < count):
                driver.step()
                while received:
                    with link.writing():  # the caller's body: stoppable like a write
                        yield received.pop(0)
        finally:
            # A message is yielded as soon as it is written, while its sender still polls
            # for the ACK: the drain lets that session end as it would have (ACK, BYE). Not
            # on another thread (a close or a collection there): the signals wait in the
            # main thread, and _borrowed_signals says so.
            try:
                if threading.current_thread() is threading.main_thread():
                    driver.drain(config.session_timeout)
            finally:
                link.close()
        if link.stop_requested:
            raise KeyboardInterrupt


def _message(event: MessageReceived, uid: int) -> Message:
    return Message(
        text=event.text,
        pid=event.pid,
        uid=uid,
        size=event.size,
        frames=event.frames,
        resends=event.resends,
        seconds=event.seconds,
    )


@contextmanager
def _borrowed_signals() -> Iterator[None]:
    """Run the body with minitalk's signal set-up; restore the caller's afterwards, on the
    thread that borrowed it (the only one whose mask it changed and the only one that may set
    dispositions). A ``serve()`` generator closed or collected on another thread cannot do
    that: it raises ``UsageError`` there and leaves the main thread's state alone (as
    borrowed, not half restored)."""
    if threading.current_thread() is not threading.main_thread():
        raise UsageError(
            "minitalk's API must run on the main thread: only there can Python set signal "
            "dispositions, and a thread that does not block SIGUSR1/SIGUSR2 swallows them"
        )
    owner = threading.get_ident()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    dispositions = {signum: signal.getsignal(signum) for signum in _BORROWED}
    try:
        yield
    finally:
        # Put back whatever interrupts it: each step sets a state outright, so an exception
        # raised midway by a signal handler (KeyboardInterrupt from a stop that was pending,
        # run by Python between two steps or at the final unblocking; a program's own alarm)
        # is held while every step is done again, then raised. The loop sits right here, not
        # in a function: CPython runs pending handlers when a function starts, which would be
        # outside the ``try``. Bounded, in case a step itself keeps failing.
        held: BaseException | None = None
        for _ in range(_RESTORE_TRIES):
            try:
                if threading.get_ident() != owner:
                    raise UsageError(_ELSEWHERE)
                _restore(mask, dispositions)
                break
            except UsageError:
                raise
            except BaseException as error:  # held, then raised below
                held = held or error
        if held is not None:
            raise held


_ELSEWHERE = (
    "a minitalk.serve() generator was closed on another thread than the main one, which lent "
    "it its signal state: only the main thread can put it back, so SIGUSR1/SIGUSR2 stay "
    "blocked there, and SIGINT/SIGTERM/SIGHUP minitalk's (close the generator on the main "
    "thread, or let its loop end)"
)
_RESTORE_TRIES = 8

_Handler = Callable[[int, FrameType | None], Any] | int | None


def _restore(mask: set[int | signal.Signals], dispositions: dict[signal.Signals, _Handler]) -> None:
    # Everything borrowed is blocked first, so that no stop lands midway from here on (one
    # pending lands at the final unblocking, once all is back), and a late data signal the
    # caller did not block is taken here, not by its handler or SIG_DFL, which would kill us.
    signal.pthread_sigmask(signal.SIG_BLOCK, _BORROWED)
    late = [signum for signum in DATA_SIGNALS if signum not in mask]
    while late and signal.sigtimedwait(late, 0) is not None:
        pass
    for signum, handler in dispositions.items():
        if handler is None:  # set outside Python; it cannot be put back from here
            continue
        if signum in DATA_SIGNALS and handler == signal.SIG_DFL:
            # A server may still signal us after we are done: a send that ended early (its
            # timeout, Ctrl-C) leaves the server in the session, and a lost BYE leaves it
            # sending a stall notice. With SIG_DFL that late signal would kill the caller, so
            # the data signals stay ignored (a handler of the caller's own is put back).
            continue
        signal.signal(signum, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
