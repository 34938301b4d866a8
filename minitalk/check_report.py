"""What `minitalk check` sends, how it compares, and how it reports: pure, no I/O.

A tester is only as good as what it says when something is wrong. This module owns the
battery's texts, the variants tried in order of how common they are (docs/classic.md), the
comparison that finds the first wrong byte and bit of a message (where in the stream the program
went wrong, not only that it did), and the report: one line per check, in text for a person
(colours only when the caller says the output is a terminal) or as JSON for a script.
``check`` runs the programs and fills the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from minitalk.classic_detect import pinning_flags
from minitalk.classic_format import ClassicFormat, bits_of


def _pangram(count: int) -> str:
    """``count`` characters of numbered pangrams: plain ASCII, no newline (a newline-ended
    variant would end there), and each piece numbered, so that a wrong byte is easy to find."""
    pieces: list[str] = []
    size = 0
    number = 0
    while size < count:
        piece = f"{number:05d} The quick brown fox jumps over the lazy dog. "
        pieces.append(piece)
        size += len(piece)
        number += 1
    return "".join(pieces)[:count]


PROBE = "minitalk check: which variant? 42"  # read wrongly, it never reads as itself
ASCII = "Hello, 42! The quick brown fox jumps over the lazy dog."
# Every plane in use: Latin, Greek, Cyrillic, Hebrew, Arabic, Devanagari, CJK (plane 0);
# emoji, a skin tone, a ZWJ family, flags and musical symbols (plane 1); CJK extension B (2)
# and G (3); the tag characters of the Scottish flag (14) and private use (15, 16).
UNICODE = (
    "é ñ ß Ω Ж ש ع क 中文 日本語 한국어 ∑ ∞ → "
    "🎉 🚀 👍🏽 👩‍👩‍👧‍👦 🧑‍💻 🇫🇷 🇯🇵 🏴󠁧󠁢󠁳󠁣󠁴󠁿 🏴‍☠️ 𝄞 "
    "𠀀 𠜎 𰀀 \U000f0000 \U0010fffd"
)
ROW = ("first message", "second message, a little longer", "third")
SPEED_TEXT = _pangram(100)
# Long enough that two senders started together overlap, whatever their start-up times.
TWO_AT_ONCE = ("first of two: " + _pangram(2_000), "SECOND OF TWO: " + _pangram(2_000).upper())
SPEED_LIMIT = 1.0  # seconds for 100 characters, from sending to printed


@dataclass(frozen=True, slots=True)
class Message:
    """One text of the battery: its check's name, and whether the check is mandatory."""

    name: str
    text: str
    mandatory: bool = True
    long: bool = False  # left out by --quick


BATTERY = (
    Message("simple ASCII", ASCII),
    Message("the empty message", ""),
    Message("Unicode: every plane, ZWJ sequences, flags", UNICODE),
    Message("1,000 characters", _pangram(1_000)),
    Message("10,000 characters", _pangram(10_000), long=True),
)


def _variant(
    msb: bool, zero: int, end: bytes = b"\0", prefix: int = 0, *, counts: bool = False
) -> ClassicFormat:
    return ClassicFormat(
        msb_first=msb,
        zero_symbol=zero,
        terminator=end,
        length_bits=prefix,
        length_counts_terminator=counts,
    )


# The variants tried, most common first (40 public minitalks, docs/classic.md): NUL-ended in
# both bit orders and both mappings, then a 32-bit length prefix (most also send the NUL),
# a 64-bit one, a newline or no terminator.
VARIANTS = (
    _variant(True, 0),
    _variant(False, 0),
    _variant(True, 1),
    _variant(False, 1),
    _variant(True, 0, prefix=32),
    _variant(False, 0, prefix=32),
    _variant(True, 1, prefix=32),
    _variant(False, 1, prefix=32),
    _variant(True, 0, b"", 32),
    _variant(False, 0, b"", 32),
    _variant(True, 0, prefix=32, counts=True),
    _variant(True, 0, prefix=64),
    _variant(False, 0, prefix=64),
    _variant(True, 0, b"\n"),
    _variant(False, 0, b"\n"),
)


class Status(Enum):
    """A check's outcome."""

    PASS = "pass"  # noqa: S105 (a status, not a password)
    FAIL = "fail"
    SKIP = "skipped"


@dataclass(frozen=True, slots=True)
class Difference:
    """Where a received message first differs from the text sent: the byte's offset in the
    message, the expected and received byte (None: there was none), and, when both are
    there, the first wrong bit in sending order and the signal that carried it (1-based)."""

    offset: int
    expected: int | None
    received: int | None
    bit: int | None
    signal: int | None
    signals: int  # signals the whole message takes

    def describe(self, fmt: ClassicFormat) -> str:
        """One line: the byte, the signal, both values and their bits."""
        where = f"byte {self.offset:,}"
        if self.signal is not None:
            where += f" (signal {self.signal:,} of {self.signals:,}, bit {self.bit} of the byte)"
        expected = "nothing" if self.expected is None else _byte(self.expected, fmt)
        received = "nothing more" if self.received is None else _byte(self.received, fmt)
        return f"first difference at {where}: expected {expected}, received {received}"


def _byte(value: int, fmt: ClassicFormat) -> str:
    bits = "".join(map(str, bits_of(value, 8, msb_first=fmt.msb_first)))
    shown = chr(value) if 0x20 <= value < 0x7F else ""
    return f"0x{value:02x}" + (f" {shown!r}" if shown else "") + f" (bits {bits} as sent)"


def _common_length(first: bytes, second: bytes) -> int:
    """The length of the common start of two byte strings (slices compare at C speed)."""
    low, high = 0, min(len(first), len(second))
    while low < high:
        middle = (low + high + 1) // 2
        if first[:middle] == second[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def first_difference(
    expected: bytes, received: bytes, fmt: ClassicFormat, *, decorated: bool = False
) -> Difference | None:
    """Where ``received`` first departs from ``expected``, or None if it holds it whole.

    ``decorated``: ``received`` is a program's output, which may wrap the text in words of its
    own ("Message: ...") and hold earlier lines; the text is looked for anywhere in it, and a
    difference is measured from the place where the longest part of it matched."""
    if (expected in received) if decorated else (expected == received):
        return None
    starts = [0]
    if decorated and expected:
        position = received.find(expected[:1])
        while position >= 0 and len(starts) < 256:
            starts.append(position)
            position = received.find(expected[:1], position + 1)
    best_start, best = 0, -1
    for start in starts:
        length = _common_length(expected, received[start:])
        if length > best:
            best_start, best = start, length
    offset = best
    want = expected[offset] if offset < len(expected) else None
    got_at = best_start + offset
    got = received[got_at] if got_at < len(received) else None
    signals = len(fmt.encode(expected))
    if want is None or got is None:
        return Difference(offset, want, got, None, None, signals)
    sent = bits_of(want, 8, msb_first=fmt.msb_first)
    came = bits_of(got, 8, msb_first=fmt.msb_first)
    bit = next(index for index in range(8) if sent[index] != came[index])
    signal = fmt.length_bits + offset * 8 + bit + 1
    return Difference(offset, want, got, bit, signal, signals)


def variant_flags(fmt: ClassicFormat) -> str:
    """The --classic options that pin ``fmt``; "" for the default variant."""
    return "" if fmt == ClassicFormat() else pinning_flags(fmt)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the report."""

    name: str
    status: Status
    detail: str = ""
    mandatory: bool = True
    seconds: float | None = None
    left_out: bool = False  # by --quick: neither a pass nor a failure


@dataclass(slots=True)
class Report:
    """The whole report of one program: what was checked, the variant found, the results."""

    role: str  # "server" or "client"
    command: list[str]
    variant: ClassicFormat | None = None
    answers: str = ""  # how it answers (a server) or what it needs (a client)
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every mandatory check passed (a skipped mandatory check is not a pass)."""
        return all(r.status is Status.PASS for r in self.results if r.mandatory and not r.left_out)

    def to_json(self) -> dict[str, object]:
        """The report for scripts (``check --json``)."""
        variant = self.variant
        return {
            "role": self.role,
            "command": self.command,
            "passed": self.passed,
            "variant": None if variant is None else variant.describe(),
            "flags": None if variant is None else pinning_flags(variant),
            "answers": self.answers,
            "checks": [
                {
                    "name": r.name,
                    "status": r.status.value,
                    "mandatory": r.mandatory,
                    "left_out": r.left_out,
                    "detail": r.detail,
                    "seconds": None if r.seconds is None else round(r.seconds, 6),
                }
                for r in self.results
            ],
        }


_COLOURS = {Status.PASS: "\033[32m", Status.FAIL: "\033[31m", Status.SKIP: "\033[33m"}
_BOLD, _DIM, _RESET = "\033[1m", "\033[2m", "\033[0m"
_MARKS = {Status.PASS: "pass", Status.FAIL: "FAIL", Status.SKIP: "skip"}


def result_line(result: CheckResult, *, colour: bool) -> str:
    """One check as a line of the report (its detail indented below it, if any)."""
    mark = _MARKS[result.status]
    if colour:
        mark = f"{_COLOURS[result.status]}{mark}{_RESET}"
    name = result.name + ("" if result.mandatory or result.left_out else " (bonus)")
    timing = "" if result.seconds is None else f"  {result.seconds:.3f} s"
    if colour and timing:
        timing = f"{_DIM}{timing}{_RESET}"
    line = f"  {mark}  {name}{timing}"
    if result.detail:
        line += "\n" + "\n".join(f"        {piece}" for piece in result.detail.split("\n"))
    return line


def summary(report: Report, *, colour: bool) -> str:
    """The report's closing lines: the variant and the flags that pin it, and the verdict."""
    lines = []
    if report.variant is not None:
        lines.append(f"variant: {report.variant.describe()}")
        lines.append(f"--classic flags that pin it: {pinning_flags(report.variant)}")
    if report.answers:
        lines.append(f"answers: {report.answers}")
    failed = [
        r for r in report.results if r.mandatory and not r.left_out and r.status is not Status.PASS
    ]
    passed = sum(r.status is Status.PASS for r in report.results)
    if failed:
        verdict = f"FAILED: {len(failed)} mandatory check(s) did not pass ({passed} passed)"
    else:
        verdict = f"PASSED: every mandatory check ({passed} passed)"
    if colour:
        verdict = f"{_BOLD}{_COLOURS[Status.FAIL if failed else Status.PASS]}{verdict}{_RESET}"
    lines.append(verdict)
    return "\n".join(lines)
