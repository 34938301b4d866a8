"""End to end: real `minitalk serve` and `minitalk send` processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from minitalk.errors import ExitCode
from minitalk.transport import INNER_LOOP
from tests.conftest import (
    HANG_GUARD,
    MINITALK,
    SERVER_STDERR,
    USR_BITS,
    Processes,
    Server,
    _read_line,
    admitted_send,
    clients_held,
    first_number,
    pending_signals,
    signal_masks,
    spawn_at_pid,
    wait_for,
    wchan_visible,
)

pytestmark = pytest.mark.e2e

UNICODE_SAMPLES = [
    "plain ASCII, nothing more",
    "emoji 🎉🚀 and a heart ❤️",
    "CJK 日本語 中文 한국어",
    "RTL שלום עולם and مرحبا بالعالم",
    "combining e\u0301 a\u0308 o\u0302\u0323",
    "ZWJ family 👩\u200d👩\u200d👧\u200d👦 and technologist 🧑\u200d💻",
    "flags 🇯🇵🇫🇷🇧🇷 and skin tone 👋🏽",
    "astral 𝄞 𐍈 \U0010fffd",
]


def test_messages_of_every_script_in_a_row_through_one_server(procs: Processes) -> None:
    server = procs.serve("--count", str(len(UNICODE_SAMPLES)))
    for text in UNICODE_SAMPLES:
        result = procs.send(str(server.pid), text)
        assert result.returncode == 0, result.stderr
        size = len(text.encode())
        assert result.stdout.decode().startswith(f"delivered {size} bytes in 1 frame to PID")
        assert result.stderr == b""
    out, err, code = server.finish()
    assert code == 0
    assert err == SERVER_STDERR
    expected = "".join(f"{text}\n" for text in UNICODE_SAMPLES)
    assert out.decode("utf-8") == expected


def _serve_into_log(procs: Processes, log: Path, *options: str) -> tuple[int, Path]:
    """Start a server the way tester scripts do, `sh -c 'exec minitalk serve > log 2>&1'`,
    and return its PID as read from the log's first line (once that line is complete)."""
    script = 'log=$1; shift; exec "$@" > "$log" 2>&1'
    log.write_bytes(b"")  # there to read before the shell opens it
    server = procs.popen(["sh", "-c", script, "sh", str(log), *MINITALK, "serve", *options])
    wait_for(lambda: b"\n" in log.read_bytes() or server.poll() is not None, "the first line")
    pid = first_number(log.read_bytes().splitlines()[0])
    assert pid == server.pid  # exec: the shell became the server
    return pid, log


# How each message is given on the command line: "-1" and "-456" look like negative numbers
# and are text without "--" (argparse's rule); "-x..." needs "--".
MINUS_TEXTS = {"hello": ["hello"], "-1": ["-1"], "-456": ["-456"], "-x y": ["--", "-x y"]}


def test_merged_log_is_the_pid_line_then_exactly_the_messages(
    procs: Processes, tmp_path: Path
) -> None:
    pid, log = _serve_into_log(procs, tmp_path / "log", "--count", str(len(MINUS_TEXTS)))
    for args in MINUS_TEXTS.values():
        result = procs.send(str(pid), *args)
        assert result.returncode == 0, result.stderr
    wait_for(lambda: procs.started[0].poll() is not None, "the server exited after --count")
    assert procs.started[0].returncode == 0
    expected = f"PID {pid}\n" + "".join(f"{text}\n" for text in MINUS_TEXTS)
    assert log.read_text() == expected  # nothing on stderr, for root too


def test_json_output_is_json_lines_from_the_first_line(procs: Processes, tmp_path: Path) -> None:
    pid, log = _serve_into_log(procs, tmp_path / "log", "--json", "--count", "2")
    for text in ("one", "-1"):
        assert procs.send(str(pid), text).returncode == 0
    wait_for(lambda: procs.started[0].poll() is not None, "the server exited after --count")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0] == {"pid": pid}
    assert [record["text"] for record in records[1:]] == ["one", "-1"]


def test_empty_message_and_newlines(procs: Processes, tmp_path: Path) -> None:
    server = procs.serve("--count", "4")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    # The empty message, three ways alike: TEXT "", an empty file, empty standard input.
    assert procs.send(str(server.pid), "").returncode == 0
    assert procs.send(str(server.pid), "--file", str(empty)).returncode == 0
    result = procs.send(str(server.pid), "-", stdin=b"")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"delivered 0 bytes in 1 frame")
    assert procs.send(str(server.pid), "line one\nline two\n\nlast").returncode == 0
    out, _, code = server.finish()
    assert code == 0
    assert out == b"\n\n\nline one\nline two\n\nlast\n"


def test_300_kib_file(procs: Processes, tmp_path: Path) -> None:
    line = "minitalk ✓ 300 KiB of text, cut into frames on character boundaries 🎉\n"
    text = (line * (300 * 1024 // len(line.encode()) + 1))[: 300 * 1024 // 2]
    text = text * 2
    data = text.encode()
    assert len(data) > 300 * 1024 - 4
    path = tmp_path / "big.txt"
    path.write_bytes(data)
    server = procs.serve("--count", "1")
    result = procs.send(str(server.pid), "--file", str(path), "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""  # --quiet
    out, _, _ = server.finish()
    assert out == data + b"\n"


def test_standard_input(procs: Processes) -> None:
    server = procs.serve("--count", "1")
    result = procs.send(str(server.pid), "-", stdin="from stdin: ½ 🎉\n".encode())
    assert result.returncode == 0, result.stderr
    out, _, _ = server.finish()
    assert out == "from stdin: ½ 🎉\n\n".encode()


def test_four_clients_at_once_all_delivered_whole(procs: Processes) -> None:
    server = procs.serve("--count", "4")
    texts = [f"client {n}: " + chr(0x1F600 + n) * 600 + f" end {n}" for n in range(4)]
    clients = [procs.popen([*MINITALK, "send", str(server.pid), text, "--quiet"]) for text in texts]
    for client in clients:
        _, err = client.communicate(timeout=HANG_GUARD)
        assert client.returncode == 0, err
    out, _, code = server.finish()
    assert code == 0
    lines = out.decode().splitlines()
    assert sorted(lines) == sorted(texts)  # each whole, none interleaved, none twice


def test_message_over_the_server_limit_is_refused(procs: Processes) -> None:
    server = procs.serve("--max-bytes", "10")
    result = procs.send(str(server.pid), "eleven byte")
    assert result.returncode == ExitCode.REFUSED
    assert b"the message is 11 bytes; the server accepts at most 10 bytes" in result.stderr
    assert procs.send(str(server.pid), "ten bytes!").returncode == 0
    out, err, code = server.stop()
    assert code == 0
    assert out == b"ten bytes!\n"
    assert err == SERVER_STDERR


def test_server_exits_cleanly_on_sigterm_and_sigint(procs: Processes) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        server = procs.serve()
        server.process.send_signal(signum)
        out, err, code = server.finish()
        assert code == 0
        assert err == SERVER_STDERR
        assert out == b""
        assert server.first_line == f"PID {server.pid}\n".encode()


def test_client_notices_a_server_that_dies(procs: Processes) -> None:
    server = procs.serve()
    server.process.send_signal(signal.SIGSTOP)
    client = procs.popen([*MINITALK, "send", str(server.pid), "hello", "--reply-timeout", "0.2"])
    usr2 = 1 << (signal.SIGUSR2 - 1)
    wait_for(lambda: pending_signals(server.pid) & usr2, "the client's request reached the server")
    server.process.kill()
    server.process.wait(timeout=HANG_GUARD)
    _, err = client.communicate(timeout=HANG_GUARD)
    assert client.returncode == ExitCode.SERVER_GONE
    assert err.decode().count("\n") == 1
    assert "exited" in err.decode()


def test_send_to_a_process_that_is_not_a_server_leaves_it_alive(procs: Processes) -> None:
    innocent = procs.popen(["sleep", "60"])
    result = procs.send(str(innocent.pid), "hello")
    assert result.returncode == ExitCode.BAD_TARGET
    assert b"not a minitalk server" in result.stderr
    assert innocent.poll() is None


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["12ab", "x"], ExitCode.BAD_TARGET, "whole number"),
        (["0", "x"], ExitCode.BAD_TARGET, "process group"),
        (["--", "-1", "x"], ExitCode.BAD_TARGET, "process group"),
        (["1", "x"], ExitCode.BAD_TARGET, "init"),
        (["99999999", "x"], ExitCode.BAD_TARGET, "larger than any PID"),
        (["4194303", "x"], ExitCode.BAD_TARGET, "no process"),
        (["4194303"], ExitCode.USAGE, "nothing to send"),
    ],
)
def test_bad_pids_get_one_line_errors(args: list[str], code: int, words: str) -> None:
    result = subprocess.run(
        [*MINITALK, "send", *args], capture_output=True, timeout=HANG_GUARD, check=False
    )
    assert result.returncode == code
    err = result.stderr.decode()
    assert err.count("\n") == 1, err
    assert words in err
    assert "Traceback" not in err


def test_own_pid_is_refused() -> None:
    # The client's own PID is only known inside it; `python -c` runs the CLI in-process.
    code = (
        "import os, sys; from minitalk.cli import run; "
        "sys.argv = ['minitalk', 'send', str(os.getpid()), 'x']; run()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=HANG_GUARD, check=False
    )
    assert result.returncode == ExitCode.BAD_TARGET
    assert b"this client itself" in result.stderr


def test_bad_files_get_one_line_errors(procs: Processes, tmp_path: Path) -> None:
    server = procs.serve()
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf" + b"\xe9 ok")
    cases = [
        (["--file", str(tmp_path / "missing.txt")], ExitCode.BAD_INPUT, "no such file"),
        (["--file", str(tmp_path)], ExitCode.BAD_INPUT, "is a directory"),
        (["--file", str(bad)], ExitCode.BAD_INPUT, "bad byte at offset 3"),
        # the same bytes as TEXT: told the same way (it said "character 3" before)
        (
            [os.fsdecode(b"caf\xe9 ok")],
            ExitCode.BAD_INPUT,
            "TEXT is not UTF-8: bad byte at offset 3",
        ),
        (["text", "--file", str(bad)], ExitCode.USAGE, "not both"),
    ]
    for args, code, words in cases:
        result = procs.send(str(server.pid), *args, stdin=b"")
        assert result.returncode == code, (args, result.stderr)
        assert result.stderr.decode().count("\n") == 1
        assert words in result.stderr.decode()
    out, err, _ = server.stop()
    assert out == b""  # nothing was delivered
    assert err == SERVER_STDERR


def test_python_dash_m_help_and_version() -> None:
    for args, words in (
        (["--help"], "serve"),
        (["send", "--help"], "--file"),
        (["--version"], f"minitalk 2.3.0 (frame format 0x52; classic mode; {INNER_LOOP} inner"),
    ):
        result = subprocess.run(
            [*MINITALK, *args], capture_output=True, timeout=HANG_GUARD, check=False
        )
        assert result.returncode == 0
        assert words in result.stdout.decode()


@pytest.mark.parametrize("mode", [[], ["--classic"]], ids=["framed", "classic"])
def test_a_send_to_a_server_still_starting_waits_for_it(procs: Processes, mode: list[str]) -> None:
    """`serve & send $!`: the server's interpreter is still loading when the client looks,
    so the PID does not ignore the signals yet. Its command line says `minitalk serve`: the
    client watches it (never signalling it) until it is ready, instead of refusing it as
    "not a minitalk server"."""
    server = procs.popen([*MINITALK, "serve", *mode, "--count", "1"])
    sent = procs.send(*mode, str(server.pid), "early bird", "--quiet")
    assert sent.returncode == 0, sent.stderr
    out, err = server.communicate(timeout=HANG_GUARD)
    assert server.returncode == 0, err
    assert out.decode().splitlines()[1:] == ["early bird"]


def test_json_output_and_pid_file(procs: Processes, tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    server = procs.serve("--json", "--count", "1", "--pid-file", str(pid_file))
    assert json.loads(server.first_line) == {"pid": server.pid}  # JSON Lines from the start
    assert pid_file.read_text() == f"{server.pid}\n"
    text = 'quote " backslash \\ emoji 🎉 newline\n end'
    assert procs.send(str(server.pid), text).returncode == 0
    out, _, code = server.finish()
    assert code == 0
    record = json.loads(out)
    assert record["text"] == text
    assert record["bytes"] == len(text.encode())
    assert record["frames"] == 1
    assert record["uid"] == os.getuid()
    assert record["pid"] > 0
    assert record["resends"] >= 0
    assert record["seconds"] >= 0
    assert not pid_file.exists()  # removed on the clean exit


def test_the_pid_file_appears_whole_once_the_server_is_ready(
    procs: Processes, tmp_path: Path
) -> None:
    pid_file = tmp_path / "mt.pid"
    server = procs.popen([*MINITALK, "serve", "--pid-file", str(pid_file)])
    wait_for(pid_file.exists, "the PID file appeared")
    # Checked the moment it exists: the file is whole, and the server already survives a
    # signal (it blocks and ignores both), so a script may send at once.
    assert pid_file.read_text() == f"{server.pid}\n"
    usr = (1 << (signal.SIGUSR1 - 1)) | (1 << (signal.SIGUSR2 - 1))
    status = Path(f"/proc/{server.pid}/status").read_text().splitlines()
    ignored = next(int(line.split()[1], 16) for line in status if line.startswith("SigIgn:"))
    assert ignored & usr == usr  # set to SIG_IGN right after blocking, before the file
    assert procs.send(str(server.pid), "right away", "--quiet").returncode == 0


def test_send_timeout_bounds_the_whole_send(procs: Processes) -> None:
    server = procs.serve()
    server.process.send_signal(signal.SIGSTOP)  # alive, but it will never answer
    try:
        # Two requests 0.1 s apart would end the wait for a running server that never
        # answers; a stopped server is waited for until --timeout, which says why it ended.
        args = ["hello", "--timeout", "1", "--reply-timeout", "0.1", "--attempts", "2"]
        result = procs.send(str(server.pid), *args)
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert result.returncode == ExitCode.NO_ANSWER
    said = b"minitalk: gave up after the --timeout of 1 s (the server is stopped)\n"
    assert result.stderr == said


# A process that passes the is-it-minitalk check (it ignores both data signals and blocks the
# peer mark) but sleeps outside any signal wait and never answers. (It does not block the data
# signals, so it never holds one pending: one that did would look exactly like a server
# blocked writing, which is waited for until --timeout.)
MARKED_SLEEPER = """
import signal, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMAX})
for signum in (signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(signum, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""


def test_a_sleeping_process_that_passes_for_minitalk_is_given_up_on(procs: Processes) -> None:
    """It passes the is-it-minitalk check but sleeps outside a signal wait and never
    answers: minitalk 1.0 took that for a server busy writing and waited for ever. Now only
    a target that has answered is owed that patience; this one is asked --attempts times."""
    sleeper = procs.popen([sys.executable, "-c", MARKED_SLEEPER])
    assert sleeper.stdout is not None
    assert sleeper.stdout.readline() == b"ready\n"
    result = procs.send(str(sleeper.pid), "hi", "--reply-timeout", "0.2", "--attempts", "3")
    assert result.returncode == ExitCode.NO_ANSWER
    said = result.stderr.decode()
    assert said.startswith("minitalk: the server is running but did not answer: asked 3 times")
    if wchan_visible():
        assert "it may not be a minitalk server" in said
    assert sleeper.poll() is None  # ignored every signal: alive and untouched


# A program that used the API, then started a child: the child inherits SIGUSR1/SIGUSR2 ignored.
CHILD_OF_THE_API = """
import subprocess, sys
import minitalk
minitalk.send(int(sys.argv[1]), "from the parent", timeout=60)
child = subprocess.Popen(["sleep", "600"])
print(child.pid, flush=True)
sys.stdin.readline()
child.kill()
child.wait()
"""


def test_a_process_that_only_inherited_the_ignoring_is_refused_at_once(
    procs: Processes,
) -> None:
    """A shell's `trap '' USR1 USR2`, or the child of a program that once called
    minitalk.send(), ignores both signals without running minitalk. It used to pass for a
    server (and cost --attempts x --reply-timeout of asking); it lacks the peer mark that
    every minitalk process blocks, so it is refused at once and never signalled."""
    server = procs.serve("--count", "1")
    program = procs.popen(
        [sys.executable, "-c", CHILD_OF_THE_API, str(server.pid)], stdin=subprocess.PIPE
    )
    assert program.stdout is not None
    assert program.stdin is not None
    child = int(_read_line(program.stdout, HANG_GUARD))
    trap = procs.popen(["sh", "-c", "trap '' USR1 USR2; exec sleep 600"])
    wait_for(
        lambda: (
            Path(f"/proc/{trap.pid}/comm").read_text().strip() == "sleep"
            and signal_masks(trap.pid)["SigIgn"] & USR_BITS == USR_BITS
        ),
        "the trap sleeper ignores both signals and sleeps",
    )
    for target in (child, trap.pid):
        assert signal_masks(target)["SigIgn"] & USR_BITS == USR_BITS
        result = procs.send(str(target), "hi")
        assert result.returncode == ExitCode.BAD_TARGET, result.stderr
        assert b"inherited the ignoring" in result.stderr
        assert result.stderr.count(b"\n") == 1
    program.stdin.write(b"\n")
    program.stdin.close()
    assert program.wait(timeout=HANG_GUARD) == 0
    assert trap.poll() is None
    assert server.finish()[0] == b"from the parent\n"


def test_timeout_while_queued_says_so(procs: Processes, tmp_path: Path) -> None:
    # The queued client's first REQUEST can merge with a signal of the client being served
    # (both are SIGUSR2s pending at the server) and be lost; it asks again each second, so
    # its --timeout must leave room for that, and the line must stay busy far longer (about
    # 360 kB: 14 s on an idle machine).
    server = procs.serve()
    big = tmp_path / "long.txt"
    big.write_text("long " + "✓" * 120_000)
    admitted_send(procs, server, "--file", str(big))
    result = procs.send(str(server.pid), "in the queue", "--timeout", "5")
    assert result.returncode == ExitCode.NO_ANSWER
    said = b"minitalk: gave up after the --timeout of 5 s (still waiting for its turn)\n"
    assert result.stderr == said


SMALL_QUEUE_SERVER = """
from minitalk.server import ServerConfig, serve
serve(
    ServerConfig(max_queue=1),
    on_ready=lambda pid: print(f"PID {pid}", flush=True),
    on_message=lambda message, uid: print(message.text, flush=True),
)
"""


def test_a_full_queue_exits_75_try_again_later(procs: Processes, tmp_path: Path) -> None:
    # A real server whose queue holds one client (the CLI's holds 64): the third is turned away.
    process = procs.popen([sys.executable, "-c", SMALL_QUEUE_SERVER])
    assert process.stdout is not None
    line = _read_line(process.stdout, HANG_GUARD)
    server = Server(process, first_number(line), line)
    big = tmp_path / "long.txt"
    big.write_text("long " + "✓" * 30_000)  # about 90 kB: the line stays busy while we act
    admitted_send(procs, server, "--file", str(big))
    admitted_send(procs, server, "queued")
    result = procs.send(str(server.pid), "one too many")
    assert result.returncode == ExitCode.TEMPFAIL  # 75, EX_TEMPFAIL
    said = b"minitalk: the server's queue of waiting clients is full; try again later\n"
    assert result.stderr == said
    server.stop()


def test_server_output_failure_is_one_line_and_non_zero() -> None:
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [*MINITALK, "serve"],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=HANG_GUARD,
            check=False,
        )
    err = result.stderr.removeprefix(SERVER_STDERR).decode()
    assert result.returncode == ExitCode.OUTPUT_FAILED
    assert err == "minitalk: cannot write to standard output: No space left on device\n"


def test_server_whose_reader_went_away_tells_the_client_it_could_not_write(
    procs: Processes,
) -> None:
    server = procs.popen([*MINITALK, "serve"])
    assert server.stdout is not None
    assert server.stderr is not None
    pid = int(server.stdout.readline().split()[1])
    server.stdout.close()  # nobody reads the server's output any more: its next write fails
    result = procs.send(str(pid), "into the void", "--reply-timeout", "0.2")
    assert result.returncode == ExitCode.REFUSED  # told NOT_WRITTEN, not left guessing
    said = b"the server could not write the message out; it was not printed"
    assert said in result.stderr
    assert server.wait(timeout=HANG_GUARD) == ExitCode.OUTPUT_FAILED
    err = server.stderr.read().removeprefix(SERVER_STDERR)
    assert err == b"minitalk: cannot write to standard output: Broken pipe\n"


def test_server_with_stderr_merged_into_a_gone_reader_still_exits_9(procs: Processes) -> None:
    """`serve 2>&1 | head -1`: the error line cannot be written either; it used to turn the
    documented exit 9 into 1."""
    server = procs.popen([*MINITALK, "serve"], stderr=subprocess.STDOUT)
    assert server.stdout is not None
    pid = int(server.stdout.readline().split()[1])
    server.stdout.close()
    result = procs.send(str(pid), "into the void", "--reply-timeout", "0.2")
    assert result.returncode == ExitCode.REFUSED
    assert server.wait(timeout=HANG_GUARD) == ExitCode.OUTPUT_FAILED


def test_shutdown_tells_the_queue_and_finishes_cleanly(procs: Processes, tmp_path: Path) -> None:
    server = procs.serve()
    first_text = "first " + "✓" * 100_000  # 300 kB: still sending when the server stops
    big = tmp_path / "big.txt"
    big.write_text(first_text)
    first = admitted_send(procs, server, "--file", str(big))
    queued = admitted_send(procs, server, "second")
    server.process.terminate()
    _, err = queued.communicate(timeout=HANG_GUARD)
    first.communicate(timeout=HANG_GUARD)
    out, server_err, code = server.finish()
    assert code == 0
    assert server_err == SERVER_STDERR
    assert queued.returncode == ExitCode.SERVER_GONE
    assert err.count(b"\n") == 1
    # Told (GOING_AWAY), or, when a merged signal delayed the telling past the server's grace
    # period, left to notice the exit through its pidfd: non-zero and clear either way.
    assert b"the server is shutting down" in err or b"exited" in err
    # The first message is printed whole, and its client says so, or neither happened.
    assert out in (first_text.encode() + b"\n", b"")
    assert (first.returncode == 0) == (out != b"")


def test_a_queued_client_that_dies_is_skipped(procs: Processes, tmp_path: Path) -> None:
    server = procs.serve("--count", "2")
    long_text = "long " + "✓" * 30_000  # about 90 kB: the line stays busy while we act
    big = tmp_path / "long.txt"
    big.write_text(long_text)
    first = admitted_send(procs, server, "--file", str(big))
    doomed = admitted_send(procs, server, "never sent")
    doomed.kill()
    doomed.wait(timeout=HANG_GUARD)
    last = procs.popen([*MINITALK, "send", str(server.pid), "after the dead one", "--quiet"])
    for client in (first, last):
        client.communicate(timeout=HANG_GUARD)
        assert client.returncode == 0
    out, _, code = server.finish()
    assert code == 0
    assert out == long_text.encode() + b"\nafter the dead one\n"


def test_a_recycled_client_pid_is_never_signalled(procs: Processes, tmp_path: Path) -> None:
    # The server holds its peer by pidfd. The peer dies and an innocent process (one that
    # SIGUSR1 would kill) takes over its PID while the server is stopped; when the server
    # runs again its next reply must go nowhere, and the next client must be served.
    server = procs.serve("--count", "1")
    big = tmp_path / "long.txt"
    big.write_text("long " + "✓" * 30_000)
    victim = admitted_send(procs, server, "--file", str(big))
    server.process.send_signal(signal.SIGSTOP)
    victim.kill()
    victim.wait(timeout=HANG_GUARD)
    impostor = spawn_at_pid(procs, victim.pid, ["sleep", "600"])
    if impostor is None:
        server.process.send_signal(signal.SIGCONT)
        pytest.skip("cannot choose a PID here (writing ns_last_pid needs CAP_SYS_ADMIN)")
    # The server's pidfd still stands for the dead victim (the kernel shows its PID as -1),
    # not for the impostor that now has the victim's PID.
    assert clients_held(server.pid) == {-1}
    server.process.send_signal(signal.SIGCONT)
    after = procs.send(str(server.pid), "after the recycled PID", "--quiet")
    assert after.returncode == 0, after.stderr
    out, _, code = server.finish()
    assert code == 0
    assert out == b"after the recycled PID\n"
    assert impostor.poll() is None  # never signalled: SIGUSR1/SIGUSR2 would have killed it
