"""Verdict coding: the 8 bits with which the server tells the client what became of a frame.

A verdict is clocked out one bit per client POLL, so what the client reads can slip: a lost
POLL or answer shifts the rest by one, an extra symbol (a late answer, a stray taken for one)
pushes everything back by one. The codewords below are chosen so that no single slip turns one
valid verdict into another: every 8-symbol window that one deletion (with any symbol after
it), one insertion or duplication (cut back to 8), or one substituted symbol makes from a
codeword is either that codeword or not a codeword at all, and the all-0 and all-1 words
(a run of CONTINUEs, a run of FRAME_OVERs) and their single slips are none. A slip then reads
as a garbled verdict, which the sender treats like silence: it asks again and resends the
frame, which the server recognises as a repeat. ``tests/test_verdicts.py`` proves the claim
over every pair and every slip.

Why not a code and its complement (minitalk 1.0)? ``0001 1110`` (ACK) shifted by one is
``0011 110x``, a valid TOO_LARGE; RESEND shifted read as OUT_OF_ORDER. Of the 16 such words at
most 8 are pairwise slip-safe, and minitalk needs 9.
"""

from __future__ import annotations

from enum import IntEnum

from minitalk.frame import crc8, to_bits

VERDICT_BITS = 8
DETAIL_BITS = 40  # after TOO_LARGE: the server's limit (32 bits) and its CRC-8


class Verdict(IntEnum):
    """The server's answer to a frame. Each value is its 8-bit codeword, sent MSB first."""

    ACK = 0b01010110
    RESEND = 0b10011001  # bad header or CRC, or the frame stalled: send it again, whole
    TOO_LARGE = 0b00110100  # followed by DETAIL_BITS: the server's limit
    NOT_UTF8 = 0b01001010
    OUT_OF_ORDER = 0b10100001
    RESTART = 0b00101110  # a new session began mid-message: send it again from byte 0
    BUSY = 0b01100111  # the queue is full: try again later
    GOING_AWAY = 0b00111011  # the server is shutting down
    NOT_WRITTEN = 0b10011110  # the server took the message but could not write it out


# Verdicts after which the server ends the session (the client gives up with the reason).
ENDING = frozenset(
    {
        Verdict.TOO_LARGE,
        Verdict.NOT_UTF8,
        Verdict.OUT_OF_ORDER,
        Verdict.BUSY,
        Verdict.GOING_AWAY,
        Verdict.NOT_WRITTEN,
    }
)

_BY_CODE = {int(verdict): verdict for verdict in Verdict}


def verdict_bits(verdict: Verdict) -> list[int]:
    """The 8 symbols that carry ``verdict``."""
    return to_bits(bytes((int(verdict),)))


def parse_verdict(byte: int) -> Verdict | None:
    """The verdict 8 read symbols carry, or None if they are garbled."""
    return _BY_CODE.get(byte)


def detail_bits(value: int) -> list[int]:
    """The 40 bits that follow a TOO_LARGE verdict: ``value`` (32 bits) and its CRC-8."""
    data = value.to_bytes(4, "big")
    return to_bits(data + bytes((crc8(data),)))


def parse_detail(bits: int) -> int | None:
    """The value carried by 40 detail bits, or None if its check fails."""
    data = bits.to_bytes(5, "big")
    return int.from_bytes(data[:4], "big") if crc8(data[:4]) == data[4] else None
