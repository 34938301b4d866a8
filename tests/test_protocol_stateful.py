"""Sender and receiver over a faulty link, driven by hypothesis: whatever the link does, the
server prints only messages that were sent, whole and at most once, and a client that reports
success had its message printed exactly once."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from minitalk.protocol import Receiver, SenderState
from tests.simlink import STRANGER_PID, Network

CLIENT_PIDS = (10, 11, 12)
texts = st.text(st.characters(codec="utf-8"), max_size=40)


class FaultyLink(RuleBasedStateMachine):
    """Rules are the link's faults and the passing of time; invariants hold after each."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Network(Receiver(max_message=10_000))
        self.sent: dict[int, str] = {}

    @initialize(text=texts, bulk=st.booleans(), small=st.booleans())
    def first_client(self, text: str, bulk: bool, small: bool) -> None:
        # A small limit some texts pass: TOO_LARGE refusals meet the faults too. With bulk,
        # the drivers' tight loops for plain frame bits run as well.
        self.net = Network(Receiver(max_message=20 if small else 10_000), bulk=bulk)
        self._add(CLIENT_PIDS[0], text)

    def _add(self, pid: int, text: str) -> None:
        text = f"{pid}:{text}"  # distinct texts tell the clients' messages apart
        self.sent[pid] = text
        self.net.add_client(pid, text)

    @precondition(lambda self: len(self.sent) < len(CLIENT_PIDS))
    @rule(text=texts)
    def another_client(self, text: str) -> None:
        self._add(CLIENT_PIDS[len(self.sent)], text)

    @rule(symbol=st.integers(0, 1), burst=st.integers(1, 400))
    def deliver_to_server(self, symbol: int, burst: int) -> None:
        for _ in range(burst):  # mostly a healthy link, so that frames can complete
            self.net.deliver_to_server(symbol)
            for pid in self.sent:
                self.net.deliver_to_client(pid)

    @rule(pid=st.sampled_from(CLIENT_PIDS), symbol=st.integers(0, 1))
    def deliver_to_client(self, pid: int, symbol: int) -> None:
        if pid in self.sent:
            self.net.deliver_to_client(pid, symbol)

    @rule(symbol=st.integers(0, 1))
    def eaten_at_server(self, symbol: int) -> None:
        # A signal is lost only by merging into one of its kind pending first: a stranger's,
        # whose siginfo the kernel keeps (so the server takes a stray instead).
        self.net.eat_at_server(symbol)

    @rule(pid=st.sampled_from(CLIENT_PIDS), symbol=st.integers(0, 1))
    def eaten_at_client(self, pid: int, symbol: int) -> None:
        if pid in self.sent:
            self.net.eat_at_client(pid, symbol)

    @rule(symbol=st.integers(0, 1))
    def duplicate_at_server(self, symbol: int) -> None:
        origin = self.net.server_pending.get(symbol)
        if origin is not None:
            self.net.redeliver_to_server(origin, symbol)

    @rule(symbol=st.integers(0, 1), forged=st.booleans())
    def stranger_to_server(self, symbol: int, forged: bool) -> None:
        # A stranger's signal merges with (and may eat) a client's pending one of its kind;
        # a forged one does too, and is then dropped by the link.
        self.net.inject_to_server(symbol, forged=forged)

    @rule(pid=st.sampled_from(CLIENT_PIDS), symbol=st.integers(0, 1), forged=st.booleans())
    def stranger_to_client(self, pid: int, symbol: int, forged: bool) -> None:
        if pid in self.sent:
            self.net.inject_to_client(pid, symbol, STRANGER_PID, forged=forged)

    @rule(seconds=st.sampled_from([0.001, 0.3, 0.6, 1.1, 3.5]))
    def time_passes(self, seconds: float) -> None:
        self.net.advance(seconds)

    @rule(seconds=st.sampled_from([0.2, 5.0, 60.0]))
    def server_stopped_for(self, seconds: float) -> None:
        """SIGSTOP, time passes (the clients see the server stopped), SIGCONT."""
        self.net.server_stopped = True
        self.net.advance(seconds)
        self.net.server_stopped = False

    @rule(broken=st.booleans())
    def output_breaks_or_mends(self, broken: bool) -> None:
        """The server's output fails (a closed pipe): a message it cannot write must never be
        acknowledged. (The real server then drains and exits; here it goes on.)"""
        self.net.output_broken = broken

    @rule()
    def server_shuts_down(self) -> None:
        """A stop between steps: every client is told, a printed message still acknowledged."""
        self.net.shut_down()

    @rule(pid=st.sampled_from(CLIENT_PIDS))
    def client_dies(self, pid: int) -> None:
        if pid in self.sent and self.net.clients[pid].alive:
            self.net.kill(pid)

    @invariant()
    def only_sent_messages_printed_whole_and_at_most_once(self) -> None:
        printed = self.net.printed_texts()
        assert len(printed) == len(set(printed)), f"printed twice: {printed}"
        for event in self.net.printed:
            assert self.sent.get(event.pid) == event.text, f"corrupt or foreign: {event}"

    @invariant()
    def no_signal_lost_to_a_stray_a_drain_would_have_taken(self) -> None:
        assert not self.net.stale_merges(), self.net.stale_merges()

    @invariant()
    def a_successful_client_was_printed(self) -> None:
        printed = self.net.printed_texts()
        for client in self.net.clients.values():
            if client.sender.state is SenderState.DONE:
                assert printed.count(client.text) == 1

    def teardown(self) -> None:
        # Faults stop: a healthy link must bring every live client to an end, and the
        # invariants must still hold there.
        self.net.run(max_steps=200_000)
        self.only_sent_messages_printed_whole_and_at_most_once()
        self.a_successful_client_was_printed()
        for client in self.net.clients.values():
            if client.alive:
                assert client.sender.finished, f"client {client.pid} hangs in {client.sender.state}"


FaultyLink.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestFaultyLink = FaultyLink.TestCase
