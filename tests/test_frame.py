"""The frame codec: worked examples first, then properties over all of Unicode and all bytes."""

from __future__ import annotations

import binascii
import itertools
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from minitalk.errors import (
    ChecksumError,
    FrameError,
    HeaderError,
    LocalProtocolError,
    OversizeError,
)
from minitalk.frame import (
    HEADER_LEN,
    MAX_MESSAGE,
    MAX_NONCE,
    MAX_PAYLOAD,
    OVERHEAD,
    VERSION,
    Frame,
    FrameDecoder,
    Header,
    crc8,
    crc16,
    decode_frame,
    decode_header,
    encode_frame,
    encode_header,
    from_bits,
    next_frame,
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


def layout_header(
    *,
    payload_length: int,
    message_length: int,
    offset: int = 0,
    nonce: int = 0,
    flags: int = 0x80,
) -> bytes:
    """A header built from the layout in docs/protocol.md, independently of the codec:
    VERSION, FLAGS, u16 payload length, u32 message length, u32 offset, u64 nonce, CRC-8."""
    fields = struct.pack(">BBHIIQ", 0x52, flags, payload_length, message_length, offset, nonce)
    return fields + bytes((reference_crc8(fields),))


def layout_frame(
    payload: bytes, *, message_length: int, offset: int = 0, nonce: int = 0, flags: int = 0x80
) -> bytes:
    """A whole frame built from the layout, with the standard library's CRC-16 as the oracle."""
    body = layout_header(
        payload_length=len(payload),
        message_length=message_length,
        offset=offset,
        nonce=nonce,
        flags=flags,
    )
    body += payload
    return body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")


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


def test_layout_constants() -> None:
    assert VERSION == 0x52
    assert HEADER_LEN == 1 + 1 + 2 + 4 + 4 + 8 + 1 == 21
    assert OVERHEAD == HEADER_LEN + 2 == 23
    assert MAX_NONCE == 2**64 - 1
    assert MAX_MESSAGE == 2**32 - 1


def test_golden_frame_hi() -> None:
    frame = Frame(offset=0, last=True, message_length=2, payload=b"hi")
    expected = bytes.fromhex("52 80 0002 00000002 00000000 0000000000000000 82 6869 4642")
    assert layout_frame(b"hi", message_length=2) == expected
    assert encode_frame(frame) == expected
    assert decode_frame(expected) == frame


def test_golden_empty_frame() -> None:
    expected = bytes.fromhex("52 80 0000 00000000 00000000 0000000000000000 b1 c4ae")
    assert layout_frame(b"", message_length=0) == expected
    data = encode_frame(Frame(offset=0, last=True, message_length=0, payload=b""))
    assert data == expected
    assert len(data) == OVERHEAD


def test_golden_middle_frame() -> None:
    payload = "é".encode()
    frame = Frame(offset=1000, last=False, message_length=3000, payload=payload)
    expected = bytes.fromhex("52 00 0002 00000bb8 000003e8 0000000000000000 38 c3a9 9ad8")
    assert layout_frame(payload, message_length=3000, offset=1000, flags=0) == expected
    assert encode_frame(frame) == expected
    assert decode_frame(expected) == frame


def test_golden_frame_with_a_64_bit_nonce() -> None:
    frame = Frame(offset=0, last=True, message_length=2, payload=b"hi", nonce=0xDEADBEEFCAFEF00D)
    expected = bytes.fromhex("52 80 0002 00000002 00000000 deadbeefcafef00d f5 6869 8648")
    assert layout_frame(b"hi", message_length=2, nonce=0xDEADBEEFCAFEF00D) == expected
    assert encode_frame(frame) == expected
    assert decode_frame(expected) == frame


def test_golden_frame_at_the_field_limits() -> None:
    # The widest values each field can carry: nothing is truncated or spills into a neighbour.
    frame = Frame(MAX_MESSAGE - 1, True, MAX_MESSAGE, b"z", MAX_NONCE)
    expected = layout_frame(b"z", message_length=2**32 - 1, offset=2**32 - 2, nonce=2**64 - 1)
    assert expected[4:20] == bytes.fromhex("ffffffff fffffffe ffffffffffffffff")
    assert encode_frame(frame) == expected
    assert decode_frame(expected) == frame


def test_decode_header_reads_every_field() -> None:
    data = layout_header(
        payload_length=7, message_length=70_000, offset=65_536, nonce=2**63 + 5, flags=0
    )
    assert decode_header(data) == Header(
        offset=65_536, last=False, payload_length=7, message_length=70_000, nonce=2**63 + 5
    )
    assert encode_header(decode_header(data)) == data


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


def test_a_frame_of_the_old_version_is_refused() -> None:
    old = bytearray(layout_frame(b"hi", message_length=2))
    old[0] = 0x51
    with pytest.raises(HeaderError, match="version byte"):
        decode_frame(bytes(old))


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
    frame = Frame(4999, True, 5000, b"x")
    bits = to_bits(encode_frame(frame))
    decoder = FrameDecoder(max_message=4999)
    for bit in bits[: HEADER_LEN * 8 - 1]:
        assert decoder.feed(bit) is None
    with pytest.raises(OversizeError) as caught:
        decoder.feed(bits[HEADER_LEN * 8 - 1])
    assert caught.value.limit == 4999
    assert caught.value.message_length == 5000


def test_payload_length_over_limit_refused_at_the_header() -> None:
    header = layout_header(payload_length=MAX_PAYLOAD + 1, message_length=MAX_PAYLOAD + 1)
    with pytest.raises(HeaderError, match="over the limit"):
        decode_bits(to_bits(header))


# Headers whose CRC-8 is right but whose fields contradict each other: (fields, what is said).
BAD_HEADERS = {
    "reserved flag 0x40": (dict(payload_length=2, message_length=2, flags=0xC0), "reserved"),
    "reserved flag 0x01": (dict(payload_length=2, message_length=2, flags=0x81), "reserved"),
    "reserved flags, not last": (
        dict(payload_length=2, message_length=9, flags=0x7F),
        "reserved",
    ),
    "payload past the end": (
        dict(payload_length=5, message_length=12, offset=8, flags=0x80),
        "past the message length",
    ),
    "offset past the end": (
        dict(payload_length=0, message_length=12, offset=13, flags=0x80),
        "past the message length",
    ),
    "offset wraps u32": (
        dict(payload_length=2, message_length=2**32 - 1, offset=2**32 - 1, flags=0x80),
        "past the message length",
    ),
    "last flag before the end": (
        dict(payload_length=5, message_length=12, offset=0, flags=0x80),
        "last-frame flag is set",
    ),
    "no last flag at the end": (
        dict(payload_length=5, message_length=12, offset=7, flags=0x00),
        "last-frame flag is clear",
    ),
    "empty last frame short of the end": (
        dict(payload_length=0, message_length=12, offset=3, flags=0x80),
        "last-frame flag is set",
    ),
    "empty frame, not the last": (
        dict(payload_length=0, message_length=12, offset=3, flags=0x00),
        "empty frame",
    ),
    "empty message without the last flag": (
        dict(payload_length=0, message_length=0, offset=0, flags=0x00),
        "last-frame flag is clear",
    ),
}


@pytest.mark.parametrize("name", list(BAD_HEADERS))
def test_inconsistent_headers_are_refused_at_the_header(name: str) -> None:
    fields, said = BAD_HEADERS[name]
    header = layout_header(**fields)
    with pytest.raises(HeaderError, match=said) as caught:
        decode_header(header)
    assert not isinstance(caught.value, OversizeError)
    # The bit decoder refuses it at the header's last bit, before any payload is awaited.
    decoder = FrameDecoder()
    bits = to_bits(header)
    for bit in bits[:-1]:
        assert decoder.feed(bit) is None
    with pytest.raises(HeaderError, match=said):
        decoder.feed(bits[-1])
    assert decoder.at_start


def test_an_empty_frame_that_is_not_the_last_is_refused_whole() -> None:
    # The fairness rule: no frame may carry nothing unless it ends the message.
    body = layout_header(payload_length=0, message_length=10, offset=4, flags=0x00)
    data = body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")
    with pytest.raises(HeaderError, match="empty frame"):
        decode_frame(data)


def test_an_empty_last_frame_at_the_end_of_a_message_is_accepted() -> None:
    data = layout_frame(b"", message_length=10, offset=10)
    assert decode_frame(data) == Frame(10, True, 10, b"")


def test_an_inconsistent_header_is_not_excused_as_oversized() -> None:
    # OversizeError only for a header that is otherwise well formed.
    header = layout_header(payload_length=5, message_length=9000, offset=0, flags=0x80)
    with pytest.raises(HeaderError, match="last-frame flag") as caught:
        decode_header(header, max_message=100)
    assert not isinstance(caught.value, OversizeError)


@pytest.mark.parametrize(
    ("frame", "said"),
    [
        (Frame(0, True, 2, b"hi", nonce=MAX_NONCE + 1), "nonce"),
        (Frame(0, True, 2, b"hi", nonce=-1), "nonce"),
        (Frame(-1, True, 1, b"hi"), "offset"),
        (Frame(MAX_MESSAGE + 1, True, MAX_MESSAGE + 3, b"hi"), "offset"),
        (Frame(0, True, MAX_MESSAGE + 1, b"hi"), "message length"),
        (Frame(0, True, 1, b"hi"), "past the message length"),
        (Frame(9, True, 10, b"hi"), "past the message length"),
        (Frame(0, True, 5, b"hi"), "last-frame flag is set"),
        (Frame(3, False, 5, b"hi"), "last-frame flag is clear"),
        (Frame(2, False, 5, b""), "empty frame"),
        (Frame(0, True, MAX_PAYLOAD + 1, b"x" * (MAX_PAYLOAD + 1)), "over the limit"),
    ],
)
def test_encoder_refuses_what_the_decoder_would(frame: Frame, said: str) -> None:
    with pytest.raises(LocalProtocolError, match=said):
        encode_frame(frame)
    header = Header(frame.offset, frame.last, len(frame.payload), frame.message_length, frame.nonce)
    with pytest.raises(LocalProtocolError, match=said):
        encode_header(header)


def test_largest_nonce_is_encoded() -> None:
    frame = Frame(0, True, 2, b"hi", nonce=MAX_NONCE)
    assert decode_frame(encode_frame(frame)).nonce == 2**64 - 1


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
    # 1 + 255 * 4 = 1021 bytes fit in the first frame, 256 emoji (1024 bytes) in the second.
    assert [len(f.payload) for f in frames] == [1021, 1024, 356]
    assert [f.offset for f in frames] == [0, 1021, 2045]


def test_split_offsets_are_where_each_payload_starts() -> None:
    message = "ça marche, 日本語 🎉".encode() * 5
    frames = split_message(message, nonce=7, max_payload=8)
    for frame in frames:
        assert message[frame.offset : frame.offset + len(frame.payload)] == frame.payload
        assert frame.nonce == 7
    ends = [f.offset + len(f.payload) for f in frames]
    assert [f.offset for f in frames] == [0, *ends[:-1]]
    assert ends[-1] == len(message)


def test_split_empty_message_is_one_empty_last_frame() -> None:
    assert split_message(b"") == [Frame(0, True, 0, b"")]


def test_more_than_128_frames_have_distinct_increasing_offsets() -> None:
    # The old 7-bit sequence number made frame 128 look like frame 0; an offset never repeats.
    message = bytes(range(256)) * (MAX_PAYLOAD * 130 // 256) + b"tail"
    frames = split_message(message)
    assert len(frames) == 131
    offsets = [f.offset for f in frames]
    assert offsets == [i * MAX_PAYLOAD for i in range(131)]
    assert all(a < b for a, b in itertools.pairwise(offsets))
    assert encode_frame(frames[128])[:HEADER_LEN] != encode_frame(frames[0])[:HEADER_LEN]
    assert decode_frame(encode_frame(frames[128])).offset == 128 * MAX_PAYLOAD


def test_next_frame_takes_its_offset_from_start() -> None:
    message = b"0123456789"
    assert next_frame(message, 4, nonce=9, max_payload=3) == Frame(4, False, 10, b"456", 9)
    assert next_frame(message, 8, max_payload=3) == Frame(8, True, 10, b"89")
    assert next_frame(message, 10) == Frame(10, True, 10, b"")  # an empty last frame is valid
    with pytest.raises(LocalProtocolError):
        next_frame(message, 11)
    with pytest.raises(LocalProtocolError):
        next_frame(message, -1)


def test_bits_are_msb_first() -> None:
    assert to_bits(b"\x80\x01") == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert from_bits(to_bits(b"\x5a\xff")) == b"\x5a\xff"


def test_every_one_and_two_bit_flip_of_a_small_frame_is_detected() -> None:
    data = encode_frame(Frame(3, False, 100, b"minitalk 1.0", nonce=0x0123456789ABCDEF))
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
    assert [f.offset for f in frames] == [
        sum(len(f.payload) for f in frames[:i]) for i in range(len(frames))
    ]


@given(st.binary(max_size=2 * OVERHEAD + 64))
@example(b"")
@example(bytes([VERSION]) + b"\x80" + b"\x00" * 21)
@example(layout_frame(b"", message_length=0))
@example(layout_frame(b"", message_length=5, offset=2, flags=0x00))  # empty, not the last
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


def header_is_consistent(header: bytes) -> bool:
    """The header rules of docs/protocol.md, restated from the layout, not from the codec."""
    flags, payload_length, message_length, offset = struct.unpack(">BHII", header[1:12])
    end = offset + payload_length
    last = flags == 0x80
    return (
        flags in (0x00, 0x80)
        and payload_length <= MAX_PAYLOAD
        and end <= message_length
        and last == (end == message_length)
        and (payload_length > 0 or last)
    )


def near_or_far(limit: int, top: int) -> st.SearchStrategy[int]:
    """Mostly values around ``limit``, where the header rules bite, sometimes any field value."""
    return st.one_of(st.integers(0, limit), st.integers(0, top))


@given(
    st.one_of(st.sampled_from([0x00, 0x80]), st.integers(0, 255)),
    near_or_far(MAX_PAYLOAD + 2, 2**16 - 1),
    near_or_far(3000, 2**32 - 1),
    near_or_far(3000, 2**32 - 1),
    st.integers(0, MAX_NONCE),
)
@example(0x00, 0, 1, 0, 0)  # empty, not the last
@example(0x80, 1, 1, 0, 0)
@example(0x80, 0, 5, 5, 0)  # an empty last frame at the end
def test_a_header_with_a_good_check_decodes_only_if_its_fields_agree(
    flags: int, payload_length: int, message_length: int, offset: int, nonce: int
) -> None:
    header = layout_header(
        payload_length=payload_length,
        message_length=message_length,
        offset=offset,
        nonce=nonce,
        flags=flags,
    )
    try:
        decoded = decode_header(header)
    except HeaderError:
        assert not header_is_consistent(header)
        return
    assert header_is_consistent(header)
    assert decoded == Header(offset, flags == 0x80, payload_length, message_length, nonce)
    assert encode_header(decoded) == header


@st.composite
def frame_and_flips(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    last = draw(st.booleans())
    payload = draw(st.binary(min_size=0 if last else 1, max_size=MAX_PAYLOAD))
    offset = draw(st.integers(0, 5000))
    after = 0 if last else draw(st.integers(1, 5000))
    nonce = draw(st.integers(0, MAX_NONCE))
    frame = Frame(offset, last, offset + len(payload) + after, payload, nonce)
    data = encode_frame(frame)
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


@given(st.binary(min_size=0, max_size=300), st.data())
def test_feeding_in_runs_is_feeding_bit_by_bit(payload: bytes, data: st.DataObject) -> None:
    """The decoder's bulk path (``feed_many``, packing whole bytes) takes the same frames as
    bit-by-bit feeding, wherever the runs start and end."""
    bits = to_bits(encode_frame(Frame(0, True, len(payload), payload, 7)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(bits)), max_size=6)))
    decoder = FrameDecoder()
    frames = []
    for start, end in zip([0, *cuts], [*cuts, len(bits)], strict=True):
        if start < end:
            run = bits[start:end]
            if decoder.header is not None and len(run) < decoder.bits_to_frame_end():
                assert decoder.feed_many(run) is None
            else:
                frames += [f for f in (decoder.feed(bit) for bit in run) if f is not None]
    assert frames == [Frame(0, True, len(payload), payload, 7)]
