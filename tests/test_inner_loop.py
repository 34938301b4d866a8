"""The tight loops (``SignalWaiter.bounce`` and ``collect``) on each path: compiled and Python.

Both paths must keep one contract, so each check runs on both and expects the same answer:
thousands of symbols carried exactly between two real processes, and, with signals made
pending before a loop starts (so that no timing is involved), the trust rules: a signal from
another PID, of the wrong kind, forged, or a stop signal ends a run and is handed back the way
``SignalWaiter`` reads it; a failed send is reported. The compiled path is skipped, saying so,
where the extension was not built (no C compiler: see setup.py and `make check-fallback`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minitalk.transport import INNER_LOOP
from tests.conftest import HANG_GUARD, MINITALK, SERVER_STDERR, Processes
from tests.forge import can_forge

pytestmark = pytest.mark.e2e

ROOT = str(Path(__file__).resolve().parent.parent)

# Runs every scenario in one process (argv: repo root, "compiled" or "python") and prints a
# JSON object of what each returned. Every process it signals is its own child.
SCENARIOS = r"""
import json, os, signal, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
from minitalk.procview import StatFile
from minitalk.transport import Process, SignalWaiter, block_signals
from forge import can_forge, forge

COMPILED = sys.argv[2] == "compiled"
USR = {signal.SIGUSR1, signal.SIGUSR2}
stops = block_signals(stops=True)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCONT})  # taken as a wake, as a classic server
me = os.getpid()
out = {}


def drain():
    while signal.sigtimedwait(USR | set(stops) | {signal.SIGCONT}, 0) is not None:
        pass


def child(*signums, stay=True, dies_of_usr1=False, all_blocked=False):
    # A child that sends us ``signums``, then stays until its pipe closes (``end``), or
    # exits at once (and is reaped here). ``dies_of_usr1``: it neither blocks, ignores nor
    # catches SIGUSR1 (one would kill it).
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(write)
        if dies_of_usr1 or all_blocked:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        if all_blocked:  # as around pthread_create's clone: no proof of a lasting block
            signal.pthread_sigmask(signal.SIG_SETMASK, set(signal.Signals))
        for signum in signums:
            os.kill(me, signum)
        if stay:
            os.read(read, 1)
        os._exit(0)
    os.close(read)
    if not stay:
        os.waitpid(pid, 0)
    return pid, write


def pending(signums):
    # Wait until ``signums`` are all pending here (a kill is done once they are).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        masks = 0
        with open(f"/proc/{me}/status") as status:
            for line in status:
                if line.startswith(("SigPnd", "ShdPnd")):
                    masks |= int(line.split()[1], 16)
        if all(masks & (1 << (s - 1)) for s in signums):
            return
    raise SystemExit(f"signals {signums} never became pending")


def end(pid, write):
    os.close(write)
    os.waitpid(pid, 0)


def scenario(name, signums, run, wakes=(), **how):
    drain()
    pid, write = child(*signums, **how)
    pending(signums)
    w = SignalWaiter(spin=True, stops=stops, wakes=wakes, compiled=COMPILED)
    ended = []
    result = run(w, pid, lambda: ended.append(end(pid, write)))
    out[name] = [result, w.forged, w.stop_requested]
    if not ended:
        end(pid, write)
    drain()


def named(result, pid):
    # Whose signal ended a run, without the PIDs that change from run to run.
    if result is None:
        return None
    sender, symbol = result
    return ["peer" if sender == pid else "stranger", symbol]


# collect: the peer's 0, then the peer's 1 (the lowest signal number is taken first).
def collect_both(w, pid, end_peer):
    taken, broke = w.collect(Process(pid), 5, 0)
    return [taken, named(broke, pid)]
scenario("collect the peer's", [signal.SIGUSR1, signal.SIGUSR2], collect_both)


# collect from a peer whose 0 is pending, while another process's 1 is pending too.
def collect_stranger(w, pid, end_peer):
    stranger, _ = child(signal.SIGUSR2, stay=False)
    pending([signal.SIGUSR1, signal.SIGUSR2])
    taken, broke = w.collect(Process(pid), 5, 0)
    if broke is None:
        return [taken, None]
    return [taken, ["stranger" if broke[0] == stranger else "?", broke[1]]]
scenario("collect, a stranger's signal", [signal.SIGUSR1], collect_stranger)


def collect_stop(w, pid, end_peer):
    os.kill(me, signal.SIGTERM)
    taken, broke = w.collect(Process(pid), 5, 0)
    return [taken, named(broke, pid)]
scenario("collect, a stop", [], collect_stop)

if can_forge():
    def collect_forged(w, pid, end_peer):
        forge(me, signal.SIGUSR1, pid)
        taken, broke = w.collect(Process(pid), 5, 0)
        return [taken, named(broke, pid)]
    scenario("collect, a forged signal", [], collect_forged)


# bounce: the answer expected (0) is pending: the first symbol goes; then nothing comes.
def bounce_one(w, pid, end_peer):
    count, broke = w.bounce(Process(pid), [1, 0, 1], 0)
    return [count, named(broke, pid), repr(w.send_error)]
scenario("bounce, one answer", [signal.SIGUSR1], bounce_one)


# bounce: the peer answered 1 where 0 was expected: handed back, nothing sent.
def bounce_wrong(w, pid, end_peer):
    count, broke = w.bounce(Process(pid), [1, 0, 1], 0)
    return [count, named(broke, pid), repr(w.send_error)]
scenario("bounce, the wrong answer", [signal.SIGUSR2], bounce_wrong)


# bounce: the answer came, but the peer has exited since: the send fails, and says so.
def bounce_gone(w, pid, end_peer):
    peer = Process(pid)
    end_peer()
    count, broke = w.bounce(peer, [1, 0, 1], 0)
    return [count, named(broke, pid), type(w.send_error).__name__]
scenario("bounce, the peer exited", [signal.SIGUSR1], bounce_gone)

if can_forge():
    def bounce_forged(w, pid, end_peer):
        forge(me, signal.SIGUSR1, pid)
        count, broke = w.bounce(Process(pid), [1, 0, 1], 0)
        return [count, named(broke, pid), repr(w.send_error)]
    scenario("bounce, a forged answer", [], bounce_forged)


# classic_collect: (count, answer, zero, in_byte, has_one); the peer ignores SIGUSR1 (the
# SIG_IGN it inherits) unless it dies of it.
def classic_run(run):
    def go(w, pid, end_peer):
        stat = StatFile(pid)
        symbols, times, answered, broke, awake = w.classic_collect(Process(pid), stat, run)
        stat.close()
        ordered = all(a <= b for a, b in zip(times, times[1:])) and len(times) == len(symbols)
        return [symbols, answered, named(broke, pid), ordered, awake in times]
    return go
scenario("classic, answered", [signal.SIGUSR1], classic_run((5, 0, 0, 0, False)))
scenario(
    "classic, its next bit already there",
    [signal.SIGUSR1, signal.SIGUSR2],
    classic_run((5, 0, 0, 0, False)),
)
scenario("classic, a NUL ends it", [signal.SIGUSR1], classic_run((5, 0, 0, 7, False)))
scenario("classic, not a NUL", [signal.SIGUSR1], classic_run((5, 0, 0, 7, True)))
scenario(
    "classic, refused", [signal.SIGUSR2], classic_run((5, 0, 0, 0, False)), dies_of_usr1=True
)
scenario(
    "classic, every signal blocked", [signal.SIGUSR2], classic_run((5, 0, 0, 0, False)),
    all_blocked=True,
)
scenario("classic, a stop", [signal.SIGTERM], classic_run((5, 0, 0, 0, False)))


# The peer's 0 is pending, and a stranger's 1: the 0 is taken, and left unanswered for the
# caller, which takes what else is pending first.
def classic_stranger(w, pid, end_peer):
    stranger, _ = child(signal.SIGUSR2, stay=False)
    pending([signal.SIGUSR1, signal.SIGUSR2])
    return classic_run((5, 0, 0, 0, False))(w, pid, end_peer)
scenario("classic, something else pending", [signal.SIGUSR1], classic_stranger)


# A SIGCONT pending (this process was stopped and continued): the peer's bit is taken, left
# unanswered (the caller takes the SIGCONT first), and no moment is vouched for as awake.
def classic_continued(w, pid, end_peer):
    os.kill(me, signal.SIGCONT)
    return classic_run((5, 0, 0, 0, False))(w, pid, end_peer)
scenario(
    "classic, continued", [signal.SIGUSR1], classic_continued, wakes={signal.SIGCONT}
)


# A long exchange: a child collects what we bounce, 5,000 symbols, through every kind of
# return (runs cut by a spin that found nothing are resumed with a blocking wait).
SYMBOLS = [(i * 7 + i // 3) % 2 for i in range(5000)]
drain()
read, write = os.pipe()
collector = os.fork()
if collector == 0:
    w = SignalWaiter(spin=True, compiled=COMPILED)
    parent = Process(me)
    taken = []
    while len(taken) < len(SYMBOLS):
        got = w.wait(time.monotonic() + 10)
        if got is None or got[0] != me:
            break
        taken.append(got[1])
        parent.send(0)
        more, broke = w.collect(parent, len(SYMBOLS) - len(taken), 0)
        taken += more
        if broke is not None:
            break
    os.write(write, json.dumps(taken).encode())
    os._exit(0)
os.close(write)
w = SignalWaiter(spin=True, compiled=COMPILED)
peer = Process(collector)
sent = 0
while sent < len(SYMBOLS):
    peer.send(SYMBOLS[sent])
    sent += 1
    count, broke = w.bounce(peer, SYMBOLS[sent:], 0)
    sent += count
    if broke is not None or w.send_error is not None:
        break
    got = w.wait(time.monotonic() + 10)  # the answer to the last one sent
    if got != (collector, 0):
        break
chunks = []
while chunk := os.read(read, 65536):
    chunks.append(chunk)
os.waitpid(collector, 0)
out["5,000 symbols"] = [sent, json.loads(b"".join(chunks)) == SYMBOLS]
print(json.dumps(out))
"""

EXPECTED = {
    "collect the peer's": [[[0, 1], None], 0, False],
    "collect, a stranger's signal": [[[0], ["stranger", 1]], 0, False],
    "collect, a stop": [[[], None], 0, True],
    "bounce, one answer": [[1, None, "None"], 0, False],
    "bounce, the wrong answer": [[0, ["peer", 1], "None"], 0, False],
    "bounce, the peer exited": [[0, None, "ProcessLookupError"], 0, False],
    "classic, answered": [[[0], 1, None, True, True], 0, False],
    "classic, its next bit already there": [[[0], 0, None, True, True], 0, False],
    "classic, a NUL ends it": [[[0], 0, None, True, False], 0, False],
    "classic, not a NUL": [[[0], 1, None, True, True], 0, False],
    "classic, refused": [[[1], 0, None, True, True], 0, False],
    "classic, every signal blocked": [[[1], 0, None, True, True], 0, False],
    "classic, a stop": [[[], 0, None, True, False], 0, True],
    "classic, something else pending": [[[0], 0, None, True, True], 0, False],
    "classic, continued": [[[0], 0, None, True, False], 0, False],
    "5,000 symbols": [5000, True],
}
FORGED = {
    "collect, a forged signal": [[[], None], 1, False],
    "bounce, a forged answer": [[0, None, "None"], 1, False],
}


def run_scenarios(path: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", SCENARIOS, ROOT, path],
        capture_output=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    found: dict[str, object] = json.loads(result.stdout)
    return found


@pytest.mark.parametrize("path", ["compiled", "python"])
def test_each_path_keeps_the_tight_loops_contract(path: str) -> None:
    if path == "compiled" and INNER_LOOP != "compiled":
        pytest.skip("the compiled inner loop was not built here (or MINITALK_PURE_PYTHON)")
    expected = EXPECTED | (FORGED if can_forge() else {})
    assert run_scenarios(path) == expected


@pytest.mark.parametrize("path", ["compiled", "python"])
def test_a_send_runs_end_to_end_on_each_path(
    path: str, procs: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server and a client both on one path (the environment both inherit chooses it)
    carry a multi-frame message of every script exactly, the bulk loops doing most bits."""
    if path == "compiled":
        if INNER_LOOP != "compiled":
            pytest.skip("the compiled inner loop was not built here (or MINITALK_PURE_PYTHON)")
        monkeypatch.delenv("MINITALK_PURE_PYTHON", raising=False)
    else:
        monkeypatch.setenv("MINITALK_PURE_PYTHON", "1")
    version = subprocess.run(
        [*MINITALK, "--version"], capture_output=True, timeout=HANG_GUARD, check=True
    )
    assert f"; {'compiled' if path == 'compiled' else 'pure Python'} inner loop" in (
        version.stdout.decode()
    )
    text = "".join(f"{i} ωμέγα 日本語 👩\u200d💻 𝄞\n" for i in range(600))
    server = procs.serve("--count", "1")
    sent = procs.send(str(server.pid), text)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.decode().startswith(f"delivered {len(text.encode())} bytes in ")
    out, err, code = server.finish()
    assert (out.decode(), err, code) == (text + "\n", SERVER_STDERR, 0)
