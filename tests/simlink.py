"""A simulated signal link: one receiver, many senders, Linux's pending-signal rules, a fake clock.

Each process has at most one pending signal per kind (SIGUSR1 = symbol 0, SIGUSR2 = symbol 1),
and a second signal of a kind already pending is merged into it: the first sender's PID is kept
and the second signal is lost, as signal(7) says. On top of that the test can drop a pending
signal, deliver one twice, inject a stranger's signal, pick which of two pending kinds is taken
first, kill a client, stop the server (SIGSTOP) and move time forward. No real signal is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from minitalk.protocol import (
    CONTINUE,
    MessageReceived,
    Receiver,
    Sender,
    SenderState,
    ServerView,
)

SERVER_PID = 1000
STRANGER_PID = 999


@dataclass
class SimClient:
    pid: int
    text: str
    sender: Sender
    pending: dict[int, int] = field(default_factory=dict)  # symbol -> sending PID
    alive: bool = True
    run: list[int] | None = None  # a bulk run under way (Network(bulk=True)): its symbols
    ran: int = 0  # how many of them went out

    @property
    def succeeded(self) -> bool:
        return self.sender.state is SenderState.DONE


class Network:
    """Joins a ``Receiver`` and any number of ``Sender`` machines through pending-signal sets."""

    def __init__(
        self, receiver: Receiver | None = None, *, sees_asleep: bool = True, bulk: bool = False
    ) -> None:
        self.receiver = receiver if receiver is not None else Receiver()
        # Whether both loops move runs of plain frame bits in their tight loops, as the real
        # ones do: the machines' bulk()/bulk_done()/bulk_received() are then driven here.
        self.bulk = bulk
        self.server_run = 0  # symbols the server's current run may still take
        self.server_taken: list[int] = []
        # Whether a client can see the server asleep in sigtimedwait (/proc/PID/wchan; some
        # kernels hide it): without it, a lost signal is never provably lost.
        self.sees_asleep = sees_asleep
        self.now = 0.0
        self.server_pending: dict[int, int] = {}
        self.clients: dict[int, SimClient] = {}
        self.printed: list[MessageReceived] = []
        self.lost = 0  # signals merged into a pending one of the same kind
        self.server_stopped = False  # SIGSTOP: the server takes nothing and its clock waits

    # -- set-up --------------------------------------------------------------------------------

    def add_client(self, pid: int, text: str, **sender_options: float) -> SimClient:
        nonce = pid * 7919  # distinct per client
        sender = Sender(text.encode("utf-8"), nonce=nonce, **sender_options)  # type: ignore[arg-type]
        client = SimClient(pid, text, sender)
        self.clients[pid] = client
        sender.start(self.now)
        self.flush()
        return client

    # -- the kernel's part ---------------------------------------------------------------------

    @staticmethod
    def _post(pending: dict[int, int], symbol: int, from_pid: int) -> bool:
        if symbol in pending:
            return False  # merged: the first signal's siginfo is kept, this one is gone
        pending[symbol] = from_pid
        return True

    def flush(self) -> None:
        """Move every outbox into the target's pending set; handle printed messages first."""
        receiver = self.receiver
        while True:
            moved = False
            for client in self.clients.values():
                if not client.sender.outbox:
                    continue
                self._drain_strays(client)
                for symbol in client.sender.outbox:
                    moved = True
                    if client.alive and not self._post(self.server_pending, symbol, client.pid):
                        self.lost += 1
                client.sender.outbox.clear()
                client.sender.sent(self.now)
                self._start_client_run(client)
            for event in receiver.events:
                if isinstance(event, MessageReceived):
                    self.printed.append(event)
                    receiver.message_written(self.now)
            receiver.events.clear()
            outbox = receiver.outbox[:]
            receiver.outbox.clear()
            for pid, symbol in outbox:
                moved = True
                target = self.clients.get(pid)
                if target is None or not target.alive:
                    receiver.peer_gone(pid, self.now)  # the server loop does this on ESRCH
                elif not self._post(target.pending, symbol, SERVER_PID):
                    self.lost += 1
            if not moved and not receiver.outbox:
                self._start_server_run()
                return

    # -- the tight loops of the bulk path ------------------------------------------------------

    def _start_client_run(self, client: SimClient) -> None:
        # As the client loop: only with no answer of the server's already pending here.
        if self.bulk and client.run is None and SERVER_PID not in client.pending.values():
            run = client.sender.bulk()
            if run:
                client.run, client.ran = run, 0

    def _end_client_run(self, client: SimClient) -> None:
        if client.run is not None:
            client.run = None
            if client.ran:
                client.sender.bulk_done(client.ran, self.now)
                client.sender.sent(self.now)

    def _start_server_run(self) -> None:
        if self.bulk and not self.server_run and not self.server_stopped:
            self.server_run = self.receiver.bulk()
            self.server_taken = []

    def end_runs(self) -> None:
        """Every tight loop hands what it moved to its machine (before anything else
        reaches the machine: a timer, a stray, a kill, a shutdown)."""
        self.end_runs_of_server()
        for client in self.clients.values():
            self._end_client_run(client)

    def _drain_strays(self, client: SimClient) -> None:
        """The client loop takes pending strays just before it sends (one still pending when
        the answer lands would swallow it); a server signal stays pending."""
        for symbol, from_pid in list(client.pending.items()):
            if from_pid != SERVER_PID and client.alive:
                del client.pending[symbol]
                client.sender.stray(self.now)

    def deliver_to_server(self, symbol: int | None = None) -> bool:
        """Let the server take a pending signal (``symbol`` picks one if both are pending)."""
        if not self.server_pending or self.server_stopped:
            return False
        if symbol not in self.server_pending:
            symbol = min(self.server_pending)
        pid = self.server_pending.pop(symbol)
        if self.server_run and pid == self.receiver.peer:  # the server's tight loop
            self.server_taken.append(symbol)
            target = self.clients.get(pid)
            if (
                target is not None
                and target.alive
                and not self._post(target.pending, CONTINUE, SERVER_PID)
            ):
                self.lost += 1
            if len(self.server_taken) == self.server_run:
                self.end_runs_of_server()
            return True
        self.end_runs_of_server()
        self.receiver.receive(pid, symbol, self.now)
        self.flush()
        return True

    def end_runs_of_server(self) -> None:
        if self.server_run:
            self.server_run = 0
            self.receiver.bulk_received(self.server_taken, self.now)
            self.server_taken = []

    def deliver_to_client(self, pid: int, symbol: int | None = None) -> bool:
        client = self.clients[pid]
        if not client.pending or not client.alive:
            return False
        if symbol not in client.pending:
            symbol = min(client.pending)
        from_pid = client.pending.pop(symbol)
        if client.run is not None:  # the client's tight loop
            if from_pid == SERVER_PID and symbol == CONTINUE:
                next_symbol = client.run[client.ran]
                client.ran += 1
                if not self._post(self.server_pending, next_symbol, client.pid):
                    self.lost += 1
                if client.ran == len(client.run):
                    self._end_client_run(client)
                return True
            self._end_client_run(client)
        if from_pid == SERVER_PID:
            client.sender.receive(symbol, self.now)
        else:  # never data, but the client loop tells the machine a stray came
            client.sender.stray(self.now)
        self.flush()
        return True

    def redeliver_to_server(self, pid: int, symbol: int) -> None:
        """A duplicated signal: the server sees the same thing twice."""
        self.end_runs_of_server()
        self.receiver.receive(pid, symbol, self.now)
        self.flush()

    def inject_to_server(self, symbol: int, from_pid: int = STRANGER_PID) -> None:
        if not self._post(self.server_pending, symbol, from_pid):
            self.lost += 1

    def inject_to_client(self, pid: int, symbol: int, from_pid: int = STRANGER_PID) -> None:
        if not self._post(self.clients[pid].pending, symbol, from_pid):
            self.lost += 1

    def kill(self, pid: int) -> None:
        client = self.clients[pid]
        client.alive = False
        client.pending.clear()
        self.server_pending = {s: p for s, p in self.server_pending.items() if p != pid}
        self.end_runs()
        self.receiver.peer_gone(pid, self.now)
        self.flush()

    # -- time ----------------------------------------------------------------------------------

    def deadlines(self) -> list[float]:
        found = [c.sender.get_timer() for c in self.clients.values() if c.alive]
        found.append(self.receiver.get_timer())
        return [d for d in found if d is not None]

    def advance(self, seconds: float) -> None:
        """Time passes; each side then acts on its deadlines as its loop would: the server
        told whether its peer still lives, each client, after taking what is pending for it,
        told what it would see of the server in /proc."""
        self.now += seconds
        self.end_runs()  # a silence ends every tight loop
        if not self.server_stopped:
            peer = self.clients.get(self.receiver.peer or -1)
            self.receiver.handle_timer(self.now, peer_alive=peer is None or peer.alive)
        self.flush()
        for client in self.clients.values():
            if not client.alive:
                continue
            timer = client.sender.get_timer()
            if timer is None or self.now < timer:
                continue
            view = self.server_view(client)
            while client.pending and self.deliver_to_client(client.pid):
                pass
            timer = client.sender.get_timer()
            if timer is not None and self.now >= timer:
                client.sender.handle_timer(self.now, view)
        self.flush()

    def server_view(self, client: SimClient) -> ServerView:
        """What the client loop would read in the server's /proc entry now."""
        last = client.sender.last_symbol
        return ServerView(
            stopped=self.server_stopped,
            holding=last is not None and last in self.server_pending,
            asleep=self.sees_asleep and not self.server_stopped and not self.server_pending,
        )

    def advance_to_next_deadline(self) -> bool:
        deadlines = self.deadlines()
        if not deadlines:
            return False
        self.advance(max(min(deadlines) - self.now, 0.0))
        return True

    # -- driving -------------------------------------------------------------------------------

    def step(self, latency: float = 1e-5) -> bool:
        """Deliver one pending signal (server first), else jump to the next deadline."""
        self.now += latency
        if self.deliver_to_server():
            return True
        for pid, client in self.clients.items():
            if client.alive and client.pending:
                return self.deliver_to_client(pid)
        return self.advance_to_next_deadline()

    def run(self, max_steps: int = 2_000_000) -> None:
        """Run fault-free until every live client has finished and nothing is pending."""
        for _ in range(max_steps):
            if all(c.sender.finished or not c.alive for c in self.clients.values()) and (
                not self.server_pending and self.receiver.session is None
            ):
                return
            if not self.step():
                return
        raise AssertionError(f"link still busy after {max_steps} steps")

    def printed_texts(self) -> list[str]:
        return [event.text for event in self.printed]
