"""The frame codec: message bytes to frames to bits, and bits back to checked frames.

Pure code, no I/O. A message (UTF-8 bytes) is cut into frames of at most ``MAX_PAYLOAD`` bytes,
each laid out as below and sent most significant bit first:

    offset  size  field
    0       1     VERSION (0x52): neither an all-zero nor an all-one stream can pass it, and its
                  first bit is 0, which lets a receiver tell a frame from a repeated request (1)
    1       1     FLAGS: bit 7 is the last-frame flag; bits 6..0 are reserved and must be 0
    2       2     payload length n in bytes (big-endian), at most MAX_PAYLOAD
    4       4     whole message length in bytes (big-endian), so a receiver can refuse an
                  oversized message at the first header instead of after megabytes
    8       4     offset: where this payload starts in the message, in bytes (big-endian)
    12      8     message nonce (big-endian): a random number the sender picks per message, so
                  a frame repeated after its session ended is recognised as already delivered
    20      1     header check: CRC-8 (poly 0x07) of bytes 0..19, so a corrupt length is
                  refused before any payload is awaited
    21      n     payload
    21+n    2     CRC-16/CCITT-FALSE of bytes 0..20+n (big-endian)

The offset, not a frame counter, says where a frame belongs: a counter of a few bits wraps, and
frame 128 of a message continued in a new session would read as frame 0 of a new message; a
byte offset is exact for any message the length field can describe. The header must agree with
itself: offset + n never passes the message length, the last-frame flag is set exactly when
the payload reaches the end of the message, and only a last frame may be empty, so a peer
cannot hold the line with frames that carry nothing.

The nonce is 64 bits because a receiver compares it with the nonces of the messages it has
delivered: against 1024 remembered nonces a fresh 32-bit one collides once in about four
million messages, a 64-bit one once in about 2 * 10^16.

CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) keeps Hamming distance 4 up to 4093 covered bytes;
a full frame covers 21 + 1024 = 1045 bytes, well inside, so every 1-, 2- and 3-bit error is caught.
Its non-zero init means an all-zero frame does not check to zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import crcmod.predefined  # type: ignore[import-untyped]

from minitalk.errors import (
    ChecksumError,
    FrameError,
    HeaderError,
    LocalProtocolError,
    OversizeError,
)

VERSION = 0x52
HEADER_LEN = 21
CRC_LEN = 2
OVERHEAD = HEADER_LEN + CRC_LEN
# 1 KiB keeps a resend cheap and the frame far inside CRC-16's Hamming-distance-4 limit.
MAX_PAYLOAD = 1024
MAX_MESSAGE = 2**32 - 1  # what the 32-bit message length (and offset) field can say
MAX_NONCE = 2**64 - 1  # what the 64-bit nonce field can say
_LAST_FLAG = 0x80
_RESERVED_FLAGS = 0x7F  # must be zero: room for a future flag that old receivers refuse

crc16: Callable[[bytes | bytearray], int] = crcmod.predefined.mkPredefinedCrcFun("crc-ccitt-false")
crc8: Callable[[bytes | bytearray], int] = crcmod.predefined.mkPredefinedCrcFun("crc-8")


@dataclass(frozen=True, slots=True)
class Header:
    """The checked fields of a frame header."""

    offset: int
    last: bool
    payload_length: int
    message_length: int
    nonce: int = 0


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: a piece of a message with its place in it."""

    offset: int  # where the payload starts in the message, in bytes
    last: bool
    message_length: int
    payload: bytes
    nonce: int = 0  # the message's identity, chosen at random by the sender


def _placement_problem(offset: int, last: bool, payload_length: int, message_length: int) -> str:
    """Why the payload's place in the message is impossible, or "" if it is consistent.

    Shared by the encoder (our misuse) and the decoder (the peer's garbage), so both sides
    hold frames to the same rules.
    """
    end = offset + payload_length
    if end > message_length:
        return f"payload ends at byte {end}, past the message length {message_length}"
    if last != (end == message_length):
        flag = "set" if last else "clear"
        return f"last-frame flag is {flag} but the payload ends at {end} of {message_length}"
    if payload_length == 0 and not last:
        return "an empty frame that is not the last one"
    return ""


def encode_header(header: Header) -> bytes:
    """Return the HEADER_LEN (21) header bytes, check byte included."""
    if not 0 <= header.offset <= MAX_MESSAGE:
        raise LocalProtocolError(f"offset {header.offset} is out of range")
    if not 0 <= header.payload_length <= MAX_PAYLOAD:
        raise LocalProtocolError(f"payload of {header.payload_length} bytes is over the limit")
    if not 0 <= header.message_length <= MAX_MESSAGE:
        raise LocalProtocolError(f"message length {header.message_length} is out of range")
    if not 0 <= header.nonce <= MAX_NONCE:
        raise LocalProtocolError(f"nonce {header.nonce} is out of range")
    problem = _placement_problem(
        header.offset, header.last, header.payload_length, header.message_length
    )
    if problem:
        raise LocalProtocolError(problem)
    body = (
        bytes((VERSION, _LAST_FLAG if header.last else 0))
        + header.payload_length.to_bytes(2, "big")
        + header.message_length.to_bytes(4, "big")
        + header.offset.to_bytes(4, "big")
        + header.nonce.to_bytes(8, "big")
    )
    return body + bytes((crc8(body),))


def decode_header(
    data: bytes | bytearray, max_payload: int = MAX_PAYLOAD, max_message: int = MAX_MESSAGE
) -> Header:
    """Check and parse the first ``HEADER_LEN`` bytes of ``data``.

    Raise ``HeaderError`` for a malformed header, and its subclass ``OversizeError`` for a
    well-formed header that announces a message longer than ``max_message``.
    """
    if len(data) < HEADER_LEN:
        raise HeaderError(f"header is {len(data)} bytes, needs {HEADER_LEN}")
    if data[0] != VERSION:
        raise HeaderError(f"version byte is 0x{data[0]:02x}, expected 0x{VERSION:02x}")
    if crc8(data[: HEADER_LEN - 1]) != data[HEADER_LEN - 1]:
        raise HeaderError("header check failed")
    if data[1] & _RESERVED_FLAGS:
        raise HeaderError(f"reserved flag bits are set (flags 0x{data[1]:02x})")
    last = bool(data[1] & _LAST_FLAG)
    payload_length = int.from_bytes(data[2:4], "big")
    message_length = int.from_bytes(data[4:8], "big")
    offset = int.from_bytes(data[8:12], "big")
    if payload_length > max_payload:
        raise HeaderError(f"payload length {payload_length} is over the limit of {max_payload}")
    problem = _placement_problem(offset, last, payload_length, message_length)
    if problem:
        raise HeaderError(problem)
    if message_length > max_message:
        raise OversizeError(message_length, max_message)
    return Header(
        offset=offset,
        last=last,
        payload_length=payload_length,
        message_length=message_length,
        nonce=int.from_bytes(data[12:20], "big"),
    )


def encode_frame(frame: Frame) -> bytes:
    """Return the frame's bytes: header, payload, CRC-16."""
    header = Header(frame.offset, frame.last, len(frame.payload), frame.message_length, frame.nonce)
    body = encode_header(header) + frame.payload
    return body + crc16(body).to_bytes(CRC_LEN, "big")


def decode_frame(data: bytes, max_payload: int = MAX_PAYLOAD) -> Frame:
    """Decode exactly one frame from ``data``; raise a ``FrameError`` subclass if it is bad."""
    header = decode_header(data, max_payload)
    size = OVERHEAD + header.payload_length
    if len(data) != size:
        raise FrameError(f"frame is {len(data)} bytes, its header says {size}")
    if crc16(data) != 0:  # the CRC over a body with its own big-endian CRC appended is zero
        raise ChecksumError("frame CRC-16 mismatch")
    payload = bytes(data[HEADER_LEN : size - CRC_LEN])
    return Frame(header.offset, header.last, header.message_length, payload, header.nonce)


def next_frame(message: bytes, start: int, nonce: int = 0, max_payload: int = MAX_PAYLOAD) -> Frame:
    """The frame that carries ``message`` from byte ``start`` (its offset) on: at most
    ``max_payload`` bytes, cut on a UTF-8 character boundary when it can.

    A character is never split across two frames, so every frame of a valid UTF-8 message is
    valid UTF-8 by itself. A sender may call this with a different ``max_payload`` for each
    frame (minitalk's sender shrinks its frames when they keep failing).
    """
    if len(message) > MAX_MESSAGE:
        raise LocalProtocolError(f"message of {len(message)} bytes exceeds the frame format")
    if not 0 < max_payload <= MAX_PAYLOAD:
        raise LocalProtocolError(f"max_payload must be within 1..{MAX_PAYLOAD}")
    if not 0 <= start <= len(message):
        raise LocalProtocolError(f"start {start} is outside a message of {len(message)} bytes")
    end = min(start + max_payload, len(message))
    if end < len(message):
        cut = end
        while cut > start and message[cut] & 0xC0 == 0x80:  # continuation byte
            cut -= 1
        if cut > start:
            end = cut
    return Frame(start, end == len(message), len(message), message[start:end], nonce)


def split_message(message: bytes, nonce: int = 0, max_payload: int = MAX_PAYLOAD) -> list[Frame]:
    """Cut ``message`` into frames tagged with ``nonce`` (see ``next_frame``); the empty
    message is one empty frame."""
    frames = [next_frame(message, 0, nonce, max_payload)]
    while not frames[-1].last:
        previous = frames[-1]
        frames.append(
            next_frame(message, previous.offset + len(previous.payload), nonce, max_payload)
        )
    return frames


def to_bits(data: bytes) -> list[int]:
    """The bits of ``data``, most significant bit of each byte first."""
    return [(byte >> shift) & 1 for byte in data for shift in range(7, -1, -1)]


def from_bits(bits: list[int]) -> bytes:
    """Pack bits (MSB first) into bytes; the count must be a multiple of eight."""
    if len(bits) % 8:
        raise LocalProtocolError(f"{len(bits)} bits do not make whole bytes")
    out = bytearray()
    for i in range(0, len(bits), 8):
        byte = 0
        for bit in bits[i : i + 8]:
            byte = (byte << 1) | bit
        out.append(byte)
    return bytes(out)


class FrameDecoder:
    """Incremental decoder: feed one bit at a time, get a ``Frame`` when one completes.

    The per-bit path only shifts a byte together; header and CRC checks run at field
    boundaries. A first byte that is not VERSION is refused at once (noise, or a frame
    shifted by a lost or extra bit); the rest of the header is checked as soon as its last
    bit arrives, so a corrupt or oversized length raises ``HeaderError`` before any payload
    is awaited. After a frame completes or an error is raised the decoder is ready for the
    next frame.
    """

    __slots__ = ("_buf", "_byte", "_nbits", "_need", "header", "max_message", "max_payload")

    def __init__(self, max_payload: int = MAX_PAYLOAD, max_message: int = MAX_MESSAGE) -> None:
        self.max_payload = max_payload
        self.max_message = max_message
        self._buf = bytearray()
        self._byte = 0
        self._nbits = 0
        self._need = HEADER_LEN
        self.header: Header | None = None

    def reset(self) -> None:
        """Drop any partial frame."""
        self._buf = bytearray()
        self._byte = 0
        self._nbits = 0
        self._need = HEADER_LEN
        self.header = None

    @property
    def at_start(self) -> bool:
        """True when no bit of the next frame has arrived yet."""
        return self._nbits == 0 and not self._buf

    def bits_to_frame_end(self) -> int:
        """Bits still to come in this frame, once its header is checked; else 0 (its length
        is not known yet)."""
        if self.header is None:
            return 0
        return (self._need - len(self._buf)) * 8 - self._nbits

    def feed_many(self, bits: list[int]) -> Frame | None:
        """Feed several bits; the frame the last one completes, or None. Raises as ``feed``
        does; a frame may complete only at the last bit. Bits that stay inside a frame whose
        header is checked (no field boundary among them) are packed a byte at a time."""
        if self.header is not None and len(bits) < self.bits_to_frame_end():
            start = (8 - self._nbits) % 8
            for bit in bits[:start]:
                self.feed(bit)
            whole = max(len(bits) - start, 0) // 8 * 8
            if whole:
                packed = int("".join("1" if bit else "0" for bit in bits[start : start + whole]), 2)
                self._buf += packed.to_bytes(whole // 8, "big")
            for bit in bits[start + whole :]:
                self.feed(bit)
            return None
        frame = None
        for bit in bits:
            if frame is not None:
                raise LocalProtocolError("bits after the end of a frame")
            frame = self.feed(bit)
        return frame

    def feed(self, bit: int) -> Frame | None:
        """Take one bit; return the frame it completes, or None while more are needed."""
        byte = (self._byte << 1) | bit
        if self._nbits < 7:
            self._byte = byte
            self._nbits += 1
            return None
        buf = self._buf
        buf.append(byte)
        self._byte = 0
        self._nbits = 0
        if len(buf) < self._need:
            if len(buf) == 1 and byte != VERSION:  # noise or a slip: no need to wait for more
                self.reset()
                raise HeaderError(f"version byte is 0x{byte:02x}, expected 0x{VERSION:02x}")
            return None
        return self._at_boundary()

    def _at_boundary(self) -> Frame | None:
        if self.header is None:
            try:
                self.header = decode_header(self._buf, self.max_payload, self.max_message)
            except HeaderError:
                self.reset()
                raise
            self._need = OVERHEAD + self.header.payload_length
            return None
        data = bytes(self._buf)
        self.reset()
        return decode_frame(data, self.max_payload)
