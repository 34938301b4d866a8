"""Reliability scenarios with real processes and injected faults, shared by the fast subset in
the test suite (tests/test_reliability.py) and the long run (`make soak`, tests/soak.py).

Each scenario starts its own server, injects one kind of fault, checks what the server printed
against what was sent, and returns a ``Tally``. Faults are injected by the scenario itself:
SIGKILL and SIGSTOP of processes it started, stranger processes that it starts and that
send SIGUSR1/SIGUSR2 to its server (or client), and a CPU hog (a busy loop) that it starts.
Every process is ended by PID in a ``finally``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

from minitalk.errors import ExitCode
from tests import forge
from tests.conftest import HANG_GUARD, MINITALK, Processes, admitted_send, wait_for

# A stranger: signals the server as fast as asked until told to stop, then prints its count.
# "naive" ones keep the default action, so they die if the server ever answers them.
# "polite" ones block and ignore both signals, exactly like a minitalk client, so they pass the
# server's check: they get queued and even granted the line, which they fill with noise.
# A "forger" writes its own siginfo (tests/forge.py, whose source it carries): each signal
# claims to come from one of the PIDs it was given (the naive strangers: bystanders that die
# if answered) or from a client the server holds right now (from /proc/SERVER/fdinfo).
STRANGER = (
    Path(forge.__file__).read_text()
    + """
import os, random, signal, sys, time
target, rate, kind = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
bystanders = [int(pid) for pid in sys.argv[4:]]
if kind == "polite":
    # as a minitalk process does: both data signals ignored, and the peer mark blocked
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2, signal.SIGRTMAX})
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)

def held_by(server):
    held = []
    for name in os.listdir(f"/proc/{server}/fdinfo"):
        try:
            with open(f"/proc/{server}/fdinfo/{name}") as info:
                held += [int(l.split()[1]) for l in info if l.startswith("Pid:")]
        except OSError:
            pass
    return [pid for pid in held if pid > 1]

signal.signal(signal.SIGTERM, lambda *_: (print(sent, flush=True), os._exit(0)))
sent, gap, victims = 0, 1.0 / rate, bystanders
print("ready", flush=True)
while True:
    signum = random.choice((signal.SIGUSR1, signal.SIGUSR2))
    if kind == "forger":
        if sent % 16 == 0:
            victims = bystanders + held_by(target)
        forge(target, signum, random.choice(victims) if victims else os.getpid())
    else:
        os.kill(target, signum)
    sent += 1
    time.sleep(gap)
"""
)

# A CPU hog: one core's worth of busy loop, never signalled but by its own PID at the end.
HOG = [sys.executable, "-c", "while True: pass"]


@dataclass
class Tally:
    """What a scenario did and saw; `make soak` adds these up into its table."""

    sent: int = 0  # messages clients tried to send
    delivered_intact: int = 0  # printed exactly once, whole
    corrupted: int = 0  # printed but not as sent, or printed twice
    lost: int = 0  # neither printed nor reported as failed by its client
    failed_told: int = 0  # not printed, and its client exited non-zero saying why
    clients_killed: int = 0
    server_restarts: int = 0  # never needed: a scenario that needs one counts it here
    strays: int = 0  # stranger signals sent at the server
    out_of_turn: int = 0  # clients served in another order than they asked in
    worst_wait: float = 0.0  # longest whole `minitalk send`, queueing included, in seconds
    codes: tuple[int, ...] = ()  # the exit code of each client judged, in order

    def add(self, other: Tally) -> None:
        for item in fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            merged = max(mine, theirs) if item.name == "worst_wait" else mine + theirs
            setattr(self, item.name, merged)


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _judge(
    tally: Tally, sent: dict[str, int], printed: bytes, may_appear: tuple[str, ...] = ()
) -> None:
    """Compare what the server printed with what was sent (text -> the client's exit code).

    A line that is not a sent text (or one of ``may_appear``, the whole message of a killed
    client, which may have finished before the kill), or a line printed twice, is corrupt.
    A sent text not printed is lost if its client exited 0, else failed and told.
    """
    lines = printed.decode("utf-8", errors="replace").split("\n")[:-1]
    counts: dict[str, int] = {}
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    for line, count in counts.items():
        if (line not in sent and line not in may_appear) or count > 1:
            tally.corrupted += 1
    tally.codes += tuple(sent.values())
    for text, code in sent.items():
        tally.sent += 1
        if counts.get(text) == 1:
            tally.delivered_intact += 1  # even if its client failed after (a lost final ACK)
        elif code == 0:
            tally.lost += 1  # the client said delivered, the server never printed it
        else:
            tally.failed_told += 1


def _message(tag: str, size: int) -> str:
    unit = f"{tag} ✓ 日本 🎉 "
    return (unit * (size // len(unit.encode()) + 1))[: max(size // 2, 1)] + f" end {tag}"


def _timed_send(procs: Processes, pid: int, text: str) -> tuple[int, float]:
    started = time.monotonic()
    result = procs.send(str(pid), text, "--quiet")
    return result.returncode, time.monotonic() - started


def load(clients: int, messages_each: int, size: int = 300) -> Tally:
    """``clients`` processes start at the same instant, each sending messages in a row."""
    tally, procs = Tally(), Processes()
    sent: dict[str, int] = {}
    barrier = threading.Barrier(clients)
    lock = threading.Lock()

    def client(index: int) -> None:
        barrier.wait()
        for round_ in range(messages_each):
            text = _message(f"c{index}m{round_}", size)
            code, seconds = _timed_send(procs, server.pid, text)
            with lock:
                sent[text] = code
                tally.worst_wait = max(tally.worst_wait, seconds)

    try:
        server = procs.serve("--count", str(clients * messages_each))
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HANG_GUARD)
        out, _, _ = server.finish() if all(code == 0 for code in sent.values()) else server.stop()
        _judge(tally, sent, out)
    finally:
        procs.end_all()
    return tally


def queue_order(clients: int, size: int = 64 * 1024) -> Tally:
    """A long message holds the line while ``clients`` more ask, one after another, each
    once the server has admitted the one before (it holds a pidfd for it), so the order in
    which they asked is known. They must be served, and printed, in that order."""
    tally, procs = Tally(), Processes()
    try:
        server = procs.serve("--count", str(clients + 1))
        started = time.monotonic()
        asked = [_message("holder", size)] + [_message(f"q{i}", 200) for i in range(clients)]
        running = [admitted_send(procs, server, text) for text in asked]
        sent: dict[str, int] = {}
        for text, process in zip(asked, running, strict=True):
            process.communicate(timeout=HANG_GUARD)
            sent[text] = process.returncode
        tally.worst_wait = time.monotonic() - started
        out, _, _ = server.finish() if all(c == 0 for c in sent.values()) else server.stop()
        _judge(tally, sent, out)
        served = [line for line in out.decode().split("\n") if line in sent]
        in_turn = [text for text in asked if text in served]
        tally.out_of_turn = sum(a != b for a, b in zip(served, in_turn, strict=True))
    finally:
        procs.end_all()
    return tally


def client_killed(rng: random.Random, size: int = 64 * 1024) -> Tally:
    """A client is SIGKILLed at a random point of its message; the next client is served."""
    tally, procs = Tally(), Processes()
    try:
        server = procs.serve()
        victim_text = _message("victim", size)
        victim = procs.popen([*MINITALK, "send", str(server.pid), victim_text, "--quiet"])
        # Mid-transfer, not at start-up: wait until it has done some sending work.
        cpu_mark = 0.25 + rng.random() * 0.5
        wait_for(
            lambda: _cpu_seconds(victim.pid) > cpu_mark or victim.poll() is not None,
            "the victim got under way",
        )
        victim.kill()
        victim.wait(HANG_GUARD)
        tally.clients_killed += 1
        after = _message("after", 200)
        code, seconds = _timed_send(procs, server.pid, after)
        tally.worst_wait = seconds
        out, _, _ = server.stop()
        _judge(tally, {after: code}, out, may_appear=(victim_text,))
    finally:
        procs.end_all()
    return tally


def server_stopped(stop_seconds: float, size: int = 32 * 1024) -> Tally:
    """The server is SIGSTOPped mid-message, then continued: intact, or a clean failure."""
    tally, procs = Tally(), Processes()
    try:
        server = procs.serve()
        text = _message("stopped", size)
        started = time.monotonic()
        client = procs.popen([*MINITALK, "send", str(server.pid), text, "--quiet"])
        wait_for(lambda: _cpu_seconds(client.pid) > 0.3 or client.poll() is not None, "under way")
        server.process.send_signal(signal.SIGSTOP)
        time.sleep(stop_seconds)  # the fault itself: how long the server stays stopped
        server.process.send_signal(signal.SIGCONT)
        client.communicate(timeout=HANG_GUARD)
        tally.worst_wait = time.monotonic() - started
        out, _, _ = server.stop()
        _judge(tally, {text: client.returncode}, out)
    finally:
        procs.end_all()
    return tally


def strangers(rate: float, kinds: tuple[str, ...] = ("naive",), size: int = 8 * 1024) -> Tally:
    """Strangers signal the server during a transfer, each ``rate`` signals a second. A
    "naive" one dies if the server ever answers it, so its survival shows the server never
    answers an unvalidated process. A "polite" one passes for a client: it gets queued and
    even granted the line, which it fills with noise until it loses it. A "forger" sends
    signals that claim to come from the naive strangers started before it, or from the very
    client being served. Nothing may be corrupted or lost, and no naive stranger answered; a
    send may still fail (told) under polite noise, see the note in docs/protocol.md."""
    tally, procs = Tally(), Processes()
    try:
        server = procs.serve()
        noise: list[subprocess.Popen[bytes]] = []
        for kind in kinds:
            naive = [str(n.pid) for n, k in zip(noise, kinds, strict=False) if k == "naive"]
            named = naive if kind == "forger" else []
            noise.append(_stranger(procs, server.pid, rate, kind, named))
        text = _message("amid-noise", size)
        code, seconds = _timed_send(procs, server.pid, text)
        tally.worst_wait = seconds
        naive_alive = all(
            stranger.poll() is None
            for stranger, kind in zip(noise, kinds, strict=True)
            if kind == "naive"
        )
        tally.strays += _stop_strangers(noise)
        out, _, _ = server.stop()
        _judge(tally, {text: code}, out)
        if not naive_alive:
            tally.corrupted += 1  # the server signalled a process that never asked
    finally:
        procs.end_all()
    return tally


def _stranger(
    procs: Processes, target: int, rate: float, kind: str, named: list[str]
) -> subprocess.Popen[bytes]:
    """Start a stranger signalling ``target``; return once it is under way."""
    stranger = procs.popen([sys.executable, "-c", STRANGER, str(target), str(rate), kind, *named])
    assert stranger.stdout is not None
    assert stranger.stdout.readline() == b"ready\n"
    return stranger


def _stop_strangers(noise: list[subprocess.Popen[bytes]]) -> int:
    """End the strangers (by their PIDs); return how many signals they sent in all."""
    sent = 0
    for stranger in noise:
        if stranger.poll() is None:
            stranger.terminate()
        out_line, _ = stranger.communicate(timeout=HANG_GUARD)
        sent += int(out_line or b"0")
    return sent


def strays_at_client(
    rate: float,
    kinds: tuple[str, ...] = ("naive", "forger"),
    size: int = 32 * 1024,
    hog: bool = False,
) -> Tally:
    """Strangers signal the *client* during a transfer, each ``rate`` signals a second: a
    naive one with plain kill, a forger with signals that claim to be the server's (the client
    holds a pidfd of the server, so /proc/CLIENT/fdinfo names it). None of them may count as
    an answer; one that is pending at the client when the server's answer comes swallows it,
    and the client must then not send its last signal again (the server took it: a repeat
    would be one symbol seen twice). Nothing may be corrupted or lost, or refused falsely.
    With ``hog``, a busy loop started first spins beside them all (on 2 cores, the client,
    the server and the strangers share the other one): answers come late, strays pile up."""
    tally, procs = Tally(), Processes()
    try:
        if hog:
            spinner = procs.popen(HOG, stdin=subprocess.DEVNULL)
            wait_for(
                lambda: _cpu_seconds(spinner.pid) > 0.1 or spinner.poll() is not None,
                "the CPU hog is spinning",
            )
        server = procs.serve()
        text = _message("strays-at-client", size)
        started = time.monotonic()
        client = admitted_send(procs, server, text)  # its signals are blocked by then
        noise = [_stranger(procs, client.pid, rate, kind, []) for kind in kinds]
        client.communicate(timeout=HANG_GUARD)
        tally.worst_wait = time.monotonic() - started
        tally.strays += _stop_strangers(noise)
        out, _, _ = server.stop()
        _judge(tally, {text: client.returncode}, out)
        if client.returncode == ExitCode.REFUSED:
            tally.corrupted += 1  # the message was within every limit: a misread verdict
    finally:
        procs.end_all()
    return tally


def server_killed(size: int = 64 * 1024) -> tuple[int, float, bytes]:
    """The server is SIGKILLed mid-message; return the client's code, how long it took to
    notice, and its stderr."""
    procs = Processes()
    try:
        server = procs.serve()
        client = procs.popen(
            [*MINITALK, "send", str(server.pid), _message("orphan", size), "--quiet"]
        )
        wait_for(lambda: _cpu_seconds(client.pid) > 0.3 or client.poll() is not None, "under way")
        server.process.kill()
        killed_at = time.monotonic()
        _, err = client.communicate(timeout=HANG_GUARD)
        return client.returncode, time.monotonic() - killed_at, err
    finally:
        procs.end_all()
