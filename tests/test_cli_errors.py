"""Every bad input meets a one-line error and its documented exit code, and nothing else
happens: an innocent process stays alive and a running server prints nothing."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from minitalk.errors import ExitCode
from tests.conftest import HANG_GUARD, MINITALK, SERVER_STDERR, OtherUser, Processes, Server

pytestmark = pytest.mark.e2e


@dataclass
class Scene:
    server: Server
    innocent: subprocess.Popen[bytes]
    files: Path


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    procs = Processes()
    files = tmp_path_factory.mktemp("inputs")
    (files / "latin1.txt").write_bytes(b"caf\xe9 au lait")
    (files / "big.txt").write_text("x" * 101)
    (files / "ok.txt").write_text("fine")
    try:
        server = procs.serve("--max-bytes", "100")
        innocent = procs.popen(["sleep", "600"])
        yield Scene(server, innocent, files)
        out, err, code = server.stop()
        assert out == b""  # not one bad input reached the server's output
        assert err == SERVER_STDERR
        assert code == 0
    finally:
        procs.end_all()


# (what is wrong, arguments to `minitalk send`, exit code, words the error must contain).
# {server}, {innocent} and {files} stand for the scene's server PID, a `sleep` PID and a folder.
CASES = [
    ("PID missing", [], ExitCode.USAGE, "Missing argument 'PID'"),
    ("PID not a number", ["abc", "hi"], ExitCode.BAD_TARGET, "whole number"),
    ("PID with junk", ["12ab", "hi"], ExitCode.BAD_TARGET, "whole number"),
    ("PID zero", ["0", "hi"], ExitCode.BAD_TARGET, "process group"),
    ("PID negative", ["--", "-5", "hi"], ExitCode.BAD_TARGET, "process group"),
    ("PID minus one", ["--", "-1", "hi"], ExitCode.BAD_TARGET, "process group"),
    ("PID negative, no --", ["-5", "hi"], ExitCode.BAD_TARGET, "process group"),
    ("PID of dashes", ["--", "--5", "hi"], ExitCode.BAD_TARGET, "whole number"),
    ("PID one", ["1", "hi"], ExitCode.BAD_TARGET, "init"),
    ("PID too large", ["99999999999", "hi"], ExitCode.BAD_TARGET, "larger than any PID"),
    ("PID of no process", ["4194303", "hi"], ExitCode.BAD_TARGET, "no process has PID"),
    ("PID not minitalk", ["{innocent}", "hi"], ExitCode.BAD_TARGET, "not a minitalk server"),
    ("file missing", ["{server}", "-f", "{files}/nope"], ExitCode.BAD_INPUT, "no such file"),
    ("file is a directory", ["{server}", "-f", "{files}"], ExitCode.BAD_INPUT, "a directory"),
    (
        "file not UTF-8",
        ["{server}", "-f", "{files}/latin1.txt"],
        ExitCode.BAD_INPUT,
        "not UTF-8: bad byte at offset 3",
    ),
    (
        "message over the server's limit",
        ["{server}", "-f", "{files}/big.txt"],
        ExitCode.REFUSED,
        "the message is 101 bytes; the server accepts at most 100 bytes",
    ),
    ("TEXT and --file", ["{server}", "hi", "-f", "{files}/ok.txt"], ExitCode.USAGE, "not both"),
    ("neither TEXT nor --file", ["{server}"], ExitCode.USAGE, "nothing to send"),
    ("unknown option", ["{server}", "hi", "--bogus"], ExitCode.USAGE, "No such option"),
    ("text like an option", ["{server}", "-x"], ExitCode.USAGE, "put -- before it"),
    (
        "bad option value",
        ["{server}", "hi", "--timeout", "soon"],
        ExitCode.USAGE,
        "Invalid value for '--timeout'",
    ),
]


def _check(result: subprocess.CompletedProcess[bytes], code: int, words: str, scene: Scene) -> None:
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith("minitalk: ")
    assert words in err
    assert "Traceback" not in err
    assert result.stdout == b""
    assert scene.innocent.poll() is None, "the innocent process died"
    assert scene.server.process.poll() is None, "the server died"


@pytest.mark.parametrize(("what", "args", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(scene: Scene, what: str, args: list[str], code: int, words: str) -> None:
    places = {"server": scene.server.pid, "innocent": scene.innocent.pid, "files": scene.files}
    result = subprocess.run(
        [*MINITALK, "send", *(arg.format(**places) for arg in args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=HANG_GUARD,
        check=False,
    )
    _check(result, code, words, scene)


def test_stdin_closed(scene: Scene) -> None:
    command = ["sh", "-c", 'exec "$@" <&-', "sh", *MINITALK, "send", str(scene.server.pid), "-"]
    result = subprocess.run(command, capture_output=True, timeout=HANG_GUARD, check=False)
    _check(result, ExitCode.BAD_INPUT, "standard input is closed", scene)


# -- as another user: the permission paths root never meets ------------------------------------


def test_another_users_process_is_refused(scene: Scene, nobody: OtherUser) -> None:
    result = nobody.run(nobody.command("send", str(scene.server.pid), "hi"))  # server: root
    _check(result, ExitCode.BAD_TARGET, "belongs to another user", scene)


def test_unreadable_file_is_refused(scene: Scene, nobody: OtherUser, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    secret.chmod(0o600)
    tmp_path.chmod(0o755)
    args = ["send", str(scene.server.pid), "--force", "--file", str(secret)]
    result = nobody.run(nobody.command(*args))
    _check(result, ExitCode.BAD_INPUT, "no permission to read", scene)


def test_an_unreadable_file_it_can_see_is_refused_the_same_way(
    scene: Scene, nobody: OtherUser
) -> None:
    """A file the user can stat but not read (like /etc/shadow) got typer's own check: exit 2
    and its wording, where a missing or unreadable file elsewhere got exit 3."""
    handle, name = tempfile.mkstemp(prefix="minitalk-secret-", dir="/tmp")  # mode 0600, root's
    os.close(handle)
    try:
        args = ["send", str(scene.server.pid), "--force", "--file", name]
        result = nobody.run(nobody.command(*args))
        _check(result, ExitCode.BAD_INPUT, "no permission to read", scene)
    finally:
        os.unlink(name)
