"""Message assembly: checked frames in, the verdict each one earns and the finished message out.

The receiver's bookkeeping of one session's message, apart from any link state: where the next
frame must start (byte offsets, so a 10,000-frame message can never be mistaken for a new one),
the message's length and nonce, strict UTF-8 per frame, and recognising a repeat (a frame whose
ACK was lost, or one cut shorter at the same place after a RESEND). ``DeliveredMemory`` keeps,
across sessions, the last message nonce each client PID delivered, so a repeat arriving after
its session ended is acknowledged and never printed twice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from minitalk.frame import Frame
from minitalk.protocol.limits import DELIVERED_MEMORY
from minitalk.protocol.verdicts import Verdict


class DeliveredMemory:
    """The nonce of the last message each client PID delivered, for the most recent
    ``size`` PIDs. A client repeats only the message it is still waiting to see acknowledged,
    so one nonce per PID is all a repeat can need; 64-bit random nonces make a new message
    that matches by chance practically impossible."""

    def __init__(self, size: int = DELIVERED_MEMORY) -> None:
        self.size = size
        self._last: OrderedDict[int, int] = OrderedDict()

    def delivered(self, pid: int, nonce: int) -> bool:
        return self._last.get(pid) == nonce

    def remember(self, pid: int, nonce: int) -> None:
        self._last[pid] = nonce
        self._last.move_to_end(pid)
        if len(self._last) > self.size:
            self._last.popitem(last=False)

    def forget(self, pid: int, nonce: int) -> None:
        if self._last.get(pid) == nonce:
            del self._last[pid]

    def __len__(self) -> int:
        return len(self._last)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a checked frame earns: the verdict, why the session ends after it (or ""), and
    the whole message if this frame completed it."""

    verdict: Verdict
    end: str = ""
    message: bytes | None = None
    repeat: bool = False  # a frame the server already had: no new byte taken


class MessageAssembly:
    """One session's message, frame by frame (see the module docstring)."""

    def __init__(self, pid: int, memory: DeliveredMemory) -> None:
        self.pid = pid
        self.memory = memory
        self._start_over()

    def _start_over(self) -> None:
        self.buffer = bytearray()
        self.message_length = -1  # unknown until the first frame
        self.nonce = -1
        self.frames = 0  # frames taken
        self.last_offset = -1  # where the last frame taken starts
        self.complete = False  # the whole message was taken (printed), here or before

    @property
    def taken(self) -> int:
        return len(self.buffer)

    def take(self, frame: Frame) -> Outcome:  # noqa: PLR0911 (one return per outcome)
        """Check ``frame`` against what came before and take it if it fits."""
        if self.memory.delivered(self.pid, frame.nonce):
            # Printed already (its final ACK was lost, perhaps in an earlier session).
            self.complete = True
            return Outcome(Verdict.ACK, repeat=True)
        if self.nonce not in (frame.nonce, -1):
            # A new message from the same process: a client sends one message at a time and
            # repeats only the one it waits on, so the old one was given up (a program's
            # send() that timed out or was interrupted, then called again). Start over.
            self._start_over()
        if self.complete:
            return Outcome(Verdict.OUT_OF_ORDER, end="a frame after the last")
        if self.frames == 0:
            if frame.offset != 0:  # it continues a message from a session that was dropped
                return Outcome(Verdict.RESTART, repeat=True)
            self.message_length = frame.message_length
            self.nonce = frame.nonce
        elif frame.nonce != self.nonce or frame.message_length != self.message_length:
            return Outcome(Verdict.OUT_OF_ORDER, end="a frame of another message")
        elif frame.offset == self.last_offset:
            if frame.payload == self.buffer[self.last_offset :]:
                return Outcome(Verdict.ACK, repeat=True)  # its ACK was lost
            # The same place cut shorter: the client heard RESEND for a repeat of a frame we
            # had taken (a stray ate a bit of the repeat) and cut it again. Taking the new cut
            # in place of the old keeps both sides counting the same bytes.
            del self.buffer[self.last_offset :]
            self.frames -= 1
        elif frame.offset != self.taken:
            return Outcome(Verdict.OUT_OF_ORDER, end="frames out of order")
        if not frame.payload and frame.message_length:
            return Outcome(Verdict.OUT_OF_ORDER, end="an empty frame")
        try:
            frame.payload.decode("utf-8")
        except UnicodeDecodeError:
            return Outcome(Verdict.NOT_UTF8, end="a frame was not UTF-8")
        self.last_offset = self.taken
        self.buffer += frame.payload
        self.frames += 1
        if self.taken < self.message_length:
            return Outcome(Verdict.ACK)
        self.complete = True
        self.memory.remember(self.pid, self.nonce)
        message = bytes(self.buffer)
        self.buffer = bytearray()
        self.last_offset = -1
        return Outcome(Verdict.ACK, message=message)

    def not_written(self) -> None:
        """The finished message could not be written out: a repeat must not be taken for
        delivered."""
        self.memory.forget(self.pid, self.nonce)
        self.complete = False
