"""minitalk's classic mode against plain C minitalks, side by side with a C receiver or sender.

Run with `make bench-classic` (or `.venv/bin/python bench/classic_peers.py [--rounds N]`).
Prints one table. Not a test: nothing here passes or fails.

The C peers are the test suite's (tests/classic_c/), compiled here with `cc`: a server that
answers each bit (optionally with an end signal, in each of the forms real ones use, or a delay
before each answer), and clients that wait for each answer with sigwait or sigtimedwait, wait
for an end signal, sleep between bits and catch nothing, or run a second thread that blocks
nothing. Each row runs the same C client (or minitalk's `send --classic`) against the C
receiver and against minitalk in alternating rounds, so that a busy moment of the machine hits
both alike: how many rounds delivered the message exact, how many clients exited on their own
(0), and the median time of the whole exchange.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "tests" / "classic_c"
MINITALK = [sys.executable, "-m", "minitalk"]
GUARD = 60.0  # seconds: a client still running by then is counted as hung
# After the client: how long the message may take to be printed (a server prints on the NUL;
# one with an end held for silence prints after --idle-timeout, 5 s here: not these rows).
PRINT_WAIT = 2.0


@dataclass
class Tally:
    exact: int = 0
    exited: int = 0
    rounds: int = 0
    seconds: list[float] = field(default_factory=list)

    def cell(self) -> str:
        median = f"{statistics.median(self.seconds):.2f} s" if self.seconds else "-"
        return f"{self.exact}/{self.rounds} exact, {self.exited}/{self.rounds} exit 0, {median}"


def build(folder: Path) -> dict[str, str]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        sys.exit("no C compiler (cc): the C peers cannot be built")
    built = {}
    for name in ("server", "client"):
        binary = folder / name
        subprocess.run(
            [compiler, "-O2", "-pthread", "-o", str(binary), str(SOURCES / f"{name}.c")],
            check=True,
        )
        built[name] = str(binary)
    return built


class Receiver:
    """A server process that prints a PID line first (once it is ready: both kinds install
    their handling before), then a line per message, collected as they come."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        assert self.process.stdout is not None
        self.pid = int(self.process.stdout.readline().split()[-1])
        if self.pid != self.process.pid:
            raise RuntimeError("the server printed another PID")
        self.lines: list[bytes] = []
        self._printed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip(b"\n"))
            self._printed.set()

    def printed(self, seconds: float) -> None:
        """Wait up to ``seconds`` for a message line (none comes for a lost message)."""
        self._printed.wait(seconds)

    def stop(self) -> list[bytes]:
        self.process.terminate()
        self.process.wait(timeout=GUARD)
        self._reader.join(timeout=GUARD)
        return self.lines


def run_client(args: list[str]) -> tuple[int | None, float]:
    started = time.monotonic()
    client = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    try:
        code: int | None = client.wait(timeout=GUARD)
    except subprocess.TimeoutExpired:
        client.kill()
        client.wait()
        code = None
    return code, time.monotonic() - started


def one_round(
    server_args: list[str], client_args: Callable[[int], list[str]], text: str
) -> tuple[bool, bool, float]:
    receiver = Receiver(server_args)
    try:
        code, seconds = run_client(client_args(receiver.pid))
        receiver.printed(PRINT_WAIT)
    finally:
        lines = receiver.stop()
    exact = lines == [text.encode()]  # (its PID line was read at its start)
    return exact, code == 0, seconds


ONLY: list[str] = []  # --only: run just the rows whose name holds one of these


def row(
    name: str,
    rounds: int,
    text: str,
    sides: dict[str, tuple[list[str], Callable[[int], list[str]]]],
) -> dict[str, Tally]:
    tallies = {side: Tally() for side in sides}
    if ONLY and not any(word in name for word in ONLY):
        return tallies
    for _ in range(rounds):
        for side, (server_args, client_args) in sides.items():
            exact, exited, seconds = one_round(server_args, client_args, text)
            tally = tallies[side]
            tally.rounds += 1
            tally.exact += exact
            tally.exited += exited
            if exact and exited:
                tally.seconds.append(seconds)
    cells = "  |  ".join(f"{side}: {tally.cell()}" for side, tally in tallies.items())
    print(f"{name:<44} {cells}", flush=True)
    return tallies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chars", type=int, default=2000)
    parser.add_argument("--only", action="append", default=[], help="rows whose name has this")
    options = parser.parse_args()
    ONLY.extend(options.only)
    rounds, text = options.rounds, "".join(chr(0x61 + n % 26) for n in range(options.chars))
    long_text = "".join(chr(0x61 + n % 26) for n in range(20_000))
    folder = Path(tempfile.mkdtemp(prefix="minitalk-bench-c-"))
    try:
        c = build(folder)
        serve = [*MINITALK, "serve", "--classic", "--idle-timeout", "5"]
        print(
            f"{os.cpu_count()} CPUs; {rounds} alternating rounds; {len(text)} characters "
            "unless said; C = tests/classic_c/server.c, mt = minitalk serve --classic\n"
        )
        print("C clients -> receiver")

        def client(mode: str, body: str, *extra: str) -> Callable[[int], list[str]]:
            return lambda pid: [c["client"], str(pid), mode, body, *extra]

        row(
            "per-bit (sigwait)",
            rounds,
            text,
            {
                "C": ([c["server"]], client("wait", text)),
                "mt": (serve, client("wait", text)),
            },
        )
        row(
            "per-bit (sigwait), 20,000 chars",
            rounds,
            long_text,
            {
                "C": ([c["server"]], client("wait", long_text)),
                "mt": (serve, client("wait", long_text)),
            },
        )
        row(
            "sigtimedwait, gives up after 10 ms",
            rounds,
            text,
            {
                "C": ([c["server"]], client("timedwait", text, "10")),
                "mt": (serve, client("timedwait", text, "10")),
                "mt --answer-sigwait": (
                    [*serve, "--answer-sigwait"],
                    client("timedwait", text, "10"),
                ),
            },
        )
        forms = {
            "instead": (["--end-signal", "usr2", "--end-signal-at", "instead"], "usr2"),
            "before": (["--end-signal", "usr2", "--end-signal-at", "before"], "usr2"),
            "after": (["--end-signal", "usr2", "--end-signal-at", "after"], "usr2"),
            "again": (["--end-signal", "usr1", "--end-signal-at", "after"], "again"),
        }
        for form, (options_mt, awaits) in forms.items():
            row(
                f"waits for an end signal ({form})",
                rounds,
                text,
                {
                    "C": ([c["server"], "--end", form], client("end", text, awaits)),
                    "mt": ([*serve, *options_mt], client("end", text, awaits)),
                },
            )
        row(
            "two threads, one blocks (300 µs)",
            rounds,
            text,
            {
                "C": ([c["server"]], client("thread", text, "300")),
                "mt": (serve, client("thread", text, "300")),
            },
        )
        for gap in ("100", "150", "300", "500"):
            row(
                f"timed, catches nothing ({gap} µs)",
                rounds,
                text,
                {
                    "C --no-ack": ([c["server"], "--no-ack"], client("sleep", text, gap)),
                    "mt": (serve, client("sleep", text, gap)),
                },
            )
        print("\nsender -> C server (C client vs minitalk send --classic)")
        send = [*MINITALK, "send", "--classic", "--quiet"]
        for form in ("", "instead", "before", "after", "again"):
            server = [c["server"], *(["--end", form] if form else [])]
            awaits = "again" if form == "again" else "usr2"
            row(
                f"C server, end signal {form or 'none'}",
                rounds,
                text,
                {
                    "C": (server, client("end", text, awaits) if form else client("wait", text)),
                    "mt": (server, lambda pid: [*send, str(pid), text]),
                },
            )
        row(
            "C server, 300 µs before each answer",
            rounds,
            text,
            {
                "C": ([c["server"], "--delay-us", "300"], client("wait", text)),
                "mt": ([c["server"], "--delay-us", "300"], lambda pid: [*send, str(pid), text]),
            },
        )
        row(
            "C server, no answers",
            rounds,
            text,
            {
                "C": ([c["server"], "--no-ack"], client("sleep", text, "500")),
                "mt": ([c["server"], "--no-ack"], lambda pid: [*send, str(pid), text]),
            },
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
