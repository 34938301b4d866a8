"""The variants of the plain protocol, as pure code: which one is spoken, and its codec.

A plain minitalk sends each byte as 8 signals; the variants differ in the bit order, which
signal is 0, what ends a message and whether a length comes first (docs/classic.md, from 40
public implementations). ``ClassicFormat`` names one and turns text into symbols; ``Ack`` and
``EndAt`` name how a server answers. The machines of ``classic`` and the variant finder of
``classic_detect`` build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from minitalk.classic_limits import SIGNAL_NAMES
from minitalk.errors import LocalProtocolError


class Ack(Enum):
    """When a classic server answers a sender."""

    BIT = "bit"  # one signal per bit received: the common handshake
    END = "end"  # one signal when the message is complete
    NONE = "none"  # never


class EndAt(Enum):
    """Where a server that answers each bit puts its end-of-message signal (14 of 24 per-bit
    servers surveyed send one; their clients wait for it)."""

    INSTEAD = "instead"  # in place of the last bit's answer
    BEFORE = "before"  # just before the last bit's answer
    AFTER = "after"  # just after it


@dataclass(frozen=True, slots=True)
class ClassicFormat:
    """One variant of the plain protocol. The default is the exercise's plain form: 8-bit
    bytes, most significant bit first, SIGUSR1 = 0, the message ended by a NUL byte."""

    msb_first: bool = True
    zero_symbol: int = 0  # the signal that carries a 0 bit: 0 = SIGUSR1, 1 = SIGUSR2
    terminator: bytes = b"\0"  # b"\0", b"\n", or b"" for none
    length_bits: int = 0  # a length prefix of 32 or 64 bits before the text; 0 for none
    length_msb_first: bool | None = None  # the prefix's own bit order; None: as the text
    length_counts_terminator: bool = False  # the prefix counts the terminator too

    def __post_init__(self) -> None:
        if self.zero_symbol not in (0, 1):
            raise LocalProtocolError("zero_symbol must be 0 (SIGUSR1) or 1 (SIGUSR2)")
        if self.terminator not in (b"\0", b"\n", b""):
            raise LocalProtocolError("the terminator is a NUL, a newline, or none")
        if self.length_bits not in (0, 32, 64):
            raise LocalProtocolError("a length prefix has 32 or 64 bits, or is absent")

    @property
    def prefix_msb_first(self) -> bool:
        return self.msb_first if self.length_msb_first is None else self.length_msb_first

    def encode(self, data: bytes) -> list[int]:
        """The symbols that carry ``data`` (without its terminator) in this variant."""
        bits: list[int] = []
        if self.length_bits:
            length = len(data) + (len(self.terminator) if self.length_counts_terminator else 0)
            if length >= 1 << self.length_bits:
                raise LocalProtocolError("message too long for the length prefix")
            bits += bits_of(length, self.length_bits, msb_first=self.prefix_msb_first)
        for byte in data + self.terminator:
            bits += bits_of(byte, 8, msb_first=self.msb_first)
        return [bit ^ self.zero_symbol for bit in bits]

    def describe(self) -> str:
        """The variant in a few words, for receipts and traces."""
        order = "MSB first" if self.msb_first else "LSB first"
        zero = f"{SIGNAL_NAMES[self.zero_symbol]} = 0"
        end = {b"\0": "NUL-ended", b"\n": "newline-ended", b"": "no terminator"}[self.terminator]
        words = [order, zero, end]
        if self.length_bits:
            prefix_order = "MSB" if self.prefix_msb_first else "LSB"
            counts = ", counting the terminator" if self.length_counts_terminator else ""
            words.append(f"{self.length_bits}-bit length prefix ({prefix_order} first{counts})")
        return ", ".join(words)


def bits_of(value: int, width: int, *, msb_first: bool) -> list[int]:
    bits = [(value >> shift) & 1 for shift in range(width)]  # LSB first
    return bits[::-1] if msb_first else bits


def value_of(bits: list[int], *, msb_first: bool) -> int:
    value = 0
    for bit in bits if msb_first else bits[::-1]:
        value = value << 1 | bit
    return value
