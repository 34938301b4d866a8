"""The transport's views of another process, checked against real processes in known states.

The client relies on ``Process.asleep_waiting`` to send a signal again that a stray ate, and on
``Process.holding`` to wait for a server that is stopped or has not taken its signal yet; a
wrong answer from either would show the server one symbol twice, or a symbol never.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minitalk.transport import Process
from tests.conftest import HANG_GUARD, Processes, pending_signals, wait_for

pytestmark = pytest.mark.e2e

# Blocks both data signals, says so, then waits in sigtimedwait (argv[1] == "wait") or in an
# ordinary sleep (anything else) until it is ended.
HELPER = """
import signal, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
print("ready", flush=True)
if sys.argv[1] == "wait":
    signal.sigwaitinfo({signal.SIGUSR1, signal.SIGUSR2})
    print("took one", flush=True)
time.sleep(600)
"""


@pytest.fixture
def helpers() -> Iterator[Processes]:
    processes = Processes()
    try:
        yield processes
    finally:
        processes.end_all()


def _helper(helpers: Processes, how: str) -> tuple[Process, int]:
    process = helpers.popen([sys.executable, "-c", HELPER, how])
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    return Process(process.pid), process.pid


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def test_a_process_asleep_in_sigwaitinfo_is_waiting_and_one_signal_wakes_it(
    helpers: Processes,
) -> None:
    waiting, _ = _helper(helpers, "wait")
    wait_for(waiting.asleep_waiting, "the helper is asleep in sigwaitinfo")
    waiting.send(1)
    wait_for(lambda: not waiting.asleep_waiting(), "the signal woke it")
    waiting.close()


def test_a_process_asleep_elsewhere_with_a_signal_pending_is_not_waiting(
    helpers: Processes,
) -> None:
    sleeper, pid = _helper(helpers, "sleep")
    wait_for(lambda: _state(pid) == "S", "the helper is asleep in time.sleep")
    assert not sleeper.asleep_waiting()
    sleeper.send(0)
    wait_for(lambda: pending_signals(pid) & (1 << (signal.SIGUSR1 - 1)), "SIGUSR1 pending")
    assert sleeper.holding(0)  # the signal sits there untaken
    assert not sleeper.holding(1)
    sleeper.close()


def test_a_stopped_process_is_holding_not_waiting(helpers: Processes) -> None:
    stopped, pid = _helper(helpers, "wait")
    wait_for(stopped.asleep_waiting, "the helper is asleep in sigwaitinfo")
    helpers.started[-1].send_signal(signal.SIGSTOP)
    wait_for(lambda: _state(pid) == "T", "the helper is stopped")
    assert not stopped.asleep_waiting()
    assert stopped.holding(0)
    helpers.started[-1].send_signal(signal.SIGCONT)
    wait_for(stopped.asleep_waiting, "the helper waits again")
    assert not stopped.holding(0)
    stopped.close()


# Waits once, for 1 s, in the transport's SignalWaiter, and prints what it got.
WAITS_ONCE = """
import sys, time
sys.path.insert(0, sys.argv[1])
from minitalk.transport import SignalWaiter, block_signals
block_signals()
print("ready", flush=True)
waiter = SignalWaiter(spin=False)
print(repr((waiter.wait(time.monotonic() + 1.0), waiter.forged)), flush=True)
"""


def test_a_wait_stopped_past_its_deadline_returns_nothing(helpers: Processes) -> None:
    # Stopped and continued past its deadline, CPython's sigtimedwait returns a siginfo it
    # never filled. Zeros there read as SI_USER and crashed the server (KeyError 0); other
    # garbage counted as a forged signal; a stale real siginfo would be a phantom signal.
    root = str(Path(__file__).resolve().parent.parent)
    waiter = helpers.popen([sys.executable, "-c", WAITS_ONCE, root])
    assert waiter.stdout is not None
    assert waiter.stdout.readline() == b"ready\n"
    wait_for(lambda: Process(waiter.pid).asleep_waiting(), "it waits in sigtimedwait")
    waiter.send_signal(signal.SIGSTOP)
    wait_for(lambda: _state(waiter.pid) == "T", "it is stopped")
    time.sleep(1.5)  # the fault itself: stopped past its 1 s deadline
    waiter.send_signal(signal.SIGCONT)
    out, err = waiter.communicate(timeout=HANG_GUARD)
    # Nothing returned; the untrusted siginfo is counted with the forged ones, so that a
    # client never takes the absence of what it might have been for proof of a loss.
    assert (out, err, waiter.returncode) == (b"(None, 1)\n", b"", 0)


# Takes the stop signals in its wait (as the framed server does) and prints what it got.
WAITS_FOR_A_STOP = """
import sys
sys.path.insert(0, sys.argv[1])
from minitalk.transport import SignalWaiter, block_signals
stops = block_signals(stops=True)
print(sorted(int(s) for s in stops), flush=True)
waiter = SignalWaiter(spin=False, stops=stops)
print(repr((waiter.wait(None), waiter.stops, waiter.stop_requested)), flush=True)
"""


def test_a_stop_signal_ends_the_wait_of_a_stop_aware_waiter(helpers: Processes) -> None:
    root = str(Path(__file__).resolve().parent.parent)
    waiter = helpers.popen([sys.executable, "-c", WAITS_FOR_A_STOP, root])
    assert waiter.stdout is not None
    stops = sorted(int(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    assert waiter.stdout.readline() == f"{stops}\n".encode()
    wait_for(lambda: Process(waiter.pid).asleep_waiting(), "it waits in sigwaitinfo")
    waiter.send_signal(signal.SIGTERM)  # taken in the wait: no KeyboardInterrupt, no exit 130
    out, err = waiter.communicate(timeout=HANG_GUARD)
    assert (out, err, waiter.returncode) == (b"(None, 1, True)\n", b"", 0)
