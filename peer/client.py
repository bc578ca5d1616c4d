"""The peer's socket loop: a DEALER socket driven by `PeerCore`, inside asyncio.

Thin on purpose: it moves frames between the socket and the core, feeds the core the
time and randomness it needs, saves the pins the core hands out, makes the session keys
the core asks for (in a worker thread: RSA key generation takes tens of milliseconds and
releases the GIL), and replaces the socket when the core asks for a reconnect. Front
ends (the scripted mode, the terminal UI, the benchmark, tests) make one with
`Client.create`, call `send_text`, `admit`, `trust`, read `events`, and finish with `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from zchat.envelope import Envelope, Identity, SessionKey, generate_session_key
from zchat.envelope.limits import MAX_FRAME_BYTES
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.core import PeerCore, Phase
from zchat.peer.outbox import Entry
from zchat.peer.pinfile import PinFile
from zchat.peer.pins import Pins, PinsError
from zchat.wire import protocol as p
from zchat.wire.transport import (
    LINGER_MS,
    TransportError,
    configure,
    readable,
    recv_bounded,
    send_nowait,
    unwatch,
    watch,
)

log = logging.getLogger("zchat.peer")

#: libzmq retries a lost TCP connection this often (doubling up to the max), so a
#: peer is back within about half a second of the broker's return.
RECONNECT_IVL_MS = 100
#: Messages handled per turn of the event loop before yielding to it...
PUMP_BATCH = 512
#: ...or seconds: each delivery costs an RSA decryption, so a burst of hundreds is
#: seconds of work on a busy machine, during which the ticker must still send our
#: heartbeats (or the broker evicts us for our silence).
PUMP_SLICE = 0.02
#: At most this many messages are read before the core handles them as one batch
#: (`PeerCore.receive_many`, which opens the deliveries among them in one pass: each
#: primitive over the whole batch, its code kept in the CPU's caches). Reading is cheap
#: and opening is not (an RSA decryption each, 0.3 to 1 ms), so a batch is also cut to
#: what fits in the rest of the slice at the cost per message of the batch before.
READ_BATCH = 16
#: What a message is taken to cost before any was timed: about one delivery's RSA.
FIRST_COST = 0.001
RECONNECT_IVL_MAX_MS = 500
#: Transport handshakes the broker hung up on, in a row with no success between,
#: before we give up. One may be a broker killed mid-handshake; three, about half a
#: second at the reconnect interval above, is a broker with another CURVE key (a CURVE
#: server that cannot open our HELLO just hangs up). A protocol or authentication
#: failure is final at once: it is a misconfiguration, and libzmq stops retrying then.
HANDSHAKE_FAILURES = 3
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
#: libzmq drops a connection that breaks the transport's rules, above all one that
#: carries a frame over MAXMSGSIZE, and then does not reconnect it: the socket stays
#: dead, and the core would only notice when the heartbeat timeout ran out. The monitor
#: tells the two kinds of loss apart: a lost connection is retried (CONNECT_RETRIED
#: follows DISCONNECTED at once, from the same libzmq call), a refused one is not. A
#: disconnect with no retry within this many seconds is taken as refused.
DROP_GRACE = 0.05
REFUSED = (
    f"the broker sent a frame over the {MAX_FRAME_BYTES // 1024} KiB limit "
    "(or other data the transport refuses), so the connection was dropped"
)


def initial_seq(wall: float) -> int:
    """The first sequence number of a run: the wall clock in microseconds.

    So numbers keep increasing across restarts of the sender, and a recipient never
    takes a new message for a replay of an old one (unless the sender averaged a
    million messages a second).
    """
    return int(wall * 1_000_000)


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """CURVE transport keys (Z85): the broker's public key and our own pair."""

    server_public: bytes
    public: bytes
    secret: bytes


class Client:
    def __init__(
        self,
        core: PeerCore,
        endpoint: str,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        curve: CurveKeys | None = None,
        pin_file: PinFile | None = None,
        session_keys: Callable[[], SessionKey] = generate_session_key,
    ) -> None:
        self.core = core
        #: Makes the session keys the core asks for; called in a worker thread.
        self.session_keys = session_keys
        self._keygen: asyncio.Future[SessionKey] | None = None
        self.endpoint = endpoint
        self.curve = curve
        #: Where the pins the core hands out are saved; None keeps them in memory.
        self.pin_file = pin_file
        self.events: asyncio.Queue[ev.Event] = asyncio.Queue()
        self._context = context or zmq.Context.instance()
        self._sock: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self._handshake_failures = 0
        #: When the monitor saw the connection drop, until it sees libzmq retry it.
        self._dropped_at: float | None = None
        #: Set when the transport cannot work (wrong broker key): the client stopped.
        self.failed: ev.TransportFailed | None = None
        self._backlog: deque[list[bytes]] = deque()
        #: A further slice of input is scheduled: one at a time, however many times the
        #: socket signals, so that the ticker gets its turn between slices.
        self._more_scheduled = False
        #: Seconds the core took per message in the last batch read (`_pump`).
        self._cost = FIRST_COST
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_progress = 0.0

    @classmethod
    def create(
        cls,
        nick: str,
        identity: Identity,
        endpoint: str,
        *,
        pin_file: PinFile | None = None,
        config: PeerConfig | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        curve: CurveKeys | None = None,
        session_keys: Callable[[], SessionKey] = generate_session_key,
    ) -> Client:
        """A client for `nick`, its core fed from the real world: the first sequence
        number from the wall clock, message ids from `os.urandom`, dates from
        `time.time`, the CURVE keys its proof of key names, and the pins `pin_file`
        held (saved back there as they change; None keeps them in memory)."""
        core = PeerCore(
            nick,
            identity,
            Pins(pin_file.pins, pin_file.tombstones) if pin_file is not None else Pins(),
            config or PeerConfig(),
            seq=initial_seq(time.time()),
            random=os.urandom,
            date=time.time,
            broker_key=b"" if curve is None else curve.server_public,
            transport_key=b"" if curve is None else curve.public,
        )
        return cls(
            core,
            endpoint,
            context=context,
            curve=curve,
            pin_file=pin_file,
            session_keys=session_keys,
        )

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Connect and say hello. Returns at once; events arrive on `events`."""
        self._loop = asyncio.get_running_loop()
        self._open_socket()
        self.core.start(time.monotonic())
        self._flush()
        period = min(max(self.core.config.heartbeat_interval / 4, 0.01), 0.1)
        self._ticker = asyncio.create_task(self._tick_forever(period))

    async def close(self, max_idle: float = 1.0) -> list[Entry]:
        """Leave the room, after the broker acknowledged everything we sent.

        Waits while acknowledgements keep coming; gives up once none has come for
        `max_idle` seconds (the broker is gone). Returns what stayed unacknowledged.
        """
        self._last_progress = time.monotonic()
        while self.core.pending_acks() and self.core.phase not in _OVER and not self.failed:
            if time.monotonic() - self._last_progress > max_idle:
                break
            await asyncio.sleep(0.01)
        unacked = self.core.pending_acks()
        self.core.leave()
        self._flush()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._keygen is not None:
            self._keygen.cancel()  # nobody will need it: the thread's key is dropped
        self._close_socket(linger=LINGER_MS)
        return unacked

    async def next_event(self, timeout: float | None = None) -> ev.Event:
        return await asyncio.wait_for(self.events.get(), timeout)

    # --- user actions (they raise peer.errors.PeerError for people to read) ----------

    def send_text(self, text: str, to: list[str] | None = None) -> bytes:
        msg_id = self.core.send_text(text, time.monotonic(), to, wall=time.time())
        self._flush()
        return msg_id

    def admit(self, nick: str, fingerprint: str) -> None:
        """Let `nick` read what we send, once the user compared `fingerprint` (at least
        its first 16 characters) with them; raises PeerError when it does not match."""
        try:
            self.core.admit(nick, fingerprint, time.monotonic())
        finally:
            self._flush()

    def trust(self, nick: str, fingerprint: str) -> None:
        """Accept `nick`'s changed key, as `admit` does."""
        try:
            self.core.trust(nick, fingerprint, time.monotonic())
        finally:
            self._flush()

    def revoke(self, nick: str) -> None:
        """Take back `nick`'s admission (`PeerCore.revoke`); raises PeerError if it cannot."""
        try:
            self.core.revoke(nick, time.monotonic())
        finally:
            self._flush()

    def send_envelope(self, envelope: Envelope, *, flush: bool = True) -> None:
        """Send an envelope sealed beforehand, as it is (the benchmark replays a few).

        It waits in the same queue as the core's frames. The core does not know of it:
        it is never resent, and its acknowledgement is no event. With `flush=False` it
        leaves with the next flush, which ends every batch of input read (so a hook
        called from the core on input sends all it queued in one flush) and every tick.
        """
        self._backlog.append(p.encode(p.Send(envelope)))
        if flush:
            self._flush()

    # --- the loop --------------------------------------------------------------------

    def _open_socket(self) -> None:
        sock = self._context.socket(zmq.DEALER)
        configure(sock)
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        if self.curve is not None:
            sock.setsockopt(zmq.CURVE_SERVERKEY, self.curve.server_public)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self.curve.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.curve.secret)
        # libzmq retries a failed handshake forever without a word; its monitor is
        # the only place a wrong broker key shows.
        monitor = watch(
            sock,
            zmq.EVENT_HANDSHAKE_SUCCEEDED
            | _HANDSHAKE_FAILED
            | zmq.EVENT_DISCONNECTED
            | zmq.EVENT_CONNECT_RETRIED,
        )
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            # libzmq refuses a malformed endpoint here; an unreachable broker is no
            # error (it keeps retrying).
            unwatch(sock, monitor)
            sock.close(linger=0)
            raise TransportError(f"cannot connect to {self.endpoint!r}: {exc.strerror}") from exc
        self._sock = sock
        self._monitor = monitor
        self._dropped_at = None
        assert self._loop is not None
        self._loop.add_reader(sock.fileno(), self._pump)
        self._loop.add_reader(monitor.fileno(), self._watch)

    def _close_socket(self, linger: int = 0) -> None:
        sock, self._sock = self._sock, None
        monitor, self._monitor = self._monitor, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
            if monitor is not None:
                self._loop.remove_reader(monitor.fileno())
        if monitor is not None:
            unwatch(sock, monitor)
        sock.close(linger=linger)

    async def _tick_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                self._tick()
            except Exception as exc:
                # A bug, not bad input (the core turns that into events). Say so and
                # keep the clock going: silently stopped heartbeats would get us
                # evicted with nobody the wiser.
                log.exception("zchat peer: internal error in the timer")
                self.events.put_nowait(ev.Problem(ev.ProblemCode.INTERNAL, detail=repr(exc)))

    def _tick(self) -> None:
        self._watch()  # the monitor's FD is edge-triggered too
        if self.failed:
            return
        # Read what is waiting before the core judges the broker's silence: after a
        # stall of ours (SIGSTOP, a laptop lid) it is what the broker sent meanwhile,
        # some of it acknowledged to its senders as delivered, and a new socket would
        # throw it away.
        self._pump()
        dropped = self._dropped_at
        if dropped is not None and time.monotonic() - dropped > DROP_GRACE:
            self._dropped_at = None
            self.core.connection_lost(REFUSED, time.monotonic())
        self.core.tick(time.monotonic())
        self._watch_pins()
        if self.core.reconnect_wanted:
            self._close_socket()
            self._backlog.clear()  # stale frames for the old connection
            self._open_socket()
            self.core.start(time.monotonic())
        self._flush()

    def _pump(self) -> None:
        """Read what is waiting. libzmq's FD is edge-triggered, so the socket is drained
        to the end; a flood is drained in slices (`PUMP_BATCH`, `PUMP_SLICE`), giving
        the loop (the UI, the ticker and its heartbeats) a turn between them. What is
        read goes to the core in batches of `READ_BATCH`, and what they came to (the
        events, the frames to send) leaves once per slice, in `_flush`."""
        deadline = time.monotonic() + PUMP_SLICE
        more = True
        handled = 0
        while more and handled < PUMP_BATCH:
            began = time.monotonic()
            if began > deadline:
                break
            fits = int((deadline - began) / self._cost)
            batch, more = self._read(max(1, min(READ_BATCH, PUMP_BATCH - handled, fits)))
            if batch:
                self.core.receive_many(batch, began)
                self._cost = max((time.monotonic() - began) / len(batch), 1e-6)
                handled += len(batch)
        if more:
            self._read_soon()  # more may be waiting
        self._flush()

    def _read(self, limit: int) -> tuple[list[list[bytes]], bool]:
        """Up to `limit` messages waiting on the socket, and whether more may be."""
        batch: list[list[bytes]] = []
        sock = self._sock
        if sock is None:
            return batch, False
        while len(batch) < limit:
            try:
                batch.append(recv_bounded(sock))
            except zmq.Again:
                return batch, False
        return batch, True

    def _read_soon(self) -> None:
        """Read another slice on the loop's next turn (one at a time is scheduled)."""
        if self._loop is not None and not self._more_scheduled:
            self._more_scheduled = True
            self._loop.call_soon(self._pump_more)

    def _pump_more(self) -> None:
        self._more_scheduled = False
        self._pump()

    def _watch(self) -> None:
        """Read the socket monitor: count failed handshakes, give up on a wrong broker,
        and note a connection dropped for good (see `DROP_GRACE`)."""
        monitor = self._monitor
        while monitor is not None and self._monitor is monitor:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self._dropped_at = time.monotonic()
                continue
            if event["event"] == zmq.EVENT_CONNECT_RETRIED:
                self._dropped_at = None  # an ordinary loss: libzmq reconnects by itself
                continue
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._handshake_failures = 0
                continue
            self._handshake_failures += 1
            hung_up = event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            if not hung_up or self._handshake_failures >= HANDSHAKE_FAILURES:
                self._give_up(_explain(event["event"], event["value"], self.curve is not None))

    def _give_up(self, failure: ev.TransportFailed) -> None:
        self.failed = failure
        self._close_socket()
        self._backlog.clear()
        if self._ticker is not None:
            self._ticker.cancel()
        self.events.put_nowait(failure)

    def _flush(self) -> None:
        self._backlog.extend(self.core.take_outgoing())
        sock = self._sock
        sent = False
        while sock is not None and self._backlog:
            try:
                send_nowait(sock, self._backlog[0])
            except zmq.Again:
                break  # the broker is not reading; try again on the next tick
            self._backlog.popleft()
            sent = True
        # A send can consume the FD's edge: if input is waiting, read it soon.
        if sent and sock is not None and readable(sock):
            self._read_soon()
        for event in self.core.take_events():
            if isinstance(event, ev.Acked):
                self._last_progress = time.monotonic()
            self.events.put_nowait(event)
        self._save_pins()
        self._make_session_key()
        if self.core.owes_resend and self._loop is not None:
            # Welcomed: the events saying so are out; the resend comes next turn.
            self._loop.call_soon(self._resend)

    def _resend(self) -> None:
        if self.core.owes_resend:
            self.core.resend(time.monotonic())
            self._flush()

    def _make_session_key(self) -> None:
        """Start making the session key the core asks for, unless one is on its way."""
        if not self.core.wants_session_key or self._keygen is not None or self._loop is None:
            return
        if self.failed or self.core.phase is Phase.CLOSED:
            return
        self._keygen = self._loop.run_in_executor(None, self.session_keys)
        self._keygen.add_done_callback(self._session_key_made)

    def _session_key_made(self, made: asyncio.Future[SessionKey]) -> None:
        self._keygen = None
        if made.cancelled():
            return
        failure = made.exception()
        if failure is not None:
            log.error("zchat peer: cannot make a session key: %r", failure)
            self.events.put_nowait(
                ev.Problem(ev.ProblemCode.INTERNAL, detail=repr(failure), context="session key")
            )
            return
        self.core.add_session_key(made.result(), time.monotonic(), wall=time.time())
        self._flush()

    def _save_pins(self) -> None:
        """Merge what the core changed in the pins into the file: at most once per
        flush, that is once per batch of input, tick or user action."""
        changed = self.core.take_pins()
        if changed is None or self.pin_file is None:
            return
        try:
            on_disk = self.pin_file.merge(changed.changes)
        except PinsError as exc:
            # The pins still hold in the core's memory, so this session stays
            # protected; only the record for later sessions is lost.
            self.events.put_nowait(ev.Problem(ev.ProblemCode.PINS, detail=str(exc)))
            return
        # What another process forgot meanwhile, read under the same lock.
        self.core.forgotten_elsewhere(on_disk.tombstones(), time.monotonic())

    def _watch_pins(self) -> None:
        """Read the pins file again when another process wrote it (one ``stat`` a
        tick): a `zchat keys forget` of a member takes effect here at once."""
        if self.pin_file is None or not self.pin_file.changed():
            return
        try:
            on_disk = self.pin_file.read()
        except PinsError as exc:
            self.events.put_nowait(ev.Problem(ev.ProblemCode.PINS, detail=str(exc)))
            return
        self.core.forgotten_elsewhere(on_disk.tombstones(), time.monotonic())


#: Phases after which no acknowledgement can come.
_OVER = (Phase.CLOSED, Phase.REFUSED)


def _explain(event: int, value: int, curve: bool) -> ev.TransportFailed:
    """What a failed ZMTP handshake most likely means, for people."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == (
        zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    ):
        if curve:
            return ev.TransportFailed(
                "the broker does not use CURVE encryption, but --broker-key was given",
                "start the broker with 'zchat broker --curve', or leave out --broker-key",
            )
        return ev.TransportFailed(
            "the broker requires CURVE encryption",
            "pass its public key with --broker-key (the broker logs it at start)",
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return ev.TransportFailed(f"the broker refused our transport key (ZAP status {value})")
    if curve:
        # A CURVE server that cannot open our HELLO (it was sealed to another key)
        # just hangs up, which libzmq reports with no detail. A broker without CURVE
        # may hang up too, before we see its greeting: the two cannot be told apart.
        return ev.TransportFailed(
            "the broker hung up on our CURVE handshake: its key is not the --broker-key "
            "we were given, or it does not use CURVE",
            "check the key with the broker's operator ('zchat broker --curve --print-key')",
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return ev.TransportFailed(
            "the broker keeps hanging up during the transport handshake",
            "if it runs with --curve, pass its public key with --broker-key",
        )
    return ev.TransportFailed(f"the transport handshake with the broker failed ({value:#x})")
