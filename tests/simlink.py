"""A simulated kernel under the shipped drivers: one server, many clients, a fake clock.

``server.ServerDriver`` and ``client.ClientDriver`` run here exactly as they run over real
signals: this module implements only the link interface (``minitalk.link``) and models only
the kernel, never a loop rule. Each process has at most one pending signal per kind
(SIGUSR1 = symbol 0, SIGUSR2 = symbol 1); a second signal of a kind already pending is merged
into it (the first sender's PID is kept and the second signal is lost, as signal(7) says).
On top of that the test can drop a pending signal, deliver one twice, inject a stranger's
signal (forged or not), pick which of two pending kinds is taken first, kill a client, stop
the server (SIGSTOP) and move time forward. A process runs (its driver takes one step) only
when the kernel would wake it: a signal is pending for it, or its deadline passed.

With ``bulk=True`` the tight loops run too: while one side polls in its tight loop and finds
nothing pending, the other side is let run one step, as the second CPU would.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from minitalk.client import ClientDriver
from minitalk.errors import OutputError
from minitalk.link import Signal
from minitalk.protocol import (
    MessageReceived,
    PeerView,
    Receiver,
    Sender,
    SenderState,
    ServerView,
)
from minitalk.server import ServerDriver

SERVER_PID = 1000
STRANGER_PID = 999


class NotRunnableError(AssertionError):
    """The simulator let a process run that the kernel would have left asleep."""


@dataclass
class Pending:
    """One process's pending signals: symbol -> sender PID, and which of them are forged
    (their siginfo written by the sender: the link drops them)."""

    signals: dict[int, int] = field(default_factory=dict)
    forged: set[int] = field(default_factory=set)
    extra: list[Signal] = field(default_factory=list)  # duplicates, taken first
    prefer: int | None = None  # which kind the next take picks, if both are pending
    since: dict[int, int] = field(default_factory=dict)  # symbol -> when it became pending
    # Merges that a drain should have prevented: (lost sender, stray sender), see ``stale``.
    stale_merges: list[tuple[int, int]] = field(default_factory=list)
    # PID -> when this process last sent it a signal outside a tight loop, letting it send
    # its next one: a stray pending since before then should have been taken first.
    told: dict[int, int] = field(default_factory=dict)
    clock: list[int] = field(default_factory=lambda: [0])  # shared event counter

    def post(self, symbol: int, from_pid: int, *, forged: bool = False) -> bool:
        self.clock[0] += 1
        if symbol in self.signals:
            # Merged: the first signal's siginfo is kept, this one is gone. If the one kept is
            # a stray that was already pending when this process told ``from_pid`` to send,
            # the driver answered without taking what was pending first.
            kept = self.signals[symbol]
            told = self.told.get(from_pid)
            if kept != from_pid and told is not None and self.since[symbol] < told:
                self.stale_merges.append((from_pid, kept))
            return False
        self.signals[symbol] = from_pid
        self.since[symbol] = self.clock[0]
        if forged:
            self.forged.add(symbol)
        else:
            self.forged.discard(symbol)  # a stale mark (the test removed a signal by hand)
        return True

    def eat(self, symbol: int | None = None) -> bool:
        """A stranger's signal of the same kind was pending first: the one pending now
        merged into it, and the kernel kept the stranger's siginfo."""
        if symbol is None:
            symbol = min(self.signals, default=None)
        if symbol is None or symbol not in self.signals:
            return False
        self.signals[symbol] = STRANGER_PID
        self.forged.discard(symbol)
        return True

    def __bool__(self) -> bool:
        return bool(self.signals or self.extra)

    def take(self, link: _SimLink) -> Signal | None:
        """The next signal a sigtimedwait returns; forged ones are dropped and counted."""
        while True:
            if self.extra:
                return self.extra.pop(0)
            if not self.signals:
                return None
            symbol = self.prefer if self.prefer in self.signals else min(self.signals)
            self.prefer = None
            pid = self.signals.pop(symbol)
            if symbol not in self.forged:
                return pid, symbol
            self.forged.discard(symbol)
            link.dropped += 1

    def drop_forged(self, link: _SimLink) -> None:
        """A process asleep in its wait takes a forged signal, drops it and waits on."""
        for symbol in list(self.forged):
            if self.signals.pop(symbol, None) is not None:
                link.dropped += 1
        self.forged.clear()

    def clear(self) -> None:
        self.signals.clear()
        self.forged.clear()
        self.extra.clear()


class _SimLink:
    """What both simulated links share: the clock, the pending set, the forged count."""

    def __init__(self, net: Network, pending: Pending) -> None:
        self.net = net
        self.pending = pending
        pending.clock = net.clock
        self.dropped = 0
        self.in_run = False  # inside a tight loop: not to be woken again meanwhile

    @property
    def polls(self) -> bool:
        return self.net.bulk

    @property
    def forged(self) -> int:
        return self.dropped

    def now(self) -> float:
        return self.net.now

    def wait(self, deadline: float | None, *, spin: bool) -> Signal | None:
        got = self.pending.take(self)
        if got is not None:
            return got
        if deadline is None or self.net.now < deadline:
            raise NotRunnableError("a wait with nothing pending before its deadline")
        return None

    def take_pending(self) -> Signal | None:
        return self.pending.take(self)


class SimServerLink(_SimLink):
    def __init__(self, net: Network) -> None:
        super().__init__(net, Pending())
        self.stops = 0
        self.stop_requested = False
        self.forgotten: list[int] = []

    def admit(self, pid: int) -> bool:
        return pid not in self.net.unadmitted

    def send(self, pid: int, symbol: int, *, in_run: bool = False) -> bool:
        client = self.net.clients.get(pid)
        if client is None or not client.alive:
            return False
        # The client may send its next signal now: what is pending here should be taken
        # first (except in the tight loop, which answers at once by design).
        self.pending.told[pid] = -1 if in_run else self.net.clock[0]
        if not client.link.pending.post(symbol, SERVER_PID):
            self.net.lost += 1
        return True

    def peer_view(self, pid: int) -> PeerView:
        client = self.net.clients.get(pid)
        if client is None or not client.alive:
            return PeerView(alive=False)
        return PeerView(asleep=self.net.sees_asleep and client.asleep)

    def collect(self, pid: int, count: int, answer: int) -> tuple[list[int], Signal | None]:
        taken: list[int] = []
        self.in_run = True
        try:
            while len(taken) < count:
                if not self.pending and self.net.lead == "server":
                    self.net.run_other(pid)
                got = self.pending.take(self)
                if got is None:
                    return taken, None
                if got[0] != pid:
                    return taken, got
                taken.append(got[1])
                self.send(pid, answer, in_run=True)
        finally:
            self.in_run = False
        return taken, None

    def forget(self, pid: int) -> None:
        self.forgotten.append(pid)

    def uid(self, pid: int) -> int:
        return 0

    def writing(self) -> AbstractContextManager[None]:
        return nullcontext()


class SimClientLink(_SimLink):
    def __init__(self, net: Network, client_pid: int) -> None:
        super().__init__(net, Pending())
        self.client_pid = client_pid
        self.pid = SERVER_PID
        self.sent = 0  # signals sent to the server

    def send(self, symbol: int, *, in_run: bool = False) -> OSError | None:
        self.sent += 1
        self.pending.told[SERVER_PID] = -1 if in_run else self.net.clock[0]
        if not self.net.server_link.pending.post(symbol, self.client_pid):
            self.net.lost += 1
        return None

    def server_view(self, last_symbol: int | None) -> ServerView:
        net = self.net
        server = net.server_link
        return ServerView(
            stopped=net.server_stopped,
            holding=last_symbol is not None and last_symbol in server.pending.signals,
            asleep=net.sees_asleep and net.server_asleep,
        )

    def bounce(
        self, symbols: Sequence[int], expect: int
    ) -> tuple[int, Signal | None, OSError | None]:
        self.in_run = True
        try:
            for index, symbol in enumerate(symbols):
                if not self.pending and self.net.lead == "client":
                    self.net.run_server()
                got = self.pending.take(self)
                if got is None:
                    return index, None, None
                if got != (SERVER_PID, expect):
                    return index, got, None
                self.send(symbol, in_run=True)
        finally:
            self.in_run = False
        return len(symbols), None, None


@dataclass
class SimClient:
    pid: int
    text: str
    sender: Sender
    link: SimClientLink
    driver: ClientDriver
    alive: bool = True

    @property
    def pending(self) -> dict[int, int]:
        return self.link.pending.signals

    @property
    def asleep(self) -> bool:
        """Asleep in its signal wait: alive, nothing pending, not in a tight loop."""
        return self.alive and not self.link.pending and not self.link.in_run

    @property
    def succeeded(self) -> bool:
        return self.sender.state is SenderState.DONE

    def due(self, now: float) -> bool:
        timer = self.sender.get_timer()
        return self.alive and not self.driver.finished and timer is not None and now >= timer

    def runnable(self, now: float) -> bool:
        if not self.alive or self.driver.finished or self.link.in_run:
            return False
        return bool(self.link.pending) or self.driver.holding_signal or self.due(now)


class Network:
    """The shipped drivers of one server and any number of clients, over simulated signals."""

    def __init__(
        self,
        receiver: Receiver | None = None,
        *,
        sees_asleep: bool = True,
        bulk: bool = False,
        lead: str = "server",
    ) -> None:
        self.receiver = receiver if receiver is not None else Receiver()
        self.bulk = bulk  # the drivers' tight loops run (the links poll)
        # One CPU of the simulator stands for two: the side whose tight loop leads lets the
        # other run a step whenever it finds nothing pending, and so moves the runs ("server":
        # the server's collect; "client": the clients' bounce).
        self.lead = lead
        # Whether a process can see the other asleep in sigtimedwait (/proc/PID/wchan; some
        # kernels hide it): without it, a lost signal is never provably lost.
        self.sees_asleep = sees_asleep
        self.now = 0.0
        self.clients: dict[int, SimClient] = {}
        self.printed: list[MessageReceived] = []
        self.lost = 0  # signals merged into a pending one of the same kind
        self.clock = [0]  # the kernel's event counter, shared by every pending set
        self.server_stopped = False  # SIGSTOP: the server takes nothing and its clock waits
        self.unadmitted: set[int] = set()  # PIDs the server's link refuses to hold
        self.output_broken = False  # the server's output is gone: a write fails (OutputError)
        self._turn = 0  # which client looks first for a pending signal (step)
        self.server = ServerDriver(self.receiver, SimServerLink(self), self._write)

    def _write(self, event: MessageReceived, uid: int) -> None:
        """The server's on_message: print, unless the output is gone."""
        if self.output_broken:
            raise OutputError("the output is gone")
        self.printed.append(event)

    @property
    def server_link(self) -> SimServerLink:
        link = self.server.link
        assert isinstance(link, SimServerLink)
        return link

    @property
    def server_pending(self) -> dict[int, int]:
        return self.server_link.pending.signals

    @property
    def server_asleep(self) -> bool:
        link = self.server_link
        return not self.server_stopped and not link.pending and not link.in_run

    # -- set-up --------------------------------------------------------------------------------

    def add_client(
        self, pid: int, text: str, *, nonce: int | None = None, **sender_options: float
    ) -> SimClient:
        """Start a send from ``pid``: a new process, or the next send of one that gave up on
        its last (``give_up``), which then comes with a new nonce."""
        if nonce is None:
            nonce = pid * 7919  # distinct per client
        sender = Sender(text.encode("utf-8"), nonce=nonce, **sender_options)  # type: ignore[arg-type]
        link = SimClientLink(self, pid)
        client = SimClient(pid, text, sender, link, ClientDriver(sender, link))
        self.clients[pid] = client
        client.driver.start()
        return client

    # -- who runs ------------------------------------------------------------------------------

    def server_due(self) -> bool:
        timer = self.receiver.get_timer()
        return not self.server_stopped and timer is not None and self.now >= timer

    def server_runnable(self) -> bool:
        link = self.server_link
        if self.server_stopped or link.in_run:
            return False
        return bool(link.pending) or self.server.holding_signal or self.server_due()

    def run_server(self, *, due_only: bool = False) -> bool:
        """The server takes one step, if the kernel would wake it (``due_only``: only if
        its deadline passed)."""
        if not self.server_stopped and not self.server_link.in_run:
            self.server_link.pending.drop_forged(self.server_link)
        if not self.server_runnable() or (due_only and not self.server_due()):
            return False
        self.server.step()
        return True

    def run_client(self, pid: int, *, due_only: bool = False) -> bool:
        client = self.clients[pid]
        if client.alive and not client.link.in_run:
            client.link.pending.drop_forged(client.link)
        if not client.runnable(self.now) or (due_only and not client.due(self.now)):
            return False
        client.driver.step()
        return True

    def run_other(self, pid: int) -> None:
        """The server's tight loop found nothing: its peer runs on the other CPU."""
        if pid in self.clients:
            self.run_client(pid)

    # -- faults --------------------------------------------------------------------------------

    def deliver_to_server(self, symbol: int | None = None) -> bool:
        """Let the server run on a pending signal (``symbol`` picks one if both are pending)."""
        if not self.server_link.pending or self.server_stopped:
            return False
        self.server_link.pending.prefer = symbol
        return self.run_server()

    def deliver_to_client(self, pid: int, symbol: int | None = None) -> bool:
        client = self.clients[pid]
        if not client.link.pending or not client.alive:
            return False
        client.link.pending.prefer = symbol
        return self.run_client(pid)

    def redeliver_to_server(self, pid: int, symbol: int) -> None:
        """A duplicated signal: the server takes the same one twice."""
        if self.server_stopped:
            return
        self.server_link.pending.extra.append((pid, symbol))
        self.run_server()

    def inject_to_server(
        self, symbol: int, from_pid: int = STRANGER_PID, *, forged: bool = False
    ) -> None:
        if not self.server_link.pending.post(symbol, from_pid, forged=forged):
            self.lost += 1

    def inject_to_client(
        self, pid: int, symbol: int, from_pid: int = STRANGER_PID, *, forged: bool = False
    ) -> None:
        if not self.clients[pid].link.pending.post(symbol, from_pid, forged=forged):
            self.lost += 1

    def eat_at_server(self, symbol: int | None = None) -> bool:
        """The signal pending at the server is swallowed by a stranger's (see ``Pending``)."""
        return self.server_link.pending.eat(symbol)

    def eat_at_client(self, pid: int, symbol: int | None = None) -> bool:
        return self.clients[pid].link.pending.eat(symbol)

    def shut_down(self) -> None:
        """A stop reaches the server between its steps: it tells everyone (the driver's
        drain then goes on with the usual steps, run here like any other)."""
        self.server.shut_down()

    def give_up(self, pid: int) -> None:
        """The client's send gives up (its timeout, an interrupt) but its process lives on,
        as a program using the API does: it takes what is pending and stops listening."""
        client = self.clients.pop(pid)
        client.link.pending.signals.clear()

    def kill(self, pid: int) -> None:
        """The client exits: its pending signals go with it; the server finds out as the
        real one does (a failed send, its pidfd at the next peer check)."""
        client = self.clients[pid]
        client.alive = False
        client.link.pending.signals.clear()
        pending = self.server_link.pending.signals
        for symbol, from_pid in list(pending.items()):
            if from_pid == pid:
                del pending[symbol]

    # -- time ----------------------------------------------------------------------------------

    def deadlines(self) -> list[float]:
        found = [c.sender.get_timer() for c in self.clients.values() if c.alive]
        if not self.server_stopped:
            found.append(self.receiver.get_timer())
        return [d for d in found if d is not None]

    def advance(self, seconds: float) -> None:
        """Time passes; each process whose deadline passed runs, until none is due (what
        is pending is taken by a process that runs, as its wait returns it first)."""
        self.now += seconds
        for _ in range(1000):
            ran = self.run_server(due_only=True)
            for pid in list(self.clients):
                ran = self.run_client(pid, due_only=True) or ran
            if not ran:
                return
        raise AssertionError("processes still due after 1000 rounds at one moment")

    def advance_to_next_deadline(self) -> bool:
        deadlines = self.deadlines()
        if not deadlines:
            return False
        self.advance(max(min(deadlines) - self.now, 0.0))
        return True

    # -- driving -------------------------------------------------------------------------------

    def step(self, latency: float = 1e-5) -> bool:
        """One process runs on a pending signal (server first), else time jumps to the next
        deadline."""
        self.now += latency
        if self.deliver_to_server() or self.run_server(due_only=True):
            return True
        # Clients take turns, and one whose deadline passed runs too (each runs on its own
        # CPU in truth): otherwise a busy client and the server would hold up the others,
        # their signals and their timers, for as long as they keep each other busy.
        pids = list(self.clients)
        self._turn = (self._turn + 1) % max(len(pids), 1)
        for pid in pids[self._turn :] + pids[: self._turn]:
            if self.run_client(pid):
                return True
        return self.advance_to_next_deadline()

    def quiet(self) -> bool:
        return all(c.driver.finished or not c.alive for c in self.clients.values()) and (
            not self.server_link.pending and self.receiver.session is None
        )

    def run(self, max_steps: int = 2_000_000) -> None:
        """Run fault-free until every live client has finished and nothing is pending."""
        for _ in range(max_steps):
            if self.quiet() or not self.step():
                return
        raise AssertionError(f"link still busy after {max_steps} steps")

    def stale_merges(self) -> list[tuple[int, int]]:
        """Signals lost to a stray that was pending before their sender was told to send:
        a driver that takes what is pending before it answers (or sends) never lets that
        happen outside its tight loops. (Lost sender, stray sender) pairs."""
        found = list(self.server_link.pending.stale_merges)
        for client in self.clients.values():
            found += client.link.pending.stale_merges
        return found

    def printed_texts(self) -> list[str]:
        return [event.text for event in self.printed]
