"""The classic (plain minitalk) codec and machines, without a single signal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.targets import CLASSIC_FORMATS
from minitalk.classic import (
    Ack,
    ClassicEvent,
    ClassicFormat,
    ClassicMessage,
    ClassicReceiver,
    ClassicRun,
    ClassicSender,
    ClassicSenderState,
    EndAt,
    SenderDropped,
    describe,
    describe_send,
)
from minitalk.classic_limits import (
    ANSWER_HOLD,
    ANSWER_RETRY,
    ANSWER_RETRY_FOR,
    CLASSIC_RUN,
    SPACED_WAIT,
)
from minitalk.errors import LocalProtocolError, NoAnswerError

PLAIN = ClassicFormat()


def written(receiver: ClassicReceiver) -> list[ClassicEvent]:
    """Every event the receiver has, each message written out as the driver does (which
    lets its held answers go)."""
    events: list[ClassicEvent] = []
    while (event := receiver.next_event()) is not None:
        events.append(event)
        if isinstance(event, ClassicMessage):
            receiver.message_written(event.pid, 0.0)
    return events


def test_the_plain_form_is_msb_first_sigusr1_zero_and_a_nul() -> None:
    assert PLAIN.encode(b"A") == [0, 1, 0, 0, 0, 0, 0, 1] + [0] * 8


def test_variants_encode_as_documented() -> None:
    assert ClassicFormat(msb_first=False).encode(b"A")[:8] == [1, 0, 0, 0, 0, 0, 1, 0]
    assert ClassicFormat(zero_symbol=1).encode(b"A") == [1, 0, 1, 1, 1, 1, 1, 0] + [1] * 8
    assert ClassicFormat(terminator=b"\n").encode(b"")[:8] == [0, 0, 0, 0, 1, 0, 1, 0]
    assert ClassicFormat(terminator=b"").encode(b"") == []
    prefixed = ClassicFormat(length_bits=32, terminator=b"").encode(b"hi")
    assert prefixed[:32] == [0] * 30 + [1, 0]  # 2, MSB first
    assert len(prefixed) == 32 + 16
    lsb_prefix = ClassicFormat(length_bits=32, length_msb_first=False).encode(b"hi")
    assert lsb_prefix[:32] == [0, 1] + [0] * 30
    counted = ClassicFormat(length_bits=64, length_counts_terminator=True).encode(b"hi")
    assert counted[:64] == [0] * 62 + [1, 1]  # 3: the NUL counted


def test_bad_formats_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        ClassicFormat(length_bits=16)
    with pytest.raises(LocalProtocolError):
        ClassicFormat(terminator=b"\r")


# Those a message can end in by itself: a terminator or a length prefix (else only silence).
formats = CLASSIC_FORMATS.filter(lambda f: bool(f.terminator or f.length_bits))


def _text_for(fmt: ClassicFormat, data: bytes) -> bytes:
    # Without a length prefix the terminator byte cannot occur inside the text.
    return data if fmt.length_bits else data.replace(fmt.terminator or b"\0", b"")


@given(fmt=formats, data=st.binary(max_size=40))
def test_what_a_format_encodes_its_receiver_assembles(fmt: ClassicFormat, data: bytes) -> None:
    text = _text_for(fmt, data)
    receiver = ClassicReceiver(fmt, ack=Ack.BIT)
    symbols = fmt.encode(text)
    for index, symbol in enumerate(symbols):
        receiver.receive(7, symbol, index * 0.001)
    answers = receiver.replies()  # the last bit's answer is held until the message is written
    events = written(receiver)
    assert [(type(e), e.pid) for e in events] == [(ClassicMessage, 7)]
    message = events[0]
    assert isinstance(message, ClassicMessage)
    assert message.data == text
    assert answers == [(7, 0)] * (len(symbols) - 1)
    assert receiver.replies() == [(7, 0)]  # one answer per bit, the last once it is printed
    assert receiver.senders == {}


@given(
    texts=st.lists(st.text(max_size=12), min_size=2, max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_senders_at_once_never_mix(texts: list[str], order: object) -> None:
    streams = {100 + n: PLAIN.encode(t.replace("\0", "").encode()) for n, t in enumerate(texts)}
    pending = [pid for pid, symbols in streams.items() for _ in symbols]
    order.shuffle(pending)  # type: ignore[attr-defined]
    position = dict.fromkeys(streams, 0)
    receiver = ClassicReceiver(PLAIN, ack=Ack.END)
    for step, pid in enumerate(pending):
        receiver.receive(pid, streams[pid][position[pid]], step * 1e-4)
        position[pid] += 1
    got = {e.pid: e.data for e in written(receiver) if isinstance(e, ClassicMessage)}
    assert got == {100 + n: t.replace("\0", "").encode() for n, t in enumerate(texts)}
    answers = receiver.replies()
    assert sorted(answers) == sorted((pid, 0) for pid in streams)  # one end answer each


def test_a_silent_sender_is_dropped_and_said_why() -> None:
    receiver = ClassicReceiver(PLAIN, idle_timeout=1.0)
    for index, symbol in enumerate(PLAIN.encode(b"hi")[:19]):
        receiver.receive(5, symbol, index * 0.001)
    assert receiver.get_timer() == pytest.approx(0.018 + 1.0)
    receiver.handle_timer(0.5)
    assert written(receiver) == []
    receiver.handle_timer(1.1)
    [dropped] = written(receiver)
    assert isinstance(dropped, SenderDropped)
    assert "2 bytes and 3 bits" in dropped.reason
    assert "no NUL arrived" in dropped.reason


def test_without_a_terminator_silence_ends_the_message() -> None:
    fmt = ClassicFormat(terminator=b"")
    receiver = ClassicReceiver(fmt, idle_timeout=0.5)
    for index, symbol in enumerate(fmt.encode(b"ok")):
        receiver.receive(5, symbol, index * 0.001)
    receiver.handle_timer(1.0)
    [message] = written(receiver)
    assert isinstance(message, ClassicMessage)
    assert message.data == b"ok"


def test_a_length_prefix_over_the_limit_is_dropped_at_once() -> None:
    fmt = ClassicFormat(length_bits=32)
    receiver = ClassicReceiver(fmt, max_message=10)
    for index, symbol in enumerate(fmt.encode(b"x" * 11)[:32]):
        receiver.receive(5, symbol, index * 0.001)
    [dropped] = written(receiver)
    assert isinstance(dropped, SenderDropped)
    assert "announces 11 bytes" in dropped.reason


@pytest.mark.parametrize(
    "fmt",
    [
        PLAIN,
        ClassicFormat(terminator=b"\n"),
        ClassicFormat(terminator=b""),
        ClassicFormat(length_bits=32),
        ClassicFormat(length_bits=32, terminator=b"\0", length_counts_terminator=True),
        ClassicFormat(length_bits=64, terminator=b""),
    ],
    ids=repr,
)
def test_a_message_over_the_limit_prints_nothing_of_it(fmt: ClassicFormat) -> None:
    """Refused once it passes --max-bytes, a message is swallowed to its end: none of its
    bytes is taken for a message of its own (its tail was printed as one), and the same
    sender's next message is served as usual."""
    receiver = ClassicReceiver(fmt, max_message=10, idle_timeout=0.5)
    now = 0.0
    for text in (b"0123456789abcdefghij", b"next"):
        for symbol in fmt.encode(text):
            receiver.receive(5, symbol, now)
            now += 0.001
        if not fmt.terminator and not fmt.length_bits:
            now += 1.0  # the silence that ends a message
            receiver.handle_timer(now)
    dropped, message = written(receiver)
    assert isinstance(dropped, SenderDropped)
    assert "limit of 10 bytes" in dropped.reason
    assert isinstance(message, ClassicMessage)
    assert message.data == b"next"


def test_invalid_utf8_is_shown_safely_and_the_trace_points_at_a_long_gap() -> None:
    # "é" is c3 a9; a lost bit in the a9 after a long pause shifts it: the byte breaks UTF-8.
    symbols = PLAIN.encode("é!".encode())
    symbols = symbols[:10] + symbols[11:]  # one signal of the second byte lost
    receiver = ClassicReceiver(PLAIN)
    now = 0.0
    for index, symbol in enumerate(symbols):
        now += 0.050 if index == 10 else 0.0003
        receiver.receive(9, symbol, now)
    events = written(receiver)
    receiver.handle_timer(now + 2)  # never ends with a whole NUL: dropped, explained
    events += written(receiver)
    assert all(e.pid == 9 for e in events)
    text = "\n".join(line for e in events for line in describe(e, PLAIN, Ack.BIT))
    assert "byte 0: bits 11000011 = 0xc3" in text
    assert "gaps smallest 0.30 ms" in text
    assert "largest 50.00 ms" in text


def test_a_utf8_break_right_after_a_long_gap_is_pointed_out() -> None:
    symbols = PLAIN.encode("é".encode())  # c3 a9, then the NUL
    symbols[8] ^= 1  # after a long pause the second byte arrives as 0x29, no continuation
    receiver = ClassicReceiver(PLAIN)
    now = 0.0
    for index, symbol in enumerate(symbols):
        now += 0.040 if index == 9 else 0.0003
        receiver.receive(3, symbol, now)
    [message] = written(receiver)
    assert isinstance(message, ClassicMessage)
    assert message.data == b"\xc3)"
    assert message.utf8_error == 0
    assert message.text == "\ufffd)"
    lines = describe(message, PLAIN, Ack.BIT)
    assert any("breaks UTF-8 right after a gap of 40.00 ms" in line for line in lines)


@pytest.mark.parametrize(
    ("before", "said"),
    [(643, "after 643 bytes that decoded as UTF-8"), (3, "check the bit order and signals")],
)
def test_a_break_far_into_the_text_blames_a_lost_signal_not_the_variant(
    before: int, said: str
) -> None:
    """One signal lost after 643 bytes that decoded right, no unusual gap: the trace said
    only "check the bit order and signals". Far into the text it names a lost or merged
    signal first (and the bit order still, should the bytes before be wrong: a reversed order
    can decode for a few bytes); near the start, the bit order."""
    text = "a" * before + "é"  # c3 a9: a wrong bit turns the c3 into 0x83, a lone tail byte
    symbols = PLAIN.encode(text.encode())
    symbols[8 * before + 1] ^= 1
    receiver = ClassicReceiver(PLAIN)
    for index, symbol in enumerate(symbols):
        receiver.receive(4, symbol, index * 0.0003)
    [message] = written(receiver)
    assert isinstance(message, ClassicMessage)
    assert message.utf8_error == before
    assert any(said in line for line in describe(message, PLAIN, Ack.BIT))


# -- the sender -----------------------------------------------------------------------------


def test_a_server_that_answers_paces_the_send() -> None:
    symbols = PLAIN.encode(b"ab")
    sender = ClassicSender(symbols, probe_wait=0.01, reply_timeout=1.0)
    sender.start(0.0)
    sent = list(sender.outbox)
    now = 0.0
    while not sender.finished:
        sender.outbox.clear()
        now += 0.0001
        if sender.state is ClassicSenderState.ENDING:
            sender.handle_timer(now + 1)
            continue
        sender.receive(now)
        sent += sender.outbox
    assert sent == symbols  # every symbol once, in order, never twice
    assert sender.paced
    assert sender.answers == len(symbols)


def test_an_answer_gap_holds_each_next_bit_back() -> None:
    """Some servers are still busy after they answer (their own client pauses after each
    answer): --answer-gap-us waits that long before the next bit; an answer meanwhile is
    counted only."""
    symbols = PLAIN.encode(b"a")
    sender = ClassicSender(symbols, probe_wait=0.01, reply_timeout=1.0, answer_gap=0.0005)
    sender.start(0.0)
    assert sender.outbox == [symbols[0]]
    sender.outbox.clear()
    sender.receive(0.0001)  # the answer: the next bit waits the gap
    assert sender.outbox == []
    assert sender.get_timer() == pytest.approx(0.0006)
    sender.receive(0.0002)  # a second signal during the gap: no bit for it
    assert sender.outbox == []
    timer = sender.get_timer()
    assert timer is not None
    sender.handle_timer(timer)
    assert sender.outbox == [symbols[1]]
    assert sender.state is ClassicSenderState.PACED


def test_a_server_that_never_answers_is_paced_by_the_delay() -> None:
    symbols = PLAIN.encode(b"a")
    sender = ClassicSender(symbols, delay=0.0005, probe_wait=0.01)
    sender.start(0.0)
    assert sender.get_timer() == pytest.approx(0.01)
    sent = list(sender.outbox)
    while not sender.finished:
        sender.outbox.clear()
        timer = sender.get_timer()
        assert timer is not None
        sender.handle_timer(timer)
        sent += sender.outbox
    assert sent == symbols
    assert not sender.paced
    assert sender.state is ClassicSenderState.DONE


def test_a_paced_send_whose_answers_stop_fails_and_never_repeats_a_bit() -> None:
    symbols = PLAIN.encode(b"a")
    sender = ClassicSender(symbols, reply_timeout=1.0)
    sender.start(0.0)
    sender.receive(0.001)  # paced now
    sender.receive(0.002)
    sent = 3
    sender.outbox.clear()
    sender.handle_timer(1.5)  # the answer to bit 3 never came
    assert sender.state is ClassicSenderState.FAILED
    assert sender.outbox == []
    assert isinstance(sender.error, NoAnswerError)
    assert f"after signal {sent} of {len(symbols)}" in str(sender.error)


@given(
    answers=st.lists(st.booleans(), max_size=60),
    data=st.binary(max_size=4),
)
def test_whatever_the_server_does_no_symbol_is_sent_twice(answers: list[bool], data: bytes) -> None:
    symbols = PLAIN.encode(data.replace(b"\0", b""))
    sender = ClassicSender(symbols)
    sender.start(0.0)
    sent = list(sender.outbox)
    now = 0.0
    for answer in answers:
        sender.outbox.clear()
        now += 0.003
        if answer:
            sender.receive(now)
        else:
            sender.handle_timer(sender.get_timer() or now)
        sent += sender.outbox
    assert sent == symbols[: len(sent)]


def test_answers_are_released_one_at_a_time() -> None:
    # Two senders that wait for answers: the second is answered only once the first has sent
    # its next bit (or ANSWER_HOLD passed), so two of their bits are never on their way at once.
    receiver = ClassicReceiver(PLAIN, ack=Ack.BIT)
    receiver.receive(1, 0, 0.0)
    assert receiver.replies() == [(1, 0)]  # 1 is answered: its next bit is on its way
    receiver.receive(2, 0, 0.001)
    assert receiver.replies() == []  # 2 waits its turn
    receiver.receive(1, 1, 0.002)
    assert receiver.replies() == [(2, 0)]  # 1's next bit came: 2 is answered, 1 waits
    assert receiver.get_timer() == pytest.approx(0.002 + ANSWER_HOLD)
    receiver.handle_timer(0.002 + ANSWER_HOLD)  # 2 never sent its next bit: stop waiting
    assert receiver.replies() == [(1, 0)]
    receiver.not_answered(1, 0.1, "it exited")  # that answer could not go out
    assert receiver.senders[1].unanswered_why == "it exited"


def test_a_send_paced_by_the_delay_waits_while_the_server_holds_its_last_signal() -> None:
    symbols = PLAIN.encode(b"a")
    sender = ClassicSender(symbols, delay=0.001, probe_wait=0.01, reply_timeout=0.5)
    sender.start(0.0)
    sender.outbox.clear()
    sender.handle_timer(0.01, server_holding=True)  # a signal of that kind still pending there
    assert sender.outbox == []
    assert sender.state is ClassicSenderState.PROBING
    sender.handle_timer(0.02, server_holding=False)
    assert sender.outbox == [symbols[1]]
    sender.outbox.clear()
    timer = sender.get_timer()
    assert timer is not None
    sender.handle_timer(timer, server_holding=True)
    sender.handle_timer(timer + 0.6, server_holding=True)  # held past reply_timeout: give up
    assert sender.finished
    assert sender.outbox == []
    assert "has not taken signal 2 of 16" in str(sender.error)


# -- end signals, answer delay ------------------------------------------------------------------


def _answers_to_one_message(receiver: ClassicReceiver, text: bytes) -> list[int]:
    """Every answer's signal for ``text`` from PID 7 (each bit at 1 ms), the last ones once
    the message is written, and the driver reporting each as sent."""
    symbols = PLAIN.encode(text)
    answers: list[int] = []
    for index, symbol in enumerate(symbols):
        receiver.receive(7, symbol, index * 0.001)
        written(receiver)
        for pid, answer in receiver.replies():
            answers.append(answer)
            receiver.answered(pid)
    return answers


@pytest.mark.parametrize(
    ("end_at", "tail"),
    [(EndAt.INSTEAD, [1]), (EndAt.BEFORE, [1, 0]), (EndAt.AFTER, [0, 1])],
)
def test_an_end_signal_goes_where_it_is_asked(end_at: EndAt, tail: list[int]) -> None:
    receiver = ClassicReceiver(PLAIN, ack=Ack.BIT, end_symbol=1, end_at=end_at)
    answers = _answers_to_one_message(receiver, b"ok")
    bits = len(PLAIN.encode(b"ok"))
    assert answers == [0] * (bits - 1) + tail
    message = receiver.senders.get(7)
    assert message is None  # the message ended; its record went with its last answer


def test_an_end_signal_of_the_answers_kind_waits_until_the_answer_before_it_was_taken() -> None:
    """Two SIGUSR1 pending at a client at once are one: "again" (one more SIGUSR1 after the
    last answer) goes only once the driver's look says the one before is no longer pending."""
    receiver = ClassicReceiver(PLAIN, ack=Ack.BIT, end_symbol=0, end_at=EndAt.AFTER)
    answers = _answers_to_one_message(receiver, b"a")
    assert answers == [0] * 16  # every bit answered; the end signal is held
    assert receiver.looks_at() == (7, 0)
    assert receiver.owes(7)
    timer = receiver.get_timer()
    assert timer is not None
    receiver.handle_timer(timer, still_pending=True)  # not taken yet: look again later
    assert receiver.replies() == []
    later = receiver.get_timer()
    assert later is not None
    assert later > timer
    receiver.handle_timer(later, still_pending=False)
    assert receiver.replies() == [(7, 0)]
    receiver.answered(7)
    assert not receiver.owes(7)
    assert not receiver.owing


def test_an_end_signal_never_taken_room_for_is_not_sent_and_said() -> None:
    receiver = ClassicReceiver(PLAIN, ack=Ack.BIT, end_symbol=0, end_at=EndAt.AFTER)
    symbols = PLAIN.encode(b"a")
    for index, symbol in enumerate(symbols):
        receiver.receive(7, symbol, index * 0.001)
    [message] = written(receiver)
    for pid, _ in receiver.replies():
        receiver.answered(pid)
    now = 1.0 + SPACED_WAIT
    receiver.handle_timer(now, still_pending=True)  # a stopped client: it never took it
    assert receiver.replies() == []
    assert not receiver.owing
    assert "not sent (the signal before it was still pending" in message.record.end_signal


def test_with_ack_end_the_end_signal_is_the_one_answer() -> None:
    receiver = ClassicReceiver(PLAIN, ack=Ack.END, ack_symbol=0, end_symbol=1)
    assert _answers_to_one_message(receiver, b"hi") == [1]


def test_an_answer_delay_holds_each_answer_that_long() -> None:
    receiver = ClassicReceiver(PLAIN, ack=Ack.BIT, answer_delay=0.0003)
    receiver.receive(7, 0, 1.0)
    assert receiver.replies() == []
    assert receiver.get_timer() == pytest.approx(1.0003)
    receiver.handle_timer(1.0003)
    assert receiver.replies() == [(7, 0)]


def test_an_end_signal_needs_answers() -> None:
    with pytest.raises(LocalProtocolError):
        ClassicReceiver(PLAIN, ack=Ack.NONE, end_symbol=1)


@pytest.mark.parametrize(
    ("answers", "said"),
    [
        ([0, 1], "SIGUSR2 in place of the last bit's answer"),
        ([0, 1, 0], "SIGUSR2 just before the last bit's answer (SIGUSR1 after it)"),
        ([0, 0, 1], "SIGUSR2 after the last bit's answer"),
        ([0, 0, 0], "SIGUSR1 again after the last bit's answer"),
        ([0, 0], ""),
    ],
)
def test_the_send_trace_names_the_servers_end_signal(answers: list[int], said: str) -> None:
    data = b"a"
    symbols = PLAIN.encode(data)
    sender = ClassicSender(symbols)
    sender.start(0.0)
    now = 0.0
    for _ in range(len(symbols) - 1):  # every bit but the last answered with SIGUSR1
        now += 0.001
        sender.receive(now, 0)
    for symbol in answers[1:]:  # the last bit's answer, then what follows it
        now += 0.001
        sender.receive(now, symbol)
    lines = describe_send(sender, PLAIN, data)
    ending = [line for line in lines if line.startswith("end signal")]
    assert ending == ([f"end signal: {said}"] if said else [])


def test_an_answer_refused_for_a_handler_not_yet_installed_is_tried_again_while_it_waits() -> None:
    """Some clients install their handler late, or just after sending a bit: the answer
    refused then is tried again while the client stays silent (it waits for it), and is
    sent once the look finds the handler."""
    receiver = ClassicReceiver(PLAIN, ack=Ack.BIT)
    receiver.receive(7, 0, 1.0)
    assert receiver.replies() == [(7, 0)]
    receiver.not_answered(7, 1.0, "it does not block, ignore or catch SIGUSR1", may_change=True)
    assert receiver.owes(7)
    assert receiver.get_timer() == pytest.approx(1.0 + ANSWER_RETRY)
    receiver.handle_timer(1.0 + ANSWER_RETRY)
    assert receiver.replies() == [(7, 0)]  # tried again
    receiver.answered(7)  # it handles it now
    record = receiver.senders[7]
    assert (record.answered, record.unanswered, record.answered_late) == (1, 0, 1)
    assert not receiver.owes(7)


def test_a_client_that_sends_on_was_not_waiting_for_the_refused_answer() -> None:
    receiver = ClassicReceiver(PLAIN, ack=Ack.BIT)
    receiver.receive(7, 0, 1.0)
    receiver.replies()
    receiver.not_answered(7, 1.0, "it does not block, ignore or catch SIGUSR1", may_change=True)
    receiver.receive(7, 1, 1.0002)  # its next bit: a timed client, never to be answered
    assert receiver.replies() == [(7, 0)]  # the new bit's answer only
    receiver.not_answered(7, 1.0002, "it does not block, ignore or catch SIGUSR1")
    assert not receiver.owes(7)
    assert receiver.senders[7].unanswered == 2


def test_a_refused_answer_is_not_tried_for_ever() -> None:
    receiver = ClassicReceiver(PLAIN, ack=Ack.BIT, idle_timeout=10.0)
    receiver.receive(7, 0, 0.0)
    now = 0.0
    while True:
        for pid, _ in receiver.replies():
            receiver.not_answered(pid, now, "not handled", may_change=True)
        if not receiver.owes(7):
            break
        timer = receiver.get_timer()
        assert timer is not None
        now = timer
        receiver.handle_timer(now)
    assert now < ANSWER_RETRY_FOR + 2 * ANSWER_RETRY
    assert receiver.senders[7].unanswered == 1


# -- --detect: the variant found from what arrives ------------------------------------------------

DETECTABLE = [
    ClassicFormat(),
    ClassicFormat(msb_first=False),
    ClassicFormat(zero_symbol=1),
    ClassicFormat(msb_first=False, zero_symbol=1),
    ClassicFormat(length_bits=32, terminator=b""),
    ClassicFormat(length_bits=32),
    ClassicFormat(length_bits=32, length_counts_terminator=True),
    ClassicFormat(length_bits=64, msb_first=False, terminator=b""),
    ClassicFormat(length_bits=32, length_msb_first=False),
    ClassicFormat(length_bits=64, zero_symbol=1, length_msb_first=True, msb_first=False),
    ClassicFormat(terminator=b""),  # ended by silence
]
SAMPLE = "hello, world 🎉 ça marche: 日本語"


@pytest.mark.parametrize("fmt", DETECTABLE, ids=lambda fmt: fmt.describe())
def test_detect_finds_each_variant_and_reads_the_message(fmt: ClassicFormat) -> None:
    receiver = ClassicReceiver(ack=Ack.BIT, detect=True, idle_timeout=0.5)
    symbols = fmt.encode(SAMPLE.encode())
    for index, symbol in enumerate(symbols):
        receiver.receive(7, symbol, index * 0.001)
    receiver.handle_timer(len(symbols) * 0.001 + 0.5)  # silence ends one with no terminator
    [message] = written(receiver)
    assert isinstance(message, ClassicMessage)
    assert message.text == SAMPLE
    detected = message.record.detected
    assert detected is not None
    assert detected.encode(SAMPLE.encode()) == symbols  # a reading of exactly what was sent
    lines = describe(message, PLAIN, Ack.BIT)
    assert f"PID 7: detected: {detected.describe()}; the flags that pin it: " in "\n".join(lines)


@given(
    text=st.text(min_size=1, max_size=30).map(lambda t: t.replace("\0", "") + " 🎉 a"),
    fmt=st.sampled_from(DETECTABLE[:-1]),
)
def test_detect_reads_what_any_variant_sends(text: str, fmt: ClassicFormat) -> None:
    receiver = ClassicReceiver(ack=Ack.BIT, detect=True, idle_timeout=0.5)
    for index, symbol in enumerate(fmt.encode(text.encode())):
        receiver.receive(7, symbol, index * 0.001)
    receiver.handle_timer(1000.0)  # its silence ends a message held for a NUL that may follow
    [message] = written(receiver)
    assert isinstance(message, ClassicMessage)
    assert message.text == text


def test_detect_drops_what_no_variant_reads() -> None:
    receiver = ClassicReceiver(ack=Ack.NONE, detect=True, idle_timeout=0.5)
    symbols = PLAIN.encode(b"hello")[:-3]  # cut short: no NUL, no whole byte
    for index, symbol in enumerate(symbols):
        receiver.receive(7, symbol, index * 0.001)
    receiver.handle_timer(1.0)
    [dropped] = written(receiver)
    assert isinstance(dropped, SenderDropped)
    assert "no variant reads them as a whole message" in dropped.reason


def test_detect_takes_no_format() -> None:
    with pytest.raises(LocalProtocolError):
        ClassicReceiver(ClassicFormat(msb_first=False), detect=True)


@pytest.mark.parametrize("text", ["hi", "", "été!"])
def test_detect_holds_a_short_message_until_no_prefix_can_explain_more(text: str) -> None:
    """A message as short as a length prefix may be one (its NUL a length's zero byte): it
    is printed at its sender's silence."""
    receiver = ClassicReceiver(ack=Ack.BIT, detect=True, idle_timeout=0.5)
    symbols = PLAIN.encode(text.encode())
    for index, symbol in enumerate(symbols):
        receiver.receive(7, symbol, index * 0.001)
    assert written(receiver) == []
    receiver.handle_timer(len(symbols) * 0.001 + 0.5)
    [message] = written(receiver)
    assert isinstance(message, ClassicMessage)
    assert message.text == text


# -- runs: bits a tight loop takes and answers itself (ClassicReceiver.bulk) -----------------


NOT_NUL = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])


def _loop_model(run: ClassicRun, coming: list[int], limit: int, refused: bool) -> tuple[int, int]:
    """What the tight loops do with ``run`` (transport.SignalWaiter.classic_collect): take
    up to ``limit`` of the ``coming`` symbols (a silence after them), answering each but one
    that completes a NUL byte, or one the check refuses (``refused``: the first); return how
    many were taken and answered."""
    in_byte, has_one, answered = run.in_byte, run.has_one, 0
    for taken, symbol in enumerate(coming[: min(limit, run.count)], start=1):
        has_one = has_one or symbol != run.zero
        in_byte += 1
        if in_byte == 8:
            if not has_one:
                return taken, answered
            in_byte, has_one = 0, False
        if refused:
            return taken, answered
        answered += 1
    return min(limit, run.count, len(coming)), answered


def _drive(
    receiver: ClassicReceiver, symbols: list[int], runs: list[int] | None
) -> tuple[list[ClassicEvent], int, int]:
    """Feed ``symbols`` from PID 7, each bit at 1 ms, as the driver does: with ``runs`` (the
    length of each run before a silence; a negative one is refused at its first bit), a run
    wherever the machine offers one; without, bit by bit. Return the events, the answers
    sent and the answers refused."""
    events: list[ClassicEvent] = []
    sent, refused, index, lengths = 0, 0, 0, list(runs or [])

    def flush(refuse: bool = False) -> None:
        nonlocal sent, refused
        events.extend(written(receiver))
        for pid, _ in receiver.replies():
            if refuse:
                receiver.not_answered(pid, index * 0.001, "no handler")
                refused += 1
            else:
                receiver.answered(pid)
                sent += 1
        events.extend(written(receiver))

    while index < len(symbols):
        run = receiver.bulk() if runs is not None else None
        if run is None or not lengths:
            receiver.receive(7, symbols[index], index * 0.001)
            index += 1
            flush()
            continue
        length = lengths.pop(0)
        taken, answered = _loop_model(run, symbols[index:], abs(length), length < 0)
        if taken == 0:
            continue
        times = [(index + at) * 0.001 for at in range(taken)]
        receiver.bulk_received(run, symbols[index : index + taken], times, answered)
        sent += answered
        index += taken
        flush(refuse=length < 0)
    return events, sent, refused


@given(
    st.lists(st.text(NOT_NUL, max_size=40), min_size=1, max_size=3),
    st.lists(st.integers(-30, 300), max_size=30),
)
def test_runs_give_the_messages_and_answers_bit_by_bit_gives(
    texts: list[str], runs: list[int]
) -> None:
    """However the bits split into runs (cut short by silences, or refused at their first
    bit), the messages and the answers are those of the bit-by-bit path."""
    symbols = [s for text in texts for s in PLAIN.encode(text.encode())]
    by_run = _drive(ClassicReceiver(PLAIN, ack=Ack.BIT), symbols, runs)
    by_bit = _drive(ClassicReceiver(PLAIN, ack=Ack.BIT), symbols, None)
    assert [e.text for e in by_run[0] if isinstance(e, ClassicMessage)] == texts
    assert [e.text for e in by_bit[0] if isinstance(e, ClassicMessage)] == texts
    assert by_bit[1:] == (len(symbols), 0)
    events, sent, refused = by_run
    assert sent + refused == len(symbols)  # each bit answered once, or refused once
    records = [(e.record.signals, e.record.answered + e.record.unanswered) for e in events]
    assert records == [(e.record.signals, e.record.answered) for e in by_bit[0]]


def test_a_run_is_offered_only_where_each_answer_is_the_machines() -> None:
    def after_one_bit(receiver: ClassicReceiver) -> ClassicRun | None:
        receiver.receive(7, 1, 0.0)
        for pid, _ in receiver.replies():
            receiver.answered(pid)
        return receiver.bulk()

    assert after_one_bit(ClassicReceiver(PLAIN)) == ClassicRun(7, CLASSIC_RUN, 0, 0, 1, True)
    assert after_one_bit(ClassicReceiver(PLAIN, ack_symbol=1)) == ClassicRun(
        7, CLASSIC_RUN, 1, 0, 1, True
    )
    for refused in (
        ClassicReceiver(PLAIN, ack=Ack.END),
        ClassicReceiver(PLAIN, ack=Ack.NONE),
        ClassicReceiver(PLAIN, answer_delay=0.001),
        ClassicReceiver(detect=True),
        ClassicReceiver(ClassicFormat(length_bits=32)),
        ClassicReceiver(ClassicFormat(terminator=b"")),
    ):
        assert after_one_bit(refused) is None
    receiver = ClassicReceiver(PLAIN)
    assert receiver.bulk() is None  # no sender
    receiver.receive(7, 0, 0.0)
    assert receiver.bulk() is None  # its answer not sent yet
    receiver.replies()
    receiver.not_answered(7, 0.0, "no handler")
    assert receiver.bulk() is None  # refused: each bit goes through the driver's check
    two = ClassicReceiver(PLAIN)
    two.receive(7, 0, 0.0)
    two.receive(8, 0, 0.0)
    for pid, _ in two.replies():
        two.answered(pid)
    assert two.bulk() is None  # two senders: one at a time


def test_a_run_that_answered_a_messages_last_bit_is_a_driver_bug() -> None:
    receiver = ClassicReceiver(PLAIN)
    receiver.receive(7, 0, 0.0)
    for pid, _ in receiver.replies():
        receiver.answered(pid)
    run = receiver.bulk()
    assert run is not None
    with pytest.raises(LocalProtocolError):
        receiver.bulk_received(run, [0] * 7, [0.001] * 7, 7)  # a NUL, answered


def test_the_trace_counts_the_answers_a_run_sent() -> None:
    symbols = PLAIN.encode(b"hi")  # 24 signals: the first bit by itself, then one run
    events, sent, refused = _drive(ClassicReceiver(PLAIN, ack=Ack.BIT), symbols, [100])
    message = next(event for event in events if isinstance(event, ClassicMessage))
    assert (sent, refused, message.text) == (24, 0, "hi")
    # the first bit goes through the machine, and so does the NUL's last (its answer waits
    # for the print): the run answered the 22 between
    assert message.record.answered_in_runs == 22
    assert any(
        line.endswith("answers sent 24 of 24; 22 in a tight loop")
        for line in describe(message, PLAIN, Ack.BIT)
    )
