"""Issue 11's findings, each pinned: the machines hide nothing and decide everything.

Each test names the behaviour of minitalk 1.0 (commit 81f9ccc) that it failed on. The pure
machines are driven directly or over the simulated link; no signal is sent.
"""

from __future__ import annotations

import pytest

from minitalk.errors import LocalProtocolError, OutputError, ServerGoneError
from minitalk.frame import VERSION, Frame, crc8, encode_frame, split_message, to_bits
from minitalk.protocol import (
    BYE,
    CONTINUE,
    FRAME_OVER,
    FRAME_TIMEOUT,
    GRANT,
    MIN_RATE,
    PEER_CHECK,
    POLL,
    RECEIVER_TABLE,
    REQUEST,
    SESSION_TIMEOUT,
    STALL_TIMEOUT,
    DeliveredMemory,
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
    verdict_bits,
)
from tests.helpers import answer, drain_events
from tests.simlink import Network


def _send_frame(receiver: Receiver, pid: int, frame: Frame, now: float) -> list[int]:
    """Feed a whole frame and its 8 polls (a message it completes is written, as the driver
    does); return the receiver's answers to the polls."""
    for bit in to_bits(encode_frame(frame)):
        receiver.receive(pid, bit, now)
    if receiver.state is ReceiverState.WRITING:
        receiver.message_written(now)
    receiver.replies()
    answers = []
    for _ in range(8):
        receiver.receive(pid, POLL, now)
        answers += [symbol for _, symbol in receiver.replies()]
    return answers


def _poll_out(receiver: Receiver, pid: int, now: float) -> None:
    """Poll whatever verdict the receiver has for ``pid`` (a stall notice's RESEND)."""
    while receiver.peer == pid and receiver.state in (
        ReceiverState.POLLING,
        ReceiverState.POLLING_FINAL,
        ReceiverState.POLLING_LAST,
    ):
        receiver.receive(pid, POLL, now)


def _ended(receiver: Receiver) -> list[SessionEnded]:
    return [event for event in drain_events(receiver) if isinstance(event, SessionEnded)]


# -- the machines hide nothing -------------------------------------------------------------------


def test_silence_after_a_verdict_costs_one_frame_not_the_session() -> None:
    """1.0: one handle_timer call after frame_timeout of silence replayed stall notices and
    verdict expiries (their deadlines all counted from the same last symbol) until the
    session ended as "too many failed frames", and the client restarted the whole message."""
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    first = split_message(b"x" * 1500, nonce=7)[0]
    assert _send_frame(receiver, 10, first, 0.0) == verdict_bits(Verdict.ACK)
    receiver.handle_timer(FRAME_TIMEOUT + STALL_TIMEOUT + 0.01)
    assert _ended(receiver) == []
    assert receiver.peer == 10


def test_a_state_without_a_row_is_a_local_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    table = dict(RECEIVER_TABLE)
    del table[ReceiverState.POLLING]
    monkeypatch.setattr("minitalk.protocol.receiver.RECEIVER_TABLE", table)
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    first = split_message(b"x" * 1500, nonce=7)[0]
    with pytest.raises(LocalProtocolError, match=r"no row for ReceiverState\.POLLING"):
        _send_frame(receiver, 10, first, 0.0)


# -- decisions are the machines' -----------------------------------------------------------------


def _sender_awaiting_first_bit() -> Sender:
    sender = Sender(b"abc")
    sender.start(0.0)
    sender.sent(0.0)
    answer(sender, GRANT, 0.001)
    sender.symbols_to_send()
    sender.sent(0.001)
    return sender


def test_a_signal_provably_eaten_is_sent_again_by_the_machine() -> None:
    sender = _sender_awaiting_first_bit()
    sender.handle_timer(sender.get_timer() or 0.0, ServerView(asleep=True))
    assert sender.symbols_to_send() == [sender.last_symbol]
    assert sender.look_resends == 1


def test_no_resend_when_a_stray_reached_the_client_since_the_send() -> None:
    """A stray pending at the client swallows the server's answer: the server did take our
    signal, and sending it again would show it one symbol twice."""
    sender = _sender_awaiting_first_bit()
    sender.stray(0.0015)
    sender.handle_timer(sender.get_timer() or 0.0, ServerView(asleep=True))
    assert sender.symbols_to_send() == []
    assert sender.get_timer() == pytest.approx(0.001 + sender.bit_timeout)


@pytest.mark.parametrize("every", [3, 10, 100])
def test_strays_aimed_at_the_client_never_show_the_server_a_symbol_twice(every: int) -> None:
    """Over the simulated link: strays of both kinds reach the client, some while the
    server's answer is on its way (which they swallow). The server never sees a symbol twice:
    whatever is printed is the message, once; a send that succeeds was printed; at a
    moderate rate the send succeeds."""
    net = Network()
    text = "client-aimed strays ✓" * 4
    client = net.add_client(10, text)
    for step in range(50_000):
        if client.sender.finished:
            break
        if step % every == 0:
            net.inject_to_client(10, step // every % 2)  # 0 or 1, aimed at the client
        net.step()
    net.run()
    assert net.printed_texts() in ([], [text])
    if client.succeeded:
        assert net.printed_texts() == [text]
    else:
        assert client.sender.state is SenderState.FAILED  # told, never silent
    if every >= 100:
        assert client.succeeded


def test_a_server_that_exited_fails_the_send_through_the_machine() -> None:
    sender = _sender_awaiting_first_bit()
    sender.handle_timer(sender.get_timer() or 0.0, ServerView(alive=False))
    assert sender.state is SenderState.FAILED
    assert "exited before it acknowledged" in str(sender.error)


def test_a_stopped_server_is_the_machines_decision_too() -> None:
    sender = _sender_awaiting_first_bit()
    for _ in range(100):
        now = sender.get_timer() or 0.0
        sender.handle_timer(now, ServerView(stopped=True))
    assert sender.state is SenderState.SENDING
    assert sender.attempts == 0


# -- verdicts survive a slip ---------------------------------------------------------------------


@pytest.mark.parametrize("verdict", [Verdict.ACK, Verdict.RESEND])
def test_a_verdict_read_one_symbol_late_is_garbled_not_another_verdict(verdict: Verdict) -> None:
    """1.0: ACK read with its first bit lost (and a 0 after it) was TOO_LARGE, RESEND so read
    was OUT_OF_ORDER: a printed message reported as refused."""
    sender = Sender(b"hi")
    sender.start(0.0)
    answer(sender, GRANT, 0.0)
    bits = to_bits(encode_frame(sender.frame))
    for _ in bits[1:]:
        answer(sender, CONTINUE, 0.0)
    answer(sender, FRAME_OVER, 0.0)
    for symbol in verdict_bits(verdict)[1:] + [0] * 41:  # one lost, then whatever follows
        answer(sender, symbol, 0.0)
    assert sender.error is None
    assert sender.state is SenderState.RESYNC  # garbled: ask again, resend the frame


# -- fairness -------------------------------------------------------------------------------------


def test_an_empty_frame_that_is_not_the_last_is_refused() -> None:
    """1.0 took endless empty non-final frames, each refreshing the session."""
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    header = bytes((VERSION, 0x00)) + (0).to_bytes(2, "big") + (5).to_bytes(4, "big")
    header += (0).to_bytes(4, "big") + (1).to_bytes(8, "big")
    header += bytes((crc8(header),))  # a well-sealed header: only the layout rule refuses it
    receiver.replies()
    for bit in to_bits(header):
        receiver.receive(10, bit, 0.0)
    assert receiver.replies()[-1] == (10, FRAME_OVER)  # refused at its header
    _poll_out(receiver, 10, 0.0)
    assert not [e for e in drain_events(receiver) if isinstance(e, MessageReceived)]


def test_a_trickling_client_loses_the_line_to_the_queue() -> None:
    """1.0: one good frame every few seconds kept the session alive forever while the queue
    waited. Now the session ends once it has held the line longer than session_timeout plus
    one second per MIN_RATE bytes taken."""
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    receiver.receive(11, REQUEST, 0.0)  # queued behind it
    message = b"t" * 1000
    now = 0.0
    offset = 0
    while receiver.peer == 10 and now < 60:
        frame = Frame(offset, False, len(message), message[offset : offset + 1], 99)
        answers = _send_frame(receiver, 10, frame, now)
        assert answers == verdict_bits(Verdict.ACK)
        offset += 1
        now += SESSION_TIMEOUT * 0.9  # a good frame just within the session timeout
        receiver.receive(11, REQUEST, now)  # 11 keeps its place, asking again
        receiver.handle_timer(now)
        _poll_out(receiver, 10, now)
    assert receiver.peer == 11
    assert _ended(receiver)[0].reason == "too little progress: the line is shared"
    assert now <= SESSION_TIMEOUT + offset / MIN_RATE + SESSION_TIMEOUT


def test_a_repeated_frame_is_no_progress() -> None:
    """1.0: a frame repeated over and over (each acknowledged again) refreshed the session."""
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    first = split_message(b"r" * 1500, nonce=3)[0]
    now = 0.0
    while receiver.peer == 10 and now < 60:
        _send_frame(receiver, 10, first, now)
        now += 1.0
        receiver.handle_timer(now)
        _poll_out(receiver, 10, now)
    assert now <= SESSION_TIMEOUT + 1.0
    assert _ended(receiver)[0].reason == "no valid frame within the session timeout"


# -- smaller items --------------------------------------------------------------------------------


def _deliver_and_lose_bye(
    receiver: Receiver, pid: int, text: bytes, nonce: int, now: float
) -> float:
    receiver.receive(pid, REQUEST, now)
    for frame in split_message(text, nonce=nonce):
        _send_frame(receiver, pid, frame, now)
    now += SESSION_TIMEOUT + 0.1  # BYE lost: the session times out
    receiver.handle_timer(now)
    return now


def test_count_does_not_count_a_repeat_twice() -> None:
    """1.0: a repeat of a delivered message (its final ACK and BYE lost) ended a second
    session as delivered, so `serve --count 2` stopped after one message."""
    receiver = Receiver()
    now = _deliver_and_lose_bye(receiver, 10, b"once", 5, 0.0)
    receiver.receive(10, REQUEST, now)
    _send_frame(receiver, 10, split_message(b"once", nonce=5)[0], now)
    receiver.receive(10, BYE, now)
    events = drain_events(receiver)
    printed = [e for e in events if isinstance(e, MessageReceived)]
    assert [e.text for e in printed] == ["once"]
    assert [e.delivered for e in events if isinstance(e, SessionEnded)] == [True, False]


def test_a_repeat_is_recognised_after_a_thousand_other_messages() -> None:
    """1.0 remembered the nonces of the last 1024 messages, so a slow client's repeat after
    1024 others was printed twice. The memory is per client now: one entry per PID."""
    receiver = Receiver()
    now = _deliver_and_lose_bye(receiver, 10, b"mine", 5, 0.0)
    for pid in range(100, 1125):
        receiver.receive(pid, REQUEST, now)
        _send_frame(receiver, pid, split_message(b"other", nonce=pid)[0], now)
        receiver.receive(pid, BYE, now)
    drain_events(receiver)
    receiver.receive(10, REQUEST, now)
    assert _send_frame(receiver, 10, split_message(b"mine", nonce=5)[0], now) == verdict_bits(
        Verdict.ACK
    )
    assert not [e for e in drain_events(receiver) if isinstance(e, MessageReceived)]


def test_a_message_continued_at_frame_128_in_a_new_session_restarts() -> None:
    """1.0's 7-bit sequence number wrapped: frame 128 of a message continued in a new session
    looked like frame 0 of a new one. Byte offsets cannot wrap."""
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    frame_128 = split_message(b"w" * (130 * 32), nonce=9, max_payload=32)[128]
    assert _send_frame(receiver, 10, frame_128, 0.0) == verdict_bits(Verdict.RESTART)


def test_refusals_are_bounded_and_every_forgotten_pid_is_released() -> None:
    """1.0 forgot the oldest refusal but the server kept its pidfd open."""
    receiver = Receiver(max_queue=1, max_notices=2)
    receiver.receive(10, REQUEST, 0.0)  # the peer
    receiver.receive(11, REQUEST, 0.0)  # queued
    for pid in (12, 13, 14, 15):  # BUSY refusals, two at most
        receiver.receive(pid, REQUEST, 0.0)
    released = [e.pid for e in drain_events(receiver) if isinstance(e, Released)]
    assert released == [12, 13]
    assert receiver.known() == {10, 11, 14, 15}


def test_a_client_that_exits_frees_the_line_at_the_next_peer_check() -> None:
    """1.0 waited for the session timeout (about 3 s) although the client's pidfd already
    said it was gone: after a lost BYE, or a --timeout right after the grant."""
    for upto in ("granted", "acknowledged"):
        receiver = Receiver()
        receiver.receive(10, REQUEST, 0.0)
        receiver.receive(11, REQUEST, 0.0)
        if upto == "acknowledged":
            _send_frame(receiver, 10, split_message(b"bye lost", nonce=1)[0], 0.0)
        deadline = receiver.get_timer()
        assert deadline is not None
        assert deadline <= PEER_CHECK
        receiver.handle_timer(deadline, PeerView(alive=False))
        assert receiver.peer == 11


def test_a_shutdown_keeps_a_printed_message_until_its_ack_is_polled() -> None:
    """1.0 ended the session at once: the client polling the ACK of its printed message
    was told nothing and reported the message as perhaps not written."""
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    receiver.receive(11, REQUEST, 0.0)
    frame = split_message(b"printed", nonce=2)[0]
    for bit in to_bits(encode_frame(frame)):
        receiver.receive(10, bit, 0.0)
    receiver.message_written(0.0)
    receiver.shut_down(0.0)
    receiver.replies()
    answers = []
    for _ in range(8):
        receiver.receive(10, POLL, 0.0)
        answers += [symbol for pid, symbol in receiver.replies() if pid == 10]
    assert answers == verdict_bits(Verdict.ACK)
    receiver.receive(10, BYE, 0.0)
    assert receiver.idle or receiver.peer is None
    assert receiver.peer is None  # the queued client is not granted: it was told GOING_AWAY


def test_a_message_that_could_not_be_written_is_told_so() -> None:
    net = Network()
    client = net.add_client(10, "lost in the pipe")

    def pipe_gone(event: MessageReceived, uid: int) -> None:
        raise OutputError("the output is gone")

    net.server.on_message = pipe_gone
    net.run()
    assert net.server.failure is not None
    assert client.sender.state is SenderState.FAILED
    assert "could not write the message" in str(client.sender.error)


def test_a_shutdown_still_tells_a_refusal_already_under_way() -> None:
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    for bit in to_bits(encode_frame(split_message(b"unwritable", nonce=4)[0])):
        receiver.receive(10, bit, 0.0)
    assert receiver.state is ReceiverState.WRITING
    receiver.replies()  # GRANT and the frame bits' CONTINUEs: nothing yet for the last bit
    receiver.message_not_written(0.0)
    receiver.shut_down(0.0)
    assert [symbol for _, symbol in receiver.replies()] == [FRAME_OVER]
    for _ in range(8):
        receiver.receive(10, POLL, 0.0)
    assert [symbol for _, symbol in receiver.replies()] == verdict_bits(Verdict.NOT_WRITTEN)
    assert receiver.idle


# -- from the adversarial review ------------------------------------------------------------------


def _lose_one_answer(net: Network, client_pid: int, after_verdict_bits: int) -> None:
    """Run until the client has read ``after_verdict_bits`` bits of a verdict, then lose the
    server's next answer (merged into a stray the client took and saw)."""
    client = net.clients[client_pid]
    sender = client.sender
    for _ in range(200_000):
        if (
            sender.state is SenderState.POLLING
            and sender._verdict_count == after_verdict_bits
            and client.pending
        ):
            client.pending.clear()
            sender.stray(net.now)
            return
        assert net.step()
    raise AssertionError("never got there")


@pytest.mark.parametrize("lost_at", [0, 3, 7, 8, 12, 20, 31, 40, 47])
def test_a_lost_answer_in_a_refusal_never_turns_it_into_success(lost_at: int) -> None:
    """Review: in POLLING_LAST a REQUEST was taken as a poll, so the client, asking again
    after a lost answer, read the TOO_LARGE detail bits as GRANT, FRAME_OVER and ACK: with
    --max-bytes 85 a refused, unprinted message was reported delivered (exit 0)."""
    net = Network(Receiver(max_message=85))
    client = net.add_client(2001, "x" * 200)
    _lose_one_answer(net, 2001, lost_at)
    net.run()
    assert net.printed_texts() == []
    assert client.sender.state is SenderState.FAILED
    assert "the server accepts at most 85 bytes" in str(client.sender.error)


@pytest.mark.parametrize("read", range(8))
def test_a_shutdown_while_a_verdict_is_polled_tells_it_whole_then_going_away(read: int) -> None:
    """Review: a shutdown mid-verdict spliced GOING_AWAY onto the bits read, and ACK's first
    two bits, FRAME_OVER and GOING_AWAY's first five read as BUSY (exit 75)."""
    net = Network()
    client = net.add_client(2001, "y" * 3000)  # several frames
    sender = client.sender
    while not (
        sender.state is SenderState.POLLING
        and sender._verdict_count == read
        and sender.frame_index == 0
        and net.receiver.state is ReceiverState.POLLING
    ):
        assert net.step()
    net.shut_down()
    net.run()
    assert isinstance(sender.error, ServerGoneError)  # failed, and told why
    assert "shutting down" in str(sender.error)
    assert net.printed_texts() == []


@pytest.mark.parametrize("polled", [0, 1, 5])
def test_a_client_that_exits_while_polling_frees_the_line_at_the_peer_check(polled: int) -> None:
    """Review: in the polling states only the verdict clock (0.5 s, or --frame-timeout)
    was kept, so a client that exited mid-verdict held the line that long."""
    receiver = Receiver(frame_timeout=2.5, session_timeout=5.0)
    receiver.receive(10, REQUEST, 0.0)
    receiver.receive(11, REQUEST, 0.0)
    for bit in to_bits(encode_frame(split_message(b"x" * 1500, nonce=1)[0])):
        receiver.receive(10, bit, 0.0)
    for _ in range(polled):
        receiver.receive(10, POLL, 0.0)
    deadline = receiver.get_timer()
    assert deadline is not None
    assert deadline <= PEER_CHECK
    receiver.handle_timer(deadline, PeerView(alive=False))
    assert receiver.peer == 11


@pytest.mark.parametrize("view", [ServerView(stopped=True), ServerView(away=True)])
def test_no_looks_every_2_ms_while_the_server_cannot_answer(view: ServerView) -> None:
    """A server stopped or blocked writing answers nothing before it is back: looking at it
    every LOOK_AFTER read /proc 2,000 times a second for as long as it took (found when a
    reader stayed away for minutes). The bit deadline looks again, every bit_timeout."""
    sender = _sender_awaiting_first_bit()
    sender.handle_timer(sender.get_timer() or 0.0, view)
    assert sender.get_timer() == pytest.approx(0.001 + sender.bit_timeout)


def test_the_delivered_memory_is_one_nonce_per_pid_and_bounded() -> None:
    memory = DeliveredMemory(size=3)
    for pid in (1, 2, 3):
        memory.remember(pid, pid * 10)
    memory.remember(1, 11)  # a newer message of PID 1 replaces its older one
    assert not memory.delivered(1, 10)
    assert memory.delivered(1, 11)
    memory.remember(4, 40)  # over the bound: the least recently used PID (2) is forgotten
    assert len(memory) == 3
    assert not memory.delivered(2, 20)
    assert memory.delivered(3, 30)
    memory.forget(3, 99)  # another nonce: nothing to forget
    assert memory.delivered(3, 30)
    memory.forget(3, 30)
    assert not memory.delivered(3, 30)


def test_no_deadline_ends_a_session_whose_message_is_being_written() -> None:
    """Found by the faulty-link fuzzer: the server, stopped past the session's end, took the
    message's last bit and then applied the passed deadline in the same step; the session
    ended as delivered before the write, the write failed, and the client's retry was
    acknowledged as "already delivered": exit 0 for a message never printed."""
    receiver = Receiver()
    receiver.receive(10, REQUEST, 0.0)
    for bit in to_bits(encode_frame(split_message(b"unprinted", nonce=3)[0])):
        receiver.receive(10, bit, 0.0)
    assert receiver.state is ReceiverState.WRITING
    assert receiver.get_timer() is None
    receiver.handle_timer(SESSION_TIMEOUT * 10, PeerView(alive=False))
    assert receiver.peer == 10  # still waiting for the write's outcome
    receiver.message_not_written(SESSION_TIMEOUT * 10)
    receiver.replies()
    for _ in range(8):
        receiver.receive(10, POLL, SESSION_TIMEOUT * 10)
    assert [symbol for _, symbol in receiver.replies()] == verdict_bits(Verdict.NOT_WRITTEN)
