"""`minitalk check`: test a plain minitalk server or client and say exactly what is wrong.

For a server, the check is a classic client with eyes on the server's output: it finds the
variant by sending a probe in each common one, on a fresh start of the server each time (a
wrong variant can leave a server waiting for a length of millions), until the server prints the
probe; a server that only gets it right when each answer is followed by a pause loses bits at
its own answer pace, and is told so. Then the battery runs on one start of it. For a client,
the check is a classic server (the same driver and safety rules as `serve --classic`, with
``--detect``): it finds the variant from the client's first message (the text is known), tries
the end signals real servers send until the client finishes, then runs the battery.

Every program is started, held and stopped by ``check_program``; the texts, the comparison and
the report are ``check_report``'s.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from minitalk.check_program import (
    Child,
    Program,
    ProgramError,
    become_subreaper,
    end_strays,
    how_it_ended,
    last_words,
    round_trips,
    session_of,
    spawn_client,
)
from minitalk.check_report import (
    BATTERY,
    PROBE,
    ROW,
    SPEED_LIMIT,
    SPEED_TEXT,
    TWO_AT_ONCE,
    VARIANTS,
    CheckResult,
    Difference,
    Report,
    Status,
    first_difference,
    variant_flags,
)
from minitalk.classic import (
    Ack,
    ClassicEvent,
    ClassicFormat,
    ClassicMessage,
    EndAt,
    SenderDropped,
    SenderRecord,
    describe_send,
)
from minitalk.classic_limits import IDLE_TIMEOUT
from minitalk.classic_link import (
    ClassicClientConfig,
    ClassicReceipt,
    ClassicServerConfig,
    ClassicServerDriver,
    SignalClassicLink,
    send_classic,
)
from minitalk.errors import MinitalkError
from minitalk.transport import block_signals, monotonic

QUIET = 0.3  # after the send, this long without new output: the server printed all it will
PRINT_WAIT = 5.0  # the longest wait after a send for a server to print the text
FIRST_PRINT_WAIT = 1.0  # from the send's start: a server that prints nothing by then never will
SLOW_GAP = 0.0005  # the pause after each answer that a server too slow for its own pace gets
HANG_GRACE = 2.5  # a client still running this long after its message arrived hangs
FIRST_SIGNAL_WAIT = 5.0  # a client that sends nothing for this long never will


def _send_limit(symbols: int) -> float:
    """A bound on one send: generous for a server paced by a 500 µs delay."""
    return 5.0 + symbols * 0.003


def _rate(symbols: int, seconds: float, reference: float) -> str:
    per_second = symbols / seconds if seconds > 0 else 0.0
    return (
        f"{symbols:,} signals in {seconds:.3f} s: {per_second:,.0f} signals/s, "
        f"{per_second / reference:.2f} of this machine's signal ping-pong "
        f"({reference:,.0f} round trips/s between two Python processes, polling)"
    )


@dataclass(slots=True)
class Seen:
    """One text sent to the server under test, and what it printed meanwhile."""

    output: bytes
    seconds: float  # from the send's start to the text printed (or to giving up)
    error: str = ""  # why the send failed, if it did
    receipt: ClassicReceipt | None = None
    ended: str = ""  # how the server ended, if it did
    before: bytes = b""  # the text sent before it on the same start (b"": none)


def _answers(receipt: ClassicReceipt, fmt: ClassicFormat, text: str) -> str:
    """How the server answered a send, in the words of the send's own trace."""
    lines = describe_send(receipt.sender, fmt, text.encode())
    paced = [line for line in lines if line.startswith(("paced", "end signal", "at the end"))]
    return "; ".join(paced)


@dataclass(slots=True)
class ServerCheck:
    """The battery against one server program."""

    argv: list[str]
    on_result: Callable[[CheckResult], None]
    report: Report = field(init=False)
    program: Program | None = None
    pid: int = 0
    gap: float = 0.0  # a pause after each answer, if the server needs one
    quick: bool = False  # --quick: leave out the long message and the bonus
    speed_limit: float = SPEED_LIMIT  # seconds for 100 characters
    probes: int = 0  # probes sent: each after the first goes to a fresh start
    ending: bytes = b""  # what it prints right after a message (its line end), once known
    line_start: bool = False  # it prints a message alone at the start of a line, once known
    last_text: bytes = b""  # the last text sent to this start of the server

    def __post_init__(self) -> None:
        self.report = Report("server", self.argv)

    def differs(self, seen: Seen, text: str, fmt: ClassicFormat) -> Difference | None:
        """Where the output departs from ``text`` followed by the server's line end (a stale
        byte after the text counts). A server that printed the probe alone at the start of a
        line must print every message so: bytes before it on its line (an old message left in
        a buffer) count too. One that wraps messages in words of its own is judged by the text
        and its line end only (the words may hold a PID or a count)."""
        expected = text.encode() + self.ending
        old = seen.before
        if old and old not in expected and old in seen.output:  # an old message printed again
            stale = first_difference(expected, seen.output[seen.output.find(old) :], fmt)
            if stale is not None:
                return stale
        if not self.line_start:
            return first_difference(expected, seen.output, fmt, decorated=True)
        if b"\n" + expected in b"\n" + seen.output:
            return None
        at = seen.output.find(expected)
        line = seen.output[seen.output.rfind(b"\n", 0, at) + 1 :] if at >= 0 else seen.output
        return first_difference(expected, line, fmt) or first_difference(
            expected, seen.output, fmt, decorated=True
        )

    def learn_ending(self, seen: Seen, text: str) -> None:
        """How the server printed ``text``: alone at the start of a line or not, and whether a
        line end came right after it: every later message must be printed the same way."""
        data = text.encode()
        at = seen.output.find(data)
        self.line_start = at == 0 or seen.output[at - 1 : at] == b"\n"
        following = seen.output[at + len(data) : at + len(data) + 1]
        self.ending = b"\n" if following == b"\n" else b""

    def add(self, name: str, status: Status, detail: str = "", **extra: object) -> None:
        result = CheckResult(name, status, detail, **extra)  # type: ignore[arg-type]
        self.report.results.append(result)
        self.on_result(result)

    def restart(self) -> None:
        """Stop the program if it runs, start it afresh and read its PID."""
        if self.program is not None:
            self.program.stop()
            self.program = None
        self.program = Program(self.argv)
        self.last_text = b""
        self.pid = self.program.read_pid()

    def close(self) -> None:
        if self.program is not None:
            self.program.stop()
            self.program = None

    def send(self, text: str, fmt: ClassicFormat, *, gap: float | None = None) -> Seen:
        """Send ``text`` and watch the output until it shows the text, or goes quiet."""
        program = self.program
        assert program is not None
        data = text.encode()
        mark = len(program.since(0))
        config = ClassicClientConfig(
            fmt=fmt,
            answer_gap=self.gap if gap is None else gap,
            timeout=_send_limit(len(fmt.encode(data))),
        )
        started = monotonic()
        seen = Seen(b"", 0.0, before=self.last_text)
        self.last_text = data
        if not program.running():  # never a send by number to a server that is gone
            seen.error, seen.ended = "the server had ended", program.ended()
            return seen
        try:
            seen.receipt = send_classic(self.pid, data, config)
        except MinitalkError as error:
            seen.error = str(error)
        sent = monotonic()

        wanted = data + self.ending

        def shows(out: bytes) -> bool:  # (the empty text shows nothing: wait for quiet)
            return bool(data) and wanted in out[mark:]

        def quiet_at() -> float:  # nothing printed yet: a server may take its time
            if not program.since(mark):
                return max(sent + QUIET, started + FIRST_PRINT_WAIT)
            return max(sent, program.last_output) + QUIET

        cap = sent + PRINT_WAIT
        while True:
            output = program.wait_for(shows, min(cap, quiet_at()))
            now = monotonic()
            if shows(output) or not program.running() or now >= min(cap, quiet_at()):
                break
        seen.output = output[mark:]
        seen.seconds = monotonic() - started  # to the moment the text was seen, or given up
        seen.ended = program.ended()
        return seen

    def failure(self, seen: Seen, text: str, fmt: ClassicFormat) -> str:
        """Why a text did not come out right, in one or two lines."""
        said = []
        difference = self.differs(seen, text, fmt)
        if difference is not None:
            said.append(difference.describe(fmt))
            if seen.before and seen.before in seen.output:
                said.append(
                    f"it printed the message before this one again ({seen.before[:40]!r}): "
                    "a buffer not cleared between messages"
                )
            if not seen.output:
                paced = seen.receipt is not None and seen.receipt.sender.paced
                said[-1] = "it printed nothing" + (
                    " (it answered every signal: after a lost or an extra bit, the NUL that "
                    "ends the message is read across two bytes and never seen)"
                    if paced and fmt.terminator == b"\0"
                    else ""
                )
        if seen.error:
            said.append(f"the send stopped: {seen.error}")
        if seen.ended:
            said.append(f"the server {seen.ended}")
        return "\n".join(said)


def check_server(
    argv: list[str],
    *,
    on_result: Callable[[CheckResult], None],
    quick: bool = False,
    speed_limit: float = SPEED_LIMIT,
) -> Report:
    """Run the whole battery against the server ``argv`` starts; return the report."""
    block_signals()  # before any thread: see check_program
    become_subreaper()
    reference = 0.0 if quick else round_trips()  # only the 10,000-character check shows it
    check = ServerCheck(argv, on_result, quick=quick, speed_limit=speed_limit)
    try:
        _server_battery(check, reference)
    except ProgramError as error:  # a restart that failed: the report says so
        check.add("starts again (a fresh start is part of some checks)", Status.FAIL, str(error))
    finally:
        check.close()
        end_strays()
    return check.report


SPEED_NAME = "speed: 100 characters"
ROW_NAME = "several clients in a row"


def _skip_battery(check: ServerCheck | ClientCheck, why: str) -> None:
    """The battery's checks, each skipped for ``why`` (or left out by --quick)."""
    for message in BATTERY:
        if not _left_out(check, message.name, long=message.long):
            check.add(message.name, Status.SKIP, why, mandatory=message.mandatory)
    for name in (ROW_NAME, SPEED_NAME):
        check.add(name, Status.SKIP, why)
    if not _left_out(check, TWO_NAME, long=True, mandatory=False):
        check.add(TWO_NAME, Status.SKIP, why, mandatory=False)


def _server_battery(check: ServerCheck, reference: float) -> None:
    try:
        check.restart()
    except ProgramError as error:
        check.add("starts and prints its PID", Status.FAIL, str(error))
        return
    check.add("starts and prints its PID", Status.PASS, f"PID {check.pid}")
    fmt = _find_server_variant(check)
    if fmt is None:
        _skip_battery(check, "no variant found")
        return
    for message in BATTERY:
        if not _left_out(check, message.name, long=message.long) and _alive(check, message.name):
            _message_check(check, message.name, message.text, fmt, reference)
    _in_a_row(check, fmt)
    if _alive(check, SPEED_NAME):
        seen = check.send(SPEED_TEXT, fmt)
        ok = check.differs(seen, SPEED_TEXT, fmt) is None and seen.seconds < check.speed_limit
        detail = (
            f"100 characters printed {seen.seconds:.3f} s after the send began (limit "
            f"{check.speed_limit:g} s)"
        )
        if check.differs(seen, SPEED_TEXT, fmt) is not None:
            detail = check.failure(seen, SPEED_TEXT, fmt)
        check.add(SPEED_NAME, Status.PASS if ok else Status.FAIL, detail)
    if not _left_out(check, TWO_NAME, long=True, mandatory=False):
        _two_at_once(check, fmt)  # last: two senders at once may leave it mid-byte


AFTER_EMPTY = "after the empty message"


def _deliver(
    check: ServerCheck, text: str, fmt: ClassicFormat, gap: float | None = None
) -> tuple[Seen, str]:
    """Send one text of the battery (the empty one followed by another: nothing shows
    otherwise); what was seen of the last, and why it went wrong ("" if it did not)."""
    seen = check.send(text, fmt, gap=gap)
    shown = text or AFTER_EMPTY
    if not text:
        seen = check.send(shown, fmt, gap=gap)
    if check.differs(seen, shown, fmt) is None and not seen.error:
        return seen, ""
    return seen, check.failure(seen, shown, fmt)


def _message_check(
    check: ServerCheck, name: str, text: str, fmt: ClassicFormat, reference: float
) -> None:
    """One message of the battery. A server that answers each bit and gets a message wrong
    is given it again on a fresh start: if it then comes out right, what came before left it
    in a bad state; if not, and it comes out right with a pause after each answer, it loses
    bits at its own pace (said once, and the rest of the battery keeps the pause)."""
    seen, why = _deliver(check, text, fmt)
    paced = seen.receipt is not None and seen.receipt.sender.paced
    if why and paced and not check.gap:
        check.restart()
        _, again = _deliver(check, text, fmt)
        if not again:
            why += (
                "\non a fresh start it came out right: a message before it left the server "
                "in a bad state, or it loses a bit now and then"
            )
        else:
            check.restart()
            slow, slow_why = _deliver(check, text, fmt, gap=SLOW_GAP)
            if not slow_why:
                check.gap = SLOW_GAP
                _too_fast(check, f"with {name}: {why}")
                seen, why = slow, ""
    if why and not text:
        why = "the message after it: " + why
    detail = why
    if not why and text == BATTERY[-1].text and seen.receipt is not None and reference:
        detail = _rate(len(seen.receipt.symbols), seen.receipt.seconds, reference)
    check.add(name, Status.FAIL if why else Status.PASS, detail, seconds=seen.seconds)


def _too_fast(check: ServerCheck, fast: str) -> None:
    gap = f"{SLOW_GAP * 1e6:.0f}"
    check.add(
        "keeps up with its own answers",
        Status.FAIL,
        "it loses bits when the next bit follows its answer at once: the same message came "
        f"out right, on a fresh start, with a {gap} µs pause after each answer (send --classic "
        f"--answer-gap-us {gap}; the rest of the battery keeps it). At speed, {fast}",
    )


def _alive(check: ServerCheck, name: str) -> bool:
    program = check.program
    if program is not None and program.running():
        return True
    ended = program.ended() if program is not None else "was not running"
    check.add(name, Status.SKIP, f"the server {ended}")
    return False


def _find_server_variant(check: ServerCheck) -> ClassicFormat | None:
    """Try each variant on a fresh start of the server until it prints the probe. If none
    does at speed and the server answered each bit, try the plain variants (and the one that
    came closest) again with a pause after each answer: a server that then gets it right
    loses bits at its own pace."""
    tried: dict[ClassicFormat, Seen] = {}
    second: dict[ClassicFormat, Seen] = {}  # the probe right, the second message not
    for fmt in VARIANTS:
        seen = _probe(check, fmt, gap=None)
        right = check.differs(seen, PROBE, fmt) is None and not seen.error
        if right:
            confirmation = _confirmed(check, fmt, seen)
            if confirmation is None:
                return fmt
            second[fmt] = confirmation
        tried[fmt] = seen
        if fmt == VARIANTS[0] and _slow_is_right(check, fmt, seen):
            return fmt  # the most common variant, only with a pause: no need to try the rest

    def closeness(fmt: ClassicFormat) -> int:
        difference = check.differs(tried[fmt], PROBE, fmt)
        return len(PROBE) + 1 if difference is None else difference.offset

    closest = max(VARIANTS, key=closeness)
    for fmt in dict.fromkeys([*VARIANTS[1:4], closest]):
        if fmt == VARIANTS[0]:
            continue  # tried slowly already
        if _slow_is_right(check, fmt, tried[fmt]):
            return fmt
    if closest in second:
        why = "the probe came out right, a second message on the same start did not: "
        why += check.failure(second[closest], CONFIRM, closest)
    else:
        why = check.failure(tried[closest], PROBE, closest)
    check.add(
        "variant",
        Status.FAIL,
        f"none of the {len(VARIANTS)} common variants came out right; the closest, "
        f"{closest.describe()}: {why}",
    )
    return None


def _slow_is_right(check: ServerCheck, fmt: ClassicFormat, fast: Seen) -> bool:
    """For a server that answered each bit of the probe ``fast`` and got it wrong: the probe
    again in ``fmt`` on a fresh start, with a pause after each answer. True (the variant
    found, and the server told it loses bits at its own pace) if that comes out right."""
    if fast.receipt is None or not fast.receipt.sender.paced:
        return False
    seen = _probe(check, fmt, gap=SLOW_GAP)
    if check.differs(seen, PROBE, fmt) is not None or seen.error:
        return False
    check.gap = SLOW_GAP
    if _confirmed(check, fmt, seen) is not None:
        check.gap = 0.0
        return False
    _too_fast(check, "the probe: " + check.failure(fast, PROBE, fmt))
    return True


def _probe(check: ServerCheck, fmt: ClassicFormat, *, gap: float | None) -> Seen:
    """The probe, sent in ``fmt`` to a fresh start of the server (the first start is fresh;
    a start that fails raises ``ProgramError``, which the report says)."""
    if check.probes:
        check.restart()
    check.probes += 1
    return check.send(PROBE, fmt, gap=gap)


CONFIRM = "and a second message, to be sure of the variant"


def _confirmed(check: ServerCheck, fmt: ClassicFormat, probe: Seen) -> Seen | None:
    """The probe came out right in ``fmt``: send a second message on the same start, and
    take the variant only if that one comes out right too (a server with a length prefix and
    no terminator prints the probe sent with a NUL after it, then reads that NUL as the start
    of the next length). None once it is taken; else what was seen of the second message."""
    check.learn_ending(probe, PROBE)
    second = check.send(CONFIRM, fmt)
    if check.differs(second, CONFIRM, fmt) is None and not second.error:
        _found(check, fmt, probe)
        return None
    check.ending, check.line_start = b"", False
    return second


def _found(check: ServerCheck, fmt: ClassicFormat, seen: Seen) -> None:
    check.report.variant = fmt
    if seen.receipt is not None:
        check.report.answers = _answers(seen.receipt, fmt, PROBE)
    check.add("variant", Status.PASS, f"{fmt.describe()} (flags: {variant_flags(fmt) or '-'})")


def _in_a_row(check: ServerCheck, fmt: ClassicFormat) -> None:
    """Several clients in a row without a restart, each message on a line of its own."""
    if not _alive(check, ROW_NAME):
        return
    output = b""
    for text in ROW:
        seen = check.send(text, fmt)
        output += seen.output
        if check.differs(seen, text, fmt) is not None or seen.error:
            detail = f"message {ROW.index(text) + 1} of {len(ROW)}: " + check.failure(
                seen, text, fmt
            )
            check.add(ROW_NAME, Status.FAIL, detail)
            return
    check.add(ROW_NAME, Status.PASS, f"{len(ROW)} messages")
    glued = _without_line_end(output)
    if glued:
        check.add(
            "each message ends its line",
            Status.FAIL,
            f"no line end after {glued!r}: messages in a row run together on one line "
            f"(it printed {output[:100]!r})",
        )
    else:
        check.add("each message ends its line", Status.PASS)


def _without_line_end(output: bytes) -> str:
    """The first text of ``ROW`` that runs into the next on one line (no line end between
    them: after the one or before the other), or ""; the last needs a line end after it or
    just before it (a server may print the line end first)."""
    position = 0
    for index, text in enumerate(ROW):
        data = text.encode()
        start = output.find(data, position)
        end = start + len(data)
        if index + 1 < len(ROW):
            following = output.find(ROW[index + 1].encode(), end)
            between = output[end : following if following >= 0 else len(output)]
        else:
            between = output[end:] + output[start - 1 : start] if start > 0 else output[end:]
        if b"\n" not in between:
            return text
        position = end
    return ""


def _left_out(
    check: ServerCheck | ClientCheck, name: str, *, long: bool, mandatory: bool = True
) -> bool:
    """Whether --quick leaves this check out (said in the report; neither pass nor fail)."""
    if long and check.quick:
        check.add(name, Status.SKIP, "left out by --quick", left_out=True, mandatory=mandatory)
    return long and check.quick


TWO_NAME = "two clients at the same moment"


def _two_at_once(check: ServerCheck, fmt: ClassicFormat) -> None:
    """Two `send --classic` processes at the same moment (a bonus: few servers keep a
    state per sender)."""
    name = TWO_NAME
    if not _alive(check, name):
        return
    program = check.program
    assert program is not None
    texts = TWO_AT_ONCE
    mark = len(program.since(0))
    flags = variant_flags(fmt).split()
    gap = ["--answer-gap-us", f"{check.gap * 1e6:.0f}"] if check.gap else []
    send = [sys.executable, "-m", "minitalk", "send", "--classic", "--quiet", *flags, *gap]
    senders = [spawn_client([*send, "--timeout", "20", str(check.pid), "--", t]) for t in texts]
    for sender in senders:
        sender.wait(30.0)
        sender.end()
    wanted = [text.encode() for text in texts]
    output = program.wait_for(
        lambda out: all(w in out[mark:] for w in wanted), monotonic() + PRINT_WAIT
    )[mark:]
    whole = [text for text, data in zip(texts, wanted, strict=True) if data in output]
    if len(whole) == len(texts):
        check.add(name, Status.PASS, mandatory=False)
    else:
        check.add(
            name,
            Status.FAIL,
            f"{len(whole)} of 2 printed whole (their bits mixed: one state for all senders); "
            f"printed: {output[:120]!r}",
            mandatory=False,
        )


# ---------------------------------------------------------------------------------------------
# Clients


@dataclass(slots=True)
class ClientRun:
    """One run of the client under test against the internal server."""

    returncode: int | None  # None: it still ran at the end and was killed
    seconds: float  # from its start to its message (or to the end of the run)
    message: ClassicMessage | None = None
    dropped: SenderDropped | None = None
    hung_after_message: bool = False
    said: str = ""  # the last line of its standard error
    messages: int = 0  # whole messages it sent (one is expected)
    drops: int = 0  # partial messages of its that were dropped


def client_argv(template: list[str], pid: int, text: str) -> list[str]:
    """The client's command line with ``{pid}`` and ``{text}`` filled in (appended, in that
    order, when absent)."""
    argv = [piece.replace("{pid}", str(pid)) for piece in template]
    if not any("{pid}" in piece for piece in template):
        argv.append(str(pid))
    if any("{text}" in piece for piece in template):
        return [piece.replace("{text}", text) for piece in argv]
    return [*argv, text]


@dataclass(frozen=True, slots=True)
class AnswerForm:
    """How the internal server answers a client, and the `serve --classic` flags for it."""

    words: str
    flags: str
    ack_symbol: int = 0
    end_symbol: int | None = None
    end_at: EndAt = EndAt.INSTEAD
    answer_sigwait: bool = False


ANSWER_FORMS = (
    AnswerForm("each bit answered with SIGUSR1, no end signal", ""),
    AnswerForm(
        "each bit answered with SIGUSR1, SIGUSR2 in place of the last bit's answer",
        "--end-signal usr2",
        end_symbol=1,
    ),
    AnswerForm(
        "each bit answered with SIGUSR1, SIGUSR2 just before the last bit's answer",
        "--end-signal usr2 --end-signal-at before",
        end_symbol=1,
        end_at=EndAt.BEFORE,
    ),
    AnswerForm(
        "each bit answered with SIGUSR1, SIGUSR2 just after the last bit's answer",
        "--end-signal usr2 --end-signal-at after",
        end_symbol=1,
        end_at=EndAt.AFTER,
    ),
    AnswerForm(
        "each bit answered with SIGUSR1, and one more SIGUSR1 after the last bit's answer",
        "--end-signal usr1 --end-signal-at after",
        end_symbol=0,
        end_at=EndAt.AFTER,
    ),
    AnswerForm("each bit answered with SIGUSR2", "--ack-signal usr2", ack_symbol=1),
    AnswerForm(
        "each bit answered with SIGUSR1, also while it waits in sigwait or sigtimedwait "
        "(which /proc shows as not blocking the signal)",
        "--answer-sigwait",
        answer_sigwait=True,
    ),
)


class ClientsOnlyLink(SignalClassicLink):
    """The classic server's link, taking signals only from the clients the check started
    (or processes of their sessions: a client may send from a child) and telling which
    client each sender belongs to: a stranger's signals are not data, and it is never
    answered."""

    def __init__(self, *, answer_sigwait: bool) -> None:
        super().__init__(answer_sigwait=answer_sigwait)
        self.clients: list[int] = []  # the clients of the current run, each a session leader
        self.owners: dict[int, int] = {}  # sender PID -> the client it belongs to

    def start_run(self, clients: list[int]) -> None:
        self.clients = clients
        self.owners = {pid: pid for pid in clients}

    def accepts(self, pid: int) -> bool:
        if not super().accepts(pid):
            return False
        if pid not in self.owners:
            session = session_of(pid)
            if session in self.clients:
                self.owners[pid] = session
        return pid in self.owners


class InternalServer:
    """A `serve --classic` in this process, for the client under test: with ``--detect``
    until the variant is known (``fmt`` None), then in that variant (an empty message, one
    NUL, cannot be told from the start of a length prefix by detection alone)."""

    def __init__(self, form: AnswerForm, fmt: ClassicFormat | None = None) -> None:
        config = ClassicServerConfig(
            fmt=fmt or ClassicFormat(),
            ack=Ack.BIT,
            ack_symbol=form.ack_symbol,
            end_symbol=form.end_symbol,
            end_at=form.end_at,
            detect=fmt is None,
        )
        self.link = ClientsOnlyLink(answer_sigwait=form.answer_sigwait)
        self.messages: list[ClassicMessage] = []
        self.events: list[ClassicEvent] = []
        self.driver = ClassicServerDriver(
            config.receiver(),
            self.link,
            lambda message, _uid: self.messages.append(message),
            self.events.append,
        )

    def close(self) -> None:
        self.link.close()

    def run(self, argvs: list[list[str]], limit: float) -> list[ClientRun]:
        """Start each client at once, serve until every one ended (or hung, or ``limit``
        passed); return how each went, in order."""
        driver, link = self.driver, self.link
        before = len(self.messages), len(self.events)
        started = monotonic()
        clients: list[Child] = []
        arrived: dict[int, float] = {}
        killed: set[int] = set()
        quiet_since = started  # the last moment a sender was mid-message
        try:
            clients += [spawn_client(argv) for argv in argvs]
            link.start_run([client.pid for client in clients])
            while any(client.poll() is None for client in clients):
                now = monotonic()
                for message in self.messages[before[0] :]:
                    arrived.setdefault(link.owners.get(message.pid, 0), now)
                if driver.receiver.senders:
                    quiet_since = now
                if self._give_up(now, started, limit, quiet_since):
                    break
                driver.step(until=now + 0.05)
            # the signals still in flight, the last answers, a sender's end (a message
            # without a terminator ends at its silence), then the messages --detect held
            drain_until = monotonic() + IDLE_TIMEOUT + 0.2
            receiver = driver.receiver
            while (receiver.owing or receiver.senders) and monotonic() < drain_until:
                driver.step(until=drain_until)
            driver.print_held()
            driver.trace_the_rest()
        finally:
            killed = {client.pid for client in clients if client.end()}
            end_strays()
        for message in self.messages[before[0] :]:
            arrived.setdefault(link.owners.get(message.pid, 0), monotonic())
        return [self._outcome(client, started, before, arrived, killed) for client in clients]

    def _give_up(self, now: float, started: float, limit: float, quiet_since: float) -> bool:
        """Whether to stop serving: past the limit, or nothing is happening: no sender mid-
        message for ``HANG_GRACE`` (a client still running then hangs: it waits for a signal
        that will not come), or for ``FIRST_SIGNAL_WAIT`` before the first signal."""
        if now > started + limit:
            return True
        if self.driver.receiver.senders:
            return False
        grace = FIRST_SIGNAL_WAIT if quiet_since == started else HANG_GRACE
        return now - quiet_since > grace

    def _outcome(
        self,
        process: Child,
        started: float,
        before: tuple[int, int],
        arrived: dict[int, float],
        killed: set[int],
    ) -> ClientRun:
        owner = self.link.owners.get
        mine = [m for m in self.messages[before[0] :] if owner(m.pid, 0) == process.pid]
        dropped = [
            e
            for e in self.events[before[1] :]
            if isinstance(e, SenderDropped) and owner(e.pid, 0) == process.pid
        ]
        stopped = process.pid in killed
        return ClientRun(
            returncode=None if stopped else process.returncode,
            seconds=arrived.get(process.pid, monotonic()) - started,
            message=mine[0] if mine else None,
            dropped=dropped[0] if dropped else None,
            hung_after_message=stopped and bool(mine),
            said=last_words(process),
            messages=len(mine),
            drops=len(dropped),
        )


@dataclass(slots=True)
class ClientCheck:
    """The battery against one client program."""

    template: list[str]
    on_result: Callable[[CheckResult], None]
    quick: bool = False  # --quick: leave out the long message and the bonus
    speed_limit: float = SPEED_LIMIT  # seconds for 100 characters
    report: Report = field(init=False)

    def __post_init__(self) -> None:
        self.report = Report("client", self.template)

    def add(self, name: str, status: Status, detail: str = "", **extra: object) -> None:
        result = CheckResult(name, status, detail, **extra)  # type: ignore[arg-type]
        self.report.results.append(result)
        self.on_result(result)

    def run(self, server: InternalServer, *texts: str) -> list[ClientRun]:
        symbols = max(len(ClassicFormat().encode(text.encode())) for text in texts)
        argvs = [client_argv(self.template, os.getpid(), text) for text in texts]
        return server.run(argvs, _send_limit(symbols))

    def judge(self, run: ClientRun, text: str) -> str:
        """Why a run went wrong, or "" if the text arrived exact and the client ended well
        (with the last line the client wrote to its standard error, if it went wrong)."""
        why = self._judge(run, text)
        if why and run.said:
            why += f"\nits last words on stderr: {run.said!r}"
        return why

    def _no_message(self, run: ClientRun, text: str) -> str:
        if run.dropped is not None:
            return f"its message was dropped: {run.dropped.reason}" + self._lost(
                run.dropped.record, text
            )
        if run.returncode is None:
            return f"it sent no whole message within {run.seconds:.1f} s, and was stopped"
        return f"it {how_it_ended(run.returncode)} without sending a whole message"

    def _judge(self, run: ClientRun, text: str) -> str:
        message = run.message
        if message is None:
            return self._no_message(run, text)
        fmt = message.record.detected or self.report.variant or ClassicFormat()
        difference = first_difference(text.encode(), message.data, fmt)
        if difference is not None:
            return difference.describe(fmt)
        return self._after_message(run, message)

    def _after_message(self, run: ClientRun, message: ClassicMessage) -> str:
        """What went wrong once its message had arrived whole, or ""."""
        if run.messages > 1 or run.drops:
            more = f"{run.messages - 1} more message(s)" if run.messages > 1 else ""
            drops = f"{run.drops} partial message(s)" if run.drops else ""
            return (
                "its message arrived whole, but it sent "
                + " and ".join(filter(None, (more, drops)))
                + " besides: one run of the client, one message"
            )
        if run.hung_after_message:
            return (
                "its message arrived whole, but it still ran once nothing had come for "
                f"{HANG_GRACE:g} s (it waits for a signal this server did not send)"
            )
        if run.returncode != 0:
            return f"its message arrived whole, but it {how_it_ended(run.returncode or 0)}"
        record = message.record
        if record.answered and record.unanswered:
            why = record.unanswered_why
            return (
                "it exited before the answer to its last bit"
                + ("" if why == "it exited" else f" ({why})")
                + ": a server that answers it may hit a process that took over its PID"
            )
        return ""

    def _lost(self, record: SenderRecord, text: str) -> str:
        """How many of the message's signals arrived, and why some may not have."""
        fmt = self.report.variant or ClassicFormat()
        expected = len(fmt.encode(text.encode()))
        if record.signals >= expected:
            return ""
        said = f"; {record.signals:,} of its {expected:,} signals arrived"
        if not record.answered:
            said += (
                " (it does not wait for answers: a signal sent while its previous one of the "
                "same kind is still pending merges with it, whenever the server is not "
                "scheduled within the client's pause)"
            )
        return said


def check_client(
    template: list[str],
    *,
    on_result: Callable[[CheckResult], None],
    quick: bool = False,
    speed_limit: float = SPEED_LIMIT,
) -> Report:
    """Run the whole battery against the client ``template`` starts; return the report."""
    block_signals()
    become_subreaper()
    reference = 0.0 if quick else round_trips()  # only the 10,000-character check shows it
    check = ClientCheck(template, on_result, quick, speed_limit)
    try:
        server = _find_client_answers(check)
        if server is None:
            _skip_battery(check, "no way to serve it found")
            return check.report
        try:
            _client_battery(check, server, reference)
        finally:
            server.close()
    except ProgramError as error:
        check.add("starts", Status.FAIL, str(error))
    finally:
        end_strays()
    return check.report


def _find_client_answers(check: ClientCheck) -> InternalServer | None:
    """Serve the probe (with --detect) in each answer form until the client finishes well;
    return a server in that form and the variant found. Only a client that hangs or fails
    after its message arrived whole is tried with the next form: any other fault is not the
    answers'."""
    plain = ""  # what went wrong with the plain per-bit answers
    tried = 0
    for form in ANSWER_FORMS:
        tried += 1
        server = InternalServer(form)
        try:
            (run,) = check.run(server, PROBE)
        finally:
            server.close()
        why = check.judge(run, PROBE)
        message = run.message
        if message is not None and message.record.detected and check.report.variant is None:
            fmt = check.report.variant = message.record.detected
            flags = variant_flags(fmt) or "-"
            check.add("variant", Status.PASS, f"{fmt.describe()} (flags: {flags})")
        if not why:
            record = message.record if message is not None else None
            words = form.words
            if record is not None and not record.answered:
                words = (
                    "none: it handles no answer signal (it sends on a timer), so none is ever "
                    "sent to it"
                )
            check.report.answers = f"{words} (serve --classic {form.flags or '(default)'})"
            check.add("the answers it needs", Status.PASS, check.report.answers)
            return InternalServer(form, check.report.variant)
        plain = plain or why
        if not _may_need_other_answers(run):
            break  # not something other answers can change
    if check.report.variant is None:
        check.add("variant", Status.FAIL, plain)
        return None
    forms = "the plain per-bit answers" if tried == 1 else f"any of the {tried} answer forms"
    check.add(
        "the answers it needs",
        Status.FAIL,
        f"it does not finish with {forms}"
        + (f"; with the plain ones, {plain}" if tried > 1 else f": {plain}"),
    )
    return None


def _may_need_other_answers(run: ClientRun) -> bool:
    """Whether other answers might help: the client did not end well (it failed, or still
    ran: it may wait for an end signal, or for answers it was refused, as a client in
    sigtimedwait is without --answer-sigwait). A client that exits 0 with its message wrong
    or lost is not helped by answers."""
    if run.message is None and run.dropped is None:
        return False  # nothing came from it: no answer was ever due
    return run.hung_after_message or run.returncode != 0


def _client_battery(check: ClientCheck, server: InternalServer, reference: float) -> None:
    for message in BATTERY:
        if _left_out(check, message.name, long=message.long):
            continue
        (run,) = check.run(server, message.text)
        why = check.judge(run, message.text)
        detail = why
        if not why and message.text == BATTERY[-1].text and run.message and reference:
            record = run.message.record
            detail = _rate(record.signals, run.message.seconds, reference)
        check.add(message.name, Status.FAIL if why else Status.PASS, detail, seconds=run.seconds)
    for index, text in enumerate(ROW):
        (run,) = check.run(server, text)
        why = check.judge(run, text)
        if why:
            check.add(ROW_NAME, Status.FAIL, f"client {index + 1}: {why}")
            break
    else:
        check.add(ROW_NAME, Status.PASS, f"{len(ROW)} clients")
    (run,) = check.run(server, SPEED_TEXT)
    why = check.judge(run, SPEED_TEXT)
    fast = not why and run.seconds < check.speed_limit
    check.add(
        SPEED_NAME,
        Status.PASS if fast else Status.FAIL,
        why
        or f"its message arrived {run.seconds:.3f} s after it started "
        f"(limit {check.speed_limit:g} s)",
    )
    if _left_out(check, TWO_NAME, long=True, mandatory=False):
        return
    runs = check.run(server, *TWO_AT_ONCE)
    whys = [check.judge(run, text) for run, text in zip(runs, TWO_AT_ONCE, strict=True)]
    said = "; ".join(f"client {i + 1}: {why}" for i, why in enumerate(whys) if why)
    if said:
        said += (
            " (two clients' signals can meet in the kernel: while one SIGUSR1 is pending, "
            "another is lost, whoever sent it; a plain client then waits for ever for the "
            "answer to a bit the server never received)"
        )
    check.add(TWO_NAME, Status.FAIL if said else Status.PASS, said, mandatory=False)
