"""The sender and receiver machines over a simulated link: no signals, no sleeping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitalk.errors import (
    LocalProtocolError,
    NoAnswerError,
    RefusedError,
    ServerGoneError,
    TryLaterError,
)
from minitalk.frame import MAX_PAYLOAD, Frame, encode_frame, split_message, to_bits
from minitalk.protocol import (
    BIT_TIMEOUT,
    CONTINUE,
    FRAME_OVER,
    GRANT,
    LEAVE,
    LEFT,
    MIN_PAYLOAD,
    PEER_CHECK,
    QUEUE_PLACE_KEPT,
    QUEUE_POLL,
    RECEIVER_TABLE,
    REPLY_TIMEOUT,
    REQUEST,
    SESSION_TIMEOUT,
    STALL_TIMEOUT,
    VERDICT_BITS,
    WAIT,
    MessageReceived,
    PeerView,
    Receiver,
    ReceiverState,
    Released,
    Sender,
    SenderState,
    ServerView,
    SessionEnded,
    Verdict,
    parse_verdict,
    verdict_bits,
)
from tests.helpers import (
    ASLEEP,
    NOT_WRITTEN,
    OBSERVATIONS,
    PEER_EXITED,
    STOP,
    WRITTEN,
    answer,
    drain_events,
    force_state,
    observe,
)
from tests.simlink import SERVER_PID, STRANGER_PID, Network

GOING_AWAY_SAID = (
    "the server is shutting down; the message was not printed (any part it had is dropped)"
)


def _grant_then_exchange(net: Network, pid: int, bits: int) -> None:
    """Deliver the REQUEST and its GRANT, then ``bits`` signals each way."""
    net.deliver_to_server()  # request
    net.deliver_to_client(pid)  # grant
    for _ in range(bits):
        net.deliver_to_server()
        net.deliver_to_client(pid)


def test_verdict_encoding_round_trips_and_rejects_garble() -> None:
    for verdict in Verdict:
        bits = verdict_bits(verdict)
        assert len(bits) == 8
        value = int("".join(map(str, bits)), 2)
        assert parse_verdict(value) is verdict
    assert parse_verdict(0x00) is None
    assert parse_verdict(0xFF) is None
    assert parse_verdict(0x1F) is None  # ACK's code with a wrong complement


def test_one_client_clean_link() -> None:
    net = Network()
    client = net.add_client(10, "emoji 🎉 and 日本語")
    net.run()
    assert client.succeeded
    assert net.printed_texts() == ["emoji 🎉 and 日本語"]
    assert client.sender.bytes_acked == len("emoji 🎉 and 日本語".encode())
    assert net.receiver.session is None


def test_multi_frame_and_empty_messages() -> None:
    net = Network()
    long_text = "ü" * (3 * MAX_PAYLOAD)
    first = net.add_client(10, long_text)
    net.run()
    second = net.add_client(11, "")
    net.run()
    assert first.succeeded
    assert second.succeeded
    assert net.printed_texts() == [long_text, ""]
    assert net.printed[0].frames == 6


def test_second_client_waits_and_is_served_after_the_first() -> None:
    net = Network()
    first = net.add_client(10, "first")
    net.deliver_to_server()  # 10 is granted
    second = net.add_client(11, "second")
    net.deliver_to_server()  # 11 asks while 10 holds the line
    assert second.pending == {WAIT: SERVER_PID}
    assert list(net.receiver.queue) == [11]
    net.run()
    assert first.succeeded
    assert second.succeeded
    assert net.printed_texts() == ["first", "second"]


def test_queue_keeps_arrival_order_and_deduplicates_requests() -> None:
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    for pid in (12, 11, 12, 13, 11):
        receiver.receive(pid, REQUEST, 0.0)
    assert list(receiver.queue) == [12, 11, 13]
    assert receiver.replies() == [(10, GRANT)] + [(pid, WAIT) for pid in (12, 11, 12, 13, 11)]


def test_a_stranger_zero_is_never_data_and_gets_no_answer() -> None:
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    receiver.replies()
    receiver.receive(STRANGER_PID, 0, 0.0)
    assert receiver.replies() == []
    assert receiver.state is ReceiverState.AWAITING_FRAME
    assert receiver.peer == 10


def test_oversized_message_refused_at_the_first_header() -> None:
    net = Network(Receiver(max_message=100))
    client = net.add_client(10, "x" * 101)
    net.run()
    assert client.sender.state is SenderState.FAILED
    assert isinstance(client.sender.error, RefusedError)
    assert (
        str(client.sender.error) == "the message is 101 bytes; the server accepts at most 100 bytes"
    )
    assert net.printed == []


def test_message_at_the_limit_is_accepted() -> None:
    net = Network(Receiver(max_message=100))
    client = net.add_client(10, "x" * 100)
    net.run()
    assert client.succeeded


def test_a_lost_bit_is_recovered_by_resending_the_frame() -> None:
    net = Network()
    client = net.add_client(10, "hello")
    _grant_then_exchange(net, 10, 20)  # 20 bits through
    net.eat_at_server()  # the 21st bit is swallowed by a stranger's signal pending there
    net.run()
    assert client.succeeded
    # The server was seen asleep with nothing pending and no stray reached the client: the
    # bit provably never arrived, so the client sent it again at once, not the whole frame.
    assert client.sender.look_resends == 1
    assert client.sender.resends == 0
    assert net.printed_texts() == ["hello"]


def test_a_lost_bit_is_recovered_by_resending_the_frame_where_wchan_is_hidden() -> None:
    net = Network(sees_asleep=False)
    client = net.add_client(10, "hello")
    _grant_then_exchange(net, 10, 20)  # 20 bits through
    net.eat_at_server()  # the 21st bit is swallowed by a stranger's signal pending there
    net.run()
    assert client.succeeded
    assert client.sender.look_resends == 0
    assert client.sender.resends == 1
    assert net.printed_texts() == ["hello"]


def test_a_bit_eaten_by_a_stray_is_recovered_by_the_servers_stall_notice() -> None:
    net = Network(sees_asleep=False)  # the client cannot prove the loss (wchan hidden)
    text = "x" * 300
    client = net.add_client(10, text)
    _grant_then_exchange(net, 10, 100)
    # A stranger's signal of the same kind was pending: the client's bit merged into it, and
    # the kernel kept the stranger's siginfo.
    net.eat_at_server()
    net.deliver_to_server()  # the stranger's: ignored, no answer; now both sides wait
    net.advance(STALL_TIMEOUT)
    assert net.receiver.state is ReceiverState.POLLING
    # FRAME_OVER came unprompted; the client took it and polls the verdict (RESEND)
    assert client.sender.state is SenderState.POLLING
    net.run()
    assert client.succeeded
    assert net.printed_texts() == [text]
    assert client.sender.resends == 1
    assert net.printed[0].frames == 2  # the frame was cut in half after the RESEND
    assert net.now < REPLY_TIMEOUT  # simulated time: the client's own timer never fired


def test_a_slow_client_crossing_the_stall_notice_costs_a_frame_not_a_slip() -> None:
    net = Network()
    text = "slow 🐢 " * 40
    client = net.add_client(10, text)
    _grant_then_exchange(net, 10, 100)
    net.deliver_to_server()  # bit 101 taken and answered; the client is slow to run
    net.now += STALL_TIMEOUT  # so the server gives up on the frame meanwhile
    assert net.run_server()
    assert set(client.pending) == {CONTINUE, FRAME_OVER}
    # The client now holds its answer and the unprompted FRAME_OVER at once, and the kernel
    # hands it the lower signal first: the two sides fall out of step until a check fails.
    net.run()
    assert client.succeeded
    assert net.printed_texts() == [text]
    assert client.sender.resends >= 1


def test_a_stall_at_a_frame_start_waits_for_the_client() -> None:
    # Between frames the client may be anywhere (requesting, queued, resyncing), so an
    # unprompted FRAME_OVER could be misread there: the server sends one only mid-frame.
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    receiver.replies()
    receiver.handle_timer(SESSION_TIMEOUT / 2)
    assert receiver.replies() == []
    assert receiver.state is ReceiverState.AWAITING_FRAME


def test_rejected_frames_are_cut_in_half_and_grow_back_once_clean() -> None:
    sender = Sender(b"y" * 5000)
    sender.start(0.0)
    answer(sender, GRANT, 0.0)

    def verdict(which: Verdict) -> None:
        answer(sender, FRAME_OVER, 0.0)
        for bit in verdict_bits(which):
            answer(sender, bit, 0.0)

    sizes = [len(sender.frame.payload)]
    for _ in range(6):
        verdict(Verdict.RESEND)
        sizes.append(len(sender.frame.payload))
    assert sizes == [MAX_PAYLOAD, 512, 256, 128, 64, MIN_PAYLOAD, MIN_PAYLOAD]
    assert sender.attempts == 1  # only the try at the smallest size counts towards giving up
    grown = []
    for _ in range(3):
        verdict(Verdict.ACK)
        grown.append(len(sender.frame.payload))
    # the first ACK needed a second try, so the size holds; each clean one doubles it
    assert grown == [MIN_PAYLOAD, 2 * MIN_PAYLOAD, 4 * MIN_PAYLOAD]
    assert sender.bytes_acked == 4 * MIN_PAYLOAD


def test_a_frame_repeated_after_silence_is_sent_unchanged() -> None:
    # After silence the server may have taken the frame (its ACK lost): only an identical
    # repeat is recognised as one, so the frame is not cut again.
    sender = Sender(b"z" * 5000)
    sender.start(0.0)
    answer(sender, GRANT, 0.0)
    first = sender.frame
    sender.handle_timer(REPLY_TIMEOUT)
    assert sender.state is SenderState.REQUESTING
    answer(sender, GRANT, REPLY_TIMEOUT)
    assert sender.frame is first
    assert sender.attempts == 1


def test_a_repeat_cut_shorter_replaces_the_frame_the_server_had() -> None:
    # Frame 0 is taken but its ACK never heard (a poll eaten); the client asks again and
    # repeats it, a stray eats a bit of the repeat, and the server says RESEND, so the client
    # cuts it shorter. Taking that for a plain repeat would leave the two sides counting
    # different bytes; the server takes the new cut in place of the old one.
    net = Network()
    text = "r" * (MAX_PAYLOAD + 500)
    client = net.add_client(10, text)
    frame_bits = len(to_bits(encode_frame(split_message(text.encode())[0])))
    _grant_then_exchange(net, 10, frame_bits + 7)  # the frame, and 7 of the 8 verdict polls
    net.eat_at_server()  # the 8th poll is eaten
    net.advance(BIT_TIMEOUT)
    assert client.sender.state is SenderState.REQUESTING
    _grant_then_exchange(net, 10, 100)  # REQUEST, GRANT, then 100 bits of the repeat
    net.eat_at_server()  # a bit of the repeat is eaten
    net.advance(STALL_TIMEOUT)  # the server gives up on it and says RESEND
    for _ in range(9):  # FRAME_OVER and the 8 polls of the RESEND verdict
        net.deliver_to_client(10)
        net.deliver_to_server()
    assert len(client.sender.frame.payload) == MAX_PAYLOAD // 2
    net.run()
    assert client.succeeded
    assert net.printed_texts() == [text]


@pytest.mark.parametrize("server_busy", [False, True])
def test_silence_in_a_frame_is_a_loss_unless_the_server_still_holds_our_signal(
    server_busy: bool,
) -> None:
    sender = Sender(b"p" * 100)
    sender.start(0.0)
    answer(sender, GRANT, 0.0)  # bit 0 goes out at t=0
    now = 0.0
    while sender.state is SenderState.SENDING:
        now = sender.get_timer() or now
        sender.handle_timer(now, ServerView(holding=server_busy))
    assert sender.state is SenderState.REQUESTING
    # A lost bit is asked again after bit_timeout; a stopped or busy server gets the whole
    # reply_timeout, checked in short steps.
    assert now == pytest.approx(REPLY_TIMEOUT if server_busy else BIT_TIMEOUT)


@pytest.mark.parametrize("bits_before_stop", [0, 1, 150])  # asking for the line, in a frame
def test_a_stopped_server_is_waited_for_at_no_cost_then_served(bits_before_stop: int) -> None:
    net = Network()
    client = net.add_client(10, "after the pause", max_attempts=2)
    if bits_before_stop:
        _grant_then_exchange(net, 10, bits_before_stop - 1)
    net.server_stopped = True
    sent = client.link.sent
    for _ in range(1000):  # an hour: far beyond max_attempts * reply_timeout
        net.advance(3.6)
        assert client.sender.state is not SenderState.FAILED
    assert client.link.sent == sent  # nothing asked again while the server is stopped
    assert client.sender.attempts == 0
    net.server_stopped = False
    net.run()
    assert client.succeeded
    assert net.printed_texts() == ["after the pause"]


def test_a_running_server_that_never_answers_is_given_up_plainly() -> None:
    sender = Sender(b"x", max_attempts=3)
    sender.start(0.0)
    now = 0.0
    while not sender.finished:
        now = sender.get_timer() or now
        sender.handle_timer(now)
    assert isinstance(sender.error, NoAnswerError)
    assert str(sender.error) == "the server is running but did not answer: asked 3 times, 1 s apart"
    assert now == pytest.approx(3 * REPLY_TIMEOUT)


def test_a_lost_final_ack_is_answered_again_and_not_printed_twice() -> None:
    net = Network()
    client = net.add_client(10, "once")
    _through_final_verdict_but_its_last_bit(net, 10, "once")
    assert net.printed_texts() == ["once"]
    net.run()
    assert client.succeeded
    assert net.printed_texts() == ["once"]


def test_a_duplicated_data_signal_is_caught_and_the_frame_resent() -> None:
    net = Network()
    client = net.add_client(10, "duplicate me")
    _grant_then_exchange(net, 10, 120)  # into the payload: bits 72.. of the frame
    symbol, origin = next(iter(net.server_pending.items()))
    net.redeliver_to_server(origin, symbol)  # a bit seen twice: everything after it slips
    net.run()
    assert client.succeeded
    assert net.printed_texts() == ["duplicate me"]


def test_silent_client_is_dropped_and_the_next_one_served() -> None:
    net = Network()
    dead = net.add_client(10, "never finished")
    _grant_then_exchange(net, 10, 50)
    dead.alive = False  # vanishes without the server being told
    waiting = net.add_client(11, "next")
    net.run()
    assert waiting.succeeded
    assert net.printed_texts() == ["next"]


def test_killed_client_session_is_dropped_at_once() -> None:
    net = Network()
    net.add_client(10, "x" * 500)
    net.deliver_to_server()
    waiting = net.add_client(11, "next")
    net.deliver_to_server()
    net.kill(10)
    net.advance(PEER_CHECK)  # the server's next look at its peer finds its pidfd readable
    assert net.receiver.peer == 11
    net.run()
    assert waiting.succeeded
    assert net.printed_texts() == ["next"]


def test_server_gone_makes_the_sender_give_up() -> None:
    sender = Sender(b"hi", reply_timeout=1.0, max_attempts=3)
    sender.start(0.0)
    sent = sender.symbols_to_send()
    now = 0.0
    while not sender.finished:
        now = sender.get_timer() or now
        sender.handle_timer(now)
        sent += sender.symbols_to_send()
    assert sender.state is SenderState.FAILED
    assert isinstance(sender.error, NoAnswerError)
    assert sent == [REQUEST] * 3


def _nak(sender: Sender, now: float) -> None:
    answer(sender, FRAME_OVER, now)
    for bit in verdict_bits(Verdict.RESEND):
        answer(sender, bit, now)


def test_repeated_nak_gives_up_after_max_attempts_and_as_many_reply_timeouts() -> None:
    sender = Sender(b"hi", max_attempts=4, reply_timeout=1.0)
    sender.start(0.0)
    answer(sender, GRANT, 0.0)
    for _ in range(40):  # a burst of failures within a second is no reason to give up
        _nak(sender, 0.5)
    assert not sender.finished
    _nak(sender, 4.5)  # 4 failures and 4 reply timeouts since the first: hopeless
    assert sender.state is SenderState.FAILED
    assert "failed 41 times" in str(sender.error)


def test_continue_after_the_last_bit_makes_the_sender_resync() -> None:
    sender = Sender(b"")
    sender.start(0.0)
    answer(sender, GRANT, 0.0)
    for _ in range(len(to_bits(encode_frame(Frame(0, True, 0, b""))))):
        answer(sender, CONTINUE, 0.0)
    assert sender.state.name == "RESYNC"
    sender.symbols_to_send()
    answer(sender, CONTINUE, 0.5)  # ignored while resyncing
    assert sender.symbols_to_send() == []
    sender.handle_timer(sender.get_timer() or 0.0)
    assert sender.state.name == "REQUESTING"
    assert sender.symbols_to_send() == [REQUEST]  # after confusion, ask for the line first
    answer(sender, GRANT, 1.1)
    assert sender.symbols_to_send() == [0]  # then the frame again, from its first bit


def test_machines_refuse_misuse_with_local_protocol_error() -> None:
    sender = Sender(b"x")
    with pytest.raises(LocalProtocolError):
        answer(sender, 0, 0.0)  # not started
    sender.start(0.0)
    with pytest.raises(LocalProtocolError):
        sender.start(0.0)
    with pytest.raises(LocalProtocolError):
        Sender(b"x", max_payload=0)
    with pytest.raises(LocalProtocolError):
        Receiver(frame_timeout=5.0, session_timeout=1.0)
    with pytest.raises(LocalProtocolError):
        Receiver(stall_timeout=1.0, frame_timeout=0.5)


# -- every state against every input -----------------------------------------------------------


def _receiver_in(state: ReceiverState) -> Receiver:
    """A receiver brought into ``state`` by real inputs (peer 10)."""
    receiver = Receiver(max_message=2000)
    if state is ReceiverState.IDLE:
        return receiver
    receiver.receive(10, REQUEST, 0.0)
    if state is ReceiverState.AWAITING_FRAME:
        return receiver
    text = b"x" * 1500 if state in (ReceiverState.POLLING, ReceiverState.NEXT_FRAME_DUE) else b"abc"
    if state is ReceiverState.POLLING_LAST:
        text = b"y" * 2001
    bits = to_bits(encode_frame(split_message(text)[0]))
    for bit in bits[: 20 if state is ReceiverState.IN_FRAME else len(bits)]:
        receiver.receive(10, bit, 0.0)
        if receiver.state is ReceiverState.POLLING_LAST:
            break
    if receiver.state is ReceiverState.WRITING and state is not ReceiverState.WRITING:
        receiver.message_written(0.0)
    if state in (ReceiverState.NEXT_FRAME_DUE, ReceiverState.AWAITING_BYE):
        for _ in range(VERDICT_BITS):
            receiver.receive(10, 0, 0.0)
    assert receiver.state is state
    return receiver


def test_every_receiver_state_has_a_row_and_a_way_in() -> None:
    assert set(RECEIVER_TABLE) == set(ReceiverState) - {ReceiverState.IDLE}
    for state in ReceiverState:
        _receiver_in(state)


# PIDs: the peer, another client, a stranger, and the pseudo-PIDs of what the driver reports.


@given(
    state=st.sampled_from(list(ReceiverState)),
    inputs=st.lists(
        st.tuples(
            st.sampled_from(
                [10, 11, STRANGER_PID, PEER_EXITED, STOP, WRITTEN, NOT_WRITTEN, ASLEEP]
            ),
            st.integers(0, 1),
            st.floats(0, 4),
        ),
        max_size=40,
    ),
)
def test_receiver_sweep_raises_nothing_and_answers_only_askers(
    state: ReceiverState, inputs: list[tuple[int, int, float]]
) -> None:
    """Every state against every input, the driver's observations included: no error at all
    (a LocalProtocolError here is a missing transition), and nobody signalled who did not ask."""
    receiver = _receiver_in(state)
    asked = {10} if state is not ReceiverState.IDLE else set()
    events = []
    now = 0.0
    for pid, symbol, dt in inputs:
        now += dt
        observe(receiver, pid, symbol, now)
        if pid not in OBSERVATIONS and symbol == REQUEST:
            asked.add(pid)
        for target, _ in receiver.replies():
            assert target in asked  # never signals a process that did not ask
        while (event := receiver.next_event()) is not None:
            events.append(event)
    delivered = [e for e in events if isinstance(e, MessageReceived)]
    # Only the frame the set-up sent is a message; random bits never pass the checks.
    assert all((e.pid, e.text) == (10, "abc") for e in delivered)
    assert len(delivered) <= 1


views = st.builds(
    ServerView, st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans()
)


@given(
    state=st.sampled_from([s for s in SenderState if s is not SenderState.IDLE]),
    inputs=st.lists(
        st.tuples(st.sampled_from(["answer", "stray", "sent", "timer"]), st.integers(0, 1)),
        max_size=60,
    ),
    view=views,
    dt=st.floats(0, 2),
)
def test_sender_sweep_raises_nothing(
    state: SenderState, inputs: list[tuple[str, int]], view: ServerView, dt: float
) -> None:
    """Every state (forced, so that rare ones are reached) against every input, what the
    loop sees included: the sender never raises, and sends only symbols."""
    sender = Sender(b"sweep", max_attempts=3)
    sender.start(0.0)
    force_state(sender, state)
    now = 0.0
    for kind, symbol in inputs:
        now += dt
        if kind == "answer":
            answer(sender, symbol, now)
        elif kind == "stray":
            sender.stray(now)
        elif kind == "sent":
            sender.sent(now)
        else:
            sender.handle_timer(now, view)
        assert all(s in (0, 1) for s in sender.symbols_to_send())


@settings(max_examples=50)
@given(texts=st.lists(st.text(max_size=300), min_size=1, max_size=5))
def test_clients_in_a_row_deliver_in_order(texts: list[str]) -> None:
    """Each asks once the one before was queued or served: the order they were heard in."""
    net = Network()
    for index, text in enumerate(texts):
        client = net.add_client(10 + index, text)
        while client.sender.state is SenderState.REQUESTING and net.step():
            pass
    net.run()
    assert all(c.succeeded for c in net.clients.values())
    assert net.printed_texts() == texts


def _through_final_verdict_but_its_last_bit(net: Network, pid: int, text: str) -> None:
    bits = len(to_bits(encode_frame(split_message(text.encode())[0])))
    _grant_then_exchange(net, pid, bits + 7)  # the frame and 7 of the 8 verdict polls
    net.deliver_to_server()  # the 8th poll; its answer is lost below
    net.clients[pid].pending.clear()


def test_a_repeat_after_a_stale_bye_is_acknowledged_not_printed_again() -> None:
    # Found by `make fuzz` (fuzz_faulty_link): a stale 1 from the client reached the server at
    # a frame start after the last frame, was taken for BYE and ended the session; the client,
    # which never heard its final ACK, then sent its last frame again in a new session.
    net = Network()
    client = net.add_client(10, "once")
    _through_final_verdict_but_its_last_bit(net, 10, "once")
    assert net.printed_texts() == ["once"]
    net.inject_to_server(REQUEST, from_pid=10)  # the stale 1
    net.deliver_to_server()
    assert net.receiver.session is None  # the server thinks the client said BYE
    net.run()
    assert client.succeeded
    assert net.printed_texts() == ["once"]


def test_a_session_dropped_mid_message_restarts_the_message_from_frame_0() -> None:
    net = Network()
    text = "x" * (2 * MAX_PAYLOAD + 10)
    client = net.add_client(10, text)
    frame_bits = len(to_bits(encode_frame(split_message(text.encode())[0])))
    _grant_then_exchange(net, 10, frame_bits + 8 + 100)  # frame 0 acknowledged, 100 bits of frame 1
    assert client.sender.frame_index == 1
    net.server_pending.clear()
    # The client is stopped while the server's session timeout passes: only the server's
    # clock runs, so the server drops the session and its partial message.
    net.receiver.handle_timer(net.now + 10)
    assert net.receiver.session is None
    net.run()  # the client wakes, asks again, is told to RESTART, sends everything again
    assert client.succeeded
    assert net.printed_texts() == [text]


def test_a_peer_that_only_sends_noise_loses_the_line() -> None:
    receiver = Receiver()
    receiver.receive(STRANGER_PID, REQUEST, 0.0)  # a stranger that blocks both signals
    receiver.receive(10, REQUEST, 0.0)  # a real client, queued behind it
    now = 0.0
    for _ in range(100_000):  # the stranger keeps the line busy with noise
        if receiver.peer != STRANGER_PID:
            break
        now += 1e-4
        receiver.receive(STRANGER_PID, 1 if int(now * 1e4) % 3 else 0, now)
    assert receiver.peer == 10  # the queue moved on
    ended = [e for e in drain_events(receiver) if isinstance(e, SessionEnded)]
    assert ended[0].reason == "too many failed frames"


def test_a_full_queue_is_told_busy() -> None:
    net = Network(Receiver(max_queue=1))
    first = net.add_client(10, "first")
    net.deliver_to_server()  # 10 has the line
    second = net.add_client(11, "second")
    net.deliver_to_server()  # 11 takes the only place
    third = net.add_client(12, "third")
    net.run()
    assert first.succeeded
    assert second.succeeded
    assert third.sender.state is SenderState.FAILED
    assert "queue of waiting clients is full; try again later" in str(third.sender.error)
    assert isinstance(third.sender.error, TryLaterError)  # temporary: exit 75, EX_TEMPFAIL
    assert third.sender.error.exit_code == 75
    assert net.printed_texts() == ["first", "second"]


def test_shutdown_tells_every_client_and_prints_no_partial_message() -> None:
    net = Network()
    sending = net.add_client(10, "x" * 3000)
    net.deliver_to_server()  # REQUEST
    net.deliver_to_client(10)  # GRANT; its first bit (a 0) is now pending at the server
    waiting = net.add_client(11, "second")
    net.deliver_to_server(REQUEST)
    assert list(net.receiver.queue) == [11]
    for _ in range(50):  # 50 bits into the first frame
        net.deliver_to_server()
        net.deliver_to_client(10)
    net.shut_down()
    late = net.add_client(12, "late")
    net.run()
    for refused in (sending, waiting, late):
        assert refused.sender.state is SenderState.FAILED
        assert str(refused.sender.error) == GOING_AWAY_SAID
        assert isinstance(refused.sender.error, ServerGoneError)
    assert net.printed_texts() == []
    assert net.receiver.idle


def test_shutdown_after_a_message_was_printed_still_acknowledges_it() -> None:
    # The server printed the message and its ACK is on its way when the stop comes: the
    # client must still hear it was delivered (and its BYE be answered); the queue is told.
    net = Network()
    sending = net.add_client(10, "printed")
    net.deliver_to_server()  # REQUEST: 10 has the line
    waiting = net.add_client(11, "second")
    net.deliver_to_server(REQUEST)
    assert list(net.receiver.queue) == [11]
    while not net.printed:
        assert net.step()
    net.shut_down()
    assert net.receiver.peer == 10  # kept until its client has the verdict
    net.run()
    assert sending.succeeded
    assert waiting.sender.state is SenderState.FAILED
    assert str(waiting.sender.error) == GOING_AWAY_SAID
    assert net.printed_texts() == ["printed"]
    assert net.receiver.idle


# -- the bulk path: runs of plain frame bits moved by the loops' tight loops ----------------------


@pytest.mark.parametrize("lead", ["server", "client"])
def test_the_bulk_path_moves_most_bits_and_delivers(
    monkeypatch: pytest.MonkeyPatch, lead: str
) -> None:
    net = Network(bulk=True, lead=lead)
    calls = {"receive": 0, "client": 0}
    receive = net.receiver.receive

    def counted(pid: int, symbol: int, now: float) -> None:
        calls["receive"] += 1
        receive(pid, symbol, now)

    monkeypatch.setattr(net.receiver, "receive", counted)
    text = "bulk ✓ " * 600  # 5 KiB: several frames
    client = net.add_client(10, text)
    client_receive = client.sender.receive

    def client_counted(symbol: int, now: float) -> None:
        calls["client"] += 1
        client_receive(symbol, now)

    monkeypatch.setattr(client.sender, "receive", client_counted)
    net.run()
    assert client.succeeded
    assert net.printed_texts() == [text]
    bits = len(text.encode()) * 8
    # The leading side's tight loop moves the runs: its machine sees headers, last bits and
    # verdicts only.
    assert calls["receive" if lead == "server" else "client"] < bits / 20


@settings(max_examples=30)
@given(
    texts=st.lists(st.text(max_size=200), min_size=1, max_size=3),
    strays=st.lists(st.tuples(st.integers(1, 3000), st.integers(0, 1), st.booleans())),
)
def test_the_bulk_path_survives_strays_at_both_ends(
    texts: list[str], strays: list[tuple[int, int, bool]]
) -> None:
    """Strays break the tight loops at any point; what they moved is handed over, and the
    messages arrive whole, once."""
    net = Network(bulk=True)
    for index, text in enumerate(texts):
        net.add_client(10 + index, f"{index}:{text}")
    at = {step: (symbol, at_client) for step, symbol, at_client in strays}
    for step in range(200_000):
        if step in at:
            symbol, at_client = at[step]
            if at_client:
                net.inject_to_client(10, symbol)
            else:
                net.inject_to_server(symbol)
        if not net.step():
            break
    net.run()
    printed = net.printed_texts()
    assert len(printed) == len(set(printed))  # none twice
    assert set(printed) <= {f"{i}:{t}" for i, t in enumerate(texts)}  # none corrupted
    for client in net.clients.values():
        assert client.sender.finished
        if client.succeeded:
            assert client.text in printed


def test_a_flood_of_strays_at_every_wake_up_cannot_hold_off_the_timeout() -> None:
    """Review: the client applied its deadlines only when a wait returned nothing, so a
    stray pending at every wake-up (anyone of the same user can send them) kept --timeout,
    the looks and the bit timeout from ever running: the send never ended."""
    net = Network()
    client = net.add_client(10, "hi", timeout=2.0)
    net.server_stopped = True  # nothing will ever answer
    for _ in range(10_000):
        if client.sender.finished:
            break
        net.now += 0.01
        net.inject_to_client(10, 0)
        net.run_client(10)
    assert client.sender.state is SenderState.FAILED
    assert "--timeout of 2 s" in str(client.sender.error)
    assert net.now < 2.1


@pytest.mark.parametrize("holding", [True, False])
def test_a_target_asleep_elsewhere_is_waited_for_only_while_it_holds_our_request(
    holding: bool,
) -> None:
    """A server blocked writing to a full pipe keeps a new client's REQUEST pending (it blocks
    the signals) and is waited for; a process that merely ignores them holds nothing and is
    given up on after max_attempts requests."""
    sender = Sender(b"x", max_attempts=3, reply_timeout=1.0)
    sender.start(0.0)
    now = 0.0
    while not sender.finished and now < 100.0:
        now = sender.get_timer() or now
        sender.handle_timer(now, ServerView(away=True, holding=holding))
    assert sender.finished is not holding
    if not holding:
        assert "it may not be a minitalk server" in str(sender.error)


def _steps_to_deliver(text: str) -> int:
    net = Network()
    net.add_client(10, text)
    steps = 0
    while not net.quiet() and net.step():
        steps += 1
    return steps


_OLD_TEXT = "ü" * (MAX_PAYLOAD // 2 + 10)  # two frames
_OLD_STEPS = _steps_to_deliver(_OLD_TEXT)


@pytest.mark.parametrize(
    "steps",
    [0, 1, 2, 40, 3000]
    + [int(_OLD_STEPS * f) for f in (0.3, 0.5, 0.51, 0.7, 0.99)]
    + list(range(_OLD_STEPS - 40, _OLD_STEPS + 1, 5)),
)
def test_a_send_after_one_that_gave_up_from_the_same_process_is_delivered(steps: int) -> None:
    """A program using the API gives up on a send (its timeout, Ctrl-C) at any point and
    sends again from the same PID: the new message (a new nonce) starts a new one at the
    server, whatever the old session's state; nothing is printed twice."""
    net = Network()
    net.add_client(10, _OLD_TEXT)
    for _ in range(steps):
        if net.quiet() or not net.step():
            break
    net.give_up(10)
    retry = net.add_client(10, "retry", nonce=123456789)
    net.run()
    assert retry.succeeded, retry.sender.error
    printed = net.printed_texts()
    assert printed in (["retry"], [_OLD_TEXT, "retry"])


# -- leaving the queue: nothing is sent to a client once it gave up -----------------------------


def test_a_queued_client_that_leaves_is_answered_left_and_never_granted() -> None:
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    receiver.receive(11, REQUEST, 0.0)
    receiver.receive(12, REQUEST, 0.0)
    receiver.replies()
    receiver.receive(11, LEAVE, 0.5)
    assert receiver.replies() == [(11, LEFT)]
    assert receiver.queue == [12]
    assert Released(11) in drain_events(receiver)
    receiver.peer_gone(10, 0.6)  # the line frees: 12 is next, 11 is told nothing more
    assert receiver.replies() == [(12, GRANT)]


def _listen(receiver: Receiver, until: float, asking: int | None = None) -> None:
    """The server's driver runs the receiver's deadlines (the peer check every 0.1 s) up
    to ``until``, while ``asking`` (a queued client) asks again every ``queue_poll``."""
    now, next_ask = 0.0, QUEUE_POLL
    while True:
        timer = receiver.get_timer()
        now = min(t for t in (timer, until, next_ask if asking else None) if t is not None)
        if now >= until:
            return
        if asking is not None and now >= next_ask:
            receiver.receive(asking, REQUEST, now)
            next_ask += QUEUE_POLL
        receiver.handle_timer(now, PeerView(alive=True))


def test_a_queued_client_that_stops_asking_loses_its_place() -> None:
    """A process that sent one REQUEST and sleeps (or a client that gave up without a word)
    kept its place for ever: 66 of them made a real client wait 194 s, or told it BUSY."""
    receiver = Receiver(max_queue=2, session_timeout=60.0)
    receiver.receive(10, REQUEST, 0.0)  # the peer, for the whole test
    receiver.receive(11, REQUEST, 0.0)  # asks once, then never again
    receiver.receive(12, REQUEST, 0.0)
    end = QUEUE_PLACE_KEPT + QUEUE_POLL
    _listen(receiver, end, asking=12)  # a real client asks again every queue_poll
    receiver.receive(13, REQUEST, end)  # room again: the silent one's place is free
    assert receiver.queue == [12, 13]
    assert (13, WAIT) in receiver.replies()
    assert Released(11) in drain_events(receiver)
    receiver.peer_gone(10, end)
    assert receiver.replies() == [(12, GRANT)]


def test_a_silent_queued_client_is_skipped_when_the_line_frees() -> None:
    receiver = Receiver(session_timeout=60.0)
    receiver.receive(10, REQUEST, 0.0)
    receiver.receive(11, REQUEST, 0.0)
    receiver.receive(12, REQUEST, 0.0)
    _listen(receiver, QUEUE_PLACE_KEPT + 0.1, asking=12)
    receiver.replies()
    receiver.peer_gone(10, QUEUE_PLACE_KEPT + 0.1)
    assert receiver.replies() == [(12, GRANT)]
    assert Released(11) in drain_events(receiver)


def _state(sender: Sender) -> SenderState:
    return sender.state  # read afresh (mypy would keep an earlier assert's narrowing)


def _queued_sender(timeout: float) -> Sender:
    sender = Sender(b"hi", timeout=timeout)
    sender.start(0.0)
    sender.symbols_to_send()
    sender.sent(0.0)
    sender.receive(WAIT, 0.001)
    assert _state(sender) is SenderState.QUEUED
    return sender


def test_a_sender_whose_timeout_passes_while_queued_leaves_first() -> None:
    sender = _queued_sender(timeout=0.5)
    sender.handle_timer(0.5, ServerView())
    assert _state(sender) is SenderState.LEAVING
    assert sender.symbols_to_send() == [LEAVE]
    sender.sent(0.5)
    assert not sender.finished  # not before the server said it let go of us
    sender.receive(LEFT, 0.501)
    assert _state(sender) is SenderState.FAILED
    assert isinstance(sender.error, NoAnswerError)
    assert "still waiting for its turn" in str(sender.error)


@pytest.mark.parametrize("sent_first", [True, False])
def test_a_grant_that_crosses_the_leave_is_waited_out_in_silence(sent_first: bool) -> None:
    """The server granted us just as we left: it takes our LEAVE for a frame's first bit
    (or, if the GRANT came before the LEAVE went out, never sees one). Either way we stay
    silent, taking what it still sends (an answer, a stall notice) before failing."""
    sender = _queued_sender(timeout=0.5)
    sender.handle_timer(0.5, ServerView())
    if sent_first:
        sender.symbols_to_send()
        sender.sent(0.5)
    sender.receive(GRANT, 0.5001)
    assert _state(sender) is SenderState.LINGERING
    assert sender.symbols_to_send() == []  # an unsent LEAVE is dropped
    sender.receive(CONTINUE, 0.5002)
    sender.receive(FRAME_OVER, 0.56)  # the stall notice
    assert not sender.finished
    timer = sender.get_timer()
    assert timer is not None
    assert timer > 0.5 + 2 * STALL_TIMEOUT
    sender.handle_timer(timer, ServerView())
    assert _state(sender) is SenderState.FAILED
    assert sender.symbols_to_send() == []


def test_a_request_out_as_the_timeout_passes_is_answered_before_leaving() -> None:
    sender = _queued_sender(timeout=5.0)
    sender.handle_timer(QUEUE_POLL + 0.01, ServerView())  # queue_poll: asks again
    assert sender.symbols_to_send() == [REQUEST]
    sender.sent(QUEUE_POLL + 0.01)
    sender.handle_timer(5.0, ServerView())  # the --timeout, with that request out
    assert _state(sender) is SenderState.REQUESTING
    assert sender.symbols_to_send() == []  # two answers outstanding could merge
    sender.receive(WAIT, 5.0001)
    assert _state(sender) is SenderState.LEAVING
    assert sender.symbols_to_send() == [LEAVE]


def test_a_queued_send_that_times_out_leaves_and_is_never_signalled_again() -> None:
    net = Network()
    first = net.add_client(10, "x" * 3000)
    net.deliver_to_server()  # 10 has the line
    second = net.add_client(11, "late", timeout=0.01)
    net.run()
    assert first.succeeded
    assert isinstance(second.sender.error, NoAnswerError)
    assert net.receiver.queue == []
    assert second.pending == {}  # no GRANT came after it left
    assert net.printed_texts() == ["x" * 3000]


def _leaving_with_a_request_out() -> Sender:
    sender = _queued_sender(timeout=QUEUE_POLL + 0.05)
    sender.handle_timer(QUEUE_POLL + 0.01, ServerView())  # queue_poll: asks again
    assert sender.symbols_to_send() == [REQUEST]
    sender.sent(QUEUE_POLL + 0.01)
    sender.handle_timer(QUEUE_POLL + 0.05, ServerView())  # the --timeout, the request out
    assert _state(sender) is SenderState.REQUESTING
    return sender


def _until_it_sends(sender: Sender, view: ServerView) -> list[int]:
    """Run the sender's timers (looks, deadlines) as the driver would, seeing ``view``,
    until it sends something or finishes."""
    while not sender.finished:
        timer = sender.get_timer()
        assert timer is not None
        sender.handle_timer(timer, view)
        if sender.has_symbols:
            return sender.symbols_to_send()
    return []


def test_a_request_lost_as_the_timeout_passes_still_leaves() -> None:
    """The queued client's poll merged with another signal at the server and was lost, just
    as its --timeout passed: it used to fail without a LEAVE, and the server granted the
    place later to a process that had gone on."""
    sender = _leaving_with_a_request_out()
    assert _until_it_sends(sender, ServerView()) == [LEAVE]  # no answer, nothing pending
    assert _state(sender) is SenderState.LEAVING


def test_a_request_still_pending_at_the_server_is_waited_for_before_leaving() -> None:
    """A LEAVE sent while the REQUEST is pending there would be taken first (SIGUSR1 before
    SIGUSR2), and the REQUEST would queue us again."""
    sender = _leaving_with_a_request_out()
    for _ in range(5):  # deadlines pass while the server still holds the request
        timer = sender.get_timer()
        assert timer is not None
        sender.handle_timer(timer, ServerView(holding=True))
        assert not sender.has_symbols
        assert _state(sender) is SenderState.REQUESTING
    assert _until_it_sends(sender, ServerView()) == [LEAVE]  # taken, its answer eaten


def test_a_server_that_takes_nothing_for_long_cannot_be_told() -> None:
    sender = _leaving_with_a_request_out()
    assert _until_it_sends(sender, ServerView(holding=True)) == []
    assert isinstance(sender.error, NoAnswerError)


def test_an_interrupted_send_leaves_the_queue_but_fails_at_once_elsewhere() -> None:
    queued = _queued_sender(timeout=60.0)
    queued.abandon(NoAnswerError("interrupted"), 0.2)
    assert _state(queued) is SenderState.LEAVING
    assert queued.symbols_to_send() == [LEAVE]
    sending = Sender(b"hi")
    sending.start(0.0)
    sending.symbols_to_send()
    sending.receive(GRANT, 0.001)
    sending.abandon(NoAnswerError("interrupted"), 0.002)
    assert sending.finished
    assert str(sending.error) == "interrupted"


def test_a_lost_poll_as_the_timeout_passes_in_the_simulator() -> None:
    net = Network()
    first = net.add_client(10, "x" * 3000)
    net.deliver_to_server()  # 10 has the line
    second = net.add_client(11, "late", timeout=QUEUE_POLL + 0.5)
    while second.sender.state is not SenderState.QUEUED:
        net.step()
    net.advance(QUEUE_POLL + 0.01)  # 11 asks again ...
    net.server_link.pending.signals.pop(REQUEST, None)  # ... and that REQUEST is lost
    net.run()
    assert first.succeeded
    assert isinstance(second.sender.error, NoAnswerError)
    assert net.receiver.queue == []
    assert second.pending == {}


def test_a_retry_under_the_same_nonce_of_a_printed_message_is_not_printed_again() -> None:
    """A program's send() gave up after the server printed its message (the final ACK lost):
    minitalk.send() retries the same text under the same nonce, which the server recognises.
    (Under a new nonce it would be a new message, printed again.)"""
    net = Network()
    net.add_client(10, "hello")
    _through_final_verdict_but_its_last_bit(net, 10, "hello")
    assert net.printed_texts() == ["hello"]
    net.give_up(10)
    retry = net.add_client(10, "hello", nonce=10 * 7919)  # add_client's nonce for PID 10
    net.run()
    assert retry.succeeded
    assert net.printed_texts() == ["hello"]


def test_a_server_that_heard_nobody_for_a_while_keeps_its_queue() -> None:
    """Stopped (or blocked writing) for longer than the place is kept, the server could hear
    no queued client's poll (they merged while pending): that time is not counted against
    them, and the queue keeps its order."""
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    receiver.receive(11, REQUEST, 0.0)
    receiver.receive(12, REQUEST, 0.0)
    receiver.replies()
    stopped_until = 10 * QUEUE_PLACE_KEPT
    # Continued: the first thing it does is its deadlines; 10's session has long expired,
    # and the next in line is 11, whose polls it could not hear.
    receiver.handle_timer(stopped_until)
    assert receiver.replies() == [(11, GRANT)]
    assert receiver.queue == [12]
