"""The broker's logic, sans I/O: frames and the time go in, frames to send come out.

One broker holds many rooms (`broker.rooms`): each HELLO names its room, and nothing
of a room's (a nickname, a key, a delivery, an announcement, a count) reaches another.

`Broker.handle(conn, frames, now)` takes one message from connection `conn` (an opaque
ZeroMQ routing id) and returns the `Outgoing` messages to send; `tick(now)` does
heartbeats and evictions; the socket loop (`broker.server`) only moves bytes.

Nicknames are *not* ZeroMQ routing ids: libzmq silently parks a second connection
that claims a routing id already in use, so a refusal could never reach it. Routing
ids stay opaque and per connection; the broker maps nickname -> connection itself.

With CURVE, `handle` also gets the transport key the message came with; a session is
bound at HELLO to the key that opened it, and another key never speaks for it.

The broker never holds a private key and never decrypts: it reads the envelope's
cleartext header and recipient leaves to route, checks that the leaves are those whose
Merkle tree head the header signs (`envelope.merkle`), and cuts the envelope into one
delivery per recipient: that recipient's leaf, its audit path, its wrapped key.

Memory is bounded in bytes, not in messages. The socket takes only a few hundred messages
per connection; what it will not take now is *held* here (`hold`), counted in bytes. A
connection whose held bytes pass `max_held_bytes`, or whose held queue does not move
for `backlog_timeout`, has stopped reading: it is evicted and what it held is dropped
at once, each delivery corrected to its sender. When everything held passes
`max_held_total`, the connection furthest behind goes first.

Each session carries its peer's session-key certificate (forward secrecy: messages are
wrapped to that key, not to the identity key). The broker checks every certificate it
is given against the session's nickname and identity key before it keeps or relays
it, so a peer cannot use the broker to spread junk; peers check it again against their
pins, and the date, which the broker cannot (its clock is monotonic). A certificate is
good in one room (its room id): the one its HELLO names, at this broker.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from zchat.broker.config import BrokerConfig
from zchat.broker.held import HeldQueues, held_size
from zchat.broker.hello import Refusal, check_certificate, check_hello
from zchat.broker.liveness import Deadline, Liveness

# What the core hands out, re-exported (PEP 484's `as` form): the loop and the tests
# read them as `core.Outgoing` and `core.Counters`.
from zchat.broker.outgoing import Counters as Counters  # noqa: PLC0414
from zchat.broker.outgoing import Outgoing as Outgoing  # noqa: PLC0414
from zchat.broker.rooms import Room, Rooms, Session
from zchat.envelope.proof import verify_proof
from zchat.wire import protocol as p
from zchat.wire.errors import ProtocolError, UnsupportedProtocol

log = logging.getLogger("zchat.broker")

#: Connections taken over (same nickname, same key, elsewhere) that are told so again
#: whenever they speak, the most recent this many: a routing id and a dict slot each.
MAX_REPLACED: Final = 4096


@dataclass
class Broker:
    """Sessions by connection, and the rooms they are members of."""

    config: BrokerConfig = field(default_factory=BrokerConfig)
    #: Where challenge nonces come from: `os.urandom` in the server, a seeded
    #: generator in tests. Required, so the core never reaches for the OS itself.
    random: Callable[[int], bytes] = field(kw_only=True)
    counters: Counters = field(default_factory=Counters)
    #: Our own CURVE public key (Z85) when the transport is CURVE, else empty: a proof
    #: must name it, so a proof made for another broker is refused here.
    curve_public: bytes = b""
    #: Two tables, so that no state can outlive its timer: every listed member is in
    #: `_sessions` (and its room's) and every unfinished handshake in `_pending`.
    #: A member may have a handshake pending on its own connection (it says HELLO
    #: again); it stays listed, and keeps its timers, until the proof replaces it.
    _sessions: dict[bytes, Session] = field(default_factory=dict)
    _pending: dict[bytes, Session] = field(default_factory=dict)
    #: Every room with members or held messages, by name.
    _rooms: Rooms = field(init=False)
    #: Connections whose member logged in elsewhere, oldest first (`_replace`).
    _replaced: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    #: What the socket would not take yet, per connection. The loop reads it (to send
    #: the oldest first, and to keep later messages behind it); only the core changes it.
    held: HeldQueues[Outgoing] = field(default_factory=HeldQueues)
    #: Members who joined since the last flush, in order, not yet announced.
    _announce: list[Session] = field(default_factory=list)
    #: Every member's and handshake's deadlines, and the rules they are judged by.
    _liveness: Liveness = field(init=False)

    def __post_init__(self) -> None:
        self._liveness = Liveness(self.config)
        self._rooms = Rooms(self.config.max_rooms)

    # --- input -----------------------------------------------------------------------

    def handle(
        self, conn: bytes, frames: list[bytes], now: float, transport_key: bytes | None = None
    ) -> list[Outgoing]:
        """Handle one message; `transport_key` is the CURVE key it came with, if any."""
        member = None if conn in self._pending else self._sessions.get(conn)
        if member is not None and frames == _HEARTBEAT and member.transport_key == transport_key:
            member.last_seen = now  # half an idle room's traffic: no parse, no dispatch
            return []
        out = self._handle(conn, frames, now, transport_key)
        if out:
            self._sent(out, now)
        return out

    def arrived(self, conn: bytes, now: float, transport_key: bytes | None = None) -> None:
        """A message from `conn` was read at `now`, to be handled later: a sign of life
        now (silence is judged on arrival), if it came with the session's transport key."""
        for known in (self._sessions.get(conn), self._pending.get(conn)):
            if known is not None and known.transport_key == transport_key:
                known.last_seen = now

    def _handle(
        self, conn: bytes, frames: list[bytes], now: float, transport_key: bytes | None
    ) -> list[Outgoing]:
        session = self._sessions.get(conn)
        pending = self._pending.get(conn)
        known = session or pending
        if known is not None and known.transport_key != transport_key:
            # A routing id is only a name: a client may pick its own, even one a
            # departed connection used. The CURVE key is what proves the connection.
            # Logged at debug only: the counter shows it without a log flood.
            self.counters.foreign_key += 1
            log.debug("dropped a message for %s from another transport key", known.nick)
            return []
        try:
            msg = p.parse_from_peer(frames)
        except UnsupportedProtocol as exc:
            # Another version's peer, whatever it sent and whether or not it has a
            # session here: one small message back, in the layout every version reads,
            # tagged with its own tag so that it reads it as its own REFUSE.
            self.counters.errors += 1
            self._count_refusal(p.RefuseCode.UNSUPPORTED_VERSION, str(exc))
            return [_to(conn, p.VersionRefusal(exc.tag, _VERSION_REASON))]
        except ProtocolError as exc:
            self.counters.errors += 1
            if known is None:
                return []  # junk from a stranger gets no answer: no amplification
            known.last_seen = now
            return [_to(conn, p.Error(p.ErrorCode.MALFORMED, str(exc), exc.msg_id))]
        for s in (session, pending):
            if s is not None:
                s.last_seen = now
        if self._announce and not isinstance(msg, _SAYS_NOTHING_TO_OTHERS):
            # Whatever this message makes the others hear (a delivery, a LEAVE, a new
            # key) comes after the JOINs of everyone who joined before it.
            early = self._flush_joins()
            return [*early, *self._dispatch(conn, msg, now, transport_key, session, pending)]
        return self._dispatch(conn, msg, now, transport_key, session, pending)

    def _dispatch(
        self,
        conn: bytes,
        msg: p.PeerMessage,
        now: float,
        transport_key: bytes | None,
        session: Session | None,
        pending: Session | None,
    ) -> list[Outgoing]:
        known = session or pending
        match msg:
            case p.Hello():
                return self._hello(conn, msg, now, transport_key)
            case p.Proof() if pending is not None:
                return self._proof(pending, msg, now)
            case p.Send() if session is not None:
                return self._send(session, msg)
            case p.Rekey(cert) if session is not None:
                return self._rekey(session, cert)
            case p.Heartbeat() if session is not None:
                return []
            case p.Bye() if known is not None:
                self._pending.pop(conn, None)
                return [] if session is None else self._remove(session, p.LeaveReason.BYE)
            case p.UnknownCommand(command):
                # A later version's command: malformed to this version, and answered
                # as any malformed message is (§3.12): to a session only.
                self.counters.errors += 1
                if known is None:
                    return []
                why = f"unknown command 0x{command:02x}"
                return [_to(conn, p.Error(p.ErrorCode.MALFORMED, why))]
        # Anything else before the handshake (after a broker restart, queued messages
        # arrive ahead of the new HELLO): tell the peer to say hello again. Unless its
        # member logged in elsewhere: then it must not, or the two take turns.
        self.counters.errors += 1
        if conn in self._replaced:
            return [Outgoing(conn, _REPLACED)]
        return [_to(conn, p.Error(p.ErrorCode.HELLO_FIRST, "say hello first"))]

    def _hello(
        self, conn: bytes, hello: p.Hello, now: float, transport_key: bytes | None
    ) -> list[Outgoing]:
        self._pending.pop(conn, None)  # a new hello replaces an unfinished one
        self._replaced.pop(conn, None)  # a new start: it is judged as any other
        greeting = check_hello(hello, self.curve_public)
        if isinstance(greeting, Refusal):
            return [self._refuse(conn, greeting)]
        g = greeting
        nonce = self.random(p.CHALLENGE_BYTES)
        pending = Session(
            conn, g.nick, g.public_der, g.public_key, g.fingerprint, nonce, now, g.room, g.room_id
        )
        refusal = self._admission(pending)
        if refusal is not None:
            return [self._refuse(conn, refusal)]
        pending.certificate = g.certificate
        pending.certificate_created_ms = g.certificate_created_ms
        pending.transport_key = transport_key
        self._pending[conn] = pending
        self._liveness.handshake_began(conn, now)
        return [_to(conn, p.Challenge(nonce))]

    def _admission(self, newcomer: Session) -> Refusal | None:
        """Why `newcomer` may not be listed in the room it names, or None: too many
        rooms, its nickname or key taken there, or that room full (`broker.rooms`)."""
        current = self._sessions.get(newcomer.conn)
        room = self._rooms.get(newcomer.room)
        if room is None:
            return self._rooms.refusal(newcomer.room, current)
        return room.refusal(newcomer, current)

    def _proof(self, session: Session, proof: p.Proof, now: float) -> list[Outgoing]:
        conn = session.conn
        del self._pending[conn]
        nick = session.nick.encode()
        # The proof names the broker its signer meant to reach and the transport key it
        # connected with: a proof relayed from another connection (a hostile broker
        # logging in elsewhere as one of its own peers) names neither of ours.
        if not verify_proof(
            session.public_key,
            proof.signature,
            session.nonce,
            nick,
            session.public_der,
            broker_key=self.curve_public,
            transport_key=session.transport_key or b"",
        ):
            # A member that fails to re-prove stays listed: its session is still good.
            bad = Refusal(p.RefuseCode.BAD_PROOF, "proof of key does not verify")
            return [self._refuse(conn, bad)]
        refusal = self._admission(session)
        if refusal is not None:
            return [self._refuse(conn, refusal)]
        out: list[Outgoing] = []
        existing = self._rooms.get(session.room)
        holder = None if existing is None else existing.member(session.nick)
        old = self._sessions.get(conn)
        if old is not None and old is not holder:  # this connection changes name or room
            out += self._remove(old, p.LeaveReason.BYE)
        room = self._rooms.open(session.room, session.room_id)
        if holder is not None:
            # Same nickname, same key: the peer came back (crash, new connection)
            # and takes its place at once. The others already know this key, but not
            # the session key it made for this connection.
            out += self._flush_joins()  # they hear of the key before its news
            if holder.conn != conn:
                out += self._replace(holder)
            log.info("%s reconnected", session.nick)
            rekeyed = p.encode(p.Rekeyed(session.nick, session.certificate))
            out += _to_each(rekeyed, room.by_nick.values(), but=holder)
        else:
            self.counters.peers += 1
            log.info("%s joined (%s)", session.nick, session.fingerprint.hex()[:16])
            # Told to the others at the end of the batch (`_flush_joins`), so that a
            # storm of joins is one pass over the room per batch, not per join.
            self._announce.append(session)
        self._sessions[conn] = session
        self._liveness.listed(conn, now)
        room.enter(session)
        self.counters.handshakes += 1
        cfg = self.config
        welcome = p.Welcome(
            session.nick,
            int(cfg.heartbeat_interval * 1000),
            int(cfg.heartbeat_timeout * 1000),
            room.name,
        )
        members = (s.member_frames() for s in room.by_nick.values() if s is not session)
        return [*out, _to(conn, welcome), Outgoing(conn, p.snapshot_frames(members))]

    def _replace(self, old: Session) -> list[Outgoing]:
        """`old`'s nickname and key proved themselves on another connection (its peer
        came back before the old connection was found gone): the new one takes the
        place at once, and the old connection is told so, for sure.

        What is held for the old connection is dropped now, each delivery corrected to
        its sender (§3.9: it never reached that connection, and the new one has a new
        session key), so that the notice goes out next, not behind lines a stalled
        peer may never read. Should the notice be lost all the same (dropped with a
        queue that did not move), the old connection gets it whenever it speaks.
        """
        conn = old.conn
        out = self._correct(conn, self._drop_held(conn))
        del self._sessions[conn]
        self._liveness.unlisted(conn)
        self._pending.pop(conn, None)
        self._replaced[conn] = None
        if len(self._replaced) > MAX_REPLACED:
            self._replaced.popitem(last=False)
        return [*out, Outgoing(conn, _REPLACED)]

    def _rekey(self, session: Session, cert: bytes) -> list[Outgoing]:
        """A member's new session key: checked, kept for snapshots, told to the room.

        Only a newer one than the session's: an older one (or one as old) would roll the
        member back to a key it may have dropped, in every later SNAPSHOT. The rotating
        member is told too, as the others are (REKEYED naming itself): its positive
        answer, after which its old key's grace may start (V3 §5).
        """
        checked = check_certificate(
            cert, session.nick, session.public_key, session.fingerprint, session.room_id
        )
        if not isinstance(checked, str) and checked.created_ms <= session.certificate_created_ms:
            checked = "bad session-key certificate: not newer than the current one"
        if isinstance(checked, str):
            self.counters.errors += 1
            return [_to(session.conn, p.Error(p.ErrorCode.BAD_CERTIFICATE, checked))]
        session.certificate = cert
        session.certificate_created_ms = checked.created_ms
        rekeyed = p.encode(p.Rekeyed(session.nick, cert))
        return _to_each(rekeyed, self._room_of(session).by_nick.values())

    def _send(self, session: Session, send: p.Send) -> list[Outgoing]:
        env = send.envelope
        header = env.header
        if header.sender != session.nick or header.sender_fingerprint != session.fingerprint:
            self.counters.errors += 1
            log.warning("%s tried to send as %s", session.nick, header.sender)
            error = p.Error(p.ErrorCode.FORGED_SENDER, "sender is not you", header.msg_id)
            return [_to(session.conn, error)]
        # Parsing the SEND built the recipients' Merkle tree once and checked its head
        # against the header's: each delivery below is that recipient's leaf and path.
        out: list[Outgoing] = []
        delivered: list[str] = []
        absent: list[str] = []
        room = self._room_of(session)  # only the sender's room: nothing crosses rooms
        for i, nick in enumerate(env.recipients):
            if not env.wrapped_keys[i]:
                continue  # the sender asked not to deliver to this one (a targeted resend)
            target = room.member(nick)
            if target is None:
                absent.append(nick)
            else:
                out.append(Outgoing(target.conn, p.deliver_frames(env, i), header))
                delivered.append(nick)
        self.counters.messages += 1
        self.counters.deliveries += len(delivered)
        self.counters.absent += len(absent)
        out.append(_to(session.conn, p.Ack(header.msg_id, tuple(delivered), tuple(absent))))
        return out

    # --- what the socket would not take -----------------------------------------------

    def hold(self, out: Outgoing, now: float) -> list[Outgoing]:
        """The socket would not take `out` now (its queue for that connection is full),
        or messages held for that connection are waiting before it: keep it, in order.

        A connection whose held bytes pass `max_held_bytes` has stopped reading: it is
        evicted at once and everything held for it dropped. If everything held passes
        `max_held_total`, the connection holding the most goes. Returns what to send
        about that: corrections to senders, `LEAVE BACKLOG` to the others.
        """
        cfg = self.config
        self.counters.held += 1
        if out.conn not in self.held:
            member = self._sessions.get(out.conn)
            if member is not None:  # the room lasts while it holds anything
                self._rooms.holding(out.conn, self._room_of(member))
        held_bytes = self.held.push(out.conn, out, held_size(out.frames), now)
        if held_bytes > cfg.max_held_bytes:
            return self._evict_backlogged(out.conn, f"{held_bytes} bytes held")
        if self.held.total > cfg.max_held_total:
            furthest = self.held.largest()
            assert furthest is not None
            held_bytes = self.held.bytes_for(furthest)
            return self._evict_backlogged(furthest, f"{held_bytes} bytes held, most in the room")
        return []

    def sent_held(self, conn: bytes, now: float) -> None:
        """The loop handed the oldest message held for `conn` to the socket."""
        self.held.pop(conn, now)
        if conn not in self.held:
            self._rooms.released(conn)

    def unroutable(self, conn: bytes, now: float, out: Outgoing | None = None) -> list[Outgoing]:
        """The socket says `conn` is gone: drop what is held for it (and `out`, if the
        loop tried it directly), and forget its session.

        Each delivery lost this way is reported to its sender as absent, so the
        acknowledgement it already got is corrected and nothing is silently lost.
        """
        lost = self._drop_held(conn)
        self._replaced.pop(conn, None)  # gone: nothing more to tell it
        if out is not None:
            lost.append(out)
        correction = self._correct(conn, lost)
        session = self._sessions.get(conn)
        if session is None:
            return correction
        self.counters.evicted += 1
        return [*correction, *self._remove(session, p.LeaveReason.TIMEOUT)]

    def _evict_backlogged(self, conn: bytes, why: str) -> list[Outgoing]:
        """`conn` stopped reading: drop what is held for it, and evict its session."""
        out = self._correct(conn, self._drop_held(conn))
        self._pending.pop(conn, None)
        session = self._sessions.get(conn)
        if session is None:
            return out
        log.info("%s stopped reading (%s); evicted", session.nick, why)
        self.counters.evicted += 1
        return [*out, *self._remove(session, p.LeaveReason.BACKLOG)]

    def _correct(self, conn: bytes, lost: list[Outgoing]) -> list[Outgoing]:
        """Tell the sender of every delivery in `lost` that it did not reach `conn`.

        Only while the recipient's session exists (its nickname names it), and only to
        a sender still listed with the key that sent it.
        """
        self.counters.dropped += len(lost)
        recipient = self._sessions.get(conn)
        if recipient is None:
            return []
        room = self._room_of(recipient)  # deliveries never cross rooms
        out: list[Outgoing] = []
        for o in lost:
            header = o.header
            if header is None:
                continue
            sender = room.member(header.sender)
            if sender is None or sender.fingerprint != header.sender_fingerprint:
                continue
            out.append(_to(sender.conn, p.Ack(header.msg_id, (), (recipient.nick,))))
        return out

    # --- time ------------------------------------------------------------------------

    def tick(self, now: float, *, input_waiting: bool = False) -> list[Outgoing]:
        """Announce the batch's joins; evict the silent and the stuck; beat quiet links.

        Costs what is due (`broker.liveness`), not a look at every member.
        `input_waiting`: the loop left messages unread in the socket. A member's sign of
        life (or a PROOF) may be among them, so silence is judged on arrival: nobody is
        evicted for silence, and no handshake forgotten, until the input is read, unless
        silent for twice the timeout.
        """
        live = self._liveness
        out = self._flush_joins() if self._announce else []
        for kind, conn in live.due(now):
            session = self._sessions.get(conn)
            if kind is Deadline.SILENCE:
                if session is not None and live.silent(conn, session.last_seen, now, input_waiting):
                    out += self._evict_silent(session)
            elif kind is Deadline.BEAT:
                if session is None:
                    live.unlisted(conn)
                elif live.beat(conn, now):
                    out.append(Outgoing(conn, _HEARTBEAT))
            else:  # a handshake's: forgotten if its PROOF did not come in time
                pending = self._pending.get(conn)
                seen = None if pending is None else pending.last_seen
                if seen is not None and live.handshake_over(conn, seen, now, input_waiting):
                    del self._pending[conn]
        if self.held:
            for conn in self.held.stuck(now, self.config.backlog_timeout):
                out += self._evict_backlogged(conn, "nothing read for too long")
        if out:
            self._sent(out, now)
        return out

    def next_deadline(self) -> float | None:
        """When `tick` next has something to do (None: nothing is scheduled)."""
        return self._liveness.next_at()

    @property
    def timer_work(self) -> int:
        """Deadlines looked at so far, due or stale: what `tick` has cost, counted."""
        return self._liveness.examined

    def _evict_silent(self, session: Session) -> list[Outgoing]:
        conn = session.conn
        log.info("%s timed out", session.nick)
        self.counters.evicted += 1
        out = self._correct(conn, self._drop_held(conn))
        out += self._remove(session, p.LeaveReason.TIMEOUT)
        # If it is only stalled, this tells it to say hello again once it reads.
        out.append(_to(conn, p.Error(p.ErrorCode.EVICTED, "silent too long")))
        return out

    def _sent(self, out: list[Outgoing], now: float) -> None:
        """Note when each member's link last carried something: a link that did needs
        no heartbeat."""
        sessions = self._sessions
        self._liveness.sent([o.conn for o in out if o.conn in sessions], now)

    def _flush_joins(self) -> list[Outgoing]:
        """JOIN for each member that joined since the last flush, to every member who
        does not know it yet: those listed before it (the later ones had it in their
        SNAPSHOT). Each JOIN is encoded once, whatever the room's size."""
        joined, self._announce = self._announce, []
        newer = set(joined)
        out: list[Outgoing] = []
        for session in joined:
            room = self._rooms.get(session.room)
            if room is not None and room.listed(session):  # still here
                join = p.join_frames(session.member_frames())
                out += [Outgoing(s.conn, join) for s in room.by_nick.values() if s not in newer]
            newer.discard(session)
        return out

    # --- helpers ---------------------------------------------------------------------

    def _remove(self, session: Session, reason: p.LeaveReason) -> list[Outgoing]:
        # A member that joined in this batch is announced before it leaves.
        early = self._flush_joins() if self._announce else []
        if self._sessions.get(session.conn) is session:
            del self._sessions[session.conn]
            self._liveness.unlisted(session.conn)
        room = self._rooms.get(session.room)
        if room is None or not room.leave(session):
            return early
        self.counters.peers -= 1
        log.info("%s left (%s)", session.nick, reason.name.lower())
        leave = p.encode(p.Leave(session.nick, reason))
        self._rooms.close_if_vacant(room)
        return [*early, *_to_each(leave, room.by_nick.values())]

    def _drop_held(self, conn: bytes) -> list[Outgoing]:
        """Forget what is held for `conn`; return it, oldest first."""
        lost = self.held.drop(conn)
        self._rooms.released(conn)
        return lost

    def _room_of(self, member: Session) -> Room:
        """The room of a listed member: it exists while the member is in it."""
        room = self._rooms.get(member.room)
        assert room is not None, "a listed member's room exists"
        return room

    def _refuse(self, conn: bytes, refusal: Refusal) -> Outgoing:
        self._count_refusal(refusal.code, refusal.reason)
        return _to(conn, p.Refuse(refusal.code, refusal.reason))

    def _count_refusal(self, code: p.RefuseCode, reason: str) -> None:
        self.counters.refused += 1
        by_code = self.counters.refused_by_code
        by_code[code.name] = by_code.get(code.name, 0) + 1
        log.info("refused a handshake (%s): %s", code.name.lower(), reason)

    @property
    def nicks(self) -> list[str]:
        """Every member's nickname, in every room (for tests and logs: no room names)."""
        return [s.nick for room in self._rooms for s in room.by_nick.values()]

    def nicks_in(self, room: str) -> list[str]:
        """The members of `room`, in the order they were listed."""
        found = self._rooms.get(room)
        return [] if found is None else [s.nick for s in found.by_nick.values()]

    @property
    def member_count(self) -> int:
        return self.counters.peers

    @property
    def room_count(self) -> int:
        """Rooms with members, or with messages held for them."""
        return len(self._rooms)

    @property
    def handshake_count(self) -> int:
        return len(self._pending)


def _to(conn: bytes, msg: p.Message) -> Outgoing:
    return Outgoing(conn, p.encode(msg))


def _to_each(
    frames: list[bytes], sessions: Iterable[Session], but: Session | None = None
) -> list[Outgoing]:
    """The same frames to every session but `but`: encoded once, shared by all."""
    return [Outgoing(s.conn, frames) for s in sessions if s is not but]


_HEARTBEAT: Final = p.encode(p.Heartbeat())
_REPLACED: Final = p.encode(p.Error(p.ErrorCode.REPLACED, "logged in elsewhere"))
#: What a peer of another version is told; its own zchat words the refusal too.
_VERSION_REASON: Final = f"this broker speaks zchat protocol {p.PROTOCOL_VERSION}"
#: Messages whose answers go to their sender only: no need to announce joins first.
_SAYS_NOTHING_TO_OTHERS: Final = (p.Hello, p.Proof, p.Heartbeat)
