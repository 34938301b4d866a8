"""`minitalk check`: the pure parts (the comparison, the report, the command line of a client)
without signals, and the tester itself against the plain C peers of tests/classic_c, compiled
at test time: a correct server and client pass, an LSB-first and an inverted server pass with
their variant named, and a server that loses bits at speed, one that prints byte by byte
without a newline, and a client that exits before its last answer each fail with the exact
reason. Every run is the real command, with --json, and every program it started is gone
after it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from minitalk.check import Seen, ServerCheck, _without_line_end, client_argv
from minitalk.check_report import (
    VARIANTS,
    CheckResult,
    Report,
    Status,
    first_difference,
    result_line,
    summary,
)
from minitalk.classic_format import ClassicFormat
from minitalk.errors import ExitCode
from tests.conftest import HANG_GUARD, MINITALK

# -- the pure parts ------------------------------------------------------------------------------

MSB = ClassicFormat()
LSB = ClassicFormat(msb_first=False)


def test_a_message_received_whole_has_no_difference() -> None:
    assert first_difference(b"hello", b"hello", MSB) is None
    assert first_difference(b"hello", b"PID 42\nMessage: hello\n", MSB, decorated=True) is None
    assert first_difference(b"", b"", MSB) is None


def test_the_first_difference_names_the_byte_the_bit_and_the_signal() -> None:
    # 'c' = 0x63 = 01100011 and 'b' = 0x62 = 01100010: they differ in the last bit sent
    # (MSB first), the 8th signal of byte 2, the 24th of the message.
    difference = first_difference(b"abc", b"abb", MSB)
    assert difference is not None
    assert (difference.offset, difference.expected, difference.received) == (2, 0x63, 0x62)
    assert (difference.bit, difference.signal, difference.signals) == (7, 24, 32)
    said = difference.describe(MSB)
    assert "byte 2 (signal 24 of 32, bit 7 of the byte)" in said
    assert "expected 0x63 'c' (bits 01100011 as sent)" in said
    # LSB first, that bit is the first one sent: signal 17
    difference = first_difference(b"abc", b"abb", LSB)
    assert difference is not None
    assert (difference.bit, difference.signal) == (0, 17)


def test_a_length_prefix_counts_in_the_signal_number() -> None:
    prefixed = ClassicFormat(length_bits=32)
    difference = first_difference(b"ab", b"aa", prefixed)
    assert difference is not None
    # 'b' = 01100010, 'a' = 01100001: bit 6 of byte 1, after the 32 signals of the prefix
    assert difference.signal == 32 + 8 + 6 + 1


def test_a_short_or_decorated_output_is_aligned_on_the_text() -> None:
    difference = first_difference(b"hello", b"Message: hel", MSB, decorated=True)
    assert difference is not None
    assert (difference.offset, difference.expected, difference.received) == (3, ord("l"), None)
    assert "received nothing more" in difference.describe(MSB)
    difference = first_difference(b"hello", b"\x00hellp\n", MSB, decorated=True)
    assert difference is not None
    assert (difference.offset, difference.received) == (4, ord("p"))


def test_the_client_command_line_gets_the_pid_and_the_text() -> None:
    assert client_argv(["./client", "{pid}", "{text}"], 42, "hi") == ["./client", "42", "hi"]
    assert client_argv(["./client"], 42, "hi") == ["./client", "42", "hi"]
    assert client_argv(["./c", "-p{pid}", "--", "{text}"], 7, "a b") == ["./c", "-p7", "--", "a b"]
    # braces in the text are the text's: it is put in after the PID
    assert client_argv(["./c", "{text}", "{pid}"], 7, "{pid}") == ["./c", "{pid}", "7"]


def test_messages_in_a_row_must_each_end_a_line() -> None:
    row = b"PID 1\nfirst message\nsecond message, a little longer\nthird\n"
    assert _without_line_end(row) == ""
    assert _without_line_end(b"first messagesecond message, a little longerthird") == (
        "first message"
    )
    # a line end printed before each message keeps them apart as well
    assert _without_line_end(b"\nfirst message\nsecond message, a little longer\nthird") == ""


def test_a_server_is_held_to_how_it_printed_the_probe() -> None:
    """After the probe came out alone on a line with a newline after it, a message must too:
    an old message before it on its line, or a stale byte after it, is a difference."""
    check = ServerCheck(["./server"], lambda _result: None)
    check.learn_ending(Seen(b"minitalk check: probe\n", 0.0), "minitalk check: probe")
    assert (check.line_start, check.ending) == (True, b"\n")
    assert check.differs(Seen(b"third\n", 0.0), "third", MSB) is None
    stale = check.differs(Seen(b"thirdd message\n", 0.0), "third", MSB)
    assert stale is not None
    assert (stale.offset, stale.expected, stale.received) == (5, ord("\n"), ord("d"))
    kept = check.differs(Seen(b"first messagethird\n", 0.0), "third", MSB)
    assert kept is not None
    assert (kept.offset, kept.received) == (0, ord("f"))
    # a server that wraps the text in words of its own is judged by the text and line end
    check.learn_ending(Seen(b"Message from 42: probe\n", 0.0), "probe")
    assert not check.line_start
    assert check.differs(Seen(b"Message from 43: third\n", 0.0), "third", MSB) is None


def test_the_variants_tried_are_distinct_and_start_with_the_plain_one() -> None:
    assert VARIANTS[0] == ClassicFormat()
    assert len(set(VARIANTS)) == len(VARIANTS)


def test_a_skipped_mandatory_check_is_no_pass_and_a_bonus_never_fails_the_report() -> None:
    report = Report("server", ["./server"])
    report.results.append(CheckResult("simple ASCII", Status.PASS))
    report.results.append(CheckResult("two at once", Status.FAIL, "mixed", mandatory=False))
    assert report.passed
    report.results.append(CheckResult("10,000 characters", Status.SKIP, "server ended"))
    assert not report.passed
    record = report.to_json()
    assert record["passed"] is False
    assert [check["status"] for check in record["checks"]] == ["pass", "fail", "skipped"]


def test_colours_only_when_asked() -> None:
    result = CheckResult("simple ASCII", Status.FAIL, "first difference at byte 0", seconds=0.5)
    plain = result_line(result, colour=False)
    assert "\033[" not in plain
    assert plain.startswith("  FAIL  simple ASCII  0.500 s\n        first difference")
    assert "\033[31m" in result_line(result, colour=True)
    report = Report("server", ["./server"], variant=LSB, results=[result])
    said = summary(report, colour=False)
    assert "--classic flags that pin it: --bit-order lsb" in said
    assert said.endswith("FAILED: 1 mandatory check(s) did not pass (0 passed)")


# -- the tester, against C peers -----------------------------------------------------------------


def _run_check(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run `minitalk check --speed-limit SPEED_GUARD ARGS`, and end whatever it left running
    (it stops what it started itself; this is for a check that hung or failed)."""
    marker = f"minitalk-check-test-{uuid.uuid4().hex}"
    try:
        return subprocess.run(
            [*MINITALK, "check", "--speed-limit", SPEED_GUARD, *args],
            capture_output=True,
            timeout=HANG_GUARD,
            check=False,
            env={**os.environ, MARKER: marker},
        )
    finally:
        _end_marked(marker)


def _check(*args: str) -> tuple[int, dict[str, Any]]:
    """Run `minitalk check --json ARGS`; its exit code and its report."""
    done = _run_check("--json", *args)
    assert done.stderr == b"", done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


# The speed check's limit in these tests: a guard against a hang, not a measure (speed lives
# in the report and in bench/, never in an assertion on a shared machine).
SPEED_GUARD = "60"


MARKER = "MINITALK_CHECK_TEST"  # in the environment of the check, and so of all it starts


def _end_marked(marker: str) -> None:
    """Kill whatever still carries ``marker`` in its environment: only what this test's
    check started (a check that hung or failed may have left it, in a session of its own).
    Each is held by a pidfd and its marker read again through /proc before the signal."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            pidfd = os.pidfd_open(int(entry.name))
        except OSError:
            continue
        try:
            if f"{MARKER}={marker}".encode() in (entry / "environ").read_bytes():
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(pidfd)


def _results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


def _server_pid(report: dict[str, Any]) -> int:
    detail = _results(report)["starts and prints its PID"]["detail"]
    return int(detail.removeprefix("PID "))


def _gone(pid: int) -> bool:
    """The process is gone (or the PID is another program's now: not our server)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"server" not in command


@pytest.mark.e2e
def test_a_correct_server_passes_every_check(c_peers: dict[str, str]) -> None:
    code, report = _check("--", c_peers["server"])
    results = _results(report)
    assert code == ExitCode.OK, report
    assert report["passed"] is True
    assert report["variant"] == "MSB first, SIGUSR1 = 0, NUL-ended"
    assert report["flags"] == "none (the default variant)"
    assert "paced by the server's answers" in report["answers"]
    mandatory = [check for check in report["checks"] if check["mandatory"]]
    assert all(check["status"] == "pass" for check in mandatory), mandatory
    assert "of this machine's signal ping-pong" in results["10,000 characters"]["detail"]
    assert set(results) >= {
        "simple ASCII",
        "the empty message",
        "Unicode: every plane, ZWJ sequences, flags",
        "1,000 characters",
        "10,000 characters",
        "several clients in a row",
        "each message ends its line",
        "speed: 100 characters",
        "two clients at the same moment",
    }
    assert _gone(_server_pid(report))


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("option", "variant", "flags"),
    [
        ("--lsb", "LSB first, SIGUSR1 = 0, NUL-ended", "--bit-order lsb"),
        ("--inverted", "MSB first, SIGUSR2 = 0, NUL-ended", "--zero usr2"),
    ],
)
def test_a_server_in_another_variant_passes_with_its_variant_named(
    c_peers: dict[str, str], option: str, variant: str, flags: str
) -> None:
    code, report = _check("--quick", "--", c_peers["server"], option)
    assert code == ExitCode.OK, report
    assert (report["variant"], report["flags"]) == (variant, flags)
    assert _results(report)["10,000 characters"]["status"] == "skipped"  # --quick
    assert _gone(_server_pid(report))


@pytest.mark.e2e
def test_a_server_that_loses_bits_at_speed_is_told_so(c_peers: dict[str, str]) -> None:
    code, report = _check("--quick", "--", c_peers["server"], "--lossy")
    assert code == ExitCode.CHECK_FAILED
    assert report["variant"] == "MSB first, SIGUSR1 = 0, NUL-ended"
    keeps_up = _results(report)["keeps up with its own answers"]
    assert keeps_up["status"] == "fail"
    assert "it loses bits when the next bit follows its answer at once" in keeps_up["detail"]
    assert "--answer-gap-us 500" in keeps_up["detail"]
    assert _gone(_server_pid(report))


@pytest.mark.e2e
def test_a_server_that_prints_byte_by_byte_without_a_newline_is_told_so(
    c_peers: dict[str, str],
) -> None:
    code, report = _check("--quick", "--", c_peers["server"], "--bytewise")
    results = _results(report)
    assert code == ExitCode.CHECK_FAILED
    assert results["simple ASCII"]["status"] == "pass"  # the text itself comes out right
    ends = results["each message ends its line"]
    assert ends["status"] == "fail"
    assert "no line end after 'first message'" in ends["detail"]
    assert "first messagesecond message" in ends["detail"]
    assert _gone(_server_pid(report))


@pytest.mark.e2e
def test_a_correct_client_passes(c_peers: dict[str, str]) -> None:
    code, report = _check("--client", "--quick", "--", c_peers["client"], "{pid}", "wait", "{text}")
    assert code == ExitCode.OK, report
    assert report["variant"] == "MSB first, SIGUSR1 = 0, NUL-ended"
    assert report["answers"].startswith("each bit answered with SIGUSR1, no end signal")


@pytest.mark.e2e
def test_a_client_that_waits_for_an_end_signal_is_given_one_and_it_is_named(
    c_peers: dict[str, str],
) -> None:
    code, report = _check(
        "--client", "--quick", "--", c_peers["client"], "{pid}", "end", "{text}", "usr2"
    )
    assert code == ExitCode.OK, report
    assert "SIGUSR2 in place of the last bit's answer" in report["answers"]
    assert "--end-signal usr2" in report["answers"]


@pytest.mark.e2e
def test_a_client_that_exits_before_its_last_answer_is_told_so(c_peers: dict[str, str]) -> None:
    code, report = _check(
        "--client", "--quick", "--", c_peers["client"], "{pid}", "early", "{text}"
    )
    assert code == ExitCode.CHECK_FAILED
    assert report["variant"] == "MSB first, SIGUSR1 = 0, NUL-ended"  # its text was right
    needs = _results(report)["the answers it needs"]
    assert needs["status"] == "fail"
    assert "it exited before the answer to its last bit" in needs["detail"]


@pytest.mark.e2e
def test_a_program_that_cannot_start_or_shows_no_pid_fails_the_first_check() -> None:
    code, report = _check("--", "/nonexistent/server")
    first = report["checks"][0]
    assert code == ExitCode.CHECK_FAILED
    assert (first["name"], first["status"]) == ("starts and prints its PID", "fail")
    assert "cannot start '/nonexistent/server'" in first["detail"]
    # a first line with a number that is not its PID: never taken for one
    sleeper = "import time; print('server 1', flush=True); time.sleep(60)"
    code, report = _check("--", sys.executable, "-c", sleeper)
    first = report["checks"][0]
    assert code == ExitCode.CHECK_FAILED
    assert "holds no PID of the program started" in first["detail"]


@pytest.mark.e2e
def test_the_text_report_on_a_pipe_has_no_colours(c_peers: dict[str, str]) -> None:
    done = _run_check("--quick", "--", c_peers["server"])
    out = done.stdout.decode()
    assert done.returncode == ExitCode.OK, out
    assert "\033[" not in out
    assert out.splitlines()[0] == f"minitalk check: the server {c_peers['server']}"
    assert "  pass  simple ASCII" in out
    assert out.rstrip().endswith("PASSED: every mandatory check (9 passed)")


def _alive_with(marker: str) -> list[int]:
    """The processes whose command line holds ``marker`` (a sleep of an odd length that
    only this test starts)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.e2e
def test_what_a_program_leaves_behind_is_ended_with_it(c_peers: dict[str, str]) -> None:
    """A wrapper's other child (in the program's process group), and one that left the
    group and session (setsid, the wrapper gone): the check ends both, and nothing else."""
    left = "sleep 317.25"
    daemon = "sleep 318.5"
    wrapper = f"{left} & (setsid {daemon} &) ; exec {c_peers['server']}"
    code, report = _check("--quick", "--", "sh", "-c", wrapper)
    assert code == ExitCode.OK, report
    assert _alive_with(left) == []
    assert _alive_with(daemon) == []
    # the same for a client's
    client = f'{left} & (setsid {daemon} &) ; exec {c_peers["client"]} "$1" wait "$2"'
    code, report = _check("--client", "--quick", "--", "sh", "-c", client, "sh", "{pid}", "{text}")
    assert code == ExitCode.OK, report
    assert _alive_with(left) == []
    assert _alive_with(daemon) == []
