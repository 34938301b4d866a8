"""The Python API with real processes: ``minitalk.send`` and ``minitalk.serve`` do their work
and hand the caller's signal state back as they found it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minitalk.errors import ExitCode
from tests.conftest import (
    HANG_GUARD,
    MINITALK,
    Processes,
    _read_line,
    admitted_send,
    clients_held,
    signal_masks,
    wait_for,
    wchan_visible,
)

pytestmark = pytest.mark.e2e

# Run in a child process: the API changes the signal state of the process that calls it.
STATE = textwrap.dedent(
    """
    import json, signal, sys, threading
    import minitalk

    BORROWED = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def state():
        mask = sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
        return [mask, [repr(signal.getsignal(s)) for s in BORROWED]]

    def emit(**record):
        print(json.dumps(record), flush=True)

    caught = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: caught.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGHUP])  # the caller's own mask
    before = state()
    # SIGUSR2 had the default action (terminate): the API leaves it ignored, so that a late
    # answer from a server cannot kill the caller; everything else comes back as it was.
    after = [before[0], [before[1][0], repr(signal.SIG_IGN), *before[1][2:]]]
    """
)

# The loop body waits for a line on stdin: a SIGTERM sent meanwhile must let it finish.
STOPPED = STATE + textwrap.dedent(
    """
    try:
        for message in minitalk.serve(on_ready=lambda pid: emit(pid=pid)):
            emit(text=message.text)
            emit(body=sys.stdin.readline().strip())
    except KeyboardInterrupt:
        emit(interrupted=True, same=state() == after)
    """
)

SEND = STATE + textwrap.dedent(
    """
    pid = int(sys.argv[1])
    receipt = minitalk.send(pid, sys.argv[2], timeout=60)
    emit(size=receipt.size, frames=receipt.frames, same=state() == after,
         loaded=sorted(m for m in ("typer", "rich") if m in sys.modules))
    try:
        minitalk.send(pid, b"caf\\xe9")
    except minitalk.errors.InputError as error:
        emit(refused=str(error), same=state() == after)

    def from_a_thread():
        try:
            minitalk.send(pid, "from a thread")
        except minitalk.errors.UsageError as error:
            emit(thread=str(error))

    thread = threading.Thread(target=from_a_thread)
    thread.start()
    thread.join()
    """
)

SERVE = STATE + textwrap.dedent(
    """
    for message in minitalk.serve(on_ready=lambda pid: emit(pid=pid)):
        emit(text=message.text, sender=message.pid, size=message.size)
        if message.text == "stop":
            break
    emit(same=state() == after)
    for message in minitalk.serve(count=1, on_ready=lambda pid: emit(pid=pid)):
        emit(text=message.text)
    emit(same=state() == after, caught=caught)
    """
)


# A send that gives up early leaves the server mid-session, still signalling the caller.
LATE = textwrap.dedent(
    """
    import signal, sys, time
    import minitalk
    try:
        minitalk.send(int(sys.argv[1]), "x" * 200_000, timeout=0.3)
    except minitalk.errors.NoAnswerError:
        print("gave up", flush=True)
    time.sleep(1.0)  # the server's late answers and stall notices arrive meanwhile
    print("survived", signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN, flush=True)
    """
)


def test_a_send_that_gives_up_is_not_killed_by_late_answers(procs: Processes) -> None:
    server = procs.serve()
    caller = procs.popen([sys.executable, "-c", LATE, str(server.pid)])
    out, err = caller.communicate(timeout=HANG_GUARD)
    assert caller.returncode == 0, (out, err)  # it died of SIGUSR1/SIGUSR2 before
    assert out == b"gave up\nsurvived True\n"


# A program sends again after a send that gave up mid-message: the retry is a new message.
RETRY = textwrap.dedent(
    """
    import sys
    import minitalk
    pid = int(sys.argv[1])
    try:
        minitalk.send(pid, "x" * 200_000, timeout=0.3)
    except minitalk.errors.NoAnswerError:
        print("gave up", flush=True)
    receipt = minitalk.send(pid, "the retry", timeout=60)
    print("delivered", receipt.size, flush=True)
    """
)


def test_a_send_after_one_that_gave_up_is_delivered_and_printed_once(procs: Processes) -> None:
    server = procs.serve("--count", "1")
    caller = procs.popen([sys.executable, "-c", RETRY, str(server.pid)])
    out, err = caller.communicate(timeout=HANG_GUARD)
    assert caller.returncode == 0, (out, err)  # exit 5 before: "frames arrived out of order"
    assert out == b"gave up\ndelivered 9\n"
    printed, _, code = server.finish()
    assert (printed, code) == (b"the retry\n", 0)


def _records(out: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.decode().splitlines()]


def test_send_delivers_and_restores_the_signal_state(procs: Processes) -> None:
    server = procs.serve("--count", "1")
    child = procs.popen([sys.executable, "-c", SEND, str(server.pid), "from Python ✓"])
    out, err = child.communicate(timeout=HANG_GUARD)
    assert child.returncode == 0, err.decode()
    sent, refused, thread = _records(out)
    assert sent == {"size": 15, "frames": 1, "same": True, "loaded": []}
    assert refused == {"refused": "the bytes are not UTF-8: bad byte at offset 3", "same": True}
    assert "must run on the main thread" in str(thread["thread"])
    printed, _, code = server.finish()
    assert code == 0
    assert printed == "from Python ✓\n".encode()


def test_serve_yields_messages_and_restores_the_signal_state(procs: Processes) -> None:
    child = procs.popen([sys.executable, "-c", SERVE])
    assert child.stdout is not None

    def record() -> dict[str, object]:
        assert child.stdout is not None
        line = _read_line(child.stdout, HANG_GUARD)
        return json.loads(line)  # type: ignore[no-any-return]

    pid = record()["pid"]
    assert pid == child.pid
    for text in ("one", "-1", "stop"):
        result = procs.send(str(pid), text)
        assert result.returncode == 0, result.stderr  # acknowledged, even at the break
        got = record()
        assert got["text"] == text
        assert got["size"] == len(text)
    assert record() == {"same": True}  # after the break: the caller's state is back
    assert record() == {"pid": pid}  # the same process serves again
    result = procs.send(str(pid), "after the break")
    assert result.returncode == 0, result.stderr
    out, err = child.communicate(timeout=HANG_GUARD)
    assert child.returncode == 0, err.decode()
    assert _records(out) == [{"text": "after the break"}, {"same": True, "caught": []}]


# A Ctrl-C lands in the middle of the restore (here: as SIGTERM's disposition is put back).
INTERRUPTED_RESTORE = STATE + textwrap.dedent(
    """
    from minitalk import api, transport

    real, armed = signal.signal, [False]

    def flaky(signum, handler):
        if armed[0] and signum == signal.SIGTERM:
            armed[0] = False
            raise KIND  # as if Ctrl-C had been pressed right then, or an alarm had gone off
        return real(signum, handler)

    signal.signal = flaky
    try:
        with api._borrowed_signals():
            transport.block_signals(stops=True)  # what a serve() borrows
            armed[0] = True
    except KIND:
        emit(interrupted=True, same=state() == after)
    """
)


@pytest.mark.parametrize("kind", ["KeyboardInterrupt", "TimeoutError"])
def test_an_interrupt_inside_the_restore_still_restores_everything(kind: str) -> None:
    """26 of ~2,084 Ctrl-Cs used to land inside the restore and leave SIGUSR1/2 blocked and
    SIGTERM raising KeyboardInterrupt; the restore now finishes, then raises it (or what a
    program's own handler raised, an alarm's TimeoutError say)."""
    result = subprocess.run(
        [sys.executable, "-c", f"KIND = {kind}\n" + INTERRUPTED_RESTORE],
        capture_output=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _records(result.stdout) == [{"interrupted": True, "same": True}]


# A serve() generator handed to another thread and closed there.
CLOSED_ELSEWHERE = STATE + textwrap.dedent(
    """
    import minitalk.errors

    messages = minitalk.serve(on_ready=lambda pid: emit(pid=pid))
    emit(text=next(messages).text)
    outcome = []

    def close_it():
        before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        try:
            messages.close()
        except minitalk.errors.UsageError as error:
            outcome.append(str(error))
        outcome.append(signal.pthread_sigmask(signal.SIG_BLOCK, []) == before)

    thread = threading.Thread(target=close_it)
    thread.start()
    thread.join()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    emit(refused=outcome[0], own_mask_kept=outcome[1],
         still_borrowed=signal.SIGUSR1 in blocked and signal.SIGUSR2 in blocked)
    """
)


def test_a_serve_closed_on_another_thread_says_so_and_touches_nothing_there(
    procs: Processes,
) -> None:
    child = procs.popen([sys.executable, "-c", CLOSED_ELSEWHERE])
    assert child.stdout is not None
    pid = json.loads(_read_line(child.stdout, HANG_GUARD))["pid"]
    sender = procs.popen([*MINITALK, "send", str(pid), "one"])
    out, err = child.communicate(timeout=HANG_GUARD)
    sender.communicate(timeout=HANG_GUARD)
    # Yielded once written, but not drained (the main thread holds the signals): the
    # client may see the server exit before its ACK.
    assert sender.returncode in (0, ExitCode.SERVER_GONE)
    assert child.returncode == 0, err.decode()
    got, closed = _records(out)
    assert got == {"text": "one"}
    assert "closed on another thread than the main one" in str(closed["refused"])
    assert closed["own_mask_kept"] is True
    assert closed["still_borrowed"] is True  # as the error says: not half restored


# A send that gives up while queued, in a program with handlers of its own.
QUEUED_GIVE_UP = textwrap.dedent(
    """
    import json, signal, sys
    import minitalk
    caught = []
    for signum in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, lambda signum, frame: caught.append(signum))
    try:
        minitalk.send(int(sys.argv[1]), "queued", timeout=0.5)
    except minitalk.errors.NoAnswerError as error:
        print(json.dumps({"gave_up": str(error)}), flush=True)
    sys.stdin.readline()  # the test: the server has served everyone since
    print(json.dumps({"caught": caught}), flush=True)
    """
)

# The same program, with no timeout: Ctrl-C (SIGINT) ends its send while it is queued.
QUEUED_INTERRUPTED = QUEUED_GIVE_UP.replace(
    "timeout=0.5)\nexcept minitalk.errors.NoAnswerError as error:\n"
    '    print(json.dumps({"gave_up": str(error)}), flush=True)',
    ')\nexcept KeyboardInterrupt:\n    print(json.dumps({"gave_up": "interrupted"}), flush=True)',
)
assert QUEUED_INTERRUPTED != QUEUED_GIVE_UP


@pytest.mark.parametrize("how", ["timeout", "interrupt"])
def test_a_send_that_gave_up_while_queued_is_never_granted_later(
    procs: Processes, tmp_path: Path, how: str
) -> None:
    """The server used to grant the line to the program long after its send() had given up
    (its timeout, or Ctrl-C): the GRANT reached the program's own SIGUSR1 handler, and the
    line waited 3 s for nobody. The client now leaves the queue (LEAVE, answered LEFT)."""
    server = procs.serve()
    long_text = tmp_path / "long.txt"
    long_text.write_text("x" * 60_000)  # holds the line for seconds
    first = admitted_send(procs, server, "--file", str(long_text))
    script = QUEUED_GIVE_UP if how == "timeout" else QUEUED_INTERRUPTED
    program = procs.popen([sys.executable, "-c", script, str(server.pid)], stdin=subprocess.PIPE)
    assert program.stdout is not None
    assert program.stdin is not None
    if how == "interrupt":
        wait_for(lambda: program.pid in clients_held(server.pid), "the program is queued")
        program.send_signal(signal.SIGINT)
    said = json.loads(_read_line(program.stdout, HANG_GUARD))["gave_up"]
    assert said == "interrupted" if how == "interrupt" else "still waiting for its turn" in said
    assert first.wait(timeout=HANG_GUARD) == 0
    after = procs.send(str(server.pid), "after", "--quiet")  # served once the queue is done
    assert after.returncode == 0, after.stderr
    program.stdin.write(b"\n")
    program.stdin.flush()
    assert json.loads(_read_line(program.stdout, HANG_GUARD)) == {"caught": []}
    out, _, _ = server.stop()
    assert out.decode().splitlines() == ["x" * 60_000, "after"]


def test_serve_refuses_a_bad_count() -> None:
    code = "import minitalk; next(minitalk.serve(count=0))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=HANG_GUARD, check=False
    )
    assert b"count must be at least 1" in result.stderr


def test_the_api_checks_its_options_by_the_cli_rules_before_touching_any_signal() -> None:
    # Run in this process: every check fails before the signal state is borrowed.
    import minitalk  # noqa: PLC0415 - the lazy package face is what is tested
    from minitalk.errors import UsageError  # noqa: PLC0415

    with pytest.raises(UsageError, match="frame_timeout must be shorter than session_timeout"):
        next(minitalk.serve(frame_timeout=5.0))
    with pytest.raises(UsageError, match="max_bytes must be between 0 and 4294967295"):
        next(minitalk.serve(max_bytes=1 << 40))
    with pytest.raises(UsageError, match="pid must be an int"):
        minitalk.send("4242", "hi")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="timeout must be more than 0 s"):
        minitalk.send(4242, "hi", timeout=0)


def test_a_stop_while_the_loop_body_runs_lets_it_finish_then_ends_the_loop(
    procs: Processes,
) -> None:
    if not wchan_visible():
        pytest.skip("the kernel hides /proc/PID/wchan here: cannot see the body wait")
    child = procs.popen([sys.executable, "-c", STOPPED], stdin=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdin is not None
    pid = json.loads(_read_line(child.stdout, HANG_GUARD))["pid"]
    client = procs.popen([*MINITALK, "send", str(pid), "hold on", "--quiet"])
    assert json.loads(_read_line(child.stdout, HANG_GUARD)) == {"text": "hold on"}
    wait_for(lambda: _reading(child.pid), "the loop body waits for its line")
    child.send_signal(signal.SIGTERM)  # exactly the child's PID, while it is alive
    term = 1 << (signal.SIGTERM - 1)
    wait_for(lambda: not signal_masks(child.pid)["pending"] & term, "the child took SIGTERM")
    child.stdin.write(b"finished\n")
    child.stdin.flush()
    out, err = child.communicate(timeout=HANG_GUARD)
    assert child.returncode == 0, err.decode()
    assert _records(out) == [{"body": "finished"}, {"interrupted": True, "same": True}]
    client.communicate(timeout=HANG_GUARD)
    assert client.returncode == 0  # acknowledged: its message was handed over


def _reading(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/wchan").read_text().endswith("pipe_read")
    except OSError:
        return False


API_RETRY_NONCES = """
import minitalk, minitalk.api as api
seen = []

def fake(pid, data, config, *, nonce):
    seen.append((data, nonce))
    if len(seen) in (1, 3):
        raise minitalk.errors.NoAnswerError("gave up")
    return "receipt"

api.send_message = fake
for text in ("hello", "hello", "hello", "other", "other"):
    try:
        api.send(4242, text)
    except minitalk.errors.NoAnswerError:
        pass
first, retry, fresh, after, again = (nonce for _, nonce in seen)
print(retry == first, fresh != retry, after != fresh, again != after)
"""


def test_the_api_retries_the_same_text_under_the_same_nonce() -> None:
    result = subprocess.run(
        [sys.executable, "-c", API_RETRY_NONCES], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    # a retry after a failure reuses it; after a success, or for other text, a new one
    assert result.stdout == b"True True True True\n"
