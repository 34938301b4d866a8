"""The sans-I/O protocol: a sender and a receiver state machine, bits and time in, bits out.

Nothing here touches a signal or reads a clock. A *symbol* is 0 or 1; the transport sends 0 as
SIGUSR1 and 1 as SIGUSR2. Time is a float argument (seconds, any monotonic origin); each machine
says when its next deadline is (``get_timer``) and is told when it passed (``handle_timer``).
Output is pulled by the driver (``replies()``, ``symbols_to_send()``, ``next_event()``).
docs/protocol.md is the specification and shows each machine's table.

The pieces, each tested on its own:

* ``limits``: the symbols, timeouts and bounds;
* ``verdicts``: the verdict codewords, chosen so that no one-symbol slip turns one into another;
* ``assembly``: one session's message, frame by frame, and the memory of delivered messages;
* ``line``: who holds the line (the queue, the refusals owed, shutting down);
* ``look``: the rule by which either side proves that a stray ate its last signal;
* ``receiver``: the server's machine, composing the three above with the frame decoder;
* ``sender``: the client's machine.

Importing the package loads none of them: each name is loaded from its module on first use
(PEP 562), so a client, which needs only the sender, never pays for the receiver's classes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from minitalk.protocol.assembly import DeliveredMemory, MessageAssembly, Outcome
    from minitalk.protocol.limits import (
        BIT_TIMEOUT,
        BYE,
        BYE_ACK,
        CONTINUE,
        DEFAULT_MAX_MESSAGE,
        DELIVERED_MEMORY,
        FRAME_OVER,
        FRAME_TIMEOUT,
        GRANT,
        LEAVE,
        LEFT,
        LOOK_AFTER,
        MAX_ATTEMPTS,
        MAX_BAD_FRAMES,
        MAX_LOOK_RESENDS,
        MAX_NOTICES,
        MAX_QUEUE,
        MIN_PAYLOAD,
        MIN_RATE,
        PEER_CHECK,
        POLL,
        QUEUE_PLACE_KEPT,
        QUEUE_POLL,
        REPLY_TIMEOUT,
        REQUEST,
        SESSION_TIMEOUT,
        STALL_TIMEOUT,
        WAIT,
    )
    from minitalk.protocol.line import Line, LineState
    from minitalk.protocol.look import Look, LookResult
    from minitalk.protocol.receiver import (
        RECEIVER_TABLE,
        Clock,
        MessageReceived,
        PeerView,
        Receiver,
        ReceiverEvent,
        ReceiverState,
        Released,
        SessionEnded,
    )
    from minitalk.protocol.sender import (
        SENDER_TABLE,
        VERDICT_REASONS,
        Delivered,
        Failed,
        Patience,
        Progress,
        Queued,
        Sender,
        SenderEvent,
        SenderState,
        ServerView,
    )
    from minitalk.protocol.verdicts import (
        DETAIL_BITS,
        VERDICT_BITS,
        Verdict,
        detail_bits,
        parse_detail,
        parse_verdict,
        verdict_bits,
    )

_WHERE = {
    "BIT_TIMEOUT": "limits",
    "BYE": "limits",
    "BYE_ACK": "limits",
    "CONTINUE": "limits",
    "Clock": "receiver",
    "DEFAULT_MAX_MESSAGE": "limits",
    "DELIVERED_MEMORY": "limits",
    "DETAIL_BITS": "verdicts",
    "DeliveredMemory": "assembly",
    "FRAME_OVER": "limits",
    "FRAME_TIMEOUT": "limits",
    "GRANT": "limits",
    "LOOK_AFTER": "limits",
    "Line": "line",
    "LineState": "line",
    "MAX_ATTEMPTS": "limits",
    "MAX_BAD_FRAMES": "limits",
    "MAX_LOOK_RESENDS": "limits",
    "MAX_NOTICES": "limits",
    "MAX_QUEUE": "limits",
    "MIN_PAYLOAD": "limits",
    "MIN_RATE": "limits",
    "MessageAssembly": "assembly",
    "MessageReceived": "receiver",
    "Outcome": "assembly",
    "PEER_CHECK": "limits",
    "POLL": "limits",
    "Patience": "sender",
    "LEAVE": "limits",
    "LEFT": "limits",
    "QUEUE_PLACE_KEPT": "limits",
    "QUEUE_POLL": "limits",
    "RECEIVER_TABLE": "receiver",
    "REPLY_TIMEOUT": "limits",
    "REQUEST": "limits",
    "Receiver": "receiver",
    "ReceiverEvent": "receiver",
    "ReceiverState": "receiver",
    "Released": "receiver",
    "PeerView": "receiver",
    "Delivered": "sender",
    "Failed": "sender",
    "Progress": "sender",
    "Queued": "sender",
    "SenderEvent": "sender",
    "Look": "look",
    "LookResult": "look",
    "SENDER_TABLE": "sender",
    "SESSION_TIMEOUT": "limits",
    "STALL_TIMEOUT": "limits",
    "Sender": "sender",
    "SenderState": "sender",
    "ServerView": "sender",
    "SessionEnded": "receiver",
    "VERDICT_BITS": "verdicts",
    "VERDICT_REASONS": "sender",
    "Verdict": "verdicts",
    "WAIT": "limits",
    "detail_bits": "verdicts",
    "parse_detail": "verdicts",
    "parse_verdict": "verdicts",
    "verdict_bits": "verdicts",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BIT_TIMEOUT",
    "BYE",
    "BYE_ACK",
    "CONTINUE",
    "DEFAULT_MAX_MESSAGE",
    "DELIVERED_MEMORY",
    "DETAIL_BITS",
    "FRAME_OVER",
    "FRAME_TIMEOUT",
    "GRANT",
    "LEAVE",
    "LEFT",
    "LOOK_AFTER",
    "MAX_ATTEMPTS",
    "MAX_BAD_FRAMES",
    "MAX_LOOK_RESENDS",
    "MAX_NOTICES",
    "MAX_QUEUE",
    "MIN_PAYLOAD",
    "MIN_RATE",
    "PEER_CHECK",
    "POLL",
    "QUEUE_PLACE_KEPT",
    "QUEUE_POLL",
    "RECEIVER_TABLE",
    "REPLY_TIMEOUT",
    "REQUEST",
    "SENDER_TABLE",
    "SESSION_TIMEOUT",
    "STALL_TIMEOUT",
    "VERDICT_BITS",
    "VERDICT_REASONS",
    "WAIT",
    "Clock",
    "Delivered",
    "DeliveredMemory",
    "Failed",
    "Line",
    "LineState",
    "Look",
    "LookResult",
    "MessageAssembly",
    "MessageReceived",
    "Outcome",
    "Patience",
    "PeerView",
    "Progress",
    "Queued",
    "Receiver",
    "ReceiverEvent",
    "ReceiverState",
    "Released",
    "Sender",
    "SenderEvent",
    "SenderState",
    "ServerView",
    "SessionEnded",
    "Verdict",
    "detail_bits",
    "parse_detail",
    "parse_verdict",
    "verdict_bits",
]
