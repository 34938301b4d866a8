"""The frame codec: worked examples first, then properties over all of Unicode and all bytes."""

from __future__ import annotations

import binascii
import itertools

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from minitalk.errors import ChecksumError, FrameError, HeaderError, OversizeError
from minitalk.frame import (
    HEADER_LEN,
    MAX_PAYLOAD,
    OVERHEAD,
    SEQ_MODULUS,
    VERSION,
    Frame,
    FrameDecoder,
    crc8,
    crc16,
    decode_frame,
    encode_frame,
    from_bits,
    split_message,
    to_bits,
)


def reference_crc8(data: bytes) -> int:
    """CRC-8 (poly 0x07, init 0), bit by bit: an oracle independent of crcmod."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def flip(data: bytes, *positions: int) -> bytes:
    out = bytearray(data)
    for position in positions:
        out[position // 8] ^= 0x80 >> (position % 8)
    return bytes(out)


def decode_bits(bits: list[int], max_message: int = 2**32 - 1) -> Frame | None:
    """Feed bits one by one; the first frame completed, or None if the bits run out."""
    decoder = FrameDecoder(max_message=max_message)
    for bit in bits:
        frame = decoder.feed(bit)
        if frame is not None:
            return frame
    return None


# -- worked examples ---------------------------------------------------------------------------


def test_crc16_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1


def test_crc8_check_value() -> None:
    assert crc8(b"123456789") == 0xF4
    assert reference_crc8(b"123456789") == 0xF4


def test_golden_frame_hi() -> None:
    frame = Frame(seq=0, last=True, message_length=2, payload=b"hi")
    data = encode_frame(frame)
    assert data.hex() == "5180000200000002" + "00000000" + "28" + "6869" + "0ae5"
    assert data[HEADER_LEN - 1] == reference_crc8(data[: HEADER_LEN - 1])
    assert int.from_bytes(data[-2:], "big") == binascii.crc_hqx(data[:-2], 0xFFFF)
    assert decode_frame(data) == frame


def test_golden_empty_frame() -> None:
    data = encode_frame(Frame(seq=0, last=True, message_length=0, payload=b""))
    assert data.hex() == "5180000000000000000000001e7855"
    assert len(data) == OVERHEAD


def test_golden_middle_frame() -> None:
    data = encode_frame(Frame(seq=5, last=False, message_length=3000, payload="é".encode()))
    assert data.hex() == "5105000200000bb800000000cec3a9ff9c"


def test_golden_frame_with_nonce() -> None:
    frame = Frame(seq=0, last=True, message_length=2, payload=b"hi", nonce=0xDEADBEEF)
    data = encode_frame(frame)
    assert data.hex() == "5180000200000002" + "deadbeef" + "e2" + "6869" + "86cc"
    assert decode_frame(data) == frame


def test_crc_over_frame_with_its_crc_is_zero() -> None:
    data = encode_frame(Frame(0, True, 5, b"hello"))
    assert crc16(data) == 0


@pytest.mark.parametrize("fill", [0x00, 0xFF])
def test_all_zero_and_all_one_streams_are_rejected(fill: int) -> None:
    data = bytes([fill]) * (OVERHEAD + 4)
    with pytest.raises(HeaderError):
        decode_frame(data)
    with pytest.raises(HeaderError):
        decode_bits(to_bits(data))


def test_version_byte_starts_with_a_zero_bit() -> None:
    # The receiver relies on it to tell a frame's first bit (0) from a repeated request (1).
    assert VERSION >> 7 == 0
    assert VERSION not in (0x00, 0xFF)


@pytest.mark.parametrize("extra", [[0], [1], [0, 0]])
def test_a_frame_shifted_by_extra_bits_is_refused_at_its_first_byte(extra: list[int]) -> None:
    # A lost or extra symbol shifts the frame; its first byte then never reads as VERSION.
    bits = extra + to_bits(encode_frame(Frame(0, True, 2, b"hi")))
    decoder = FrameDecoder()
    for bit in bits[:7]:
        assert decoder.feed(bit) is None
    with pytest.raises(HeaderError, match="version byte"):
        decoder.feed(bits[7])
    assert decoder.at_start


def test_oversized_length_refused_at_the_header() -> None:
    frame = Frame(0, True, 5000, b"x")
    bits = to_bits(encode_frame(frame))
    decoder = FrameDecoder(max_message=4999)
    for bit in bits[: HEADER_LEN * 8 - 1]:
        assert decoder.feed(bit) is None
    with pytest.raises(OversizeError) as caught:
        decoder.feed(bits[HEADER_LEN * 8 - 1])
    assert caught.value.limit == 4999
    assert caught.value.message_length == 5000


def test_payload_length_over_limit_refused_at_the_header() -> None:
    header = bytearray(encode_frame(Frame(0, True, 5, b"hello"))[:HEADER_LEN])
    header[2:4] = (MAX_PAYLOAD + 1).to_bytes(2, "big")
    header[4:8] = (MAX_PAYLOAD + 1).to_bytes(4, "big")
    header[HEADER_LEN - 1] = crc8(bytes(header[: HEADER_LEN - 1]))
    with pytest.raises(HeaderError, match="over the limit"):
        decode_bits(to_bits(bytes(header)))


def test_corrupt_crc_raises_checksum_error() -> None:
    data = bytearray(encode_frame(Frame(0, True, 5, b"hello")))
    data[-1] ^= 0x01
    with pytest.raises(ChecksumError):
        decode_frame(bytes(data))


def test_truncated_and_padded_frames_rejected() -> None:
    data = encode_frame(Frame(0, True, 5, b"hello"))
    with pytest.raises(FrameError):
        decode_frame(data[:-1])
    with pytest.raises(FrameError):
        decode_frame(data + b"\x00")


def test_split_never_cuts_a_character() -> None:
    text = "a" + "🎉" * 600  # 4-byte characters straddle the 1024-byte mark
    frames = split_message(text.encode())
    assert len(frames) == 3
    assert all(len(f.payload) <= MAX_PAYLOAD for f in frames)
    for f in frames:
        f.payload.decode("utf-8")  # each frame is whole characters
    assert b"".join(f.payload for f in frames) == text.encode()
    assert [f.last for f in frames] == [False, False, True]
    assert [f.seq for f in frames] == [0, 1, 2]


def test_split_empty_message_is_one_empty_last_frame() -> None:
    assert split_message(b"") == [Frame(0, True, 0, b"")]


def test_sequence_numbers_wrap() -> None:
    frames = split_message(b"x" * (MAX_PAYLOAD * (SEQ_MODULUS + 2)))
    assert [f.seq for f in frames[SEQ_MODULUS - 1 : SEQ_MODULUS + 2]] == [SEQ_MODULUS - 1, 0, 1]


def test_bits_are_msb_first() -> None:
    assert to_bits(b"\x80\x01") == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert from_bits(to_bits(b"\x5a\xff")) == b"\x5a\xff"


def test_every_one_and_two_bit_flip_of_a_small_frame_is_detected() -> None:
    data = encode_frame(Frame(3, False, 100, b"minitalk 1.0"))
    nbits = len(data) * 8
    for position in range(nbits):
        with pytest.raises(FrameError):
            decode_frame(flip(data, position))
    for pair in itertools.combinations(range(nbits), 2):
        with pytest.raises(FrameError):
            decode_frame(flip(data, *pair))


# -- properties --------------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=3000)


@given(texts)
@example("")
@example("🎉" * 700)
@example("👩‍👩‍👧‍👦🇯🇵 שלום e\u0301")
def test_any_text_round_trips_through_frames(text: str) -> None:
    message = text.encode("utf-8")
    frames = split_message(message)
    decoded = []
    for frame in frames:
        via_bytes = decode_frame(encode_frame(frame))
        via_bits = decode_bits(to_bits(encode_frame(frame)))
        assert via_bytes == via_bits == frame
        decoded.append(via_bytes.payload)
        via_bytes.payload.decode("utf-8")  # no frame splits a character
    assert b"".join(decoded).decode("utf-8") == text
    assert [f.last for f in frames] == [False] * (len(frames) - 1) + [True]
    assert all(f.message_length == len(message) for f in frames)


@given(st.binary(max_size=2 * OVERHEAD + 64))
@example(b"")
@example(bytes([VERSION]) + b"\x80" + b"\x00" * 20)
def test_decoding_arbitrary_bytes_returns_a_frame_or_raises_frame_error(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except FrameError:
        return
    assert encode_frame(frame) == data  # only a well-formed frame is accepted


@given(st.lists(st.integers(0, 1), max_size=800))
def test_decoding_arbitrary_bits_returns_a_frame_or_raises_frame_error(bits: list[int]) -> None:
    try:
        frame = decode_bits(bits)
    except FrameError:
        return
    if frame is not None:
        size = (OVERHEAD + len(frame.payload)) * 8
        assert encode_frame(frame) == from_bits(bits[:size])


@st.composite
def frame_and_flips(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    payload = draw(st.binary(max_size=MAX_PAYLOAD))
    extra = draw(st.integers(0, 5000))
    seq = draw(st.integers(0, SEQ_MODULUS - 1))
    data = encode_frame(Frame(seq, draw(st.booleans()), len(payload) + extra, payload))
    count = draw(st.integers(1, 3))
    flips = draw(
        st.lists(st.integers(0, len(data) * 8 - 1), min_size=count, max_size=count, unique=True)
    )
    return data, flips


@given(frame_and_flips())
def test_every_one_two_and_three_bit_flip_is_detected(case: tuple[bytes, list[int]]) -> None:
    data, flips = case
    with pytest.raises(FrameError):
        decode_frame(flip(data, *flips))
