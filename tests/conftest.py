"""Helpers for the end-to-end tests: real `minitalk` processes, ended by PID whatever happens.

Every process a test starts is recorded in ``Processes`` and killed (by its own PID, through
its ``Popen`` object) at teardown if it is still running, with what it started in turn (a
wrapper's child), each held by pidfd and checked to be that process's. Nothing here signals
PID 0, a negative PID, or any process the test did not start.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from hypothesis import HealthCheck, settings

import minitalk

# The suite's hypothesis profile: no per-example deadline (the machine is shared and noisy;
# speed lives in bench/), and a modest example count that keeps `make test` in minutes.
settings.register_profile(
    "suite", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("suite")

MINITALK = [sys.executable, "-m", "minitalk"]
# What a server prints on stderr in normal operation: nothing, for root too.
SERVER_STDERR = b""
# Guards against a hung child, never a measure of speed: generous on a loaded 2-core machine.
HANG_GUARD = 120.0


class Server:
    """A running `minitalk serve`; its output pipes are drained as it writes, so a large
    message can never fill the pipe and stall the server."""

    def __init__(self, process: subprocess.Popen[bytes], pid: int, first_line: bytes) -> None:
        self.process = process
        self.pid = pid
        self.first_line = first_line
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        assert process.stdout is not None
        assert process.stderr is not None
        self._readers = [
            threading.Thread(target=_drain, args=(process.stdout, self._out), daemon=True),
            threading.Thread(target=_drain, args=(process.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def finish(self) -> tuple[bytes, bytes, int]:
        """Wait for the server to exit by itself (``--count``); return stdout, stderr, code."""
        code = self.process.wait(timeout=HANG_GUARD)
        for reader in self._readers:
            reader.join(timeout=HANG_GUARD)
        return b"".join(self._out), b"".join(self._err), code

    def stop(self) -> tuple[bytes, bytes, int]:
        """SIGTERM the server (by its PID) and collect what it wrote."""
        self.process.terminate()
        return self.finish()


@dataclass
class Processes:
    """Starts minitalk servers and clients and guarantees they end."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(
        self, args: list[str], stdin: int | None = None, stderr: int = subprocess.PIPE
    ) -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = subprocess.Popen(
            args, stdin=stdin, stdout=subprocess.PIPE, stderr=stderr
        )
        self.started.append(process)
        return process

    def serve(self, *options: str) -> Server:
        process = self.popen([*MINITALK, "serve", *options])
        assert process.stdout is not None
        line = _read_line(process.stdout, HANG_GUARD)
        pid = first_number(line)
        assert pid == process.pid
        return Server(process, pid, line)

    def send(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        process = self.popen(
            [*MINITALK, "send", *args],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        )
        out, err = process.communicate(stdin, timeout=HANG_GUARD)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def end_all(self) -> None:
        for process in self.started:
            if process.poll() is None and process.pid > 1:
                descendants = _held_descendants(process.pid)  # `timeout`'s child, a shell's
                process.kill()  # Popen.kill signals exactly process.pid
                for pidfd in descendants:  # started by ours: ended too, exactly those
                    with contextlib.suppress(OSError):
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    os.close(pidfd)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=HANG_GUARD)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def _held_descendants(root: int) -> list[int]:
    """pidfds of every process below ``root`` (our own child, not yet reaped), read from
    /proc/PID/task/TID/children. Each is held by pidfd before its own children are read and
    kept only if, once held, its parent is the held process it was listed under and that
    one still runs: a PID freed and taken by a stranger meanwhile is never kept."""
    held: list[int] = []
    queue: list[tuple[int, int | None]] = [(root, None)]  # (pid, its pidfd; the root: Popen's)
    while queue:
        parent, parent_fd = queue.pop(0)
        for child in _listed_children(parent):
            try:
                pidfd = os.pidfd_open(child)
            except OSError:
                continue
            if _parent_of(child) != parent or not _running(parent_fd):
                os.close(pidfd)  # not (or no longer) the one listed: never signalled
                continue
            held.append(pidfd)
            queue.append((child, pidfd))
    return held


def _listed_children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        path = f"/proc/{pid}/task/{task}/children"
        with contextlib.suppress(OSError, ValueError), open(path, encoding="ascii") as listed:
            found.extend(int(child) for child in listed.read().split() if int(child) > 1)
    return found


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rpartition(b")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _running(pidfd: int | None) -> bool:
    """The process held by ``pidfd`` still runs (None: the root, our unreaped child)."""
    if pidfd is None:
        return True
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except OSError:
        return False
    return True


def first_number(line: bytes) -> int:
    """The PID a server announces: the first number on its first line, as testers read it
    (``PID 4242`` in text mode, ``{"pid": 4242}`` with --json)."""
    found = re.search(rb"\d+", line)
    assert found is not None, f"no number in the first line {line!r}"
    return int(found[0])


def _drain(stream: IO[bytes], into: list[bytes]) -> None:
    while chunk := os.read(stream.fileno(), 65536):
        into.append(chunk)


def _read_line(stream: object, timeout: float) -> bytes:
    """Read one line from a pipe, giving up (not failing a timing check) after ``timeout``."""
    fd = stream.fileno()  # type: ignore[attr-defined]
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        if not selector.select(max(deadline - time.monotonic(), 0)):
            raise AssertionError(f"no complete line within {timeout} s: {line!r}")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        line += chunk
    selector.close()
    return line


def wait_for(condition: object, what: str) -> None:
    """Poll ``condition()`` until true: synchronises on an observable state, not on time."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


def pending_signals(pid: int) -> int:
    """The process-wide pending-signal mask of ``pid`` (ShdPnd in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            return int(line.split()[1], 16)
    return 0


@pytest.fixture
def procs() -> Iterator[Processes]:
    processes = Processes()
    try:
        yield processes
    finally:
        processes.end_all()


def admitted_send(procs: Processes, server: Server, *args: str) -> subprocess.Popen[bytes]:
    """Start `minitalk send` and return once the server has admitted it (peer or queued)."""
    client = procs.popen([*MINITALK, "send", str(server.pid), *args, "--quiet"])
    wait_for(lambda: client.pid in clients_held(server.pid), f"the server admitted {args}")
    return client


def clients_held(server: int) -> set[int]:
    """The PIDs the server holds a pidfd for: the clients it has admitted (peer or queued)."""
    held = set()
    for info in Path(f"/proc/{server}/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            for line in info.read_text().splitlines():
                if line.startswith("Pid:"):
                    held.add(int(line.split()[1]))
    return held


def signal_masks(pid: int) -> dict[str, int]:
    """The signal masks of ``pid`` from /proc/PID/status: SigBlk, SigIgn, SigCgt, and the
    pending signals (ShdPnd | SigPnd) as "pending"."""
    fields = dict(
        line.partition(":\t")[::2] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    masks = {key: int(fields.get(key, "0"), 16) for key in ("SigBlk", "SigIgn", "SigCgt")}
    masks["pending"] = int(fields.get("ShdPnd", "0"), 16) | int(fields.get("SigPnd", "0"), 16)
    return masks


USR_BITS = (1 << (signal.SIGUSR1 - 1)) | (1 << (signal.SIGUSR2 - 1))


def usr_pending(pid: int) -> int:
    """SIGUSR1/SIGUSR2 pending at ``pid`` (a process that blocks them keeps them there)."""
    return signal_masks(pid)["pending"] & USR_BITS


def at_rest(pid: int) -> bool:
    """True if ``pid`` is asleep in sigtimedwait with no SIGUSR1/SIGUSR2 pending: a minitalk
    process in that state has taken every signal sent to it so far and answered all it will
    answer (a signal sent before this call would have woken it). False where the kernel
    hides /proc/PID/wchan; callers skip then (``wchan_visible``)."""
    try:
        waiting = Path(f"/proc/{pid}/wchan").read_text().startswith("do_sigtimedwait")
    except OSError:
        return False
    return waiting and usr_pending(pid) == 0


def wchan_visible() -> bool:
    """Whether /proc/PID/wchan names the kernel function a sleeping process waits in, here
    (it reads "0" where the kernel hides it): looked at on a child asleep reading a pipe."""
    reader = [sys.executable, "-c", "import sys; sys.stdin.buffer.read()"]
    cat = subprocess.Popen(reader, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + HANG_GUARD  # asleep in read() once it has started
        while time.monotonic() < deadline:
            if Path(f"/proc/{cat.pid}/wchan").read_text() == "anon_pipe_read":
                return True
            time.sleep(0.001)
        return False
    except OSError:
        return False
    finally:
        cat.kill()
        cat.wait()
        assert cat.stdin is not None
        cat.stdin.close()


NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def spawn_at_pid(procs: Processes, pid: int, args: list[str]) -> subprocess.Popen[bytes] | None:
    """Start ``args`` as process ``pid`` (a PID just freed), or return None if the kernel
    will not let us choose (ns_last_pid needs CAP_SYS_ADMIN) or another fork keeps winning it."""
    for _ in range(20):
        try:
            NS_LAST_PID.write_text(str(pid - 1))
        except OSError:
            return None
        process = procs.popen(args)
        if process.pid == pid:
            return process
        process.kill()  # some other fork took the PID first; ours is not the one we want
        process.wait(timeout=HANG_GUARD)
    return None


# -- another user: minitalk run as "nobody" ---------------------------------------------------

NOBODY = 65534


@dataclass(frozen=True)
class OtherUser:
    """How to run minitalk as another user: an interpreter and a world-readable copy of the
    package and its dependencies (the clone and its .venv may sit in a 0700 home)."""

    uid: int
    python: str
    path: str

    def command(self, *args: str) -> list[str]:
        return [self.python, "-m", "minitalk", *args]

    def popen(self, procs: Processes, args: list[str]) -> subprocess.Popen[bytes]:
        """Start ``args`` (a command line) as this user, recorded in ``procs``."""
        process: subprocess.Popen[bytes] = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            user=self.uid,
            group=self.uid,
            extra_groups=[],
            env=self.env(),
            cwd="/",
        )
        procs.started.append(process)
        return process

    def run(self, args: list[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            user=self.uid,
            group=self.uid,
            extra_groups=[],
            env=self.env(),
            cwd="/",
            capture_output=True,
            timeout=HANG_GUARD,
            check=False,
        )

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": self.path, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

    def serve(self, procs: Processes, *options: str) -> Server:
        process = self.popen(procs, self.command("serve", *options))
        assert process.stdout is not None
        line = _read_line(process.stdout, HANG_GUARD)
        assert line.startswith(b"PID "), f"first line was {line!r}"
        return Server(process, int(line.split()[1]), line)


def _runtime_distributions() -> set[str]:
    """minitalk's run-time dependencies, recursively (extras left out)."""
    found: set[str] = set()
    todo = ["minitalk"]
    while todo:
        name = todo.pop()
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" in requirement:
                continue
            match = re.match(r"[A-Za-z0-9._-]+", requirement)
            if match and match.group(0).lower() not in found:
                found.add(match.group(0).lower())
                todo.append(match.group(0))
    return found


def _copy_runtime(into: Path) -> None:
    package = Path(minitalk.__file__).parent
    shutil.copytree(package, into / "minitalk", ignore=shutil.ignore_patterns("__pycache__"))
    for name in _runtime_distributions():
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        root = Path(str(dist.locate_file(""))).resolve()
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file))).resolve()
            if root not in source.parents or "__pycache__" in source.parts or not source.is_file():
                continue  # scripts in bin/, caches
            target = into / source.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    # A clone made under umask 077 has private files: open the copy to everyone.
    for path in [into, *into.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else (path.stat().st_mode & 0o777) | 0o644)


def _interpreters() -> list[str]:
    """Pythons of our version that another user may be able to run: ours, if its path is
    open to all, else the system's."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = [os.path.realpath(sys.executable)]
    for folder in ("/usr/local/bin", "/usr/bin"):
        candidate = shutil.which(version, path=folder)
        if candidate:
            found.append(candidate)
    return list(dict.fromkeys(found))


@pytest.fixture(scope="session")
def nobody() -> Iterator[OtherUser]:
    """minitalk as the user "nobody" (uid 65534), or a skip saying what is missing."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as another user")
    folder = Path(tempfile.mkdtemp(prefix="minitalk-nobody-"))  # in /tmp, not in a 0700 home
    try:
        folder.chmod(0o755)
        _copy_runtime(folder)
        problems = []
        for python in _interpreters():
            user = OtherUser(NOBODY, python, str(folder))
            probe = [python, "-c", "import minitalk.cli, sys; print(sys.version_info[:2])"]
            try:
                check = user.run(probe)
            except OSError as error:  # not executable by that user (a 0700 home on its path)
                problems.append(f"{python}: {error.strerror}")
                continue
            if check.returncode == 0 and check.stdout.strip() == str(sys.version_info[:2]).encode():
                yield user
                return
            problems.append(f"{python}: {check.stderr.decode().strip().splitlines()[-1:]}")
        pytest.skip(f"no Python {sys.version_info[:2]} that uid {NOBODY} can run: {problems}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


C_SOURCES = Path(__file__).resolve().parent / "classic_c"


@pytest.fixture(scope="module")
def c_peers() -> Iterator[dict[str, str]]:
    """The plain C server and client of tests/classic_c, compiled into a temporary folder
    (skips, and says so, without a C compiler)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc) to build the plain C minitalk peers")
    folder = Path(tempfile.mkdtemp(prefix="minitalk-c-"))
    try:
        built = {}
        for name in ("server", "client"):
            binary = folder / name
            subprocess.run(
                [
                    compiler,
                    "-O2",
                    "-Wall",
                    "-pthread",
                    "-o",
                    str(binary),
                    str(C_SOURCES / f"{name}.c"),
                ],
                check=True,
                capture_output=True,
                timeout=HANG_GUARD,
            )
            built[name] = str(binary)
        yield built
    finally:
        shutil.rmtree(folder, ignore_errors=True)
