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
    how_it_ended,
    last_words,
    round_trips,
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

    def difference(self, text: str, fmt: ClassicFormat) -> Difference | None:
        return first_difference(text.encode(), self.output, fmt, decorated=True)


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
    probes: int = 0  # probes sent: each after the first goes to a fresh start

    def __post_init__(self) -> None:
        self.report = Report("server", self.argv)

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
        seen = Seen(b"", 0.0)
        try:
            seen.receipt = send_classic(self.pid, data, config)
        except MinitalkError as error:
            seen.error = str(error)
        sent = monotonic()

        def shows(out: bytes) -> bool:  # (the empty text shows nothing: wait for quiet)
            return bool(data) and data in out[mark:]

        cap = sent + PRINT_WAIT
        while True:
            quiet_at = max(sent, program.last_output) + QUIET
            output = program.wait_for(shows, min(cap, quiet_at))
            now = monotonic()
            if shows(output) or not program.running() or now >= cap:
                break
            if now >= max(sent, program.last_output) + QUIET:
                break
        seen.output = output[mark:]
        seen.seconds = monotonic() - started  # to the moment the text was seen, or given up
        seen.ended = program.ended()
        return seen

    def failure(self, seen: Seen, text: str, fmt: ClassicFormat) -> str:
        """Why a text did not come out right, in one or two lines."""
        said = []
        difference = seen.difference(text, fmt)
        if difference is not None:
            said.append(difference.describe(fmt))
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
    argv: list[str], *, on_result: Callable[[CheckResult], None], quick: bool = False
) -> Report:
    """Run the whole battery against the server ``argv`` starts; return the report."""
    block_signals()  # before any thread: see check_program
    reference = round_trips()
    check = ServerCheck(argv, on_result, quick=quick)
    try:
        _server_battery(check, reference)
    finally:
        check.close()
    return check.report


def _server_battery(check: ServerCheck, reference: float) -> None:
    try:
        check.restart()
    except ProgramError as error:
        check.add("starts and prints its PID", Status.FAIL, str(error))
        return
    check.add("starts and prints its PID", Status.PASS, f"PID {check.pid}")
    fmt = _find_server_variant(check)
    if fmt is None:
        for message in BATTERY:
            check.add(message.name, Status.SKIP, "no variant found", mandatory=message.mandatory)
        return
    for message in BATTERY:
        if not _left_out(check, message.name, long=message.long) and _alive(check, message.name):
            _message_check(check, message.name, message.text, fmt, reference)
    _in_a_row(check, fmt)
    if _alive(check, "speed"):
        seen = check.send(SPEED_TEXT, fmt)
        ok = seen.difference(SPEED_TEXT, fmt) is None and seen.seconds < SPEED_LIMIT
        detail = (
            f"100 characters printed {seen.seconds:.3f} s after the send began (limit "
            f"{SPEED_LIMIT:g} s)"
        )
        if seen.difference(SPEED_TEXT, fmt) is not None:
            detail = check.failure(seen, SPEED_TEXT, fmt)
        check.add("speed: 100 characters in under 1 s", Status.PASS if ok else Status.FAIL, detail)
    if not _left_out(check, TWO_NAME, long=True, mandatory=False):
        _two_at_once(check, fmt)  # last: two senders at once may leave it mid-byte


def _message_check(
    check: ServerCheck, name: str, text: str, fmt: ClassicFormat, reference: float
) -> None:
    """One message of the battery (the empty one judged by the message after it). A server
    that answers each bit and gets a message wrong is given it again, on a fresh start, with
    a pause after each answer: if that comes out right, it loses bits at its own pace (said
    once, and the rest of the battery keeps the pause)."""
    seen = check.send(text, fmt)
    shown = text or "after the empty message"
    if not text:  # nothing to see: the next message shows it did no harm
        seen = check.send(shown, fmt)
    why = (
        ""
        if seen.difference(shown, fmt) is None and not seen.error
        else check.failure(seen, shown, fmt)
    )
    paced = seen.receipt is not None and seen.receipt.sender.paced
    if why and paced and not check.gap:
        fast = why
        check.restart()
        seen = check.send(shown, fmt, gap=SLOW_GAP)
        if seen.difference(shown, fmt) is None and not seen.error:
            check.gap = SLOW_GAP
            _too_fast(check, f"with {name}: {fast}")
            why = ""
    if why and not text:
        why = "the message after it: " + why
    detail = why
    if not why and text == BATTERY[-1].text and seen.receipt is not None:
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
    for fmt in VARIANTS:
        seen = _probe(check, fmt, gap=None)
        if seen is None:
            return None
        if seen.difference(PROBE, fmt) is None and not seen.error:
            _found(check, fmt, seen)
            return fmt
        tried[fmt] = seen

    def closeness(fmt: ClassicFormat) -> int:
        difference = tried[fmt].difference(PROBE, fmt)
        return 0 if difference is None else difference.offset

    closest = max(VARIANTS, key=closeness)
    answered = any(s.receipt is not None and s.receipt.sender.paced for s in tried.values())
    for fmt in dict.fromkeys([*VARIANTS[:4], closest]) if answered else ():
        seen = _probe(check, fmt, gap=SLOW_GAP)
        if seen is None:
            return None
        if seen.difference(PROBE, fmt) is None and not seen.error:
            check.gap = SLOW_GAP
            _found(check, fmt, seen)
            _too_fast(check, "the probe: " + check.failure(tried[fmt], PROBE, fmt))
            return fmt
    check.add(
        "variant",
        Status.FAIL,
        f"none of the {len(VARIANTS)} common variants came out right; the closest, "
        f"{closest.describe()}: " + check.failure(tried[closest], PROBE, closest),
    )
    return None


def _probe(check: ServerCheck, fmt: ClassicFormat, *, gap: float | None) -> Seen | None:
    """The probe, sent in ``fmt`` to a fresh start of the server (the first start is fresh);
    None (and the variant check failed) if it did not start again."""
    if check.probes:
        try:
            check.restart()
        except ProgramError as error:
            check.add("variant", Status.FAIL, f"restarted for the next variant: {error}")
            return None
    check.probes += 1
    return check.send(PROBE, fmt, gap=gap)


def _found(check: ServerCheck, fmt: ClassicFormat, seen: Seen) -> None:
    check.report.variant = fmt
    if seen.receipt is not None:
        check.report.answers = _answers(seen.receipt, fmt, PROBE)
    check.add("variant", Status.PASS, f"{fmt.describe()} (flags: {variant_flags(fmt) or '-'})")


def _in_a_row(check: ServerCheck, fmt: ClassicFormat) -> None:
    """Several clients in a row without a restart, each message on a line of its own."""
    if not _alive(check, "several clients in a row"):
        return
    output = b""
    for text in ROW:
        seen = check.send(text, fmt)
        output += seen.output
        if seen.difference(text, fmt) is not None or seen.error:
            detail = f"message {ROW.index(text) + 1} of {len(ROW)}: " + check.failure(
                seen, text, fmt
            )
            check.add("several clients in a row", Status.FAIL, detail)
            return
    check.add("several clients in a row", Status.PASS, f"{len(ROW)} messages")
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
    """The first text of ``ROW`` not followed by a line end before the next one, or ""."""
    position = 0
    for index, text in enumerate(ROW):
        data = text.encode()
        start = output.find(data, position)
        end = start + len(data)
        following = ROW[index + 1].encode() if index + 1 < len(ROW) else None
        stop = output.find(following, end) if following is not None else len(output)
        if b"\n" not in output[end : stop if stop >= 0 else len(output)]:
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
        self.link = SignalClassicLink(answer_sigwait=form.answer_sigwait)
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
        driver = self.driver
        before = len(self.messages), len(self.events)
        started = monotonic()
        clients = [spawn_client(argv) for argv in argvs]
        pids = [client.pid for client in clients]
        arrived: dict[int, float] = {}
        killed: set[int] = set()
        quiet_since = started  # the last moment a sender was mid-message
        try:
            while any(client.poll() is None for client in clients):
                now = monotonic()
                for message in self.messages[before[0] :]:
                    arrived.setdefault(_owner(message.pid, pids), now)
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
        for message in self.messages[before[0] :]:
            arrived.setdefault(_owner(message.pid, pids), monotonic())
        return [self._outcome(client, pids, started, before, arrived, killed) for client in clients]

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
        pids: list[int],
        started: float,
        before: tuple[int, int],
        arrived: dict[int, float],
        killed: set[int],
    ) -> ClientRun:
        mine = [m for m in self.messages[before[0] :] if _owner(m.pid, pids) == process.pid]
        dropped = [
            e
            for e in self.events[before[1] :]
            if isinstance(e, SenderDropped) and _owner(e.pid, pids) == process.pid
        ]
        stopped = process.pid in killed
        return ClientRun(
            returncode=None if stopped else process.returncode,
            seconds=arrived.get(process.pid, monotonic()) - started,
            message=mine[0] if mine else None,
            dropped=dropped[0] if dropped else None,
            hung_after_message=stopped and bool(mine),
            said=last_words(process),
        )


def _owner(pid: int, pids: list[int]) -> int:
    """The client a signal's PID belongs to: itself, or (a client that sends through a child)
    the only client running."""
    return pid if pid in pids or len(pids) != 1 else pids[0]


@dataclass(slots=True)
class ClientCheck:
    """The battery against one client program."""

    template: list[str]
    on_result: Callable[[CheckResult], None]
    quick: bool = False  # --quick: leave out the long message and the bonus
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
        code = run.returncode
        if message is None:
            return self._no_message(run, text)
        fmt = message.record.detected or self.report.variant or ClassicFormat()
        difference = first_difference(text.encode(), message.data, fmt)
        if difference is not None:
            return difference.describe(fmt)
        if run.hung_after_message:
            return (
                f"its message arrived whole, but it still ran {HANG_GRACE:g} s later (it waits "
                "for a signal this server did not send)"
            )
        if code != 0:
            return f"its message arrived whole, but it {how_it_ended(code or 0)}"
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
    template: list[str], *, on_result: Callable[[CheckResult], None], quick: bool = False
) -> Report:
    """Run the whole battery against the client ``template`` starts; return the report."""
    block_signals()
    reference = round_trips()
    check = ClientCheck(template, on_result, quick)
    server = _find_client_answers(check)
    if server is None:
        for message in BATTERY:
            check.add(message.name, Status.SKIP, "no way to serve it found")
        return check.report
    try:
        _client_battery(check, server, reference)
    finally:
        server.close()
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
            check.report.answers = f"{form.words} (serve --classic {form.flags or '(default)'})"
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
    return run.hung_after_message or run.returncode != 0


def _client_battery(check: ClientCheck, server: InternalServer, reference: float) -> None:
    for message in BATTERY:
        if _left_out(check, message.name, long=message.long):
            continue
        (run,) = check.run(server, message.text)
        why = check.judge(run, message.text)
        detail = why
        if not why and message.text == BATTERY[-1].text and run.message is not None:
            record = run.message.record
            detail = _rate(record.signals, run.message.seconds, reference)
        check.add(message.name, Status.FAIL if why else Status.PASS, detail, seconds=run.seconds)
    for index, text in enumerate(ROW):
        (run,) = check.run(server, text)
        why = check.judge(run, text)
        if why:
            check.add("several clients in a row", Status.FAIL, f"client {index + 1}: {why}")
            break
    else:
        check.add("several clients in a row", Status.PASS, f"{len(ROW)} clients")
    (run,) = check.run(server, SPEED_TEXT)
    why = check.judge(run, SPEED_TEXT)
    fast = not why and run.seconds < SPEED_LIMIT
    check.add(
        "speed: 100 characters in under 1 s",
        Status.PASS if fast else Status.FAIL,
        why
        or f"its message arrived {run.seconds:.3f} s after it started (limit {SPEED_LIMIT:g} s)",
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
