"""`make soak`: the reliability scenarios, longer and repeated, with a summary table.

    make soak                  # SOAK_ROUNDS=3 rounds of every scenario
    SOAK_ROUNDS=10 make soak   # longer
    SOAK_ONLY="CPU hog" make soak   # only the scenarios whose name contains that text

SOAK_ONLY is a plain substring, matched against each scenario's name as printed (the server
SIGKILLed part is named "server SIGKILLed"). Every random draw is made whether or not its
scenario runs, so a scenario run alone gets the parameters it gets in the full run.

Exits 1 if anything was corrupted or silently lost, a client was served out of turn, or a
server had to be restarted.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable

from tests import reliability
from tests.reliability import Tally


def main() -> int:
    rounds = int(os.environ.get("SOAK_ROUNDS", "3"))
    rng = random.Random(int(os.environ.get("SOAK_SEED", "2026")))
    only = os.environ.get("SOAK_ONLY", "")  # "" is in every name: everything runs
    total = Tally()
    rows: list[tuple[str, Tally, float]] = []
    notice: list[float] = []

    def run(name: str, scenario: Callable[..., Tally], *args: object) -> None:
        if only not in name:
            return
        started = time.monotonic()
        tally = scenario(*args)
        seconds = time.monotonic() - started
        rows.append((name, tally, seconds))
        total.add(tally)
        print(f"  {name:<40} {_short(tally)} (in {seconds:.1f} s)", file=sys.stderr, flush=True)

    print(f"soak: {rounds} rounds" + (f", only {only!r}" if only else ""), file=sys.stderr)
    for round_ in range(rounds):
        run(f"load 16 clients x 4 (round {round_ + 1})", reliability.load, 16, 4)
        run("8 clients queued in turn", reliability.queue_order, 8)
        for _ in range(2):
            victim_rng = random.Random(rng.random())  # drawn even if SOAK_ONLY skips it
            run("client SIGKILLed mid-message", reliability.client_killed, victim_rng)
        stop = 1.0 + rng.random() * 3.0
        run(f"server SIGSTOPped {stop:.1f} s", reliability.server_stopped, stop)
        rate = rng.choice([200.0, 500.0])
        run(f"naive stranger at {rate:.0f}/s", reliability.strangers, rate, ("naive",))
        run(
            f"naive + polite strangers at {rate:.0f}/s",
            reliability.strangers,
            rate,
            ("naive", "polite"),
        )
        run(
            f"64 KiB amid naive + polite at {rate:.0f}/s",
            reliability.strangers,
            rate,
            ("naive", "polite"),
            64 * 1024,
        )
        run(
            f"64 KiB amid 2 naive + polite at {rate:.0f}/s",
            reliability.strangers,
            rate,
            ("naive", "naive", "polite"),
            64 * 1024,
        )
        run(
            f"naive + forger at {rate:.0f}/s",
            reliability.strangers,
            rate,
            ("naive", "forger"),
        )
        run(
            f"64 KiB amid naive + polite + forger at {rate:.0f}/s",
            reliability.strangers,
            rate,
            ("naive", "polite", "forger"),
            64 * 1024,
        )
        run(
            f"32 KiB amid naive + forger aimed at the client at {rate:.0f}/s",
            reliability.strays_at_client,
            rate,
        )
        for _ in range(2):
            run(
                "32 KiB amid 2 naive strangers aimed at the client at 500/s beside a CPU hog",
                reliability.strays_at_client,
                500.0,
                ("naive", "naive"),
                32 * 1024,
                True,
            )
        if only in "server SIGKILLed":
            code, seconds, _ = reliability.server_killed()
            notice.append(seconds if code == 7 else float("inf"))

    if not rows and not notice:
        print(f"soak: no scenario's name contains SOAK_ONLY={only!r}", file=sys.stderr)
        return 2
    print(_table(rows, total, notice))
    clean = (
        total.corrupted == 0
        and total.lost == 0
        and total.server_restarts == 0
        and total.out_of_turn == 0
    )
    return 0 if clean and all(s != float("inf") for s in notice) else 1


def _short(t: Tally) -> str:
    return (
        f"sent {t.sent} intact {t.delivered_intact} corrupted {t.corrupted} lost {t.lost} "
        f"failed-told {t.failed_told} worst wait {t.worst_wait:.2f} s "
        f"strays {t.strays} exit {_codes(t.codes)}"
    )


def _codes(codes: tuple[int, ...]) -> str:
    """Exit codes as "0" for one client, "0x62 6x2" for many."""
    counted = sorted(Counter(codes).items())
    return " ".join(f"{code}" if n == 1 else f"{code}x{n}" for code, n in counted) or "-"


def _table(rows: list[tuple[str, Tally, float]], total: Tally, notice: list[float]) -> str:
    lines = [
        "",
        "minitalk soak summary",
        f"  messages sent                      {total.sent:>8}",
        f"  delivered intact                   {total.delivered_intact:>8}",
        f"  corrupted (must be 0)              {total.corrupted:>8}",
        f"  lost without telling (must be 0)   {total.lost:>8}",
        f"  failed and told the user           {total.failed_told:>8}",
        f"  clients killed                     {total.clients_killed:>8}",
        f"  server restarts needed (must be 0) {total.server_restarts:>8}",
        f"  served out of turn (must be 0)     {total.out_of_turn:>8}",
        f"  strays injected (forged included)  {total.strays:>8}",
        f"  worst wait for one send (s)        {total.worst_wait:>8.2f}",
        f"  server killed: client noticed in   {max(notice):>8.2f} s (worst of {len(notice)})"
        if notice
        else "  server killed: not run (SOAK_ONLY)",
        f"  scenarios run                      {len(rows):>8}"
        f" in {sum(seconds for *_, seconds in rows):.0f} s",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
