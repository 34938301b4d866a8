"""Classic mode with real processes: minitalk against plain C minitalks and against itself.

The C peers in tests/classic_c/ follow the exercise's usual patterns: a server whose
SA_SIGINFO handler answers each bit to ``si_pid`` (or not, ``--no-ack``), a client that waits
for each answer, and one that sleeps between bits and catches nothing. They are compiled with
``cc`` at test time; without a compiler those tests skip and say so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from minitalk.classic_limits import ANSWER_RETRY_FOR
from minitalk.errors import ExitCode
from tests.conftest import (
    HANG_GUARD,
    MINITALK,
    Processes,
    Server,
    _read_line,
    at_rest,
    clients_held,
    wait_for,
    wchan_visible,
)

pytestmark = pytest.mark.e2e
SOURCES = Path(__file__).resolve().parent / "classic_c"


def _c_server(procs: Processes, c_peers: dict[str, str], *args: str) -> Server:
    process = procs.popen([c_peers["server"], *args])
    assert process.stdout is not None
    line = _read_line(process.stdout, HANG_GUARD)
    assert line == f"PID {process.pid}\n".encode()
    return Server(process, process.pid, line)


def _classic_serve(procs: Processes, *options: str) -> Server:
    return procs.serve("--classic", "--idle-timeout", "30", *options)


# A client that sleeps between bits loses or swaps bits whenever the server is not scheduled
# for that long (two signals of one kind pending merge; of two kinds, the lower is taken
# first): 500 µs, the usual choice, is not safe on a busy 2-CPU machine. The tests give the
# plain C client 5 ms (with 2 ms it corrupted a message now and then while other test suites
# ran beside it). minitalk's own timed sender does not need it: it waits while any signal of
# its own is still pending at the server.
SLEEP_GAP_US = "5000"
OWN_GAP_US = "2000"  # minitalk's own timed sender, which waits while its signals are pending


def _c_client(
    procs: Processes, c_peers: dict[str, str], server: int, how: str, text: str
) -> subprocess.Popen[bytes]:
    gap = [SLEEP_GAP_US] if how == "sleep" else []
    return procs.popen([c_peers["client"], str(server), how, text, *gap])


def _lines(server: Server, count: int) -> list[bytes]:
    """Wait until the server printed ``count`` lines after its first (PID) line; stop it;
    return them."""
    wait_for(lambda: b"".join(server._out).count(b"\n") >= count, f"{count} lines printed")
    out, _, _ = server.stop()
    return out.splitlines()


ASCII = "plain ASCII, as the exercise's tests send it: 0123456789 !?"
EMOJI = "emoji 🎉🚀 and CJK 日本語, combining e\u0301, ZWJ 👩\u200d💻"
LONG = "".join(chr(0x41 + n % 26) for n in range(10_000))


# -- minitalk send --classic -> a plain C server ------------------------------------------------


@pytest.mark.parametrize("text", [ASCII, EMOJI, LONG], ids=["ascii", "emoji", "10000-chars"])
def test_a_plain_c_server_that_answers_receives_the_text_exactly(
    procs: Processes, c_peers: dict[str, str], text: str
) -> None:
    server = _c_server(procs, c_peers)
    result = procs.send("--classic", str(server.pid), text)
    assert result.returncode == 0, result.stderr
    assert b"paced by its answers" in result.stdout
    assert _lines(server, 1) == [text.encode()]


def test_a_plain_c_server_that_never_answers_is_paced_by_a_delay(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    server = _c_server(procs, c_peers, "--no-ack")
    result = procs.send("--classic", str(server.pid), EMOJI, "--delay-us", OWN_GAP_US)
    assert result.returncode == 0, result.stderr
    assert b"paced by a 2000 \xc2\xb5s delay" in result.stdout
    assert _lines(server, 1) == [EMOJI.encode()]


def test_the_trace_of_a_send_shows_bits_pacing_and_answers(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    server = _c_server(procs, c_peers)
    result = procs.send("--classic", str(server.pid), "hi", "--trace", "--quiet")
    assert result.returncode == 0
    trace = result.stderr.decode()
    assert f"trace: to PID {server.pid}: byte 0: bits 01101000 = 0x68 'h'" in trace
    assert "byte 2: bits 00000000 = 0x00" in trace  # the NUL
    assert "signals sent 24 of 24" in trace
    assert "paced by the server's answers: 24 received" in trace
    assert result.stdout == b""


def test_a_plain_server_that_stops_answering_is_reported_never_repeated(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    server = _c_server(procs, c_peers)
    client = procs.popen(
        [*MINITALK, "send", "--classic", str(server.pid), LONG, "--reply-timeout", "0.3"]
    )
    # The C server wakes once per signal: a few hundred wake-ups mean the client is paced
    # by its answers, mid-message.
    wait_for(lambda: _wakeups(server.pid) > 300, "the send is under way, paced by answers")
    server.process.send_signal(signal.SIGSTOP)  # it stops answering mid-message
    _, err = client.communicate(timeout=HANG_GUARD)
    server.process.send_signal(signal.SIGCONT)
    assert client.returncode == ExitCode.NO_ANSWER
    assert err.count(b"\n") == 1
    assert b"the server stopped answering after signal" in err
    assert b"never sent twice" in err


def test_a_stopped_plain_server_is_not_sent_blind(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    # Paced by the delay, a send would pile its signals up at a stopped server, where two of
    # a kind merge: it waits instead, and gives up, told.
    server = _c_server(procs, c_peers, "--no-ack")
    server.process.send_signal(signal.SIGSTOP)
    wait_for(lambda: _state(server.pid) == "T", "the server is stopped")
    result = procs.send("--classic", str(server.pid), "hi", "--reply-timeout", "0.3")
    server.process.send_signal(signal.SIGCONT)
    assert result.returncode == ExitCode.NO_ANSWER, result.stderr
    assert b"the server has not taken signal" in result.stderr
    assert result.stderr.count(b"\n") == 1


# -- plain C clients -> minitalk serve --classic ------------------------------------------------


@pytest.mark.parametrize(("how", "ack"), [("wait", "bit"), ("sleep", "none"), ("sleep", "bit")])
def test_minitalk_serve_classic_prints_what_a_plain_c_client_sends(
    procs: Processes, c_peers: dict[str, str], how: str, ack: str
) -> None:
    # ("sleep", "bit"): that client catches nothing, so an answer would kill it; the server
    # checks before each answer and sends none.
    server = _classic_serve(procs, "--ack", ack)
    client = _c_client(procs, c_peers, server.pid, how, EMOJI)
    client.communicate(timeout=HANG_GUARD)
    assert client.returncode == 0, "the C client died or failed"
    assert _lines(server, 1) == [EMOJI.encode()]


@pytest.mark.skipif(not wchan_visible(), reason="the kernel hides /proc/PID/wchan here")
def test_two_plain_clients_at_once_are_assembled_apart(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    # Both clients are mid-message at the server at once, and their bits interleave there.
    # They take turns on the CPU (SIGSTOP/SIGCONT at points where the server has taken every
    # signal), because two signals of one kind pending at once are one: a client's unprompted
    # first bit can merge with another's, which nothing on the receiving side can undo
    # (docs/classic.md).
    server = _classic_serve(procs, "--ack", "bit")
    first, second = ("first: " + "a" * 2000 + " ✓"), ("second: " + "b" * 2000 + " ✓")
    a = _c_client(procs, c_peers, server.pid, "wait", first)
    assert a.stdout is not None
    assert a.stdout.readline() == b"started\n"
    _pause(a, server)
    b = _c_client(procs, c_peers, server.pid, "wait", second)
    assert b.stdout is not None
    assert b.stdout.readline() == b"started\n"
    for _ in range(3):  # interleave: each runs a little while the other is stopped
        _pause(b, server)
        _run_a_while(a)
        _pause(a, server)
        _run_a_while(b)
    _pause(b, server)
    a.send_signal(signal.SIGCONT)  # each finishes alone
    a.wait(timeout=HANG_GUARD)
    b.send_signal(signal.SIGCONT)
    b.wait(timeout=HANG_GUARD)
    assert (a.returncode, b.returncode) == (0, 0)
    assert sorted(_lines(server, 2)) == sorted([first.encode(), second.encode()])


# -- real student clients: end signals, sigtimedwait, threads, long messages ------------------

# Each end-signal form (--end-signal-at) and the C client argument that waits for it; "again"
# is one more SIGUSR1 after the last answer (--end-signal usr1 --end-signal-at after).
END_FORMS = {
    "instead": (["--end-signal", "usr2", "--end-signal-at", "instead"], "usr2"),
    "before": (["--end-signal", "usr2", "--end-signal-at", "before"], "usr2"),
    "after": (["--end-signal", "usr2", "--end-signal-at", "after"], "usr2"),
    "again": (["--end-signal", "usr1", "--end-signal-at", "after"], "again"),
}


@pytest.mark.parametrize("form", list(END_FORMS))
def test_a_client_that_waits_for_an_end_signal_finishes(
    procs: Processes, c_peers: dict[str, str], form: str
) -> None:
    """Five real clients hung after their message arrived: the server they were written for
    ends each message with a signal minitalk could not send. Each form, against a C client
    that exits only once it has that signal (exit 3 after 2 s without it)."""
    options, awaits = END_FORMS[form]
    server = _classic_serve(procs, "--count", "1", "--trace", *options)
    client = procs.popen([c_peers["client"], str(server.pid), "end", EMOJI, awaits])
    _, err = client.communicate(timeout=HANG_GUARD)
    assert client.returncode == 0, err
    out, trace, code = server.finish()
    assert (out, code) == (f"{EMOJI}\n".encode(), 0)
    said = {
        "instead": "SIGUSR2 in place of the last bit's answer",
        "before": "SIGUSR2 just before the last bit's answer",
        "after": "SIGUSR2 just after the last bit's answer",
        "again": "SIGUSR1 just after the last bit's answer",
    }[form]
    assert f"end signal {said}: sent".encode() in trace


@pytest.mark.parametrize("form", list(END_FORMS))
def test_send_classic_takes_each_end_signal_and_names_it(
    procs: Processes, c_peers: dict[str, str], form: str
) -> None:
    server = _c_server(procs, c_peers, "--end", form)
    result = procs.send("--classic", "--trace", str(server.pid), EMOJI)
    assert result.returncode == 0, result.stderr
    named = {
        "instead": b"end signal: SIGUSR2 in place of the last bit's answer",
        "before": b"end signal: SIGUSR2",  # just before it, or after if both were pending
        "after": b"end signal: SIGUSR2 after the last bit's answer",
        "again": b"end signal: SIGUSR1 again after the last bit's answer",
    }[form]
    assert named in result.stderr
    assert _lines(server, 1) == [EMOJI.encode()]


def test_a_client_that_waits_in_sigtimedwait_is_never_killed(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    """It blocks both signals and takes each answer with sigtimedwait, catching nothing.
    While it sleeps there /proc shows the signals unblocked, and nothing in /proc tells it
    from a client that waits without having blocked them, which the answer kills: it is
    answered only when a look finds it between its waits, showing them blocked (a retry may),
    and otherwise gives up on its own (exit 3, after 1.5 s), the trace saying why."""
    server = _classic_serve(procs, "--trace", "--idle-timeout", "0.5")
    # It gives up after 1.5 s, once the refused answer's retries (ANSWER_RETRY_FOR) are
    # over: one still running could find it between its give-up and its exit, signals
    # blocked, and answer it then (seen: "answers sent 1 of 1 (1 late)" and exit 3).
    assert ANSWER_RETRY_FOR < 1.5
    client = procs.popen([c_peers["client"], str(server.pid), "timedwait", EMOJI, "1500"])
    _, err = client.communicate(timeout=HANG_GUARD)
    assert client.returncode in (0, 3), err  # never killed (that would be -SIGUSR1)
    if client.returncode == 3:
        wait_for(lambda: b"dropped" in b"".join(server._err), "the server dropped it")
    out, trace, _ = server.stop()
    if client.returncode == 3:
        assert out == b""
        assert b"(unsafe: it does not block, ignore or catch SIGUSR1" in trace
    else:
        assert out == f"{EMOJI}\n".encode()


def test_with_answer_sigwait_a_client_that_waits_in_sigtimedwait_gets_its_answers(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    """--answer-sigwait: the user vouches that the client blocked the signals before its
    waits (this one does), so a client asleep in sigtimedwait is answered, and its whole
    message arrives; it gives up after 1 s without an answer (exit 3), which it never does."""
    server = _classic_serve(procs, "--count", "1", "--answer-sigwait", "--trace")
    client = procs.popen([c_peers["client"], str(server.pid), "timedwait", EMOJI, "1000"])
    _, err = client.communicate(timeout=HANG_GUARD)
    assert client.returncode == 0, err
    out, trace, code = server.finish()
    assert (out, code) == (f"{EMOJI}\n".encode(), 0)
    signals = 8 * (len(EMOJI.encode()) + 1)
    assert f"answers sent {signals} of {signals}".encode() in trace


# Clients whose masks look safe and are not (tests/classic_c/client.c, sleeping between bits):
# - thread: the main thread blocks both signals, another thread nothing: the kernel would
#   hand an answer to that thread, and the process would die;
# - newthread: its second thread blocks every signal for the whole message, as glibc's
#   pthread_create leaves a new thread until it has run (a two-thread client whose new
#   thread had not run yet looked safe, and died when it ran: seen once in a loaded full run);
# - allblocked: its one thread blocks every signal for the whole message, as pthread_create
#   and posix_spawn leave the calling thread around their clone (17-27% of the time for a
#   client that starts threads or programs between bits; a review killed such clients).
# Each then puts an ordinary mask back, which an answer pending by then would kill.
UNSAFE_MASKS = {
    "thread": b"not sent (unsafe: it does not block, ignore or catch SIGUSR1)",
    "newthread": b"not sent (unsafe: it does not block, ignore or catch SIGUSR1)",
    "allblocked": b"not sent (unsafe: it blocks every signal, as a thread does only for",
}


@pytest.mark.parametrize("mode", sorted(UNSAFE_MASKS))
def test_a_client_whose_mask_only_looks_safe_is_never_answered(
    procs: Processes, c_peers: dict[str, str], mode: str
) -> None:
    server = _classic_serve(procs, "--count", "1", "--trace")
    client = procs.popen([c_peers["client"], str(server.pid), mode, ASCII, SLEEP_GAP_US])
    client.communicate(timeout=HANG_GUARD)
    assert client.returncode == 0, "the client was killed (or failed)"
    out, trace, code = server.finish()
    assert (out, code) == (f"{ASCII}\n".encode(), 0)
    assert UNSAFE_MASKS[mode] in trace


def test_a_long_message_from_a_client_that_waits_for_each_bit(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    """20,000 characters, 160,008 answered bits, as the survey's fastest client sends them:
    with more than one CPU (where the server polls), some answered by the tight loop (how
    many depends on the machine's load: a run ends when an answer is slow to come)."""
    text = "".join(chr(0x61 + n % 26) for n in range(20_000))
    server = _classic_serve(procs, "--count", "1", "--trace")
    client = procs.popen([c_peers["client"], str(server.pid), "wait", text])
    client.communicate(timeout=HANG_GUARD)
    assert client.returncode == 0
    out, trace, code = server.finish()
    assert (out, code) == (f"{text}\n".encode(), 0)
    answers = re.search(rb"answers sent (\d+) of (\d+)(?:; (\d+) in a tight loop)?", trace)
    assert answers is not None, trace
    assert answers[1] == answers[2] == b"160008"
    if len(os.sched_getaffinity(0)) > 1:
        assert answers[3] is not None, answers[0]
        assert int(answers[3]) > 0, answers[0]


def test_an_answer_delay_keeps_a_waiting_client_going(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    server = _classic_serve(procs, "--count", "1", "--answer-delay-us", "300")
    client = procs.popen([c_peers["client"], str(server.pid), "wait", ASCII])
    client.communicate(timeout=HANG_GUARD)
    assert client.returncode == 0
    out, _, code = server.finish()
    assert (out, code) == (f"{ASCII}\n".encode(), 0)


def _pause(client: subprocess.Popen[bytes], server: Server) -> None:
    client.send_signal(signal.SIGSTOP)
    wait_for(lambda: _state(client.pid) == "T", "the client is stopped")
    wait_for(lambda: at_rest(server.pid), "the server took every signal")


def _run_a_while(client: subprocess.Popen[bytes]) -> None:
    """Let a stopped client send a few dozen bits (it sleeps once per bit, for the answer)."""
    before = _wakeups(client.pid)
    client.send_signal(signal.SIGCONT)
    wait_for(lambda: _wakeups(client.pid) > before + 40, "it sent some bits")


def _wakeups(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / 100


def test_the_server_lets_go_of_every_sender_it_answered(procs: Processes) -> None:
    # Two senders at once: one's last answers are released after its message ended, while the
    # other's bit is on its way; the server used to reopen a pidfd for them and keep it.
    server = procs.serve("--classic", "--ack", "bit", "--idle-timeout", "0.5")
    for n in range(4):
        pair = [
            procs.popen([*MINITALK, "send", "--classic", str(server.pid), f"{n}{side}" * 40])
            for side in "ab"
        ]
        for client in pair:
            client.communicate(timeout=HANG_GUARD)  # delivered, or told (a first bit merged)
    wait_for(lambda: clients_held(server.pid) == set(), "no pidfd of a finished sender is kept")
    server.stop()


def test_a_sender_that_dies_mid_byte_is_dropped_and_traced(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    server = procs.serve("--classic", "--idle-timeout", "0.2", "--trace")
    client = _c_client(procs, c_peers, server.pid, "wait", LONG)
    assert client.stdout is not None
    assert client.stdout.readline() == b"started\n"
    client.kill()
    client.wait(timeout=HANG_GUARD)
    wait_for(lambda: b"dropped: silent" in b"".join(server._err), "the server dropped it")
    follow = procs.send("--classic", str(server.pid), "after it", "--quiet")
    assert follow.returncode == 0, follow.stderr
    out, err, code = server.stop()
    assert code == 0
    assert out == b"after it\n"  # nothing of the dead one printed
    assert f"trace: PID {client.pid}:".encode() in err
    assert b"no NUL arrived" in err


def test_a_message_over_max_bytes_prints_nothing_of_it(procs: Processes) -> None:
    """The refused message used to be traced as dropped, and its tail then printed as a
    complete message of its own."""
    server = procs.serve("--classic", "--max-bytes", "10")
    sender: list[int] = []
    for text in ("0123456789abcdefghij", "short"):
        sent = procs.popen([*MINITALK, "send", "--classic", str(server.pid), text, "--quiet"])
        sender.append(sent.pid)
        _, said = sent.communicate(timeout=HANG_GUARD)
        assert sent.returncode == 0, said  # plain minitalk cannot tell a refusal
    out, err, code = server.stop()
    assert code == 0
    assert out == b"short\n"
    # its sender cannot be told: the server says it, even without --trace
    assert (
        err
        == (
            f"minitalk: PID {sender[0]}: its message passed the limit of 10 bytes; none of it is "
            "printed\n"
        ).encode()
    )


# -- minitalk against itself, each answer mode ---------------------------------------------------


@pytest.mark.parametrize("ack", ["bit", "end", "none"])
def test_minitalk_classic_against_itself(procs: Processes, ack: str) -> None:
    server = _classic_serve(procs, "--ack", ack, "--json")
    result = procs.send("--classic", str(server.pid), EMOJI)
    assert result.returncode == 0, result.stderr
    paced = b"paced by its answers" in result.stdout
    assert paced == (ack == "bit")
    assert server.first_line == f'{{"pid": {server.pid}}}\n'.encode()
    [line] = _lines(server, 1)
    assert f'"text": "{EMOJI}"'.encode() in line
    assert b'"valid_utf8": true' in line


@pytest.mark.parametrize(
    "variant",
    [
        ["--bit-order", "lsb"],
        ["--zero", "usr2"],
        ["--end", "newline"],
        ["--length-prefix", "32"],
        ["--length-prefix", "64", "--prefix-order", "lsb", "--end", "none"],
        ["--length-prefix", "32", "--length-counts-end"],
    ],
    ids=" ".join,
)
def test_every_variant_round_trips(procs: Processes, variant: list[str]) -> None:
    server = _classic_serve(procs, "--count", "1", *variant)
    result = procs.send("--classic", str(server.pid), "variant ✓", *variant)
    assert result.returncode == 0, result.stderr
    out, _, code = server.finish()
    assert code == 0
    assert out == "variant ✓\n".encode()


def test_a_send_with_a_gap_after_each_answer_round_trips(procs: Processes) -> None:
    server = _classic_serve(procs, "--count", "1")
    result = procs.send("--classic", str(server.pid), "gap ✓", "--answer-gap-us", "200")
    assert result.returncode == 0, result.stderr
    assert b"paced by its answers" in result.stdout
    out, _, code = server.finish()
    assert (out, code) == ("gap ✓\n".encode(), 0)


def test_after_a_stop_a_sender_that_started_meanwhile_is_not_answered(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    """While a server is stopped, a sender may send a bit and exit, and a new process take its
    PID: the continued server must not answer the newcomer. It cannot tell a newcomer from a
    sender that started during the stop, so it answers neither (and says why); a sender that
    started before the stop is answered as usual."""
    # Silence longer than the stop (the early client is stopped too) ends neither message.
    server = _classic_serve(procs, "--trace", "--idle-timeout", "3")
    # (sigwait: a sigtimedwait of its own fails with EINTR once it is stopped and continued)
    early = procs.popen([c_peers["client"], str(server.pid), "wait", "early"])
    assert early.stdout is not None
    assert early.stdout.readline() == b"started\n"  # its first byte went through: answered
    # Nothing of its may be pending at the server across the stop: a second signal of one
    # kind pending there (the late client's) would merge into it.
    _pause(early, server)
    server.process.send_signal(signal.SIGSTOP)
    wait_for(lambda: _state(server.pid) == "T", "the server is stopped")
    # The late client catches the answer (a handler, sigwait): only the stop keeps it
    # unanswered, and then it waits for ever; the test ends it once the server gave up on it.
    late = procs.popen([c_peers["client"], str(server.pid), "wait", "late"])
    wait_for(lambda: _state(late.pid) == "S", "the late client sent its first bit and waits")
    server.process.send_signal(signal.SIGCONT)
    # The early client's next bit must not find the late one still pending there: of one
    # kind, the two would merge and the early client wait for ever.
    wait_for(lambda: at_rest(server.pid), "the server took the late client's bit")
    early.send_signal(signal.SIGCONT)
    early.communicate(timeout=HANG_GUARD)
    assert early.returncode == 0  # answered before, and after, the stop
    wait_for(lambda: b"dropped" in b"".join(server._err), "the late sender was dropped")
    assert late.poll() is None  # never answered: still waiting for its first answer
    late.kill()
    late.wait(timeout=HANG_GUARD)
    # A client that starts after the continue is fresh: answered (a stale SIGCONT once
    # refused the next client for its whole message).
    after = procs.popen([c_peers["client"], str(server.pid), "wait", "after"])
    _, after_err = after.communicate(timeout=HANG_GUARD)
    assert after.returncode == 0, after_err
    wait_for(lambda: b"".join(server._out).count(b"\n") >= 2, "both messages printed")
    out, trace, _ = server.stop()
    assert out == b"early\nafter\n"
    assert b"it started while this server was stopped" in trace


DETECT_VARIANTS = [
    [],
    ["--bit-order", "lsb"],
    ["--zero", "usr2", "--bit-order", "lsb"],
    ["--length-prefix", "32"],
    ["--length-prefix", "64", "--prefix-order", "lsb", "--end", "none"],
    ["--length-prefix", "32", "--length-counts-end"],
]


def test_serve_detect_reads_every_variant_and_names_it(procs: Processes) -> None:
    """One server, no variant flag, a sender of each variant: each message printed exact,
    with the variant it was read in (JSON) and the flags that pin it (trace)."""
    server = _classic_serve(procs, "--detect", "--json", "--trace", "--idle-timeout", "0.3")
    for variant in DETECT_VARIANTS:
        result = procs.send("--classic", "-q", str(server.pid), f"{variant} ✓", *variant)
        assert result.returncode == 0, result.stderr
    wait_for(
        lambda: b"".join(server._out).count(b"\n") >= len(DETECT_VARIANTS), "every message printed"
    )
    out, trace, _ = server.stop()
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(line["text"] for line in lines) == sorted(f"{v} ✓" for v in DETECT_VARIANTS)
    for line in lines:
        assert "variant" in line
    assert b"the flags that pin it: --end none --length-prefix 64 --prefix-order lsb" in trace


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (
            ["--ack", "none", "--end-signal", "usr2"],
            "--end-signal is an answer: not with --ack none",
        ),
        (["--end-signal-at", "before"], "--end-signal-at places --end-signal among per-bit"),
        (["--prefix-order", "lsb"], "--prefix-order needs --length-prefix 32 or 64"),
        (["--ack", "none", "--answer-sigwait"], "--answer-sigwait says whom to answer"),
        (
            ["--ack", "end", "--end-signal", "usr2", "--end-signal-at", "after"],
            "needs --end-signal",
        ),
    ],
)
def test_end_signal_options_that_mean_nothing_are_refused(
    procs: Processes, options: list[str], said: str
) -> None:
    serve = procs.popen([*MINITALK, "serve", "--classic", *options])
    _, err = serve.communicate(timeout=HANG_GUARD)
    assert serve.returncode == ExitCode.USAGE
    assert said.encode() in err
    assert err.count(b"\n") == 1


def test_a_stop_prints_what_detect_held(procs: Processes, c_peers: dict[str, str]) -> None:
    """A message as short as a length prefix is held until its sender's silence (its NUL may
    be a length's zero byte): a stop meanwhile prints it rather than losing it."""
    server = _classic_serve(procs, "--detect")
    client = procs.popen([c_peers["client"], str(server.pid), "wait", "hi"])
    client.communicate(timeout=HANG_GUARD)
    assert client.returncode == 0
    out, _, code = server.stop()  # well within the 30 s of silence that would print it
    assert (out, code) == (b"hi\n", 0)


def test_detect_is_not_given_a_variant(procs: Processes) -> None:
    serve = procs.popen([*MINITALK, "serve", "--classic", "--detect", "--bit-order", "lsb"])
    _, err = serve.communicate(timeout=HANG_GUARD)
    assert serve.returncode == ExitCode.USAGE
    assert err == b"minitalk: --detect finds the variant: not with --bit-order\n"


# -- bad input: the same one-line errors and codes as the framed mode --------------------------


def test_send_classic_refuses_what_it_must_never_signal(procs: Processes) -> None:
    sleeper = procs.popen(["sleep", "600"])
    cases = {
        str(sleeper.pid): b"does not block, ignore or catch SIGUSR1",
        "0": b"process groups",
        "1": b"init",
    }
    for pid, words in cases.items():
        result = procs.send("--classic", pid, "hi")
        assert result.returncode == ExitCode.BAD_TARGET, result.stderr
        assert result.stderr.count(b"\n") == 1
        assert words in result.stderr
    assert sleeper.poll() is None


def test_a_shell_under_another_name_is_still_a_shell(procs: Processes, tmp_path: Path) -> None:
    """An interactive `rbash` (a link to bash) catches both signals and exits on them: it
    passed the shell check by name and was killed by the first bit. The program it runs says
    bash."""
    bash = shutil.which("bash")
    assert bash is not None
    rbash = tmp_path / "rbash"
    rbash.symlink_to(bash)
    shell = procs.popen([str(rbash), "--norc", "--noprofile", "-i"], stdin=subprocess.PIPE)
    assert shell.stdin is not None
    assert shell.stdout is not None
    shell.stdin.write(b"echo ready\n")
    shell.stdin.flush()
    assert shell.stdout.readline() == b"ready\n"
    assert Path(f"/proc/{shell.pid}/comm").read_text().strip() == "rbash"
    result = procs.send("--classic", str(shell.pid), "hi")
    assert result.returncode == ExitCode.BAD_TARGET, result.stderr
    assert b"is a shell" in result.stderr
    shell.stdin.write(b"echo alive\n")
    shell.stdin.flush()
    assert shell.stdout.readline() == b"alive\n"


def test_send_classic_never_signals_the_callers_own_shell(procs: Processes) -> None:
    # An interactive bash catches both signals and exits on them: `send --classic $$` from it
    # must not close the terminal.
    bash = procs.popen(["bash", "--norc", "--noprofile", "-i"], stdin=subprocess.PIPE)
    assert bash.stdin is not None
    assert bash.stdout is not None
    command = " ".join([*MINITALK, "send", "--classic", "$$", "hi"])
    bash.stdin.write(f"{command}; echo exit=$?\n".encode())
    bash.stdin.flush()
    assert bash.stdout.readline() == f"exit={ExitCode.BAD_TARGET}\n".encode()
    bash.stdin.write(b"echo alive\n")
    bash.stdin.flush()
    assert bash.stdout.readline() == b"alive\n"


def test_the_wrong_mode_is_named(procs: Processes) -> None:
    classic = _classic_serve(procs)
    framed = procs.serve()
    to_classic = procs.send(str(classic.pid), "hi")
    assert to_classic.returncode == ExitCode.BAD_TARGET
    assert b"is a classic-mode server (minitalk serve --classic): send with --classic" in (
        to_classic.stderr
    )
    to_framed = procs.send("--classic", str(framed.pid), "hi")
    assert to_framed.returncode == ExitCode.BAD_TARGET
    assert b"is a framed minitalk server (minitalk serve): send without --classic" in (
        to_framed.stderr
    )
    assert classic.stop()[0] == framed.stop()[0] == b""  # neither printed anything


def test_a_framed_send_to_a_plain_c_server_hints_classic(
    procs: Processes, c_peers: dict[str, str]
) -> None:
    server = _c_server(procs, c_peers)
    result = procs.send(str(server.pid), "hi")
    assert result.returncode == ExitCode.BAD_TARGET
    assert result.stderr.endswith(
        b"; if it is a plain minitalk server (they catch both), send with --classic\n"
    )
    assert server.stop()[0] == b""  # nothing was sent to it


def test_classic_options_need_classic(procs: Processes) -> None:
    result = procs.send("123", "hi", "--bit-order", "lsb")
    assert result.returncode == ExitCode.USAGE
    assert b"--bit-order is an option of --classic mode only" in result.stderr
    serve = procs.popen([*MINITALK, "serve", "--ack", "end"])
    _, err = serve.communicate(timeout=HANG_GUARD)
    assert serve.returncode == ExitCode.USAGE
    assert b"--ack is an option of --classic mode only" in err
    assert sys.executable  # the suite's interpreter runs the CLI


def test_framed_only_options_are_refused_with_classic(procs: Processes) -> None:
    """--attempts means nothing to a plain server (a bit is never sent twice); it used to be
    accepted and ignored, which hid a mistake."""
    result = procs.send("--classic", "123", "hi", "--attempts", "3")
    assert result.returncode == ExitCode.USAGE
    assert b"--attempts is an option of framed mode only" in result.stderr
