"""A room in memory: one broker core and peer cores wired back to back, no sockets.

Time is a number the test moves, and randomness a seeded generator, so a run repeats
exactly. `pump` carries frames both ways until nothing moves, doing for each core
what its loop would: hand it the session keys it asks for, send its frames, show its
events, save its pins.

Without a broker, `ready_core` is the one way to have a core welcomed into a room the
test announces.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from zchat.broker.config import BrokerConfig
from zchat.broker.core import Broker, Outgoing
from zchat.envelope import (
    DEFAULT_ROOM,
    Envelope,
    Header,
    Identity,
    Leaf,
    MessageKind,
    SessionKey,
    certify,
    generate_session_key,
    is_valid_nick,
    room_id,
)
from zchat.envelope.merkle import MerkleTree
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.core import PeerCore
from zchat.peer.pins import Pin, Pins
from zchat.wire import protocol as p

#: Short liveness timers for rooms whose clock a test moves.
FAST_CORE = BrokerConfig(heartbeat_interval=0.1, heartbeat_timeout=0.5)
#: A room where every key reads at first sight (`--admit-all`): the default here, for
#: tests of everything but admission. Those of admission say `config=CLOSED`.
OPEN = PeerConfig(admit_all=True)
CLOSED = PeerConfig()
#: The id of the room every core and broker here is in unless a test says otherwise
#: (no CURVE: the room's name alone).
ROOM_ID = room_id(DEFAULT_ROOM)
#: The date when the room's clock reads 0 (14 November 2023): envelopes carry dates.
WALL_AT_ZERO = 1_700_000_000.0
#: Each connection seals from a block of sequence numbers of its own, as a real run
#: starts from the wall clock: a peer back under the same key never reuses a number.
SEQ_BLOCK = 1 << 32


#: Session keys are RSA keys (about 40 ms each to make): rooms share this many, made
#: once per test run and handed out in the same order in every room, so that a room
#: replays exactly. A test that needs keys never seen before passes
#: `session_keys=generate_session_key`.
SESSION_KEY_POOL = 16
_SESSION_KEYS: list[SessionKey] = []


def pooled_session_keys() -> Callable[[], SessionKey]:
    """Session keys from the shared pool, from its first, in turn."""
    turn = itertools.count()

    def next_key() -> SessionKey:
        i = next(turn) % SESSION_KEY_POOL
        while len(_SESSION_KEYS) <= i:
            _SESSION_KEYS.append(generate_session_key())
        return _SESSION_KEYS[i]

    return next_key


def certificate(
    identity: Identity,
    nick: str,
    wall: float,
    key: SessionKey | None = None,
    *,
    room: bytes = ROOM_ID,
) -> bytes:
    """A genuine session-key certificate of `nick` made at `wall`, for a broker to announce."""
    key = key or pooled_session_keys()()
    created = int(wall * 1000)
    return certify(
        identity, nick, key, room_id=room, created_ms=created, lifetime_ms=3_600_000
    ).encode()


def hello(
    nick: bytes,
    identity: Identity,
    wall: float = WALL_AT_ZERO,
    *,
    room: str = DEFAULT_ROOM,
    broker_key: bytes = b"",
) -> p.Hello:
    """A HELLO as a peer sends it, with a genuine session-key certificate for `room` on
    the broker whose CURVE key is `broker_key` (none when the nickname is not one a
    certificate can name: the broker refuses that first)."""
    text = nick.decode("ascii", "replace")
    rid = room_id(room, broker_key)
    cert = certificate(identity, text, wall, room=rid) if is_valid_nick(text) else b""
    return p.Hello(nick, identity.public_der, cert, room.encode())


def unsigned_envelope(
    sender: str,
    sender_fingerprint: bytes,
    recipients: list[tuple[str, bytes]],
    *,
    seq: int = 1,
    kind: MessageKind = MessageKind.ROOM,
    room: bytes = ROOM_ID,
    msg_id: bytes = bytes(16),
    timestamp_ms: int = int(WALL_AT_ZERO * 1000),
    signature: bytes = bytes(256),
    token: bytes = b"gAAAAA" + bytes(150),
    wrapped: bytes = bytes(256),
) -> Envelope:
    """An envelope to `recipients` ((nick, key id) pairs) that is well formed, for a
    broker to route, but signed and sealed by nobody: a broker checks neither."""
    leaves = tuple(Leaf(nick, key_id) for nick, key_id in recipients)
    data = tuple(leaf.encode() for leaf in leaves)
    tree = MerkleTree(data)
    named = tuple(nick for nick, _ in recipients) if kind is MessageKind.DIRECT else ()
    header = Header(
        kind,
        msg_id,
        timestamp_ms,
        seq,
        sender,
        sender_fingerprint,
        room,
        len(leaves),
        tree.root,
        named,
    )
    keys = (wrapped,) * len(leaves)
    return Envelope(header, header.encode(), signature, token, leaves, data, keys, tree)


def seeded(seed: int) -> Callable[[int], bytes]:
    """Random bytes a test can repeat: the same seed gives the same bytes."""
    return random.Random(seed).randbytes


@dataclass
class MemoryRoom:
    broker: Broker = field(default_factory=lambda: Broker(BrokerConfig(), random=seeded(0)))
    now: float = 1000.0
    peers: dict[bytes, PeerCore] = field(default_factory=dict)
    events: dict[bytes, list[ev.Event]] = field(default_factory=dict)
    #: the pins each core handed out for its loop to write, one entry per write
    saved: dict[bytes, list[tuple[Pin, ...]]] = field(default_factory=dict)
    #: frames the broker sent to each connection, for inspection
    wire: dict[bytes, list[list[bytes]]] = field(default_factory=dict)
    #: a test may make the network lose some of what the broker sends...
    drop: Callable[[Outgoing], bool] | None = None
    #: ...or some of what a peer sends: lose(conn, frames)
    lose: Callable[[bytes, list[bytes]], bool] | None = None
    #: Where the session keys the cores ask for come from (the loop makes them).
    session_keys: Callable[[], SessionKey] = field(default_factory=pooled_session_keys)
    _next_conn: int = 0

    def join(
        self,
        nick: str,
        identity: Identity,
        *,
        pins: Pins | None = None,
        config: PeerConfig | None = None,
    ) -> bytes:
        """Connect a new peer core under a fresh connection id; returns the id."""
        self._next_conn += 1
        conn = b"conn-%d" % self._next_conn
        core = PeerCore(
            nick,
            identity,
            Pins() if pins is None else pins,
            config or OPEN,
            seq=self._next_conn * SEQ_BLOCK,
            random=seeded(self._next_conn),
            date=lambda: self.wall,
        )
        self.peers[conn] = core
        self.events[conn] = []
        self.saved[conn] = []
        self.wire[conn] = []
        core.start(self.now)
        self.pump()
        return conn

    def reconnect(self, conn: bytes) -> bytes:
        """What the client does when `conn`'s core wants a new socket: the core moves to
        a new connection (what libzmq queued for the old one is gone) and says HELLO
        there. Returns the new connection's id."""
        core = self.peers.pop(conn)
        assert core.reconnect_wanted
        self._next_conn += 1
        new = b"conn-%d" % self._next_conn
        self.peers[new] = core
        self.events[new] = self.events.pop(conn)
        self.saved[new] = self.saved.pop(conn)
        self.wire[new] = []
        core.start(self.now)
        self.pump()
        return new

    def pump(self) -> None:
        for _ in range(10_000):
            moved = False
            for conn, core in list(self.peers.items()):
                if core.wants_session_key:
                    core.add_session_key(self.session_keys(), self.now, wall=self.wall)
                if core.owes_resend:  # as the client does, once the welcome is shown
                    core.resend(self.now)
                for frames in core.take_outgoing():
                    moved = True
                    if self.lose is not None and self.lose(conn, frames):
                        continue
                    self.deliver(self.broker.handle(conn, frames, self.now))
                self.events[conn] += core.take_events()
                changed = core.take_pins()
                if changed is not None:
                    self.saved[conn].append(changed.pins)
            if not moved:
                # The broker's loop ticks after every batch it reads: joins of the
                # batch are announced then (`Broker._flush_joins`).
                ticked = self.broker.tick(self.now)
                if not ticked:
                    return
                self.deliver(ticked)
        raise AssertionError("the room never went quiet")

    @property
    def wall(self) -> float:
        """The date on the room's clock: it moves with `now`."""
        return WALL_AT_ZERO + self.now

    def send(self, sender: bytes, text: str, to: list[str] | None = None) -> bytes:
        """`sender` seals `text` at the room's time; `pump` carries it. Returns its id."""
        return self.peers[sender].send_text(text, self.now, to, wall=self.wall)

    def send_by_hand(
        self, sender: bytes, text: str, to: list[str] | None = None
    ) -> tuple[list[bytes], list[Outgoing]]:
        """`sender` sends `text` and the broker handles it; nothing is delivered yet.

        Returns the SEND's frames and what the broker answered, for the test to
        deliver, lose or tamper with as it wants.
        """
        self.send(sender, text, to)
        (frames,) = self.peers[sender].take_outgoing()
        return frames, self.broker.handle(sender, frames, self.now)

    def deliver(self, outgoing: list[Outgoing]) -> None:
        for out in outgoing:
            core = self.peers.get(out.conn)
            if core is None or (self.drop is not None and self.drop(out)):
                continue  # a connection that went away, or a loss the test wants
            self.wire[out.conn].append(out.frames)
            core.receive(out.frames, self.now)

    def advance(self, seconds: float) -> None:
        """Move the clock, ticking broker and peers as often as a real loop would."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + 0.05)
            self.deliver(self.broker.tick(self.now))
            for core in self.peers.values():
                core.tick(self.now)
            self.pump()

    def take(self, conn: bytes) -> list[ev.Event]:
        events, self.events[conn] = self.events[conn], []
        return events

    def of_type(self, conn: bytes, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events[conn] if isinstance(e, kind)]


def ready_core(
    nick: str,
    identity: Identity,
    members: Iterable[p.Member] = (),
    *,
    pins: Pins | None = None,
    config: PeerConfig = CLOSED,
    now: float = 0.0,
    wall: float = WALL_AT_ZERO,
    seed: int = 1,
    session_key: SessionKey | None = None,
    dated: bool = False,
    timers: tuple[int, int] = (1000, 5000),
    keep_events: bool = False,
    calendar: Callable[[], float] | None = None,
) -> PeerCore:
    """A core welcomed at `now` into a room its broker (any broker) lists as `members`.

    It sealed with `seed`'s randomness from sequence number 1, under `session_key`
    (the pool's next by default), and was welcomed with `timers` (heartbeat and
    timeout, in ms). `dated`: its calendar reads `wall` (without, every date reads
    1970); or `calendar` is its calendar, for a test that moves the date apart from the
    monotonic clock (a machine that slept). What it sent is taken; its events too,
    unless `keep_events`.
    """
    if calendar is None:
        calendar = (lambda: wall) if dated else (lambda: 0.0)
    core = PeerCore(nick, identity, pins, config, seq=1, random=seeded(seed), date=calendar)
    core.start(now)
    core.add_session_key(session_key or pooled_session_keys()(), now, wall=wall)
    core.receive(p.encode(p.Challenge(bytes(p.CHALLENGE_BYTES))), now)  # WELCOME follows a PROOF
    core.receive(p.encode(p.Welcome(nick, *timers, config.room)), now)  # the room it asked for
    core.receive(p.encode(p.Snapshot(tuple(members))), now)
    core.resend(now)  # as the client does once the welcome is shown
    core.take_outgoing()
    if not keep_events:
        core.take_events()
    return core
