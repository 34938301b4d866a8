"""The error hierarchy and the exit codes, in one place.

Every failure minitalk reports is a ``MinitalkError``; the CLI catches that one root at its
edge, prints the message as one line on stderr and exits with the error's ``exit_code``.
Protocol errors are split by whose fault they are, in the manner of h11 and wsproto:
``LocalProtocolError`` means this side misused a state machine (a bug here),
``RemoteProtocolError`` means the peer sent something the protocol does not allow.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes. The exit-code tables of README.md and docs/usage.md are written
    by hand; tests/test_docs.py checks that each lists exactly these codes, each row opening
    with the code's ``meaning``."""

    OK = 0
    FAILURE = 1
    USAGE = 2  # typer's own code for usage errors
    BAD_INPUT = 3
    BAD_TARGET = 4
    REFUSED = 5
    NO_ANSWER = 6
    SERVER_GONE = 7
    UNSUPPORTED = 8
    OUTPUT_FAILED = 9
    CHECK_FAILED = 10  # minitalk check: a mandatory check did not pass
    TEMPFAIL = 75  # EX_TEMPFAIL of sysexits.h
    INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

    @property
    def meaning(self) -> str:
        """What the code means, in the words the docs' tables open with."""
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.FAILURE: "an unexpected internal failure",
    ExitCode.USAGE: "bad command line",
    ExitCode.BAD_INPUT: "the text cannot be read or is not UTF-8",
    ExitCode.BAD_TARGET: "the PID is not a minitalk server this user may signal",
    ExitCode.REFUSED: "the server refused the message",
    ExitCode.NO_ANSWER: "gave up waiting",
    ExitCode.SERVER_GONE: "the server exited or is shutting down",
    ExitCode.UNSUPPORTED: "not Linux",
    ExitCode.OUTPUT_FAILED: "the server could not write",
    ExitCode.CHECK_FAILED: "a mandatory check did not pass",
    ExitCode.TEMPFAIL: "try again later",
    ExitCode.INTERRUPTED: "interrupted",
}


class MinitalkError(Exception):
    """Root of every error minitalk reports to a user."""

    exit_code: ExitCode = ExitCode.FAILURE


class ProtocolError(MinitalkError):
    """Abstract root of the protocol errors: something broke the rules of the link."""


class LocalProtocolError(ProtocolError):
    """This side used a state machine wrongly (for example fed it after it finished)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class FrameError(RemoteProtocolError):
    """A frame failed to decode; subclasses say which check it failed."""


class HeaderError(FrameError):
    """The header is malformed: wrong version byte, failed header check, or bad length."""


class OversizeError(HeaderError):
    """A well-formed header announces a message longer than the receiver accepts."""

    def __init__(self, message_length: int, limit: int) -> None:
        super().__init__(f"message of {message_length} bytes is over the limit of {limit}")
        self.message_length = message_length
        self.limit = limit


class ChecksumError(FrameError):
    """The frame's CRC-16 does not match its header and payload."""


class InputError(MinitalkError):
    """The text to send could not be read, or is not valid UTF-8."""

    exit_code = ExitCode.BAD_INPUT


class TargetError(MinitalkError):
    """The PID given is not a process that minitalk may safely signal."""

    exit_code = ExitCode.BAD_TARGET


class RefusedError(MinitalkError):
    """The server refused the message and said why."""

    exit_code = ExitCode.REFUSED


class TryLaterError(MinitalkError):
    """The server turned the message away for now (its queue is full); the same send may
    succeed later. Exit code 75 is EX_TEMPFAIL of sysexits.h, which mail systems and
    scripts already read as "retry". A server that is shutting down is not in this class:
    it will not come back under the same PID, so retrying cannot help."""

    exit_code = ExitCode.TEMPFAIL


class NoAnswerError(MinitalkError):
    """The server stopped answering, or rejected a frame more often than allowed."""

    exit_code = ExitCode.NO_ANSWER


class ServerGoneError(MinitalkError):
    """The server process exited while we were talking to it."""

    exit_code = ExitCode.SERVER_GONE


class UnsupportedPlatformError(MinitalkError):
    """The platform lacks the sender-aware signal calls (sigtimedwait, pidfd)."""

    exit_code = ExitCode.UNSUPPORTED


class OutputError(MinitalkError):
    """The server could not write a received message to its output."""

    exit_code = ExitCode.OUTPUT_FAILED


class UsageError(MinitalkError):
    """The command line does not say what to do (for example both TEXT and --file)."""

    exit_code = ExitCode.USAGE
