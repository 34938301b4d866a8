"""Small helpers for tests that drive a protocol machine by hand."""

from __future__ import annotations

from minitalk.errors import NoAnswerError
from minitalk.protocol import (
    RECEIVER_TABLE,
    SENDER_TABLE,
    PeerView,
    Receiver,
    ReceiverEvent,
    ReceiverState,
    Sender,
    SenderState,
)


def drain_events(receiver: Receiver) -> list[ReceiverEvent]:
    """Every event the receiver has for the driver, in order (its replies pulled first, as
    the driver does)."""
    events: list[ReceiverEvent] = []
    while True:
        replied = receiver.replies()
        event = receiver.next_event()
        if event is None and not replied:
            return events
        if event is not None:
            events.append(event)


def force_state(machine: Sender | Receiver, state: SenderState | ReceiverState) -> None:
    """Put a machine in ``state`` bypassing its table's transitions, so a sweep reaches rare
    states (the table would refuse the jump, as it should)."""
    if isinstance(machine, Sender):
        assert isinstance(state, SenderState)
        machine._state = state
        machine._row = SENDER_TABLE[state]
        if state in (SenderState.LEAVING, SenderState.LINGERING):  # leaving: it gave up
            machine._leaving = NoAnswerError("gave up (forced)")
    else:
        assert isinstance(state, ReceiverState)
        machine._state = state
        machine._row = RECEIVER_TABLE.get(state)


def answer(sender: Sender, symbol: int, now: float) -> None:
    """The server's answer reaches a hand-driven sender, after what it had to send went out
    (as the driver sends before the next answer can come)."""
    sender.symbols_to_send()
    sender.receive(symbol, now)


# Pseudo-PIDs for what a server's driver reports instead of a signal: the peer's process has
# exited, a stop was asked for, the message was written (or could not be), the peer was seen
# asleep in its signal wait.
PEER_EXITED, STOP, WRITTEN, NOT_WRITTEN, ASLEEP = 1, 2, 3, 4, 5
OBSERVATIONS = (PEER_EXITED, STOP, WRITTEN, NOT_WRITTEN, ASLEEP)


def observe(receiver: Receiver, pid: int, symbol: int, now: float) -> None:
    """One input to a hand-driven receiver: a signal from ``pid``, or (a pseudo-PID above)
    what its driver reports, after the deadlines that passed at ``now``."""
    receiver.handle_timer(now, PeerView(alive=pid != PEER_EXITED, asleep=pid == ASLEEP))
    if pid == STOP:
        receiver.shut_down(now)
    elif pid == WRITTEN:
        receiver.message_written(now)
    elif pid == NOT_WRITTEN:
        receiver.message_not_written(now)
    elif pid not in (PEER_EXITED, ASLEEP):
        receiver.receive(pid, symbol, now)
