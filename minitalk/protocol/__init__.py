"""The sans-I/O protocol: a sender and a receiver state machine, bits and time in, bits out.

Nothing here touches a signal or reads a clock. A *symbol* is 0 or 1; the transport sends 0 as
SIGUSR1 and 1 as SIGUSR2. Time is a float argument (seconds, any monotonic origin); each machine
says when its next deadline is (``get_timer``) and is told when it passed (``handle_timer``).
Output goes to an outbox the I/O loop drains; results come out as events. docs/protocol.md is
the specification and shows each machine's table.

The pieces, each tested on its own:

* ``limits``: the symbols, timeouts and bounds;
* ``verdicts``: the verdict codewords, chosen so that no one-symbol slip turns one into another;
* ``assembly``: one session's message, frame by frame, and the memory of delivered messages;
* ``line``: who holds the line (the queue, the refusals owed, shutting down);
* ``receiver``: the server's machine, composing the three above with the frame decoder;
* ``sender``: the client's machine.
"""

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
    QUEUE_POLL,
    REPLY_TIMEOUT,
    REQUEST,
    SESSION_TIMEOUT,
    STALL_TIMEOUT,
    WAIT,
)
from minitalk.protocol.line import Line, LineState
from minitalk.protocol.receiver import (
    RECEIVER_TABLE,
    Clock,
    MessageReceived,
    Receiver,
    ReceiverEvent,
    ReceiverState,
    Released,
    SessionEnded,
)
from minitalk.protocol.sender import (
    SENDER_TABLE,
    VERDICT_REASONS,
    Patience,
    Sender,
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
    "DeliveredMemory",
    "Line",
    "LineState",
    "MessageAssembly",
    "MessageReceived",
    "Outcome",
    "Patience",
    "Receiver",
    "ReceiverEvent",
    "ReceiverState",
    "Released",
    "Sender",
    "SenderState",
    "ServerView",
    "SessionEnded",
    "Verdict",
    "detail_bits",
    "parse_detail",
    "parse_verdict",
    "verdict_bits",
]
