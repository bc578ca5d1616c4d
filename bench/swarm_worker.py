"""One process of the swarm: many light sessions on one event loop, driven by the parent.

    python -m zchat.bench.swarm_worker CONTROL WORKER FIRST COUNT KEYDIR

Seats FIRST .. FIRST+COUNT-1 are this worker's; seat i is nickname `seat_nick(i)` with
identity key i of the key cache (`bench.keycache`). Each seat is one DEALER socket, so
one TCP connection to its broker, as a real peer has. The sessions speak through
`bench.lightwire`, keep their heartbeats on the broker's interval whatever else
happens, and count what arrives; they never verify or decrypt anything.

The control dialog (JSON over a DEALER to the parent's ROUTER; each command is answered
once its phase is done, while the sessions keep running)::

    worker -> {"ready": true}                                 keys loaded, certified
    parent -> {"cmd": "join", "seats": {seat: [endpoint, room, size]}, "start_ns": ...}
           <- JoinReport  every seat welcomed and knowing its room, gone, or timed out
    parent -> {"cmd": "stats"}                                <- {"evicted": [...], ...}
    parent -> {"cmd": "busy", "rooms": {room: {...}}, ...}    <- BusyReport after draining
    parent -> {"cmd": "leave"}                                <- {}   BYE, sockets closed
    parent -> {"cmd": "quit"}                                 <- {}   and exit
"""

from __future__ import annotations

import heapq
import os
import selectors
import signal
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import zmq

from zchat.bench import lightwire as lw
from zchat.bench.clock import sleep_until
from zchat.bench.keycache import read_identity
from zchat.envelope import Identity, certify, generate_session_key, room_id
from zchat.wire.protocol import ErrorCode
from zchat.wire.transport import configure, readable, recv_bounded

#: A worker whose parent is gone, or that has lived this long, exits on its own.
MAX_LIFETIME_S: Final = 1800.0
#: Messages read from one socket before the loop looks at its timers again: a storm
#: of JOINs must not push this worker's own heartbeats late.
DRAIN_BATCH: Final = 32
#: After a busy phase, a worker that has seen nothing for this long stops waiting.
QUIET_S: Final = 2.0
_GONE_ERRORS: Final = frozenset({ErrorCode.EVICTED, ErrorCode.REPLACED, ErrorCode.HELLO_FIRST})
_NS: Final = 1_000_000_000
#: How often the loop asks whether a phase is over.
CHECK_EVERY_NS: Final = 5_000_000
#: The swarm's certificates outlive any run.
CERT_LIFETIME_MS: Final = 86_400_000


def seat_nick(seat: int) -> str:
    return f"s{seat:04d}"


@dataclass(eq=False)
class Session:
    seat: int
    nick: str
    identity: Identity
    #: Bound to the room (its room id): made when the session joins one.
    certificate: bytes = b""
    sock: zmq.Socket[bytes] | None = None
    room: str = ""
    room_id: bytes = b""
    size: int = 0  # members of its room, itself included
    state: str = "idle"  # idle, hello, in, gone
    interval_ns: int = _NS
    next_beat: int = 0
    known: int = 0  # other members heard of: snapshot, joins, leaves
    welcomed_ns: int = 0
    settled_ns: int = 0
    recipients: lw.Recipients | None = None  # made when it first sends (`_address`)
    recipients_of: tuple[int, ...] = ()  # the room's seats they were made from


@dataclass
class JoinReport:
    connected: int = 0  # seats that said HELLO in this phase
    welcomed: int = 0
    settled: int = 0
    last_welcome_ns: int = 0
    last_settled_ns: int = 0
    rx_bytes: int = 0
    rx_messages: int = 0
    rehellos: int = 0
    refused: dict[str, int] = field(default_factory=dict)


@dataclass
class BusyReport:
    sent: int = 0
    acked: int = 0
    absent: int = 0
    expected: int = 0  # deliveries this worker's seats should get, from what was due
    received: int = 0
    in_window: int = 0
    wire_bytes: int = 0
    latencies_us: list[int] = field(default_factory=list)


class Worker:
    def __init__(self, control: str, worker: int, first: int, count: int, keys: Path) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        # libzmq's default is 1,023 sockets per context: a worker may hold more.
        self.ctx.set(zmq.MAX_SOCKETS, count + 64)
        self.control = self.ctx.socket(zmq.DEALER)
        self.control.setsockopt(zmq.LINGER, 1000)
        self.control.setsockopt(zmq.IDENTITY, f"w{worker}".encode())
        self.control.connect(control)
        # One session key for all: the broker checks certificates' signatures only.
        self.session_key = generate_session_key()
        self.sessions: dict[int, Session] = {}
        for seat in range(first, first + count):
            self.sessions[seat] = Session(seat, seat_nick(seat), read_identity(keys, seat))
        # Not zmq.Poller: zmq_poll asks every socket for its FD and EVENTS on every call,
        # a quarter of a worker's CPU in a storm, on the cores the broker under test has.
        # The OS's own (epoll, kqueue) over the sockets' FDs instead.
        self.selector = selectors.DefaultSelector()
        self.control_fd = self.control.FD
        self.selector.register(self.control_fd, selectors.EVENT_READ)
        self.by_fd: dict[int, Session] = {}
        # A socket's FD only says that its state may have changed, and a send or a recv
        # can take that signal while libzmq handles its commands. So a socket is looked
        # at until libzmq itself says nothing waits (EVENTS, or a recv raising Again),
        # and again after anything is sent on it.
        self.ready: set[Session] = set()
        self.control_ready = False  # `ready`, for the parent's socket
        self.beats: list[tuple[int, int]] = []  # (due, seat): a heap, stale entries skipped
        self.evicted: set[str] = set()  # nicknames the broker gave up on, as anyone heard
        self.refused: Counter[str] = Counter()
        self.rehellos = 0  # handshakes the broker forgot, said again
        self.rx_bytes = 0
        self.rx_messages = 0
        self.phase: str | None = None
        self.join: JoinReport | None = None
        self.busy: BusyReport | None = None
        self.window = (0, 0)
        self.sends: list[tuple[int, int, int]] = []  # (due, seat, number), sorted; popped
        self.done_after = 0  # a phase's deadline
        self.busy_end = 0
        self.last_rx = 0
        self.next_check = 0  # when `_check_phase` looks again

    # --- the loop ----------------------------------------------------------------------

    def serve(self) -> None:
        self._reply({"ready": True})
        parent = os.getppid()
        stop_at = time.monotonic() + MAX_LIFETIME_S
        check_parent = 0.0
        while True:
            now = time.monotonic_ns()
            timeout = self._timers(now)
            if self.phase is not None:  # wake to ask whether the phase is over
                timeout = min(timeout, max(0, (self.next_check - now) // 1_000_000 + 1))
            self._wait(0 if self.ready or self.control_ready else timeout)
            if self.control_ready and not self._commands():
                return
            self._drain_ready()
            self._check_phase(time.monotonic_ns())
            if time.monotonic() > check_parent:
                check_parent = time.monotonic() + 1
                if os.getppid() != parent or time.monotonic() > stop_at:
                    return

    def _timers(self, now: int) -> int:
        """Send every heartbeat and message that is due; ms until the next one."""
        beats, sends = self.beats, self.sends
        while beats and beats[0][0] <= now:
            due, seat = heapq.heappop(beats)
            s = self.sessions[seat]
            if s.state == "in" and s.next_beat == due and s.sock is not None:
                self._send(s, lw.heartbeat())
                s.next_beat = due + s.interval_ns
                heapq.heappush(beats, (s.next_beat, seat))
        while sends and sends[-1][0] <= now:
            due, seat, number = sends.pop()
            self._send_message(self.sessions[seat], due, number)
        nxt = min(
            beats[0][0] if beats else now + _NS,
            sends[-1][0] if sends else now + _NS,
            now + _NS // 10,
        )
        return max(0, (nxt - now) // 1_000_000)

    def _wait(self, timeout_ms: int) -> None:
        """Mark ready every socket whose FD has signalled, waiting at most `timeout_ms`."""
        for key, _ in self.selector.select(timeout_ms / 1000):
            fd = key.fd
            if fd == self.control_fd:
                self.control_ready = True
            else:
                self.ready.add(self.by_fd[fd])

    def _commands(self) -> bool:
        """Run every command waiting from the parent; False once told to quit."""
        # Asked again after each command: its reply is a send, which may take the signal.
        while readable(self.control):
            # The parent sends JSON objects only.
            if not self._command(cast(dict[str, Any], self.control.recv_json())):
                return False
        self.control_ready = False
        return True

    def _drain_ready(self) -> None:
        # A copy: draining may close a session (gone), which takes it out of `ready`.
        for s in list(self.ready):
            if s.sock is None or not readable(s.sock) or not self._drain(s):
                self.ready.discard(s)

    def _drain(self, s: Session) -> bool:
        """Read up to DRAIN_BATCH messages; whether more may be waiting."""
        sock = s.sock
        assert sock is not None
        for _ in range(DRAIN_BATCH):
            try:
                # As a real peer reads (`peer.client`): a storm is a million JOINs here.
                frames = recv_bounded(sock)
            except zmq.Again:
                # A recv that finds nothing has handled libzmq's commands first: what
                # comes next signals the FD, even after sends made while draining.
                return False
            now = time.monotonic_ns()
            self.last_rx = now
            self.rx_messages += 1
            self.rx_bytes += sum(map(len, frames))
            self._handle(s, frames, now)
            if s.sock is None:
                return False
        return True

    def _handle(self, s: Session, frames: list[bytes], now: int) -> None:
        cmd = lw.command(frames)
        if cmd == lw.DELIVER:
            busy = self.busy
            if busy is not None:
                due, _ = lw.delivery_stamp(frames)
                busy.received += 1
                busy.wire_bytes += sum(map(len, frames))
                start, end = self.window
                if start <= now < end:
                    busy.in_window += 1
                if start <= due < end:
                    busy.latencies_us.append((now - due) // 1000)
        elif cmd == lw.JOIN:
            s.known += 1
            self._settle(s, now)
        elif cmd == lw.ACK:
            if self.busy is not None:
                self.busy.acked += 1
                self.busy.absent += lw.ack_absent(frames)
        elif cmd == lw.LEAVE:
            s.known -= 1
            nick, reason = lw.leave_nick_and_reason(frames)
            if reason in lw.EVICTION_REASONS:
                self.evicted.add(nick.decode())
        elif cmd == lw.CHALLENGE:
            der = s.identity.public_der
            self._send(s, lw.proof(s.identity.private_key, lw.challenge_nonce(frames), s.nick, der))
        elif cmd == lw.WELCOME:
            s.state = "in"
            s.welcomed_ns = now
            s.interval_ns = lw.welcome_interval_ms(frames) * 1_000_000
            s.next_beat = now + s.interval_ns
            heapq.heappush(self.beats, (s.next_beat, s.seat))
        elif cmd == lw.SNAPSHOT:
            s.known += lw.snapshot_size(frames)
            self._settle(s, now)
        elif cmd == lw.REFUSE:
            self.refused[str(lw.refuse_code(frames))] += 1
            self._gone(s)
        elif cmd == lw.ERROR:
            code = lw.error_code(frames)
            if code == ErrorCode.HELLO_FIRST and s.state == "hello" and s.sock is not None:
                # The broker forgot our handshake: say HELLO again, as a real peer does.
                self.rehellos += 1
                self._send(s, lw.hello(s.nick, s.identity.public_der, s.certificate, s.room))
            elif code in _GONE_ERRORS:
                self.evicted.add(s.nick)
                self._gone(s)

    def _settle(self, s: Session, now: int) -> None:
        if not s.settled_ns and s.state == "in" and s.known >= s.size - 1:
            s.settled_ns = now

    def _gone(self, s: Session) -> None:
        s.state = "gone"
        self._close(s)

    def _open(self, s: Session, endpoint: str) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        configure(sock)
        sock.connect(endpoint)
        s.sock = sock
        fd = sock.FD
        self.by_fd[fd] = s
        self.selector.register(fd, selectors.EVENT_READ)
        self._send(s, lw.hello(s.nick, s.identity.public_der, s.certificate, s.room))

    def _close(self, s: Session, linger: int = 0) -> None:
        if s.sock is not None:
            # Before the close: the next socket opened may be given the same fd.
            fd = s.sock.FD
            self.selector.unregister(fd)
            del self.by_fd[fd]
            self.ready.discard(s)
            s.sock.close(linger=linger)
            s.sock = None

    def _send(self, s: Session, frames: list[bytes]) -> None:
        assert s.sock is not None
        s.sock.send_multipart(frames)
        self.ready.add(s)  # the send may have taken the FD's signal

    def _reply(self, msg: dict[str, Any]) -> None:
        self.control.send_json(msg)
        self.control_ready = True  # as `_send`

    def _send_message(self, s: Session, due: int, number: int) -> None:
        if s.state != "in" or s.sock is None or self.busy is None or s.recipients is None:
            return
        frames = lw.room_message(
            s.nick,
            s.identity.fingerprint,
            s.room_id,
            s.recipients,
            number=number,
            due_ns=due,
            wall_ms=int(time.time() * 1000),
        )
        self._send(s, frames)
        self.busy.sent += 1

    # --- commands ------------------------------------------------------------------------

    def _command(self, cmd: dict[str, Any]) -> bool:
        name = cmd["cmd"]
        if name == "quit":
            self._leave()
            self._reply({})
            return False
        if name == "join":
            self._start_join(cmd)
        elif name == "busy":
            self._start_busy(cmd)
        elif name == "stats":
            present = sum(1 for s in self.sessions.values() if s.state == "in")
            self._reply(
                {"evicted": sorted(self.evicted), "refused": self.refused, "present": present}
            )
        elif name == "leave":
            self._leave()
            self._reply({})
        return True

    def _start_join(self, cmd: dict[str, Any]) -> None:
        """HELLO from every seat named, at `start_ns`; with `rejoin`, only from those not
        in their room already (evicted or refused: a real peer would come back)."""
        # Every worker gets every seat; each takes its own.
        seats = {int(k): v for k, v in cmd["seats"].items() if int(k) in self.sessions}
        connect: list[tuple[Session, str]] = []
        for seat, (endpoint, room, size) in seats.items():
            s = self.sessions[seat]
            if cmd["rejoin"] and s.state == "in" and s.room == room:
                s.size = size
                continue
            self._close(s)
            if s.room != room or not s.certificate:
                s.room_id = room_id(room)
                cert = certify(
                    s.identity,
                    s.nick,
                    self.session_key,
                    room_id=s.room_id,
                    created_ms=int(time.time() * 1000),
                    lifetime_ms=CERT_LIFETIME_MS,
                )
                s.certificate = cert.encode()
            s.room, s.size, s.known, s.state = room, size, 0, "hello"
            s.welcomed_ns = s.settled_ns = 0
            connect.append((s, endpoint))
        self.join = JoinReport(connected=len(connect))
        self.rx_bytes = self.rx_messages = 0
        self.phase = "join"
        self.done_after = cmd["start_ns"] + int(cmd["timeout_s"] * _NS)
        sleep_until(cmd["start_ns"])
        for s, endpoint in connect:
            self._open(s, endpoint)

    def _start_busy(self, cmd: dict[str, Any]) -> None:
        start, measure, end = cmd["start_ns"], cmd["measure_ns"], cmd["end_ns"]
        report = BusyReport()
        sends: list[tuple[int, int, int]] = []
        mine = {s.seat for s in self.sessions.values() if s.state == "in"}
        for plan in cmd["rooms"].values():
            members: list[int] = plan["seats"]
            seats = tuple(members)
            here = [m for m in members if m in mine]
            period = _NS / plan["rate"]
            first = start + int(period * plan["offset"])
            number = 0
            while (due := first + int(number * period)) < end:
                sender = members[number % len(members)]
                if sender in mine:
                    sends.append((due, sender, number))
                    self._address(self.sessions[sender], seats)
                # Every member but the sender gets it, if the sender is still in.
                report.expected += len(here) - (1 if sender in here else 0)
                number += 1
        # Due last first: the loop pops the next one off the end.
        self.sends = sorted(sends, reverse=True)
        self.busy = report
        self.window = (measure, end)
        self.phase = "busy"
        self.done_after = end + int(cmd["drain_s"] * _NS)
        self.busy_end = end

    @staticmethod
    def _address(s: Session, seats: tuple[int, ...]) -> None:
        """Give a sender its recipients (the other seats of its room), once per room.

        Made here, before the phase's clock starts, and only for seats that will send:
        a tree over 999 nicknames takes 3-6 ms, and made for every seat when it joined
        (in the storm's 2 s lead), it added 3 CPU-seconds to the storm's figures and
        could run into the storm itself."""
        if s.recipients is None or s.recipients_of != seats:
            s.recipients = lw.Recipients.of(tuple(seat_nick(m) for m in seats if m != s.seat))
            s.recipients_of = seats

    def _check_phase(self, now: int) -> None:
        # Whether a phase is over is a scan of every seat: not on each of the storm's
        # many thousand wake-ups. The times reported are stamped as messages arrive.
        if now < self.next_check:
            return
        self.next_check = now + CHECK_EVERY_NS
        if self.phase == "join":
            self._check_join(now)
        elif self.phase == "busy":
            self._check_busy(now)

    def _check_join(self, now: int) -> None:
        joining = [s for s in self.sessions.values() if s.room]
        if now < self.done_after and any(
            s.state == "hello" or (s.state == "in" and not s.settled_ns) for s in joining
        ):
            return
        report = self.join
        assert report is not None
        welcomed = [s.welcomed_ns for s in joining if s.welcomed_ns]
        settled = [s.settled_ns for s in joining if s.settled_ns]
        report.welcomed, report.settled = len(welcomed), len(settled)
        report.last_welcome_ns = max(welcomed, default=0)
        report.last_settled_ns = max(settled, default=0)
        report.rx_bytes, report.rx_messages = self.rx_bytes, self.rx_messages
        report.refused = dict(self.refused)
        report.rehellos, self.rehellos = self.rehellos, 0
        self.phase, self.join = None, None
        self._reply(asdict(report))

    def _check_busy(self, now: int) -> None:
        busy = self.busy
        assert busy is not None
        if now < self.busy_end or self.sends:
            return
        quiet = now - max(self.last_rx, self.busy_end) > QUIET_S * _NS
        if busy.received < busy.expected and now < self.done_after and not quiet:
            return
        self.phase, self.busy = None, None
        self._reply(asdict(busy))

    def _leave(self) -> None:
        for s in self.sessions.values():
            if s.sock is not None and s.state == "in":
                s.sock.send_multipart(lw.bye())  # and closed: nothing more to read
            self._close(s, linger=200)
            s.state, s.room = "idle", ""
        self.beats.clear()


def main(argv: list[str]) -> int:
    control, worker, first, count, keys = argv
    # Ctrl-C reaches the whole process group; the parent decides what happens to us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    w = Worker(control, int(worker), int(first), int(count), Path(keys))
    try:
        w.serve()
    except Exception as exc:
        w.control.send_json({"error": f"worker {worker}: {exc!r}"})
        raise
    finally:
        w.selector.close()
        w.control.close(linger=1000)
        w.ctx.destroy(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
