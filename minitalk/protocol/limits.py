"""The protocol's symbols, timeouts and bounds, in one place (docs/protocol.md explains each).

Symbols: a symbol is 0 or 1; the transport sends 0 as SIGUSR1 and 1 as SIGUSR2. Their meaning
depends on the state, which both sides know.
"""

from __future__ import annotations

REQUEST = 1  # client -> server: may I have the line? (also a repeat of it)
GRANT = 0  # server -> client: the line is yours, send a frame
WAIT = 1  # server -> client: another client has the line; you are queued
CONTINUE = 0  # server -> client: bit received, send the next
FRAME_OVER = 1  # server -> client: frame finished or abandoned, poll the verdict
POLL = 0  # client -> server: send me the next verdict bit
BYE = 1  # client -> server: I have the final ACK, the session is over
BYE_ACK = 0  # server -> client: answer to BYE
LEAVE = 0  # client -> server, while queued: I give up my place (my --timeout passed)
LEFT = 1  # server -> client: answer to LEAVE; you are out of the queue, nothing more comes

# Timeouts, in seconds. The ordering stall_timeout < bit_timeout and frame_timeout <
# session_timeout, with reply_timeout and queue_poll below session_timeout, is what keeps the
# two sides in step after a lost signal.
STALL_TIMEOUT = 0.05
BIT_TIMEOUT = 0.15
FRAME_TIMEOUT = 0.5
REPLY_TIMEOUT = 1.0
QUEUE_POLL = 1.0
SESSION_TIMEOUT = 3.0
# A queued client asks again every queue_poll; one that has not asked for this long (a poll
# lost to a merge and the next one late too) has left, or never was a client (a process that
# sent one REQUEST and sleeps): it loses its place and is never granted the line.
QUEUE_PLACE_KEPT = QUEUE_POLL + 2 * REPLY_TIMEOUT
# While the server waits on its peer, it looks this often whether the peer still exists, so a
# client that exits (a lost BYE, a --timeout right after its grant) frees the line at once.
PEER_CHECK = 0.1
# A side whose last signal got no answer looks this long after it whether a stray ate it (a
# round trip takes 10-60 µs), and again as often while the other side is not yet asleep; it
# sends one symbol again that way at most MAX_LOOK_RESENDS times in a row. Measured beside a
# CPU hog with 2 x 500 strays/s aimed at the client (32 KiB, 3 alternating rounds): 0.7 ms took
# 4.5-4.9 s with no frame restarted, 2 ms took 6.0-7.9 s with 8-23 frames stalled and resent;
# idle and hog-only sends were the same either way.
LOOK_AFTER = 0.0007
MAX_LOOK_RESENDS = 3

MAX_ATTEMPTS = 10  # per frame, the XMODEM/Kermit convention
# The smallest frame payload the sender shrinks to on a lossy link: 32 bytes make a frame of
# 440 bits (about 10 ms on an idle machine), of which the header is still under half.
MIN_PAYLOAD = 32
# A peer whose frames fail this many times in a row loses the line (it may be a stranger
# feeding noise, or a client gone astray); a real client asks for the line again.
MAX_BAD_FRAMES = 2 * MAX_ATTEMPTS
# Progress a session must make to keep the line: it ends once it has held the line longer than
# SESSION_TIMEOUT plus one second per MIN_RATE bytes of message taken. A healthy client moves
# 10-30 KiB/s, one amid heavy stray noise about 1 KiB/s; a client trickling a byte a frame
# every few seconds loses the line after about SESSION_TIMEOUT.
MIN_RATE = 128
MAX_QUEUE = 64
# Refusals owed to clients that are not the peer (a full queue, shutting down): bounded, the
# oldest is forgotten first.
MAX_NOTICES = 64
# The last message nonce delivered per client PID, for this many PIDs: a repeat comes from the
# very client that is still waiting for its ACK, so one entry per client is enough.
DELIVERED_MEMORY = 4096
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
