"""minitalk's benchmark: the raw signal ceiling, end-to-end throughput, CPU, memory, start-up.

Run with `make bench` (or `.venv/bin/python bench/bench.py [--quick]`). Prints one table and
writes the same figures to bench/results.json. Not a test: nothing here passes or fails.

What is measured, and how:
- raw ceiling: two bare Python processes bounce SIGUSR1 with the same calls minitalk uses,
  blocking (sigwaitinfo) and polling (sigtimedwait with a zero timeout), in round trips/s;
- throughput: a real `minitalk serve` and `minitalk send --file` for 1 KiB, 64 KiB and 1 MiB,
  median of several runs, from the client's own transfer time (process start excluded);
- CPU per MiB: the client's rusage (wait4) and the server's /proc/PID/stat ticks over the run;
- idle CPU: the server's CPU ticks over 10 s with no client;
- start-up: wall time of a whole `minitalk send` of 100 characters, process start included;
- peak memory: the client's ru_maxrss and the server's VmHWM after the 1 MiB message.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MINITALK = [sys.executable, "-m", "minitalk"]
TICKS = os.sysconf("SC_CLK_TCK")
USR1 = {signal.SIGUSR1}


# -- the raw ceiling -----------------------------------------------------------------------------


def _bounce(peer: int, rounds: int, poll: bool, first: bool) -> None:
    """Answer (or start) ``rounds`` SIGUSR1 round trips with ``peer``."""
    if first:
        os.kill(peer, signal.SIGUSR1)
    for _ in range(rounds):
        if poll:
            while signal.sigtimedwait(USR1, 0) is None:
                pass
        else:
            signal.sigwaitinfo(USR1)
        if first and _ == rounds - 1:
            break
        os.kill(peer, signal.SIGUSR1)


def raw_round_trips(poll: bool, rounds: int) -> float:
    """Round trips per second between two forked Python processes."""
    signal.pthread_sigmask(signal.SIG_BLOCK, USR1)
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        try:
            _bounce(parent, rounds, poll, first=False)
        finally:
            os._exit(0)
    started = time.perf_counter()
    _bounce(child, rounds, poll, first=True)
    elapsed = time.perf_counter() - started
    os.waitpid(child, 0)
    return rounds / elapsed


# -- minitalk end to end -------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _peak_rss_kib(pid: int) -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else 0


class BenchServer:
    """A `minitalk serve` whose messages go to a file, so its output never blocks it."""

    def __init__(self, workdir: Path) -> None:
        self.log = workdir / "server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*MINITALK, "serve"], stdout=log, stderr=subprocess.DEVNULL
            )
        while not self.log.read_bytes().endswith(b"\n"):  # the PID line
            if self.process.poll() is not None:
                raise RuntimeError("minitalk serve exited at start")
            time.sleep(0.01)
        self.pid = int(self.log.read_bytes().split()[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=60)


def _send(pid: int, args: list[str]) -> tuple[float, float, float, int]:
    """Run one `minitalk send`; return (wall s, transfer s, client CPU s, client max RSS KiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [*MINITALK, "send", str(pid), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out = process.stdout.read().decode() if process.stdout else ""
    err = process.stderr.read().decode() if process.stderr else ""
    if status != 0:
        raise RuntimeError(f"minitalk send failed: {err.strip()}")
    match = re.search(r"\(([\d.]+) s\)", out)  # the receipt's transfer time
    transfer = float(match.group(1)) if match else float("nan")  # nan: --quiet, no receipt
    return wall, transfer, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def throughput(server: BenchServer, size: int, runs: int, workdir: Path) -> dict[str, float]:
    text = ("minitalk bench ✓ " * (size // 16 + 1)).encode()[:size]
    while True:  # trim to whole characters
        try:
            text.decode()
            break
        except UnicodeDecodeError:
            text = text[:-1]
    path = workdir / f"msg-{size}.txt"
    path.write_bytes(text)
    transfers, client_cpu, server_cpu, client_rss = [], [], [], []
    print(f"  sending {len(text)} bytes x {runs} ...", file=sys.stderr, flush=True)
    for _ in range(runs):
        before = _cpu_seconds(server.pid)
        _, transfer, cpu, rss = _send(server.pid, ["--file", str(path)])
        server_cpu.append(_cpu_seconds(server.pid) - before)
        transfers.append(transfer)
        client_cpu.append(cpu)
        client_rss.append(rss)
    seconds = statistics.median(transfers)
    mib = len(text) / (1 << 20)
    return {
        "bytes": len(text),
        "runs": runs,
        "seconds_median": seconds,
        "kib_per_s": len(text) / 1024 / seconds,
        "payload_bits_per_s": len(text) * 8 / seconds,
        "client_cpu_s_per_mib": statistics.median(client_cpu) / mib,
        "server_cpu_s_per_mib": statistics.median(server_cpu) / mib,
        "client_peak_rss_kib": max(client_rss),
        "server_peak_rss_kib": _peak_rss_kib(server.pid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, no 1 MiB message")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    options = parser.parse_args()

    rounds = 50_000 if options.quick else 200_000
    results: dict[str, object] = {
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
        },
        "raw_round_trips_per_s": {
            "blocking": statistics.median(raw_round_trips(False, rounds) for _ in range(3)),
            "polling": statistics.median(raw_round_trips(True, rounds) for _ in range(3)),
        },
    }
    raw = results["raw_round_trips_per_s"]
    assert isinstance(raw, dict)
    ceiling = max(raw.values())

    sizes = [(1024, 7), (64 * 1024, 5)] + ([] if options.quick else [(1 << 20, 3)])
    with tempfile.TemporaryDirectory() as work:
        server = BenchServer(Path(work))
        try:
            messages = {
                f"{size // 1024} KiB": throughput(server, size, runs, Path(work))
                for size, runs in sizes
            }
            startup = [_send(server.pid, ["x" * 100, "--quiet"])[0] for _ in range(10)]
            before = _cpu_seconds(server.pid)
            time.sleep(10)
            idle = _cpu_seconds(server.pid) - before
        finally:
            server.stop()

    for figures in messages.values():
        figures["ratio_to_ceiling"] = figures["payload_bits_per_s"] / ceiling
    results["messages"] = messages
    results["send_100_chars_wall_s_median"] = statistics.median(startup)
    results["interpreter_start_s"] = _interpreter_start()
    results["server_idle_cpu_s_over_10s"] = idle
    options.out.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results, ceiling))
    print(f"\nfigures written to {options.out.relative_to(ROOT)}")


def _interpreter_start() -> float:
    runs = []
    for _ in range(10):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def _table(results: dict[str, object], ceiling: float) -> str:
    raw = results["raw_round_trips_per_s"]
    messages = results["messages"]
    machine = results["machine"]
    assert isinstance(raw, dict)
    assert isinstance(messages, dict)
    assert isinstance(machine, dict)
    rows = [
        f"machine: {machine['cpus']} CPUs, {machine['processor']}, Linux {machine['kernel']}, "
        f"Python {machine['python']}, {machine['date']}",
        "",
        "raw signal ping-pong (bare Python, round trips/s)",
        f"  blocking sigwaitinfo          {raw['blocking']:>12,.0f}",
        f"  polling sigtimedwait(0)       {raw['polling']:>12,.0f}",
        "",
        "minitalk end to end    KiB/s   payload bit/s  ratio   cli CPU s/MiB  srv CPU s/MiB",
    ]
    for name, m in messages.items():
        rows.append(
            f"  {name:<10} {m['kib_per_s']:>12,.1f} {m['payload_bits_per_s']:>15,.0f} "
            f"{m['ratio_to_ceiling']:>6.2f} {m['client_cpu_s_per_mib']:>14.1f} "
            f"{m['server_cpu_s_per_mib']:>14.1f}"
        )
    biggest = list(messages.values())[-1]
    rows += [
        "",
        f"peak RSS ({list(messages)[-1]}): client {biggest['client_peak_rss_kib'] / 1024:.1f} MiB, "
        f"server {biggest['server_peak_rss_kib'] / 1024:.1f} MiB",
        f"whole `minitalk send` of 100 chars: "
        f"{results['send_100_chars_wall_s_median'] * 1000:.0f} ms "
        f"(bare interpreter start: {results['interpreter_start_s'] * 1000:.0f} ms)",
        f"server CPU while idle for 10 s: {results['server_idle_cpu_s_over_10s']:.3f} s",
        f"ceiling used for the ratio: {ceiling:,.0f} round trips/s",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
