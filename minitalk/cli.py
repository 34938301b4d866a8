"""The command line: ``minitalk serve`` and ``minitalk send``.

Each command parses its arguments, calls one function of the server or client loop, and
prints. Every ``MinitalkError`` is caught in one place (``_errors_to_exit_codes``), printed as
one line on stderr and turned into the error's exit code; the codes live in
``minitalk.errors.ExitCode``.
"""

import math
import os
import re
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer
from typer.core import TyperCommand

from minitalk import __version__
from minitalk.api import check_options, send_rules, serve_rules
from minitalk.classic_limits import DEFAULT_DELAY, PROBE_WAIT
from minitalk.classic_limits import IDLE_TIMEOUT as CLASSIC_IDLE_TIMEOUT
from minitalk.client import ClientConfig, Receipt, send_message
from minitalk.errors import (
    ExitCode,
    InputError,
    MinitalkError,
    OutputError,
    TargetError,
    UsageError,
)
from minitalk.pidfile import problem as pid_file_problem
from minitalk.pidfile import remove as remove_pid_files
from minitalk.pidfile import write as write_pid_file
from minitalk.progress import Display, display_for
from minitalk.protocol import (
    BIT_TIMEOUT,
    DEFAULT_MAX_MESSAGE,
    FRAME_TIMEOUT,
    MAX_ATTEMPTS,
    QUEUE_POLL,
    REPLY_TIMEOUT,
    SESSION_TIMEOUT,
    STALL_TIMEOUT,
)

# Start-up: a `minitalk send` imports only what a framed send needs. The server, the plain
# (classic) protocol, json and tempfile are imported by the commands that use them.
if TYPE_CHECKING:
    from minitalk.check_report import CheckResult
    from minitalk.classic import ClassicEvent, ClassicFormat, ClassicMessage
    from minitalk.classic_link import ClassicClientConfig, ClassicReceipt, ClassicServerConfig
    from minitalk.protocol import MessageReceived
    from minitalk.server import ServerConfig

app = typer.Typer(
    name="minitalk",
    help="Send Unicode text between processes on one Linux machine, one bit per signal "
    "(SIGUSR1 = 0, SIGUSR2 = 1), framed, CRC-checked and acknowledged.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fail(message: str, code: int) -> NoReturn:
    try:
        print(f"minitalk: {message}", file=sys.stderr, flush=True)
    except OSError:  # stderr gone too (serve 2>&1 | head -1): the exit code still says it
        # Point stderr at /dev/null, so the interpreter's own flush at exit (which would
        # fail again, and turn the code into 120) stays quiet.
        with suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
    raise typer.Exit(code)


@contextmanager
def _errors_to_exit_codes() -> Iterator[None]:
    """The one place where errors become a stderr line and an exit code."""
    try:
        yield
    except MinitalkError as error:
        _fail(str(error), error.exit_code)
    except KeyboardInterrupt:  # a stop signal (transport.py says which raise it, and when)
        _fail("interrupted", ExitCode.INTERRUPTED)


def _version(value: bool) -> None:
    if value:
        from minitalk.frame import VERSION  # noqa: PLC0415 (see the imports)
        from minitalk.transport import INNER_LOOP  # noqa: PLC0415

        print(
            f"minitalk {__version__} (frame format 0x{VERSION:02x}; classic mode; "
            f"{INNER_LOOP} inner loop)"
        )
        raise typer.Exit(0)


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """minitalk: text over SIGUSR1/SIGUSR2. Linux only."""


# -- classic mode options (docs/classic.md) ------------------------------------------------------


class BitOrder(StrEnum):
    msb = "msb"
    lsb = "lsb"


class Signal(StrEnum):
    usr1 = "usr1"
    usr2 = "usr2"


class End(StrEnum):
    nul = "nul"
    newline = "newline"
    none = "none"


class Prefix(StrEnum):
    none = "none"
    bits32 = "32"
    bits64 = "64"


class AckWhen(StrEnum):
    bit = "bit"
    end = "end"
    none = "none"


class EndSignalAt(StrEnum):
    instead = "instead"
    before = "before"
    after = "after"


_CLASSIC = "Classic mode"  # the help panel of the options that only --classic takes
ClassicFlag = Annotated[
    bool,
    typer.Option(
        "--classic",
        help="Speak the plain, unframed protocol of the classic minitalk exercise (8 signals "
        "per byte, no checks), to test or debug a plain C minitalk. See docs/classic.md.",
        rich_help_panel=_CLASSIC,
    ),
]
BitOrderOption = Annotated[
    Optional[BitOrder],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option(help="Bit order of each byte (default: msb).", rich_help_panel=_CLASSIC),
]
ZeroOption = Annotated[
    Optional[Signal],  # noqa: UP045
    typer.Option(
        "--zero", help="The signal that carries a 0 bit (default: usr1).", rich_help_panel=_CLASSIC
    ),
]
EndOption = Annotated[
    Optional[End],  # noqa: UP045
    typer.Option("--end", help="What ends a message (default: nul).", rich_help_panel=_CLASSIC),
]
PrefixOption = Annotated[
    Optional[Prefix],  # noqa: UP045
    typer.Option(
        "--length-prefix",
        help="A 32- or 64-bit length before the text (default: none).",
        rich_help_panel=_CLASSIC,
    ),
]
PrefixOrderOption = Annotated[
    Optional[BitOrder],  # noqa: UP045
    typer.Option(
        help="Bit order of the length prefix (default: as --bit-order).",
        rich_help_panel=_CLASSIC,
    ),
]
CountsEndOption = Annotated[
    bool,
    typer.Option(
        "--length-counts-end",
        help="The length prefix counts the terminator.",
        rich_help_panel=_CLASSIC,
    ),
]
DetectOption = Annotated[
    bool,
    typer.Option(
        "--detect",
        help="Find each sender's variant from what arrives (bit order, which signal is 0, "
        "a 32- or 64-bit length prefix, a NUL or none): only the right reading gives valid "
        "UTF-8 and a length that fits. --trace names it and the flags that pin it. Not with "
        "the variant options; a newline terminator is not looked for.",
        rich_help_panel=_CLASSIC,
    ),
]
TraceOption = Annotated[
    bool,
    typer.Option(
        "--trace",
        help="Explain on stderr what crossed the line: bits, bytes, gaps between signals, "
        "answers, and where a message stopped making sense.",
        rich_help_panel=_CLASSIC,
    ),
]


# -- the options of `serve` and `send` ----------------------------------------------------------

MaxBytesOption = Annotated[
    int,
    typer.Option(
        help="Largest message accepted, in bytes (at most 4294967295); larger is refused."
    ),
]
FrameTimeoutOption = Annotated[
    float,
    typer.Option(
        help="Seconds of silence before a half-done frame exchange is dropped. A frame "
        f"that stalls is asked for again sooner: after {STALL_TIMEOUT:g} s, or half this if "
        "shorter.",
    ),
]
SessionTimeoutOption = Annotated[
    float,
    typer.Option(
        help="Seconds without a good frame before a client's session is abandoned; longer "
        f"than --frame-timeout and than {QUEUE_POLL:g} s (a queued client asks again every "
        f"{QUEUE_POLL:g} s)."
    ),
]
CountOption = Annotated[
    Optional[int],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option(help="Exit after this many messages have been delivered."),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help='JSON Lines: first {"pid": <n>}, then one JSON object per message (pid, '
        "uid, bytes, frames, resends, seconds, text) instead of the bare text.",
    ),
]
PidFileOption = Annotated[
    Optional[Path],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option(
        help="Write the PID to this file once the server is ready for signals, so a "
        "script can wait for it (removed on a clean exit)."
    ),
]
AckOption = Annotated[
    Optional[AckWhen],  # noqa: UP045
    typer.Option(
        help="When to answer a classic sender: each bit, once at the end of its message, "
        "or never (default: bit). Never a process that would die of it (checked before "
        "each signal).",
        rich_help_panel=_CLASSIC,
    ),
]
AckSignalOption = Annotated[
    Optional[Signal],  # noqa: UP045
    typer.Option(help="The signal that answers (default: usr1).", rich_help_panel=_CLASSIC),
]
EndSignalOption = Annotated[
    Optional[Signal],  # noqa: UP045
    typer.Option(
        "--end-signal",
        help="Also end each message with this signal, as many plain servers do and their "
        "clients wait for (with --ack bit: see --end-signal-at; with --ack end: the one "
        "answer). Default: none.",
        rich_help_panel=_CLASSIC,
    ),
]
EndSignalAtOption = Annotated[
    Optional[EndSignalAt],  # noqa: UP045
    typer.Option(
        "--end-signal-at",
        help="Where --end-signal goes among the answers to each bit: instead of the last "
        "bit's answer, just before it, or just after it (default: instead).",
        rich_help_panel=_CLASSIC,
    ),
]
AnswerDelayOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--answer-delay-us",
        min=0.0,
        max=1_000_000.0,
        help="Microseconds to wait before each answer, as many plain servers do (to "
        "reproduce their timing when hunting a lost wake-up in a client). Default: 0.",
        rich_help_panel=_CLASSIC,
    ),
]
AnswerSigwaitFlag = Annotated[
    bool,
    typer.Option(
        "--answer-sigwait",
        help="Also answer a client that catches nothing whose threads either block the answer "
        "or sleep in sigwait/sigtimedwait. /proc cannot show what such a thread waits for, nor "
        "that it blocked the signal before its wait; one that did not dies of the answer (as "
        "it would of its own server's): you vouch that yours blocks it first.",
        rich_help_panel=_CLASSIC,
    ),
]
IdleTimeoutOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        min=0.01,
        max=86_400.0,
        help="Seconds a classic sender may go silent mid-message before it is dropped "
        f"(with --end none, the silence that ends a message) (default: {CLASSIC_IDLE_TIMEOUT}).",
        rich_help_panel=_CLASSIC,
    ),
]
PidArgument = Annotated[
    str,
    typer.Argument(
        metavar="PID",
        show_default=False,
        help="The server's PID, as `minitalk serve` printed it.",
    ),
]
TextArgument = Annotated[
    Optional[str],  # noqa: UP045 - typer reads the annotation at run time
    typer.Argument(
        metavar="[TEXT]",
        show_default=False,
        help="The text to send; `-` reads standard input.",
    ),
]
FileOption = Annotated[
    Optional[Path],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option(
        "--file",
        "-f",
        help="Send this file's UTF-8 text instead of TEXT.",
        readable=False,  # checked when read: one line and exit 3, like a missing file
    ),
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print no receipt and no progress bar.")
]
ReplyTimeoutOption = Annotated[
    float,
    typer.Option(
        help="Seconds to wait for an answer to a request for the line before asking "
        f"again (a signal may have been lost); in a frame, min({BIT_TIMEOUT:g}, this). More "
        "than 0.05. A stopped server is waited for without asking again: see --timeout.",
    ),
]
AttemptsOption = Annotated[
    Optional[int],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option(
        help="Failed tries per frame, at the smallest size, before giving up (and as many "
        f"--reply-timeout periods since its first failure). Default: {MAX_ATTEMPTS}. Not with "
        "--classic (a plain bit is never sent twice).",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    Optional[float],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option(
        help="Give up (exit 6) after this many seconds in all, however they are spent: "
        "waiting for one's turn, for a stopped server, or resending. Default: no limit."
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Skip the check that PID ignores SIGUSR1/SIGUSR2 (with --classic: handles "
        "them). DANGEROUS: the first bit kills a process that does not.",
    ),
]
AnswerGapOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--answer-gap-us",
        min=0.0,
        max=1_000_000.0,
        help="Microseconds to wait after each answer before the next bit, for a server that "
        "is still busy after answering (as its own client's pause hides). Default: 0.",
        rich_help_panel=_CLASSIC,
    ),
]
DelayOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--delay-us",
        min=0.0,
        max=1_000_000.0,
        help="Microseconds between bits when the server does not answer each bit "
        f"(default: {DEFAULT_DELAY * 1e6:g}). A server that answers the first bit within "
        f"{PROBE_WAIT * 1000:g} ms paces the send by its answers instead.",
        rich_help_panel=_CLASSIC,
    ),
]


# Which mode each option belongs to: the one table behind "an option of the other mode". An
# option given in the mode it means nothing in is a usage error, never silently ignored.
_CLASSIC_ONLY = (
    "bit_order",
    "zero",
    "end",
    "length_prefix",
    "prefix_order",
    "length_counts_end",
    "detect",
    "trace",
    "ack",
    "ack_signal",
    "end_signal",
    "end_signal_at",
    "answer_delay_us",
    "answer_sigwait",
    "idle_timeout",
    "delay_us",
    "answer_gap_us",
)
_FRAMED_ONLY = ("frame_timeout", "session_timeout", "attempts")


def _given(ctx: typer.Context, name: str) -> bool:
    """True if the user gave the option ``name`` (rather than it taking its default)."""
    source = ctx.get_parameter_source(name)  # click's ParameterSource (typer may vendor click)
    return source is not None and source.name != "DEFAULT"


def _check_mode(ctx: typer.Context, classic: bool) -> None:
    """Refuse the first option given that belongs to the other mode (see the table)."""
    foreign = _FRAMED_ONLY if classic else _CLASSIC_ONLY
    for name in (name for name in ctx.params if name in foreign and _given(ctx, name)):
        if classic:
            raise UsageError(f"{_flag(name)} is an option of framed mode only (not --classic)")
        raise UsageError(f"{_flag(name)} is an option of --classic mode only")


def _classic_format(
    classic: bool,
    bit_order: BitOrder | None,
    zero: Signal | None,
    end: End | None,
    length_prefix: Prefix | None,
    prefix_order: BitOrder | None,
    counts_end: bool,
    **numbers: float | None,
) -> "ClassicFormat | None":
    """The classic format the options describe, or None in framed mode (``_check_mode`` has
    refused any of them there). ``numbers``: the classic options that must be finite."""
    if not classic:
        return None
    for name, value in numbers.items():
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{name} must be a finite number, got {value}")
    prefix_bits = int(length_prefix.value) if length_prefix not in (None, Prefix.none) else 0
    if counts_end and not prefix_bits:
        raise UsageError("--length-counts-end needs --length-prefix 32 or 64")
    if prefix_order is not None and not prefix_bits:
        raise UsageError("--prefix-order needs --length-prefix 32 or 64")
    from minitalk.classic import ClassicFormat  # noqa: PLC0415 (see the imports)

    return ClassicFormat(
        msb_first=(bit_order or BitOrder.msb) is BitOrder.msb,
        zero_symbol=1 if zero is Signal.usr2 else 0,
        terminator={End.nul: b"\0", End.newline: b"\n", End.none: b""}[end or End.nul],
        length_bits=prefix_bits,
        length_msb_first=None if prefix_order is None else prefix_order is BitOrder.msb,
        length_counts_terminator=counts_end,
    )


def _trace(lines: list[str]) -> None:
    for line in lines:
        print(f"trace: {line}", file=sys.stderr, flush=True)


def _check_classic_answers(
    ctx: typer.Context,
    detect: bool,
    ack: AckWhen | None,
    end_signal: Signal | None,
    end_signal_at: EndSignalAt | None,
) -> AckWhen:
    """The rules between serve --classic's answer options (and --detect); the answer mode."""
    variant = ("bit_order", "zero", "end", "length_prefix", "prefix_order", "length_counts_end")
    pinned = next((name for name in variant if _given(ctx, name)), None)
    if detect and pinned is not None:
        raise UsageError(f"--detect finds the variant: not with {_flag(pinned)}")
    answers = ack or AckWhen.bit
    if end_signal is not None and answers is AckWhen.none:
        raise UsageError("--end-signal is an answer: not with --ack none")
    if end_signal_at is not None and (end_signal is None or answers is not AckWhen.bit):
        raise UsageError(
            "--end-signal-at places --end-signal among per-bit answers: it needs --end-signal "
            "and --ack bit"
        )
    return answers


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    max_bytes: MaxBytesOption = DEFAULT_MAX_MESSAGE,
    frame_timeout: FrameTimeoutOption = FRAME_TIMEOUT,
    session_timeout: SessionTimeoutOption = SESSION_TIMEOUT,
    count: CountOption = None,
    json_lines: JsonOption = False,
    pid_file: PidFileOption = None,
    classic: ClassicFlag = False,
    ack: AckOption = None,
    ack_signal: AckSignalOption = None,
    end_signal: EndSignalOption = None,
    end_signal_at: EndSignalAtOption = None,
    answer_delay_us: AnswerDelayOption = None,
    answer_sigwait: AnswerSigwaitFlag = False,
    idle_timeout: IdleTimeoutOption = None,
    bit_order: BitOrderOption = None,
    zero: ZeroOption = None,
    end: EndOption = None,
    length_prefix: PrefixOption = None,
    prefix_order: PrefixOrderOption = None,
    length_counts_end: CountsEndOption = False,
    detect: DetectOption = False,
    trace: TraceOption = False,
) -> None:
    """Start a server: print its PID, then every message received, each on its own line.

    Examples:
      minitalk serve > messages.log 2>&1
      minitalk serve --json --count 1
      minitalk serve --pid-file mt.pid &  # then wait until mt.pid is not empty
    """
    with _errors_to_exit_codes():
        _check_mode(ctx, classic)
        fmt = _classic_format(
            classic,
            bit_order,
            zero,
            end,
            length_prefix,
            prefix_order,
            length_counts_end,
            **{"--idle-timeout": idle_timeout, "--answer-delay-us": answer_delay_us},
        )
        answers = _check_classic_answers(ctx, detect, ack, end_signal, end_signal_at)
        if answer_sigwait and answers is AckWhen.none:
            raise UsageError("--answer-sigwait says whom to answer: not with --ack none")
        rules = _serve_rules(
            max_bytes,
            frame_timeout,
            session_timeout,
            count,
            pid_file,
            frame_timeout_given=_given(ctx, "frame_timeout"),
        )
        _check_options(rules)
        if fmt is not None:
            from minitalk.classic import Ack, EndAt  # noqa: PLC0415 (see the imports)
            from minitalk.classic_link import ClassicServerConfig  # noqa: PLC0415

            classic_config = ClassicServerConfig(
                fmt=fmt,
                ack=Ack(answers.value),
                ack_symbol=1 if ack_signal is Signal.usr2 else 0,
                end_symbol=None if end_signal is None else int(end_signal is Signal.usr2),
                end_at=EndAt((end_signal_at or EndSignalAt.instead).value),
                answer_delay=(answer_delay_us or 0.0) / 1e6,
                detect=detect,
                answer_sigwait=answer_sigwait,
                idle_timeout=CLASSIC_IDLE_TIMEOUT if idle_timeout is None else idle_timeout,
                max_message=max_bytes,
                max_messages=count,
            )
            _serve_classic(classic_config, pid_file, json_lines=json_lines, trace=trace)
            return
        from minitalk.server import ServerConfig  # noqa: PLC0415 (see the imports)

        config = ServerConfig.from_options(max_bytes, frame_timeout, session_timeout, count)
        _serve_framed(config, pid_file, json_lines=json_lines)


def _serve_framed(config: "ServerConfig", pid_file: Path | None, *, json_lines: bool) -> None:
    from minitalk.server import serve  # noqa: PLC0415 (see the imports)

    written: list[Path] = []  # the PID file, once we wrote it: only ours is removed
    try:
        serve(
            config,
            on_ready=lambda pid: _announce(pid, pid_file, written, json_lines=json_lines),
            on_message=_print_json if json_lines else _print_text,
        )
    finally:
        remove_pid_files(written, os.getpid())


def _serve_classic(
    config: "ClassicServerConfig", pid_file: Path | None, *, json_lines: bool, trace: bool
) -> None:
    from minitalk.classic import ClassicMessage, describe  # noqa: PLC0415 (see the imports)
    from minitalk.classic_link import serve_classic  # noqa: PLC0415

    def trace_event(event: "ClassicEvent") -> None:
        _trace(describe(event, config.fmt, config.ack))

    def refusals_only(event: "ClassicEvent") -> None:
        """Without --trace, a refused message is still said (its sender cannot be told)."""
        record = getattr(event, "record", None)
        if not isinstance(event, ClassicMessage) and record is not None and record.refused:
            print(f"minitalk: PID {event.pid}: {event.reason}", file=sys.stderr, flush=True)

    written: list[Path] = []  # the PID file, once we wrote it: only ours is removed
    try:
        serve_classic(
            config,
            on_ready=lambda pid: _announce(pid, pid_file, written, json_lines=json_lines),
            on_message=_print_classic_json if json_lines else _print_text,
            on_trace=trace_event if trace else refusals_only,
        )
    finally:
        remove_pid_files(written, os.getpid())


def _print_classic_json(message: "ClassicMessage", uid: int) -> None:
    record = {
        "pid": message.pid,
        "uid": uid,
        "bytes": message.size,
        "seconds": round(message.seconds, 6),
        "text": message.text,
        "valid_utf8": message.utf8_error is None,
    }
    detected = message.record.detected
    if detected is not None:  # --detect: the variant it was read in
        record["variant"] = detected.describe()
    _write_json(record)


# -- option checks: every rule between options, in one place, each a one-line usage error ---


def _check_options(rules: list[tuple[bool, str]]) -> None:
    """Raise a ``UsageError`` naming the first rule broken."""
    check_options(rules)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _serve_rules(
    max_bytes: int,
    frame_timeout: float,
    session_timeout: float,
    count: int | None,
    pid_file: Path | None,
    *,
    frame_timeout_given: bool,
) -> list[tuple[bool, str]]:
    pid_file_refused = None if pid_file is None else pid_file_problem(pid_file)
    rules = serve_rules(max_bytes, frame_timeout, session_timeout, count, name=_flag)
    if not frame_timeout_given:  # name the default, not an option the user never gave
        rules.insert(
            0,
            (
                frame_timeout < session_timeout,
                f"--session-timeout must be longer than the frame timeout, {frame_timeout:g} s "
                "unless --frame-timeout says otherwise",
            ),
        )
    return [*rules, (pid_file_refused is None, pid_file_refused or "")]


def _send_rules(
    reply_timeout: float, attempts: int, timeout: float | None
) -> list[tuple[bool, str]]:
    return send_rules(reply_timeout, attempts, timeout, name=_flag)


def _announce(pid: int, pid_file: Path | None, written: list[Path], *, json_lines: bool) -> None:
    """Called once the signals are blocked: write the PID file, then the first line.

    The first line names our PID: ``PID 4242``, or ``{"pid": 4242}`` with --json so that the
    output is JSON Lines throughout. Either way the PID is the first number on the first line,
    which is where scripts and testers look for it. The PID file appears whole, at once
    (written aside, then renamed), so a script that waits for it to be non-empty reads a
    whole PID of a server that is ready.
    """
    if pid_file is not None:
        write_pid_file(pid_file, pid)
        written.append(pid_file)
    if json_lines:
        _write_json({"pid": pid})
    else:
        _write_line(f"PID {pid}".encode())


def _print_text(message: "MessageReceived | ClassicMessage", uid: int) -> None:
    _write_line(message.text.encode("utf-8"))


def _print_json(message: "MessageReceived", uid: int) -> None:
    record = {
        "pid": message.pid,
        "uid": uid,
        "bytes": message.size,
        "frames": message.frames,
        "resends": message.resends,
        "seconds": round(message.seconds, 6),
        "text": message.text,
    }
    _write_json(record)


def _write_json(record: dict[str, object]) -> None:
    import json  # noqa: PLC0415 (see the imports)

    _write_line(json.dumps(record, ensure_ascii=False).encode("utf-8"))


def _write_line(line: bytes) -> None:
    if sys.stdout is None:  # started with standard output closed (serve >&-)
        raise OutputError("cannot write to standard output: it is closed")
    try:
        sys.stdout.flush()  # whatever Python holds goes first (nothing, in practice)
        _write_all(sys.stdout.fileno(), line + b"\n")
    except OSError as error:
        # Point stdout at /dev/null so the interpreter's own flush at exit stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise OutputError(f"cannot write to standard output: {error.strerror}") from None


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``, straight to the file descriptor. A write blocked on a full pipe
    and interrupted by a signal whose handler returns (the server's first stop: the message
    is finished, then acknowledged) comes back short. ``BufferedWriter.write`` then returns
    the short count and drops the rest, so the loop is ours; each turn of it also lets the
    signal's handler run before the next write blocks again, so a second stop is seen."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _PlainUsage(TyperCommand):
    """Shows a required argument in the usage line as ``PID``, not typer's ``{PID}``."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:  # Any: typer's Click Context
        pieces: list[str] = super().collect_usage_pieces(ctx)
        return [_unbrace(piece) for piece in pieces]


def _unbrace(piece: str) -> str:
    return piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece


@app.command("send", cls=_PlainUsage)
def send_command(
    ctx: typer.Context,
    pid: PidArgument,
    text: TextArgument = None,
    file: FileOption = None,
    quiet: QuietOption = False,
    reply_timeout: ReplyTimeoutOption = REPLY_TIMEOUT,
    attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
    force: ForceOption = False,
    classic: ClassicFlag = False,
    delay_us: DelayOption = None,
    answer_gap_us: AnswerGapOption = None,
    bit_order: BitOrderOption = None,
    zero: ZeroOption = None,
    end: EndOption = None,
    length_prefix: PrefixOption = None,
    prefix_order: PrefixOrderOption = None,
    length_counts_end: CountsEndOption = False,
    trace: TraceOption = False,
) -> None:
    """Send TEXT (or a file, or standard input) to a server; exit 0 once it acknowledged all
    (with --classic: once every signal is sent; a plain server cannot confirm).

    Examples:
      minitalk send 4242 "emoji 🎉"
      minitalk send 4242 --file notes.txt
      echo hi | minitalk send 4242 -
      minitalk send 4242 -1
      minitalk send 4242 -- "-x marks it"
    """
    with _errors_to_exit_codes():
        _check_mode(ctx, classic)
        fmt = _classic_format(
            classic,
            bit_order,
            zero,
            end,
            length_prefix,
            prefix_order,
            length_counts_end,
            **{"--delay-us": delay_us, "--answer-gap-us": answer_gap_us},
        )
        tries = MAX_ATTEMPTS if attempts is None else attempts
        _check_options(_send_rules(reply_timeout, tries, timeout))
        target = _parse_pid(pid)
        display = display_for(quiet or fmt is not None)
        if text == "-" and file is None:  # before one types a text for a PID that is wrong
            _check_target(target, classic=fmt is not None, force=force)
        message = _read_message(text, file, display)
        if fmt is not None:
            from minitalk.classic_link import ClassicClientConfig  # noqa: PLC0415

            classic_config = ClassicClientConfig(
                fmt=fmt,
                delay=(DEFAULT_DELAY * 1e6 if delay_us is None else delay_us) / 1e6,
                answer_gap=(answer_gap_us or 0.0) / 1e6,
                reply_timeout=reply_timeout,
                timeout=timeout,
                force=force,
            )
            _send_classic(target, message, classic_config, quiet=quiet, trace=trace)
            return
        config = ClientConfig(
            reply_timeout=reply_timeout, max_attempts=tries, timeout=timeout, force=force
        )
        _send_framed(target, message, config, display, quiet=quiet)


def _send_framed(
    target: int, message: bytes, config: ClientConfig, display: Display, *, quiet: bool
) -> None:
    try:
        receipt = send_message(
            target,
            message,
            config,
            on_progress=display.update,
            on_queued=lambda: display.note(
                "queued: the server is busy with another client; waiting for our turn"
            ),
        )
    finally:
        display.stop()
    if not quiet:
        print(_describe(receipt), flush=True)


def _send_classic(
    target: int, message: bytes, config: "ClassicClientConfig", *, quiet: bool, trace: bool
) -> None:
    from minitalk.classic_link import send_classic  # noqa: PLC0415 (see the imports)

    receipt = send_classic(target, message, config, on_trace=_trace if trace else None)
    if not quiet:
        print(_describe_classic(receipt), flush=True)


CheckCommand = Annotated[
    list[str],
    typer.Argument(
        help="The program to check and its arguments, after --. With --client, put {pid} "
        "and {text} where the server's PID and the message go (appended, in that order, "
        "when absent).",
        show_default=False,
    ),
]


@app.command("check")
def check_command(
    command: CheckCommand,
    client: Annotated[
        bool,
        typer.Option(
            "--client",
            help="Check a client: minitalk serves it (as serve --classic --detect) and "
            "learns its variant and the answers it needs.",
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object, for scripts.")
    ] = False,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Leave out the 10,000-character message and the two clients at once (the "
            "checks that take longest), to try a fix quickly.",
        ),
    ] = False,
    speed_limit: Annotated[
        float,
        typer.Option(
            "--speed-limit",
            min=0.001,
            help="Seconds that 100 characters may take, from the send's start to printed "
            "(a server) or from the client's start to its message (a client).",
        ),
    ] = 1.0,
) -> None:
    """Test a plain minitalk server (or client) and say exactly what is wrong: its wire
    variant, a battery of messages, the first wrong byte and bit, and its speed. Exit 0 only
    if every mandatory check passed (10 if one did not). See docs/check.md.

    Examples:
      minitalk check -- ./server
      minitalk check --client -- ./client {pid} {text}
    """
    with _errors_to_exit_codes():
        from minitalk import check  # noqa: PLC0415 (see the imports)
        from minitalk.check_report import result_line, summary  # noqa: PLC0415

        colour = not json_output and sys.stdout.isatty() and not os.environ.get("NO_COLOR")

        def show(result: "CheckResult") -> None:
            if not json_output:
                print(result_line(result, colour=colour), flush=True)

        if not json_output:
            role = "client" if client else "server"
            print(f"minitalk check: the {role} {shlex.join(command)}", flush=True)
        import json  # noqa: PLC0415 (start-up: see the imports)

        run = check.check_client if client else check.check_server
        report = run(command, on_result=show, quick=quick, speed_limit=speed_limit)
        if json_output:
            print(json.dumps(report.to_json(), ensure_ascii=False), flush=True)
        else:
            print(summary(report, colour=colour), flush=True)
        if not report.passed:
            raise typer.Exit(ExitCode.CHECK_FAILED)


def _parse_pid(text: str) -> int:
    stripped = text.strip()
    if not re.fullmatch(r"-?[0-9]+", stripped):
        raise TargetError(f"PID must be a whole number, got {text!r}")
    return int(stripped)


def _check_target(target: int, *, classic: bool, force: bool) -> None:
    """Refuse a target now, as the send would later (the send checks it again)."""
    from minitalk.trust import open_plain_server, open_server  # noqa: PLC0415 (see the imports)

    (open_plain_server if classic else open_server)(target, force=force).close()


def _read_message(text: str | None, file: Path | None, display: Display) -> bytes:
    if text is not None and file is not None:
        raise UsageError("give TEXT or --file, not both")
    if file is not None:
        return _decode_check(_read_file(file), f"{file}")
    if text is None:
        raise UsageError("nothing to send: give TEXT, --file PATH, or - for standard input")
    if text == "-":
        if sys.stdin is not None and sys.stdin.isatty():
            display.note("reading the text to send from the terminal until end of input (Ctrl-D)")
        return _decode_check(_read_stdin(), "standard input")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in argv arrive as surrogates: say where,
        return _decode_check(os.fsencode(text), "TEXT")  # in bytes, as for a file or stdin


def _read_file(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such file: {file}") from None
    except IsADirectoryError:
        raise InputError(f"{file} is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"no permission to read {file}") from None
    except OSError as error:
        raise InputError(f"cannot read {file}: {error.strerror}") from None


def _read_stdin() -> bytes:
    if sys.stdin is None:
        raise InputError("standard input is closed")
    try:
        return sys.stdin.buffer.read()  # empty input is the empty message, like TEXT ""
    except OSError as error:
        raise InputError(f"cannot read standard input: {error.strerror}") from None


def _decode_check(data: bytes, where: str) -> bytes:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{where} is not UTF-8: bad byte at offset {error.start}") from None
    return data


def _describe(receipt: Receipt) -> str:
    frames = f"{receipt.frames} frame" + ("" if receipt.frames == 1 else "s")
    size = f"{receipt.size} byte" + ("" if receipt.size == 1 else "s")
    resends = f", {receipt.resends} resent" if receipt.resends else ""
    return f"delivered {size} in {frames} to PID {receipt.pid}{resends} ({receipt.seconds:.3f} s)"


def _describe_classic(receipt: "ClassicReceipt") -> str:
    from minitalk.classic import gap_summary  # noqa: PLC0415 (see the imports)

    sender = receipt.sender
    size = f"{receipt.size} byte" + ("" if receipt.size == 1 else "s")
    if sender.paced:
        pace = (
            "paced by its answers (round trips "
            + gap_summary(sender.round_trips).removeprefix("gaps ")
            + ")"
        )
    else:
        pace = f"paced by a {sender.delay * 1e6:.0f} µs delay, {sender.answers} answers received"
    return (
        f"sent {size} as {len(receipt.symbols)} signals to PID {receipt.pid} in classic mode, "
        f"{pace} ({receipt.seconds:.3f} s); a plain server cannot confirm what it printed"
    )


# typer re-exports only BadParameter from its bundled Click; the parse errors it raises
# (missing argument, unknown option, bad value) all derive from the bundled UsageError.
_ParseError: type[Exception] = typer.BadParameter.__mro__[1]


# argparse's rule for arguments that look like negative numbers: when no option looks like
# one (none of minitalk's does), such an argument is a positional, so `send PID -1` sends "-1".
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
# The options of `send` that take a value (long forms, and short letters); a test checks
# these against the command's own parameters.
SEND_VALUE_OPTIONS = frozenset(
    {"--file", "--reply-timeout", "--attempts", "--timeout", "--delay-us", "--answer-gap-us"}
    | {"--bit-order"}
    | {"--zero", "--end", "--length-prefix", "--prefix-order"}  # classic mode
)
SEND_VALUE_SHORT = frozenset({"f"})
_DASH_HINT = "to send text that starts with '-', put -- before it"


def negative_numbers_as_text(args: list[str]) -> list[str]:
    """Rewrite ``send``'s arguments so that one that looks like a negative number is taken
    as a positional (PID or TEXT), as argparse would, instead of as an unknown option.

    Its options keep their order and values; the positionals move after a ``--``. Anything
    else (other commands, an explicit ``--`` before it) is left as it is.
    """
    command = _command(args)
    if command is None or args[command] != "send":
        return args
    options: list[str] = []
    positionals: list[str] = []
    rest = args[command + 1 :]
    index = 0
    while index < len(rest):
        arg = rest[index]
        index += 1
        if arg == "--":
            positionals += rest[index:]
            break
        if _NEGATIVE_NUMBER.match(arg) or arg == "-" or not arg.startswith("-"):
            positionals.append(arg)
            continue
        options.append(arg)
        if _takes_next_value(arg) and index < len(rest):
            options.append(rest[index])
            index += 1
    if not any(_NEGATIVE_NUMBER.match(arg) for arg in positionals):
        return args
    return [*args[: command + 1], *options, "--", *positionals]


def _command(args: list[str]) -> int | None:
    """Where the command name is: the first argument that is not an option."""
    return next((i for i, arg in enumerate(args) if not arg.startswith("-")), None)


def _takes_next_value(option: str) -> bool:
    """True if ``option`` (as typed) takes the next argument as its value."""
    if option.startswith("--"):
        return option in SEND_VALUE_OPTIONS  # --name=value carries its own
    # A cluster of short options: the first one that takes a value takes the rest of the
    # cluster, or the next argument if the cluster ends there.
    for position, letter in enumerate(option[1:], start=1):
        if letter in SEND_VALUE_SHORT:
            return position == len(option) - 1
    return False


def _usage_hint(args: list[str], message: str) -> str:
    """What to do about a usage error: the help to read, and for an unknown option, the
    command it belongs to, or (for a ``send`` still missing its TEXT) how to send text that
    starts with '-'."""
    commands = _options_by_command()
    index = _command(args)
    command = args[index] if index is not None and args[index] in commands else None
    hint = f"see minitalk {command} --help" if command else "see minitalk --help"
    unknown = re.match(r"No such option: (\S+)", message)
    if unknown is None or index is None or command is None:
        return hint
    option = unknown.group(1).partition("=")[0]
    owners = [name for name, options in commands.items() if option in options]
    if owners:
        return f"{option} is an option of minitalk {owners[0]}; {hint}"
    positionals = [arg for arg in args[index + 1 :] if not arg.startswith("-") or arg == "-"]
    if command == "send" and len(positionals) < 2 and "Possible options" not in message:
        return f"{_DASH_HINT}; {hint}"
    return hint


def _options_by_command() -> dict[str, frozenset[str]]:
    group = typer.main.get_command(app)
    commands = getattr(group, "commands", {})
    return {
        name: frozenset(opt for param in command.params for opt in getattr(param, "opts", []))
        for name, command in commands.items()
    }


def run() -> None:
    """Console-script entry point: typer parses; every error leaves as one stderr line."""
    args = negative_numbers_as_text(sys.argv[1:])
    try:
        code = app(args=args, prog_name="minitalk", standalone_mode=False)
    except _ParseError as error:
        message = error.format_message().strip()  # type: ignore[attr-defined]
        if message:
            hint = _usage_hint(args, message)
            print(f"minitalk: {message} ({hint})", file=sys.stderr, flush=True)
        else:  # no arguments at all: typer has shown the help; the failure is still one line
            print("minitalk: no command given: serve, send or check", file=sys.stderr, flush=True)
        sys.exit(ExitCode.USAGE)
    except typer.Abort:
        print("minitalk: aborted", file=sys.stderr, flush=True)
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)
