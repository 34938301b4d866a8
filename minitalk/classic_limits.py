"""The plain protocol's timings and bounds, in one place: the classic machines use them, and
the CLI's help texts print them (without importing the machines)."""

from __future__ import annotations

SIGNAL_NAMES = ("SIGUSR1", "SIGUSR2")  # symbol 0 and symbol 1
IDLE_TIMEOUT = 1.0  # a sender silent this long mid-message is dropped (plain servers: 0.4-10 s)
DEFAULT_DELAY = 0.0005  # between bits when the server does not answer: 400-500 µs is safe
# After the first bit, an answer within PROBE_WAIT means "paced by answers". Longer than
# ANSWER_HOLD, the longest minitalk's own classic server may hold a first answer back while
# another client's bit is on its way, and than the 10-50 ms some plain servers wait.
PROBE_WAIT = 0.1
REPLY_TIMEOUT = 1.0  # paced by answers: the longest wait for one
END_WAIT = 0.05  # after the last bit: time for an end-of-message signal, not required
MAX_TRACE_BYTES = 16  # --trace shows the bits of this many bytes per message, then a summary
# A plain client that waits for answers sends its next bit microseconds after ours; one that does
# not wait never does. So an answer is "in flight" until its sender's next bit, or this long.
ANSWER_HOLD = 0.05
MAX_GAPS = 1 << 20  # gaps kept per sender for the trace's figures (8 MiB of doubles at most)
DEFAULT_MAX_MESSAGE = 1024 * 1024  # a plain sender moves 1-10 KiB/s: 1 MiB takes minutes
# An answer of the same kind as the one just before it (an end signal "again") goes once that
# one is no longer pending at the client: looked at every SPACED_LOOK, for SPACED_WAIT at most.
SPACED_LOOK = 0.0001
SPACED_WAIT = 1.0
# An answer refused because the client does not handle that signal (yet: some install their
# handler late, or right after sending a bit) is tried again this often while the client stays
# silent (one that sends on was not waiting for it), for ANSWER_RETRY_FOR at most.
ANSWER_RETRY = 0.002
ANSWER_RETRY_FOR = 1.0
# A look that found a client not handling a signal stands this long (an answer is always
# checked afresh): a timed client that catches nothing sends a bit every 100-600 µs.
REFUSAL_STANDS = 0.001
# A tight loop (the driver's, with the machine's leave) takes at most this many bits of one
# sender before the machine sees them (15 to 90 ms of a per-bit client's; a stop signal is
# acted on once the run ends).
CLASSIC_RUN = 4096
