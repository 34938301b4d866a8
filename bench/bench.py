"""minitalk's benchmark: the raw signal ceiling, end-to-end throughput, CPU, memory, start-up.

Run with `make bench` (or `.venv/bin/python bench/bench.py [--quick]`). Prints one table and
writes the same figures to bench/results.json. Not a test: nothing here passes or fails.

What is measured, and how:
- ceilings: two bare Python processes bounce SIGUSR1 with the same calls minitalk uses,
  blocking (sigwaitinfo) and polling (sigtimedwait with a zero timeout), in round trips/s: a
  reference for Python's per-call cost, the limit of the pure-Python loops; and the same in C
  (bench/pingpong.c, compiled with `cc` when there is one): the kernel's own round trip, the
  physical limit;
- throughput, on each inner loop (the compiled one when it was built, and the pure-Python
  one, MINITALK_PURE_PYTHON=1, for server and client alike): a real `minitalk serve` and
  `minitalk send --file` for 1 KiB, 64 KiB and 1 MiB, median of several runs, from the
  client's own transfer time (process start excluded); /C and /Python are the payload bits/s
  over the polling ceilings measured just before each run (this machine's speed drifts by
  several times over an afternoon), median over the runs;
- crowded: the 64 KiB send again beside one CPU-bound process, as a multiple of its idle time;
- CPU per MiB: the client's rusage (wait4: the whole process, so for 1 KiB mostly the
  interpreter's start) and the server's /proc/PID/stat ticks (10 ms each) over the run;
- idle CPU: the server's CPU ticks over 10 s with no client;
- start-up: wall time of a whole `minitalk send` of 100 characters, process start included,
  from a normal (non-editable) install made in a temporary virtual environment, against a bare
  start of that environment's interpreter and one that only imports typer (minitalk's own
  share is the rest), with `-X importtime`'s figures by package;
- peak memory: the client's ru_maxrss and the server's VmHWM after the 1 MiB message.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


# Round trips of each ceiling measured beside every transfer run (about 0.2 s each).
CEILING_ROUNDS = 50_000


def c_round_trips(poll: bool, rounds: int, work: Path) -> float | None:
    """Round trips per second of bench/pingpong.c, or None without a C compiler."""
    binary = work / "pingpong"
    if not binary.exists():
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            return None
        subprocess.run(
            [cc, "-O2", "-o", str(binary), str(ROOT / "bench" / "pingpong.c")], check=True
        )
    mode = "poll" if poll else "block"
    out = subprocess.run([str(binary), str(rounds), mode], check=True, capture_output=True)
    return float(out.stdout)


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


# The inner loops compared: the compiled one (when built) and the pure-Python one, chosen
# for both server and client by the environment (transport.py).
PURE = {**os.environ, "MINITALK_PURE_PYTHON": "1"}
COMPILED = {k: v for k, v in os.environ.items() if k != "MINITALK_PURE_PYTHON"}


def _loop_in_use(env: dict[str, str]) -> str:
    out = subprocess.run([*MINITALK, "--version"], env=env, capture_output=True, check=True)
    return "compiled" if "compiled inner loop" in out.stdout.decode() else "pure Python"


class BenchServer:
    """A `minitalk serve` whose messages go to a file, so its output never blocks it."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.env = env
        self.log = workdir / "server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*MINITALK, "serve"], stdout=log, stderr=subprocess.DEVNULL, env=env
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


def _send(pid: int, args: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """Run one `minitalk send`; return (wall s, transfer s, client CPU s, client max RSS KiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [*MINITALK, "send", str(pid), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
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
    transfers: list[float] = []
    client_cpu, server_cpu, client_rss = [], [], []
    versus_c, versus_python = [], []
    print(f"  sending {len(text)} bytes x {runs} ...", file=sys.stderr, flush=True)
    for _ in range(runs):
        # The ceilings of this very moment: the machine's speed drifts between runs.
        c_now = c_round_trips(True, CEILING_ROUNDS * 2, workdir)
        python_now = raw_round_trips(True, CEILING_ROUNDS)
        before = _cpu_seconds(server.pid)
        _, transfer, cpu, rss = _send(server.pid, ["--file", str(path)], server.env)
        server_cpu.append(_cpu_seconds(server.pid) - before)
        transfers.append(transfer)
        client_cpu.append(cpu)
        client_rss.append(rss)
        versus_python.append(len(text) * 8 / transfer / python_now)
        if c_now is not None:
            versus_c.append(len(text) * 8 / transfer / c_now)
    seconds = statistics.median(transfers)
    mib = len(text) / (1 << 20)
    ratios = {"ratio_to_python_polling": statistics.median(versus_python)}
    if versus_c:
        ratios["ratio_to_c_polling"] = statistics.median(versus_c)
    return ratios | {
        "bytes": len(text),
        "runs": runs,
        "seconds_median": seconds,
        "seconds_min": min(transfers),
        "seconds_max": max(transfers),
        "kib_per_s": len(text) / 1024 / seconds,
        "payload_bits_per_s": len(text) * 8 / seconds,
        "client_cpu_s_per_mib": statistics.median(client_cpu) / mib,
        "server_cpu_s_per_mib": statistics.median(server_cpu) / mib,
        "client_peak_rss_kib": max(client_rss),
        "server_peak_rss_kib": _peak_rss_kib(server.pid),
    }


def crowded(server: BenchServer, size: int, runs: int, workdir: Path) -> dict[str, float]:
    """The same send beside one CPU-bound process (a busy loop), which takes a CPU."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        return throughput(server, size, runs, workdir)
    finally:
        hog.kill()
        hog.wait()


def startup(workdir: Path, server_pid: int, runs: int = 20) -> dict[str, object]:
    """A whole `minitalk send` of 100 characters from a normal install (pip install .), and a
    bare start of that environment's interpreter; medians of ``runs``."""
    venv, source = workdir / "venv", workdir / "source"
    # Installed from a copy of the source: pip builds in the tree it is given, and a build/
    # left in the repo would be packed into later installs, deleted modules and all.
    skip = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "venv")
    shutil.copytree(ROOT, source, ignore=skip)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", str(source)],
            check=True,
            capture_output=True,
        )
        python, command, install = (
            str(venv / "bin" / "python"),
            [str(venv / "bin" / "minitalk")],
            "normal",
        )
    except subprocess.CalledProcessError:  # no index to install from: the current install
        python, command, install = sys.executable, MINITALK, "current (pip install failed)"

    def median_wall(argv: list[str]) -> float:
        walls = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            walls.append(time.perf_counter() - started)
        return statistics.median(walls)

    bare = median_wall([python, "-c", "pass"])
    with_typer = median_wall([python, "-c", "import typer"])
    send = median_wall([*command, "send", str(server_pid), "x" * 100, "--quiet"])
    return {
        "install": install,
        "interpreter_s": bare,
        "typer_import_s": with_typer - bare,
        "send_100_chars_s": send,
        # what is left for minitalk: its imports and its work, the transfer included
        "minitalk_own_s": send - with_typer,
        "import_ms_by_package": _import_times(python),
    }


def _import_times(python: str, runs: int = 5) -> dict[str, float]:
    """Milliseconds spent importing the `send` path (the CLI's imports), from
    `python -X importtime`, by package: each module's own time, summed per top-level package
    (the standard library's together); medians of ``runs``, largest first."""
    ours = {"minitalk", "typer", "click", "rich", "crcmod", "shellingham", "typing_extensions"}
    totals: dict[str, list[float]] = {}
    for _ in range(runs):
        out = subprocess.run(
            [python, "-X", "importtime", "-c", "import minitalk.cli"],
            check=True,
            capture_output=True,
        ).stderr.decode()
        run: dict[str, float] = {}
        for line in out.splitlines():
            parts = line.removeprefix("import time:").split("|")  # self | cumulative | name
            if len(parts) != 3 or not parts[0].strip().isdigit():
                continue
            package = parts[2].strip().split(".")[0]
            package = package if package in ours else "standard library"
            run[package] = run.get(package, 0.0) + int(parts[0]) / 1000
        for package, ms in run.items():
            totals.setdefault(package, []).append(ms)
    medians = {package: statistics.median(times) for package, times in totals.items()}
    return dict(sorted(medians.items(), key=lambda item: -item[1]))


def _startup_rows(start: dict[str, Any]) -> list[str]:
    imports = ", ".join(f"{name} {ms:.1f}" for name, ms in start["import_ms_by_package"].items())
    return [
        f"whole `minitalk send` of 100 chars ({start['install']} install): "
        f"{start['send_100_chars_s'] * 1000:.0f} ms, bare interpreter "
        f"{start['interpreter_s'] * 1000:.0f} ms: "
        f"+{(start['send_100_chars_s'] - start['interpreter_s']) * 1000:.0f} ms, of which "
        f"typer's import {start['typer_import_s'] * 1000:.0f} ms and minitalk's own imports "
        f"and work {start['minitalk_own_s'] * 1000:.0f} ms",
        f"  imports on the send path (-X importtime, ms): {imports}",
    ]


def run_path(env: dict[str, str], sizes: list[tuple[int, int]], workdir: Path) -> dict[str, Any]:
    """Throughput, CPU and memory on one inner loop; the 64 KiB send beside a CPU hog; the
    server's CPU while idle."""
    server = BenchServer(workdir, env)
    try:
        messages = {
            f"{size // 1024} KiB": throughput(server, size, runs, workdir) for size, runs in sizes
        }
        print("  beside a CPU hog ...", file=sys.stderr, flush=True)
        messages["64 KiB crowded"] = crowded(server, 64 * 1024, 5, workdir)
        before = _cpu_seconds(server.pid)
        time.sleep(10)
        idle = _cpu_seconds(server.pid) - before
    finally:
        server.stop()
    messages["64 KiB crowded"]["times_idle"] = (
        messages["64 KiB crowded"]["seconds_median"] / messages["64 KiB"]["seconds_median"]
    )
    return {"messages": messages, "server_idle_cpu_s_over_10s": idle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, no 1 MiB message")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    options = parser.parse_args()

    rounds = 50_000 if options.quick else 200_000
    results: dict[str, Any] = {
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
        },
    }
    sizes = [(1024, 7), (64 * 1024, 7)] + ([] if options.quick else [(1 << 20, 3)])
    paths = {"pure Python": PURE}
    if _loop_in_use(COMPILED) == "compiled":
        paths = {"compiled": COMPILED, **paths}
    with tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        print("  ceilings ...", file=sys.stderr, flush=True)
        raw = {
            "python_blocking": statistics.median(raw_round_trips(False, rounds) for _ in range(3)),
            "python_polling": statistics.median(raw_round_trips(True, rounds) for _ in range(3)),
        }
        c_runs = [c_round_trips(True, rounds * 4, workdir) for _ in range(3)]
        if c_runs[0] is not None:
            raw["c_polling"] = statistics.median(r for r in c_runs if r is not None)
            blocking = [c_round_trips(False, rounds, workdir) for _ in range(3)]
            raw["c_blocking"] = statistics.median(r for r in blocking if r is not None)
        results["raw_round_trips_per_s"] = raw
        results["paths"] = {}
        for name, env in paths.items():
            print(f"  the {name} inner loop ...", file=sys.stderr, flush=True)
            results["paths"][name] = run_path(env, sizes, workdir)
        print("  start-up ...", file=sys.stderr, flush=True)
        server = BenchServer(workdir, COMPILED)
        try:
            results["startup"] = startup(workdir, server.pid)
        finally:
            server.stop()

    options.out.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results))
    print(f"\nfigures written to {options.out}")


def _message_rows(name: str, path: dict[str, Any]) -> list[str]:
    rows = [
        f"minitalk, {name + ' inner loop':<22} KiB/s  (min-max of runs)   bit/s  /Python  /C"
        "     CPU s/MiB cli srv",
    ]
    messages = path["messages"]
    for size, m in messages.items():
        low = m["bytes"] / 1024 / m["seconds_max"]
        high = m["bytes"] / 1024 / m["seconds_min"]
        versus_c = f"{m['ratio_to_c_polling']:.2f}" if "ratio_to_c_polling" in m else "  - "
        rows.append(
            f"  {size:<16}{m['kib_per_s']:>14,.1f}  ({low:>7,.1f}-{high:<7,.1f}) "
            f"{m['payload_bits_per_s']:>9,.0f}  {m['ratio_to_python_polling']:>5.2f}  "
            f"{versus_c:>4}  {m['client_cpu_s_per_mib']:>8.1f} {m['server_cpu_s_per_mib']:>5.1f}"
        )
    biggest_name = [n for n in messages if "crowded" not in n][-1]
    biggest = messages[biggest_name]
    rows += [
        f"  64 KiB beside one CPU-bound process: {messages['64 KiB crowded']['times_idle']:.2f}x "
        "its idle time",
        f"  peak RSS ({biggest_name}): client {biggest['client_peak_rss_kib'] / 1024:.1f} MiB, "
        f"server {biggest['server_peak_rss_kib'] / 1024:.1f} MiB",
        f"  server CPU while idle for 10 s: {path['server_idle_cpu_s_over_10s']:.3f} s",
        "",
    ]
    return rows


def _table(results: dict[str, Any]) -> str:
    raw, machine = results["raw_round_trips_per_s"], results["machine"]
    rows = [
        f"machine: {machine['cpus']} CPUs, {machine['processor']}, Linux {machine['kernel']}, "
        f"Python {machine['python']}, {machine['date']}",
        "",
        "signal ping-pong ceilings (round trips/s)     polling     blocking",
        f"  bare Python                            {raw['python_polling']:>11,.0f} "
        f"{raw['python_blocking']:>12,.0f}",
    ]
    if "c_polling" in raw:
        rows.append(
            f"  C (bench/pingpong.c)                   {raw['c_polling']:>11,.0f} "
            f"{raw['c_blocking']:>12,.0f}"
        )
    else:
        rows.append("  C: no C compiler here (cc), row skipped")
    rows.append("")
    for name, path in results["paths"].items():
        rows += _message_rows(name, path)
    rows += _startup_rows(results["startup"])
    return "\n".join(rows)


if __name__ == "__main__":
    main()
