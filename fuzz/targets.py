"""Fuzz targets: hypothesis properties of the codec and the protocol machines.

Each target is an ordinary ``@given`` test, so the same function runs three ways:
plain pytest replays its ``@example`` regressions and a few generated inputs on every
`make test` (tests/test_fuzz_targets.py); `make fuzz` runs it for a time budget
(fuzz/run.py); and a coverage-guided fuzzer such as atheris can drive it through
``target.hypothesis.fuzz_one_input``. Every target counts the inputs it ran in ``RUNS``.

A failure found by fuzzing is pinned here as an ``@example`` on its target.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable

from hypothesis import example, given
from hypothesis import strategies as st

from minitalk.classic import (
    Ack,
    ClassicFormat,
    ClassicMessage,
    ClassicReceiver,
    EndAt,
    SenderDropped,
    describe,
)
from minitalk.errors import FrameError, RemoteProtocolError
from minitalk.frame import (
    HEADER_LEN,
    MAX_PAYLOAD,
    OVERHEAD,
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
from minitalk.protocol import (
    BYE,
    GRANT,
    POLL,
    REQUEST,
    VERDICT_BITS,
    MessageReceived,
    Receiver,
    SenderState,
)
from tests.helpers import (
    ASLEEP,
    NOT_WRITTEN,
    PEER_EXITED,
    STOP,
    WRITTEN,
    observe,
)
from tests.simlink import STRANGER_PID, Network

RUNS: Counter[str] = Counter()


def _counted(name: str) -> None:
    RUNS[name] += 1


# -- frame decoder -------------------------------------------------------------------------------


def _well_formed(data: bytes) -> bool:
    """An independent check of what a valid frame is, written from the spec, not the codec."""
    if len(data) < OVERHEAD or data[0] != VERSION or crc8(data[:20]) != data[20]:
        return False
    flags = data[1]
    payload_length = int.from_bytes(data[2:4], "big")
    message_length = int.from_bytes(data[4:8], "big")
    end = int.from_bytes(data[8:12], "big") + payload_length  # offset + n
    last = flags == 0x80
    return (
        flags in (0x00, 0x80)  # reserved bits clear
        and payload_length <= MAX_PAYLOAD
        and end <= message_length
        and last == (end == message_length)
        and (payload_length > 0 or last)  # only the last frame may be empty
        and len(data) == OVERHEAD + payload_length
        and crc16(data[:-2]) == int.from_bytes(data[-2:], "big")
    )


def _reseal(body: bytearray, header_check: bool) -> bytes:
    """Recompute the CRC-16 (and, if asked, the header check) over a changed frame body."""
    if header_check:
        body[HEADER_LEN - 1] = crc8(bytes(body[: HEADER_LEN - 1]))
    return bytes(body) + crc16(bytes(body)).to_bytes(2, "big")


@st.composite
def near_frames(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes; or a valid frame with bytes changed, cut or added; or a frame whose
    header was changed and whose checks were then recomputed, so that only the check that
    was *not* recomputed (or the field limits) can refuse it."""
    mode = draw(st.sampled_from(["random", "mutated", "header_only", "resealed"]))
    if mode == "random":
        return draw(st.binary(max_size=2 * OVERHEAD + 80))
    size = draw(st.one_of(st.integers(0, 80), st.sampled_from([MAX_PAYLOAD - 1, MAX_PAYLOAD])))
    payload = draw(st.binary(min_size=size, max_size=size))
    offset, nonce = draw(st.integers(0, 3000)), draw(st.integers(0, 2**64 - 1))
    last = not payload or draw(st.booleans())  # only a last frame may be empty
    message_length = offset + len(payload) + (0 if last else draw(st.integers(1, 3000)))
    data = bytearray(encode_frame(Frame(offset, last, message_length, payload, nonce)))
    if mode == "mutated":
        for _ in range(draw(st.integers(0, 3))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data[: draw(st.integers(0, len(data) + 2))]) + draw(st.binary(max_size=2))
    body = data[:-2]
    if draw(st.booleans()):  # grow or shrink the payload to around the size limit
        extra = draw(st.integers(-min(2, len(payload)), 2))
        body = body + bytes(max(extra, 0)) if extra >= 0 else body[:extra]
        new_length = len(body) - HEADER_LEN
        body[2:4] = max(new_length, 0).to_bytes(2, "big")
        if draw(st.booleans()):  # and the message length to match, as a last frame's would
            body[4:8] = (offset + max(new_length, 0)).to_bytes(4, "big")
    for _ in range(draw(st.integers(0, 2))):
        body[draw(st.integers(0, HEADER_LEN - 1))] = draw(st.integers(0, 255))
    return _reseal(body, header_check=mode == "resealed")


@given(near_frames())
@example(b"")
@example(bytes(OVERHEAD))
@example(b"\xff" * OVERHEAD)
@example(bytes([VERSION, 0x80, 0, 0, 0, 0, 0, 0]) + b"\x00\x1d\x0f")
@example(bytes.fromhex("52 80 0000 00000000 00000000 0000000000000000 b1 c4ae"))  # empty message
# An empty frame at offset 2 of 5 that is not the last: every check right, and still refused.
@example(bytes.fromhex("52 00 0000 00000005 00000002 0000000000000000 9f 33b7"))
def fuzz_frame_decoder(data: bytes) -> None:
    """Bytes in: a frame out only if the frame is valid, else the codec's typed error."""
    _counted("frame_decoder")
    try:
        frame = decode_frame(data)
    except FrameError:
        assert not _well_formed(data), "a valid frame was rejected"
        return
    assert _well_formed(data), "a frame with a bad check or header was accepted"
    assert encode_frame(frame) == data


@given(st.lists(st.integers(0, 1), max_size=(OVERHEAD + 40) * 8 * 2))
def fuzz_frame_bit_stream(bits: list[int]) -> None:
    """Bits in, one at a time: frames only where the bits spell a valid frame, typed errors
    otherwise, and the decoder keeps going after an error (it never hangs or wedges)."""
    _counted("frame_bit_stream")
    decoder = FrameDecoder()
    start = 0
    for index, bit in enumerate(bits):
        try:
            frame = decoder.feed(bit)
        except FrameError:
            start = index + 1
            continue
        if frame is not None:
            consumed = from_bits(bits[start : index + 1])
            assert _well_formed(consumed)
            assert encode_frame(frame) == consumed
            start = index + 1


# -- round trip ----------------------------------------------------------------------------------

all_planes = st.characters(codec="utf-8")  # every plane, surrogates excluded (not encodable)


@given(
    st.one_of(
        st.text(all_planes, max_size=200),
        st.text(all_planes, min_size=1000, max_size=3000),  # several frames
        st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(200, 1200)),
    )
)
@example("")
@example("\U0010ffff" * 257)
@example("a" * 1023 + "🎉")
@example("🇯🇵" * 300)
def fuzz_round_trip(text: str) -> None:
    """Any text encodes to frames and decodes back identical; no frame splits a character."""
    _counted("round_trip")
    message = text.encode("utf-8")
    frames = split_message(message)
    rebuilt = b""
    for frame in frames:
        data = encode_frame(frame)
        assert len(data) <= OVERHEAD + MAX_PAYLOAD
        decoded = decode_frame(data)
        assert decoded == frame
        assert decoded.offset == len(rebuilt)  # each frame starts where the last one ended
        decoded.payload.decode("utf-8")  # whole characters only
        rebuilt += decoded.payload
    assert rebuilt.decode("utf-8") == text
    assert frames[-1].last
    assert not any(frame.last for frame in frames[:-1])


# -- receiver state machine ---------------------------------------------------------------------

# PIDs 10-12 and a stranger send symbols; the pseudo-PIDs of tests.helpers stand for what
# the server's driver reports.
receiver_inputs = st.lists(
    st.tuples(
        st.sampled_from(
            [10, 10, 10, 11, 12, STRANGER_PID, PEER_EXITED, STOP, WRITTEN, NOT_WRITTEN, ASLEEP]
        ),
        st.integers(0, 1),
        st.sampled_from([0.0, 1e-5, 0.01, 0.06, 0.4, 0.6, 1.5, 3.5]),
    ),
    max_size=300,
)


@given(receiver_inputs, st.binary(max_size=60))
def fuzz_receiver(inputs: list[tuple[int, int, float]], framed: bytes) -> None:
    """(PID, signal, time) in, and the driver's own observations: no error but the peer's, no
    message that no sender framed, a bounded memory of PIDs, and back to accepting a new
    session once everyone has gone silent. A ``LocalProtocolError`` is a bug here: it fails."""
    _counted("receiver")
    receiver = Receiver(max_message=1000, max_queue=2, max_notices=2)
    # PID 10 plays an honest sender's symbols, so that whole frames do occur among the noise.
    honest = [REQUEST]
    for frame in split_message(framed):
        honest += to_bits(encode_frame(frame)) + [POLL] * VERDICT_BITS
    honest.append(BYE)
    cursor = 0
    now = 0.0
    events = []
    for pid, noise, dt in inputs:
        now += dt
        symbol = noise
        if pid == 10 and noise and receiver.peer == 10 and (run := receiver.bulk()):
            # the server loop's tight loop: a run of the honest sender's bits in one call
            taken = honest[cursor : cursor + min(run, int(dt * 1000) + 1)]
            cursor += len(taken)
            receiver.bulk_received(taken, now)
            receiver.replies()
            continue
        if pid == 10 and cursor < len(honest):
            symbol = honest[cursor]
            cursor += 1
        with contextlib.suppress(RemoteProtocolError):
            observe(receiver, pid, symbol, now)
        receiver.replies()
        while (event := receiver.next_event()) is not None:
            events.append(event)
        assert len(receiver.known()) <= 1 + 2 + 2, receiver.known()
    for event in events:
        if isinstance(event, MessageReceived):
            assert event.pid == 10, f"never framed: {event}"
            assert event.text.encode() == framed, f"never framed: {event}"
    # Silence: every deadline passes; the receiver must end up free, queue and all. Each
    # deadline moves the machine on (no deadline is replayed at the same time).
    for _ in range(10_000):
        deadline = receiver.get_timer()
        if deadline is None:
            break
        now = max(now, deadline)
        receiver.handle_timer(now)
    assert receiver.session is None
    assert not receiver.queue
    receiver.replies()
    receiver.receive(42, REQUEST, now)
    assert receiver.replies() == [(42, GRANT)]  # a session, or the start of a refusal


# -- sender and receiver over a faulty link ------------------------------------------------------

FAULTS = [
    "deliver",
    "deliver",
    "deliver",
    "eat_server",
    "eat_client",
    "duplicate",
    "stranger_server",
    "stranger_client",
    "stranger_client",
    "delay",
    "kill",
    "swap_order",
    "shutdown",
    "stop_server",
    "output_breaks",
]
link_ops = st.lists(
    st.tuples(st.sampled_from(FAULTS), st.integers(0, 2), st.integers(0, 1), st.integers(1, 300)),
    max_size=60,
)


@given(st.lists(st.text(all_planes, max_size=60), min_size=1, max_size=3), link_ops)
@example(  # found by `make fuzz`: a stale 1 taken for BYE, then the last frame printed again
    texts=["", "", ""],
    ops=[
        ("deliver", 0, 0, 1),
        ("deliver", 0, 0, 11),
        ("stranger_client", 0, 1, 45),
        ("swap_order", 2, 1, 208),
        ("deliver", 0, 0, 176),
        ("deliver", 2, 1, 178),
        ("delay", 2, 1, 84),
    ],
)
@example(  # found by `make fuzz`: stopped past the session's end, then a failed write, acked
    texts=["ÝâófF\r©\U00046427ô5𢜍à\x94§\x85\U0002ee64\U00061268ë0¹\x92Ñ\x7f"],
    ops=[
        ("stranger_server", 0, 1, 35),
        ("delay", 1, 0, 138),
        ("stop_server", 1, 0, 127),
        ("stranger_client", 1, 1, 272),
        ("output_breaks", 1, 0, 169),
        ("delay", 2, 0, 9),
        ("eat_client", 0, 1, 261),
        ("swap_order", 2, 0, 94),
        ("eat_server", 0, 1, 73),
        ("stranger_client", 2, 1, 177),
        ("duplicate", 2, 0, 206),
        ("shutdown", 2, 1, 6),
        ("kill", 2, 0, 205),
        ("delay", 1, 0, 102),
        ("swap_order", 2, 1, 161),
        ("stop_server", 0, 0, 84),
        ("swap_order", 2, 0, 192),
        ("eat_server", 2, 0, 255),
        ("eat_server", 0, 1, 1),
        ("eat_server", 1, 1, 27),
        ("stop_server", 1, 1, 213),
    ],
)
def fuzz_faulty_link(texts: list[str], ops: list[tuple[str, int, int, int]]) -> None:
    """Delivered messages are exactly sent ones, each at most once; a sender that reports
    success was delivered exactly once; a healthy link afterwards ends every live sender.
    The shipped drivers run over the simulated kernel; every other run moves plain frame bits
    through their tight loops (the bulk path), led by the server or by the clients."""
    _counted("faulty_link")
    total = sum(map(len, texts))
    # Every other input takes the bulk path; every third has a limit the texts can pass, so
    # that TOO_LARGE refusals (and their detail bits) meet the faults too.
    limit = 40 if total % 3 == 0 else 10_000
    lead = "server" if total % 4 < 2 else "client"
    net = Network(Receiver(max_message=limit), bulk=total % 2 == 1, lead=lead)
    pids = [10 + index for index in range(len(texts))]
    sent = {pid: f"{pid}:{text}" for pid, text in zip(pids, texts, strict=True)}
    for pid in pids:
        net.add_client(pid, sent[pid])
    for kind, who, symbol, amount in ops:
        _apply(net, pids[who % len(pids)], kind, symbol, amount)
        _check_link(net, sent)
    net.run(max_steps=300_000)
    _check_link(net, sent)
    for client in net.clients.values():
        assert client.sender.finished or not client.alive, f"{client.pid} hangs"


def _apply(net: Network, pid: int, kind: str, symbol: int, amount: int) -> None:
    client = net.clients[pid]
    actions: dict[str, Callable[[], object]] = {
        "deliver": lambda: [net.step() for _ in range(amount)],
        "eat_server": lambda: net.eat_at_server(symbol),
        "eat_client": lambda: net.eat_at_client(pid, symbol),
        "duplicate": lambda: (
            net.redeliver_to_server(net.server_pending[symbol], symbol)
            if symbol in net.server_pending
            else None
        ),
        "stranger_server": lambda: net.inject_to_server(symbol, forged=amount > 200),
        "stranger_client": lambda: net.inject_to_client(pid, symbol, forged=amount > 200),
        "delay": lambda: net.advance(amount / 100),
        "kill": lambda: net.kill(pid) if client.alive and amount > 250 else None,
        "swap_order": lambda: net.deliver_to_server(1 - symbol),
        "shutdown": lambda: net.shut_down() if amount > 280 else None,
        "stop_server": lambda: _stopped_for(net, amount / 10),
        "output_breaks": lambda: setattr(net, "output_broken", amount > 150),
    }
    actions[kind]()


def _stopped_for(net: Network, seconds: float) -> None:
    """SIGSTOP the server for ``seconds``: it takes nothing and its deadlines wait; the
    clients see it stopped."""
    net.server_stopped = True
    net.advance(seconds)
    net.server_stopped = False


def _check_link(net: Network, sent: dict[int, str]) -> None:
    assert not net.stale_merges(), f"lost to a stray a drain would have taken: {net.stale_merges()}"
    printed = net.printed_texts()
    assert len(printed) == len(set(printed)), f"delivered twice: {printed}"
    for event in net.printed:
        assert sent.get(event.pid) == event.text, f"corrupt or foreign delivery: {event}"
    for client in net.clients.values():
        if client.sender.state is SenderState.DONE:
            assert printed.count(client.text) == 1, f"{client.pid} succeeded undelivered"


# -- classic assembler ----------------------------------------------------------------------------

# Every variant ClassicFormat can describe (tests/test_classic.py uses it too).
CLASSIC_FORMATS = st.builds(
    ClassicFormat,
    msb_first=st.booleans(),
    zero_symbol=st.sampled_from([0, 1]),
    terminator=st.sampled_from([b"\0", b"\n", b""]),
    length_bits=st.sampled_from([0, 32, 64]),
    length_msb_first=st.sampled_from([None, True, False]),
    length_counts_terminator=st.booleans(),
)


@given(
    fmt=CLASSIC_FORMATS,
    ack=st.sampled_from(list(Ack)),
    end=st.sampled_from([None, 0, 1]),
    end_at=st.sampled_from(list(EndAt)),
    delay=st.sampled_from([0.0, 0.0003]),
    signals=st.lists(
        st.tuples(
            st.sampled_from([11, 12, 13]),
            st.sampled_from([0, 1]),
            st.floats(0, 0.3),
            st.booleans(),  # what a look at the sender finds: still pending or not
            st.booleans(),  # whether the answers now are refused (not handled yet)
        ),
        max_size=400,
    ),
)
def fuzz_classic_receiver(
    fmt: ClassicFormat,
    ack: Ack,
    end: int | None,
    end_at: EndAt,
    delay: float,
    signals: list[tuple[int, int, float, bool, bool]],
) -> None:
    """Any symbol stream from several senders, at any pace, with any end signal and answer
    delay: the assembler never crashes and never mixes senders (each message is exactly
    what its sender's own symbols decode to), its answers go only to senders that signalled
    it, with the answer or the end signal, and each answer owed is handed out or reported
    once (a refused one tried again while its sender is silent): when the senders stop and
    their answers go through, nothing stays owed."""
    _counted("classic_receiver")
    if ack is Ack.NONE:
        end = None
    receiver = ClassicReceiver(
        fmt,
        ack=ack,
        ack_symbol=0,
        end_symbol=end,
        end_at=end_at,
        answer_delay=delay,
        idle_timeout=0.5,
        max_message=64,
    )
    streams: dict[int, list[int]] = {}
    allowed = {0} if end is None else {0, end}
    now = 0.0

    senders = {signal[0] for signal in signals}

    def deadline(pending: bool, refuse: bool) -> None:
        timer = receiver.get_timer()
        if timer is not None and now >= timer:
            receiver.handle_timer(now, still_pending=pending and receiver.looks_at() is not None)
            _check_classic_events(receiver, streams, fmt, ack, now)
        _answer(receiver, senders, allowed, now, refuse)

    for pid, symbol, gap, pending, refuse in signals:
        now += gap
        deadline(pending, refuse)
        receiver.receive(pid, symbol, now)
        streams.setdefault(pid, []).append(symbol)
        _check_classic_events(receiver, streams, fmt, ack, now)
        _answer(receiver, senders, allowed, now, refuse)
    for _ in range(20_000):  # the senders are silent from here: every answer goes or is said
        timer = receiver.get_timer()
        if timer is None:
            break
        now = max(now, timer)
        deadline(False, False)
    assert not receiver.owing
    assert receiver.senders == {}


def _answer(
    receiver: ClassicReceiver, senders: set[int], allowed: set[int], now: float, refuse: bool
) -> None:
    """Report every answer offered as sent, or as refused for a reason that may pass (the
    sender does not handle the signal yet), as the driver does."""
    replies = receiver.replies()
    assert {pid for pid, _ in replies} <= senders
    assert {answer for _, answer in replies} <= allowed
    for pid, _ in replies:
        if refuse:
            receiver.not_answered(pid, now, "not handled yet", may_change=True)
        else:
            receiver.answered(pid)


def _check_classic_events(
    receiver: ClassicReceiver,
    streams: dict[int, list[int]],
    fmt: ClassicFormat,
    ack: Ack,
    now: float,
) -> None:
    while (event := receiver.next_event()) is not None:
        assert isinstance(event, (ClassicMessage, SenderDropped))
        own = streams.pop(event.pid)  # what this sender sent since its last message
        if isinstance(event, ClassicMessage):
            assert event.data == _alone(fmt, own), (event, own)
            receiver.message_written(event.pid, now)  # as the driver does, once printed
        describe(event, fmt, ack)  # the trace of anything at all is printable


def _alone(fmt: ClassicFormat, symbols: list[int]) -> bytes:
    """What ``symbols`` decode to when their sender is the only one (ended by silence)."""
    receiver = ClassicReceiver(fmt, idle_timeout=0.5, max_message=64)
    for symbol in symbols:
        receiver.receive(1, symbol, 0.0)
    receiver.handle_timer(1.0)
    message = receiver.next_event()
    assert isinstance(message, ClassicMessage)
    assert receiver.next_event() is None
    return message.data


# The variants --detect finds (a newline terminator is not looked for).
DETECTABLE_FORMATS = CLASSIC_FORMATS.filter(
    lambda fmt: fmt.terminator != b"\n" and (fmt.length_bits or not fmt.length_counts_terminator)
)


@given(
    fmt=DETECTABLE_FORMATS,
    text=st.text(max_size=40).map(lambda t: t.replace("\0", "") + " 🎉 a"),
    cut=st.integers(0, 24),
    noise=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from([0, 1])), max_size=3),
    second=st.none() | st.text(max_size=20).map(lambda t: t.replace("\0", "") + " ✓ b"),
)
def fuzz_classic_detect(
    fmt: ClassicFormat, text: str, cut: int, noise: list[tuple[int, int]], second: str | None
) -> None:
    """Any variant's message (and a second one from the same sender, unless nothing but
    silence parts them: with no NUL, a prefix-ended message's next prefix byte, zero, reads
    as its NUL), whole or cut short or
    with signals lost and added: --detect never crashes, never delivers invalid UTF-8 or a
    NUL, and reads whole messages exactly."""
    _counted("classic_detect")
    if not fmt.terminator:  # no NUL: only silence can part two messages (or, see above)
        second = None
    texts = [text] if second is None else [text, second]
    symbols = [symbol for one in texts for symbol in fmt.encode(one.encode())]
    whole = not cut and not noise
    symbols = symbols[: len(symbols) - cut]
    for at, symbol in noise:  # a lost signal, or a stray one
        where = at % (len(symbols) + 1)
        if symbol and symbols:
            del symbols[where % len(symbols)]
        else:
            symbols.insert(where, symbol)
    receiver = ClassicReceiver(ack=Ack.BIT, detect=True, idle_timeout=0.5, max_message=64)
    messages: list[bytes] = []
    now = 0.0
    for symbol in symbols:
        now += 0.001
        receiver.receive(7, symbol, now)
        _collect(receiver, messages, now)
    receiver.handle_timer(now + 0.5)
    _collect(receiver, messages, now + 0.5)
    for data in messages:
        assert b"\0" not in data
        data.decode("utf-8")  # valid, or this raises
    if whole and all(len(one.encode()) <= 64 for one in texts):
        assert messages == [one.encode() for one in texts], (messages, fmt)


def _collect(receiver: ClassicReceiver, messages: list[bytes], now: float) -> None:
    while (event := receiver.next_event()) is not None:
        if isinstance(event, ClassicMessage):
            messages.append(event.data)
            receiver.message_written(event.pid, now)
        describe(event, ClassicFormat(), Ack.BIT)
    for pid, _ in receiver.replies():
        receiver.answered(pid)


TARGETS = {
    "frame_decoder": fuzz_frame_decoder,
    "frame_bit_stream": fuzz_frame_bit_stream,
    "round_trip": fuzz_round_trip,
    "receiver": fuzz_receiver,
    "faulty_link": fuzz_faulty_link,
    "classic_receiver": fuzz_classic_receiver,
    "classic_detect": fuzz_classic_detect,
}
assert HEADER_LEN == 21  # _well_formed above spells out the offset/64-bit-nonce header (0x52)
