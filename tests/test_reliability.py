"""The fast subset of the reliability scenarios (the long run is `make soak`): many clients at
once, a client killed mid-message, the server stopped and continued, strangers' signals, the
server killed. Every scenario must show nothing corrupted and nothing silently lost."""

from __future__ import annotations

import random

import pytest

from minitalk.errors import ExitCode
from tests import forge, reliability
from tests.reliability import Tally

pytestmark = pytest.mark.e2e


def assert_clean(tally: Tally) -> None:
    assert tally.corrupted == 0, tally
    assert tally.lost == 0, tally
    assert tally.server_restarts == 0, tally


def test_eight_clients_at_once_two_messages_each() -> None:
    tally = reliability.load(clients=8, messages_each=2)
    assert_clean(tally)
    assert tally.delivered_intact == tally.sent == 16


def test_queued_clients_are_served_in_the_order_they_asked() -> None:
    tally = reliability.queue_order(clients=4)
    assert_clean(tally)
    assert tally.delivered_intact == tally.sent == 5
    assert tally.out_of_turn == 0


def test_client_killed_mid_message_then_next_client_served() -> None:
    tally = reliability.client_killed(random.Random(4))
    assert_clean(tally)
    assert tally.clients_killed == 1
    assert tally.delivered_intact == tally.sent == 1


def test_server_stopped_and_continued() -> None:
    tally = reliability.server_stopped(stop_seconds=1.5)
    assert_clean(tally)
    assert tally.sent == 1
    assert tally.delivered_intact == 1  # a stopped server is waited for, at no cost in tries


def test_strangers_signals_do_not_stop_a_transfer_and_are_never_answered() -> None:
    # Two strangers at 300 signals a second each: a stray that merges with a client signal
    # eats it, and the client sends it again or the frame is resent (docs/protocol.md).
    tally = reliability.strangers(rate=300, kinds=("naive", "naive"))
    assert_clean(tally)  # includes: the naive strangers were never answered (still alive)
    assert tally.delivered_intact == tally.sent == 1
    assert tally.strays > 0


@pytest.mark.skipif(not forge.can_forge(), reason="no siginfo layout for this CPU")
def test_forged_signals_naming_bystanders_and_the_client_change_nothing() -> None:
    # The forger's signals claim to come from the naive stranger (which dies if answered) or
    # from the client being served: never data, never answered (docs/protocol.md, "Trust").
    tally = reliability.strangers(rate=300, kinds=("naive", "forger"))
    assert_clean(tally)  # includes: the naive stranger was never answered (still alive)
    assert tally.delivered_intact == tally.sent == 1
    assert tally.strays > 0


@pytest.mark.skipif(not forge.can_forge(), reason="no siginfo layout for this CPU")
def test_strays_aimed_at_the_client_never_make_it_repeat_a_symbol() -> None:
    # A stray pending at the client swallows the server's answer; the client must not then
    # take its own signal for lost and send it again (the server would see it twice, and a
    # verdict read one bit off turned a good message into "too large"). Under this much
    # noise a send may still give up, told (exit 6); it must never be refused falsely.
    tally = reliability.strays_at_client(rate=300)
    assert_clean(tally)  # includes: never refused (exit 5), never printed twice or wrong
    assert tally.sent == 1
    assert tally.delivered_intact + tally.failed_told == 1
    assert tally.strays > 0


def test_server_killed_mid_message() -> None:
    code, _, err = reliability.server_killed()
    assert code == ExitCode.SERVER_GONE
    assert err.decode().count("\n") == 1
    assert b"exited" in err  # how fast it noticed is a figure for `make soak`, not a check
