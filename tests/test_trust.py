"""The trust boundary, with real processes: only the kernel's word counts, and no bystander is
ever signalled.

- A signal counts only if the kernel stamped its sender (``si_code`` SI_USER): a forged one
  (``rt_sigqueueinfo``, tests/forge.py) is never data and never answered, whoever it names.
- Only a process that *ignores* both signals is a minitalk peer: one that catches them (an
  interactive shell, a daemon) or only blocks them is never signalled, by client or server.
- A server never admits a client it may not signal, and never crashes on one; a client refuses
  a server that could not answer it.
- Admission holds the process it checked: pidfd first, then /proc, then "still alive?".

Synchronisation is on observable state, never on time: a minitalk process asleep in
sigtimedwait with nothing pending has taken and answered every signal sent before we looked
(``at_rest``); a helper that blocks the signals keeps whatever it is sent pending, where
/proc shows it (``usr_pending``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minitalk import procview, trust
from minitalk import server as server_module
from minitalk.errors import ExitCode, MinitalkError
from minitalk.protocol import REQUEST
from tests.conftest import (
    HANG_GUARD,
    SERVER_STDERR,
    USR_BITS,
    OtherUser,
    Processes,
    Server,
    at_rest,
    signal_masks,
    spawn_at_pid,
    usr_pending,
    wait_for,
    wchan_visible,
)
from tests.forge import can_forge, forge

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not wchan_visible(), reason="the kernel hides /proc/PID/wchan here"),
]
needs_forgery = pytest.mark.skipif(not can_forge(), reason="no siginfo layout for this CPU")

SYMBOL_SIGNAL = {0: signal.SIGUSR1, 1: signal.SIGUSR2}

# A helper process. It blocks both data signals (so whatever it is sent stays pending, where
# /proc shows it) and the peer mark, and either catches them ("catches": SigCgt, as a shell or a
# daemon would) or ignores them ("ignores": SigIgn and the blocked mark: exactly what a
# minitalk process shows). Commands on stdin:
# "kill PID SYMBOL" sends a real, kernel-stamped signal; "take" takes every pending data signal
# and prints their symbols ("-" for none).
HELPER = """
import os, signal, sys
USR = {signal.SIGUSR1, signal.SIGUSR2}
signal.pthread_sigmask(signal.SIG_BLOCK, USR | {signal.SIGRTMAX})
for signum in USR:
    signal.signal(signum, (lambda *_: None) if sys.argv[1] == "catches" else signal.SIG_IGN)
print("ready", flush=True)
for line in sys.stdin:
    word, *rest = line.split()
    if word == "kill":
        os.kill(int(rest[0]), (signal.SIGUSR1, signal.SIGUSR2)[int(rest[1])])
        print("sent", flush=True)
    elif word == "take":
        taken = []
        while (info := signal.sigtimedwait(USR, 0)) is not None:
            taken.append(str(int(info.si_signo == signal.SIGUSR2)))
        print("".join(taken) or "-", flush=True)
"""


class Helper:
    def __init__(self, procs: Processes, kind: str) -> None:
        args = [sys.executable, "-c", HELPER, kind]
        self.process = procs.popen(args, stdin=subprocess.PIPE)
        self.pid = self.process.pid
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().decode().strip()

    def _say(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        return self._line()

    def kill(self, target: int, symbol: int) -> None:
        """Send ``target`` a real signal (the kernel stamps our PID)."""
        assert target > 1
        assert self._say(f"kill {target} {symbol}") == "sent"

    def take(self) -> str:
        """The symbols that were pending here, now taken ("" for none)."""
        taken = self._say("take")
        return "" if taken == "-" else taken


def _settle(server: Server) -> None:
    wait_for(lambda: at_rest(server.pid), "the server took every signal and went back to wait")


def _still_serves(procs: Processes, server: Server) -> None:
    result = procs.send(str(server.pid), "still here", "--quiet")
    assert result.returncode == 0, result.stderr
    out, err, code = server.stop()
    assert (out, err, code) == (b"still here\n", SERVER_STDERR, 0)


# -- forged senders --------------------------------------------------------------------------


@needs_forgery
@pytest.mark.parametrize("kind", ["catches", "ignores"])
def test_a_forged_request_naming_a_bystander_is_never_answered(procs: Processes, kind: str) -> None:
    # "ignores" looks exactly like a minitalk client: only the stamp tells the forgery apart.
    server = procs.serve()
    bystander = Helper(procs, kind)
    forge(server.pid, SYMBOL_SIGNAL[REQUEST], claimed_pid=bystander.pid)
    _settle(server)
    assert usr_pending(bystander.pid) == 0, "the server answered a forged REQUEST"
    _still_serves(procs, server)


@needs_forgery
@pytest.mark.parametrize("symbol", [0, 1])
def test_forged_bits_naming_the_current_peer_are_not_data(procs: Processes, symbol: int) -> None:
    # Long timeouts: the server must not speak to the peer on its own while we look.
    server = procs.serve("--frame-timeout", "30", "--session-timeout", "60")
    peer = Helper(procs, "ignores")
    peer.kill(server.pid, REQUEST)
    wait_for(lambda: usr_pending(peer.pid) != 0, "the server granted the peer the line")
    assert peer.take() == "0"  # GRANT: the peer holds the line, the server awaits a frame
    _settle(server)
    forge(server.pid, SYMBOL_SIGNAL[symbol], claimed_pid=peer.pid)
    _settle(server)
    assert peer.take() == "", "a forged bit was taken as the peer's and answered"
    # The peer holds the line for a minute and a SIGTERM would wait for it: end it now.
    server.process.kill()
    out, err, _ = server.finish()
    assert (out, err) == (b"", SERVER_STDERR)


# A "server" that passes the client's check (it blocks and ignores both signals, and blocks the
# peer mark) and runs the real receiver machine, but answers only with queued signals that name
# it (SI_QUEUE): the answers an attacker would forge for a server that is stopped, busy or not
# there.
FORGING_SERVER = """
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from minitalk.protocol import Receiver
from tests.forge import forge
USR = {signal.SIGUSR1, signal.SIGUSR2}
signal.pthread_sigmask(signal.SIG_BLOCK, USR | {signal.SIGRTMAX})  # and the peer mark
for signum in USR:
    signal.signal(signum, signal.SIG_IGN)
receiver = Receiver()
print("ready", flush=True)
while True:
    info = signal.sigtimedwait(USR, 0.05)
    now = time.monotonic()
    if info is not None:
        receiver.receive(info.si_pid, int(info.si_signo == signal.SIGUSR2), now)
    receiver.handle_timer(now)
    for pid, symbol in receiver.replies():
        forge(pid, (signal.SIGUSR1, signal.SIGUSR2)[symbol], claimed_pid=os.getpid())
    while receiver.next_event() is not None:
        receiver.message_written(now)
"""


@needs_forgery
def test_forged_answers_never_complete_a_send(procs: Processes) -> None:
    root = str(Path(__file__).resolve().parent.parent)
    fake = procs.popen([sys.executable, "-c", FORGING_SERVER, root])
    assert fake.stdout is not None
    assert fake.stdout.readline() == b"ready\n"
    result = procs.send(str(fake.pid), "never printed", "--reply-timeout", "0.1", "--timeout", "2")
    assert result.returncode == ExitCode.NO_ANSWER, result.stderr
    assert result.stderr.count(b"\n") == 1


# -- who counts as a minitalk process ----------------------------------------------------------


def _interactive_bash(procs: Processes) -> subprocess.Popen[bytes]:
    """A real interactive bash (reading commands from a pipe): it catches SIGUSR1/SIGUSR2
    and exits on them."""
    bash = procs.popen(["bash", "--norc", "--noprofile", "-i"], stdin=subprocess.PIPE)
    _bash_says(bash, "echo ready", "ready")
    assert signal_masks(bash.pid)["SigCgt"] & USR_BITS == USR_BITS
    return bash


def _bash_says(bash: subprocess.Popen[bytes], command: str, expected: str) -> None:
    assert bash.stdin is not None
    assert bash.stdout is not None
    bash.stdin.write(command.encode() + b"\n")
    bash.stdin.flush()
    assert bash.stdout.readline().decode().strip() == expected, "the shell is gone"


def test_send_refuses_an_interactive_shell(procs: Processes) -> None:
    bash = _interactive_bash(procs)
    result = procs.send(str(bash.pid), "hi")
    assert result.returncode == ExitCode.BAD_TARGET, result.stderr
    assert b"not a minitalk server" in result.stderr
    assert b"catches" in result.stderr
    _bash_says(bash, "echo alive", "alive")


@pytest.mark.parametrize(
    ("kind", "words"), [("catches", b"catches"), ("blocks", b"blocks them without ignoring")]
)
def test_send_refuses_a_process_that_does_not_ignore_the_signals(
    procs: Processes, kind: str, words: bytes
) -> None:
    # "blocks": signals it is sent stay pending (and kill it once it unblocks them).
    target = Helper(procs, kind) if kind == "catches" else None
    pid = target.pid if target else _blocker(procs)
    result = procs.send(str(pid), "hi")
    assert result.returncode == ExitCode.BAD_TARGET, result.stderr
    assert b"not a minitalk server" in result.stderr
    assert words in result.stderr
    assert usr_pending(pid) == 0, "the client signalled it"


def _blocker(procs: Processes) -> int:
    code = (
        "import signal, time; signal.pthread_sigmask(signal.SIG_BLOCK,"
        " {signal.SIGUSR1, signal.SIGUSR2}); print('ready', flush=True); time.sleep(600)"
    )
    blocker = procs.popen([sys.executable, "-c", code])
    assert blocker.stdout is not None
    assert blocker.stdout.readline() == b"ready\n"
    return blocker.pid


def test_the_server_never_answers_a_catcher(procs: Processes) -> None:
    server = procs.serve()
    catcher = Helper(procs, "catches")
    catcher.kill(server.pid, REQUEST)  # a real REQUEST, with a real stamp
    _settle(server)
    assert usr_pending(catcher.pid) == 0, "the server answered a process that catches"
    _still_serves(procs, server)


def test_kill_usr2_typed_in_an_interactive_shell_is_not_answered(procs: Processes) -> None:
    server = procs.serve()
    bash = _interactive_bash(procs)
    _bash_says(bash, f"kill -USR2 {server.pid}; echo sent", "sent")
    _settle(server)
    _bash_says(bash, "echo alive", "alive")
    _still_serves(procs, server)


# -- peers we may not signal -------------------------------------------------------------------


def test_a_root_client_of_an_ordinary_users_server(procs: Processes, nobody: OtherUser) -> None:
    server = nobody.serve(procs)
    refused = procs.send(str(server.pid), "from root")
    assert refused.returncode == ExitCode.BAD_TARGET, refused.stderr
    assert refused.stderr.count(b"\n") == 1
    assert b"may not signal this client" in refused.stderr
    # A root process that passes for a client asks anyway: the server, which may not signal
    # it, must leave it alone and go on serving, not crash on its reply.
    intruder = Helper(procs, "ignores")
    intruder.kill(server.pid, REQUEST)
    _settle(server)
    assert usr_pending(intruder.pid) == 0
    assert server.process.poll() is None, "the server died"
    own = nobody.run(nobody.command("send", str(server.pid), "from nobody", "--quiet"))
    assert own.returncode == 0, own.stderr
    out, err, code = server.stop()
    assert (out, err, code) == (b"from nobody\n", b"", 0)


# -- admission holds what it checked ----------------------------------------------------------


@pytest.fixture
def swapped_pid(procs: Processes, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A PID whose process is replaced, at the moment its /proc/PID/status is opened, by a
    newcomer at the same PID that passes every check (it ignores both signals).

    The newcomer never asked for anything: whoever ends up holding it has checked one process
    and holds another."""
    first = Helper(procs, "ignores")
    real_open = open
    swapped: list[int] = []

    def open_after_swap(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path) == f"/proc/{first.pid}/status" and not swapped:
            first.process.kill()
            first.process.wait(timeout=HANG_GUARD)
            newcomer = spawn_at_pid(procs, first.pid, [sys.executable, "-c", HELPER, "ignores"])
            if newcomer is None:
                swapped.append(0)  # the check did read /proc; the teardown must not fail too
                pytest.skip("cannot choose a PID here (writing ns_last_pid needs CAP_SYS_ADMIN)")
            assert newcomer.stdout is not None
            assert newcomer.stdout.readline() == b"ready\n"
            swapped.append(newcomer.pid)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(procview, "open", open_after_swap, raising=False)
    yield first.pid
    assert swapped, "the check never read /proc/PID/status"


def test_server_admission_never_holds_a_pid_reused_after_its_check(swapped_pid: int) -> None:
    clients = server_module.SignalServerLink()
    assert not clients.admit(swapped_pid)
    assert clients.uid(swapped_pid) == -1  # no pidfd kept for it


def test_client_target_check_never_holds_a_pid_reused_after_its_check(swapped_pid: int) -> None:
    with pytest.raises(MinitalkError, match="exited"):
        trust.open_server(swapped_pid).close()


def test_kernel_threads_and_zombies_are_no_peers() -> None:
    # A kernel thread's SigIgn is all ones: it would pass for a peer on that mask alone.
    kthread = {"Kthread": "1", "SigIgn": "ffffffffffffffff", "SigBlk": "0", "SigCgt": "0"}
    assert "kernel thread" in (trust.not_a_peer_because(kthread) or "")
    zombie = {"SigIgn": "0000000000000a00", "SigBlk": "0", "SigCgt": "0", "State": "Z (zombie)"}
    assert "zombie" in (trust.not_a_peer_because(zombie) or "")
    peer = {**zombie, "State": "S (sleeping)", "VmSize": "28000 kB", "Kthread": "0"}
    peer["SigBlk"] = "8000000000000000"  # the peer mark: signal 64 blocked
    assert trust.not_a_peer_because(peer) is None


def test_ignoring_both_signals_without_the_mark_is_no_peer() -> None:
    """A child of a program that used minitalk's API inherits SIGUSR1/SIGUSR2 ignored (they
    stay so after a send, for safety): it must not pass for a server. Every minitalk process
    also blocks the peer mark while it runs; /proc shows it even while it sleeps in
    sigtimedwait, which lifts only the block of the signals waited for."""
    child = {"SigIgn": "0000000000000a00", "SigBlk": "0", "SigCgt": "0", "State": "S"}
    child |= {"VmSize": "9000 kB", "Kthread": "0"}
    reason = trust.not_a_peer_because(child)
    assert reason is not None
    assert "inherited the ignoring" in reason
    waiting = {**child, "SigBlk": "8000000000000000"}  # USR1/2 lifted by sigtimedwait
    assert trust.not_a_peer_because(waiting) is None


def test_helpers_are_what_they_claim(procs: Processes) -> None:
    # The checks above lean on these masks; make sure the helpers really have them.
    for kind, mask in (("catches", "SigCgt"), ("ignores", "SigIgn")):
        helper = Helper(procs, kind)
        masks = signal_masks(helper.pid)
        assert masks[mask] & USR_BITS == USR_BITS
        assert masks["SigBlk"] & USR_BITS == USR_BITS
        assert os.getpid() != helper.pid


def test_only_the_interpreter_running_minitalk_serve_is_a_server_by_its_command_line(
    procs: Processes, tmp_path: Path
) -> None:
    """`serve & send $!` waits for a server still starting, judged by its command line: a
    wrapper (`timeout 9 minitalk serve`), or a command that merely names both words, is not
    one (it was waited for 5 s, then called "not ready")."""
    script = tmp_path / "minitalk"
    script.write_text("import time\ntime.sleep(600)\n")
    starting = procs.popen([sys.executable, str(script), "serve", "--count", "1"])
    wrapper = procs.popen(["timeout", "600", sys.executable, str(script), "serve"])
    wordy = procs.popen(["sh", "-c", "sleep 600", "minitalk", "serve"])
    wait_for(
        lambda: all(
            Path(f"/proc/{p.pid}/cmdline").read_bytes().count(b"\0") > 2
            for p in (starting, wrapper, wordy)
        ),
        "the three command lines are set",
    )
    assert procview.serving_mode(starting.pid) == "framed"
    assert procview.serving_mode(wrapper.pid) is None
    assert procview.serving_mode(wordy.pid) is None


def test_the_servers_check_of_a_client_never_waits_for_one_starting(
    procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a client waits for a target still starting. The server's check of a process
    that asked for the line must not (it stalled every client for 5 s per such signal)."""
    script = tmp_path / "minitalk"
    script.write_text("import time\ntime.sleep(600)\n")
    starting = procs.popen([sys.executable, str(script), "serve"])
    wait_for(lambda: procview.serving_mode(starting.pid) == "framed", "its command line")

    def no_wait(*args: object) -> bool:
        raise AssertionError("the server waited for a process that looks like one starting")

    monkeypatch.setattr(trust, "_starting_server", no_wait)
    link = server_module.SignalServerLink(frozenset())
    try:
        assert link.admit(starting.pid) is False  # refused at once, never held
    finally:
        link.close()


# Processes that only block SIGUSR1: one thread that waits for it with sigtimedwait, the same
# blocking in a thread while another thread does not block it, and a lone blocker.
BLOCKERS = """
import signal, sys, threading, time
kind = sys.argv[1]
if kind == "two threads":
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()  # does not block
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
print("ready", flush=True)
if kind == "waits":
    signal.sigtimedwait({signal.SIGUSR1}, 600)
if kind == "waits for another":  # SIGUSR1 unblocked, default action: it would die of one
    signal.pthread_sigmask(signal.SIG_SETMASK, {signal.SIGCHLD})
    signal.sigtimedwait({signal.SIGCHLD}, 600)
time.sleep(600)
"""


@pytest.mark.parametrize(
    ("kind", "safe"),
    [("two threads", False), ("blocks", True), ("waits", False), ("waits for another", False)],
)
def test_blocking_counts_only_if_every_thread_blocks_it(
    procs: Processes, kind: str, safe: bool
) -> None:
    """A two-thread process whose main thread blocks SIGUSR1 was answered, and the other
    thread took the signal and died of it. A thread asleep in sigtimedwait shows the signals it
    waits for as unblocked in SigBlk, and even one waiting for SIGUSR1 is not safe: the kernel
    kills it unless it blocked the signal before its wait, which /proc does not show (a
    review reproduced the kill when the waited set counted). Both checks, the one-off
    ``handles`` and the server's ``StatFile``, read /proc only: nothing is sent."""
    process = procs.popen([sys.executable, "-c", BLOCKERS, kind])
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    if kind.startswith("waits"):
        wait_for(
            lambda: Path(f"/proc/{process.pid}/wchan").read_text().startswith("do_sigtimedwait"),
            "it waits in sigtimedwait",
        )
    assert procview.handles(process.pid, signal.SIGUSR1) is safe
    stat = procview.StatFile(process.pid)
    try:
        assert stat.handles(signal.SIGUSR1) is safe
    finally:
        stat.close()
    assert process.poll() is None
