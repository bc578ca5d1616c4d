"""The peer's protocol logic, sans I/O: frames, time and randomness in; frames,
events and pins out.

Call `start`, `receive`, `tick`, `send_text`, `admit`, `trust` and `leave`; after each call
send what `take_outgoing` returns, show what `take_events` returns and save what
`take_pins` returns. When `reconnect_wanted` is set, the I/O layer replaces its
socket (dropping whatever libzmq still queued for the dead connection) and calls
`start` again.

Nothing here reads a clock, the OS's randomness or a file: the loop (`peer.client`)
passes the time into every call, and at construction the first sequence number and
a source of random bytes.

The core keeps the connection to the broker: the phases, the handshake, the
heartbeats, the dispatch of what the broker sends, and the public API. The room as we
see it end to end (who is in it, whom we trust and admit, what we seal for them and
open from them) is the roster's (`peer.roster`), which returns what to send and show:

Construction: `pins` as loaded (the core updates them in memory and hands them out).
`seq`: the first sequence number to seal with; the loop derives it from the wall clock
(`peer.client.initial_seq`), so numbers keep increasing across restarts. `random`: where
message ids come from (`os.urandom` in the client, a seeded generator in tests), so the
core never reaches for the OS itself. `date`: today's date, in seconds since the epoch
(`time.time` in the client): pins note when a key was last seen and admitted, and
vouches carry it; without one, every date reads 1970 and no pin expires. `broker_key`
and `transport_key`: the CURVE keys of our connection, Z85, empty without CURVE: the
broker's public key we were told to expect (`--broker-key`) and our own transport key.
The proof of key names both, so a proof relayed to another broker does not verify there.

The connection's phases, handshake steps and timers are the link's (`peer.link`); the
core dispatches what the broker sends by them, and acts on what the link finds due.

Trust (as ssh's known_hosts): the first key seen for a nickname is pinned. A later,
different key is CHANGED: nothing is encrypted to it and messages signed by it are
held back, until the user trusts it.

Admission (`peer.admission`): nothing is sealed to a member, whatever the broker
announced, until the user admitted it by fingerprint or a member the user admitted
vouched for it (or, in an open room, at first sight).

Forward secrecy (`peer.session_keys`): messages are wrapped to session keys, never to
identity keys. The core asks for a new key of its own (`wants_session_key`) at every
connection and on a schedule, and the loop, which makes it off its event loop, hands
it in (`add_session_key`); HELLO waits for it. A member's session key is sealed to
only after its certificate verified under the member's pinned key, and only while the
certificate is valid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from zchat.envelope import (
    Delivery,
    Identity,
    SessionCertificate,
    SessionKey,
    certify,
    is_valid_nick,
    nick_key,
    room_id,
)
from zchat.envelope.proof import sign_proof
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.contact import Contact
from zchat.peer.events import ProblemCode as P
from zchat.peer.gate import Gate
from zchat.peer.link import Due, Link, Phase, Step
from zchat.peer.outbox import Entry, Outbox
from zchat.peer.pinning import PinChanges
from zchat.peer.pins import Pins, Tombstone
from zchat.peer.roster import Output, Roster
from zchat.peer.session_keys import KeyRing, certificate_lifetime_ms
from zchat.wire import protocol as p
from zchat.wire.errors import ProtocolError

__all__ = ["PeerCore", "Phase"]

#: Refusals of our return into the room that may pass: the old session still timing
#: out holds our nickname or key, or the room (or the broker's rooms) filled up while
#: we were away. Said HELLO again, backing off (`PeerConfig.rejoin_patience`); any other
#: refusal, a code this version does not know included, ends the session at once.
_MAY_PASS = (
    p.RefuseCode.NICK_TAKEN,
    p.RefuseCode.KEY_IN_USE,
    p.RefuseCode.ROOM_FULL,
    p.RefuseCode.TOO_MANY_ROOMS,
)
#: The only errors whose msg_id drops an outbox entry: the broker will never route
#: that SEND as it is. Any other code's msg_id is ignored (V3 §5).
_DROPS_MESSAGE = (p.ErrorCode.FORGED_SENDER, p.ErrorCode.MALFORMED)


def _no_calendar() -> float:
    return 0.0


class PeerCore:
    """One peer's connection to the broker (`link`), and the room behind it (`roster`)."""

    def __init__(
        self,
        nick: str,
        identity: Identity,
        pins: Pins | None = None,
        config: PeerConfig | None = None,
        *,
        seq: int,
        random: Callable[[int], bytes],
        date: Callable[[], float] = _no_calendar,
        broker_key: bytes = b"",
        transport_key: bytes = b"",
    ) -> None:
        """See the module's docstring, "Construction"."""
        self.identity = identity
        self.config = PeerConfig() if config is None else config
        self.broker_key = broker_key
        self.transport_key = transport_key
        self.roster = Roster(
            nick,
            identity,
            Pins() if pins is None else pins,
            room=self.config.room,
            room_id=room_id(self.config.room, broker_key),
            open_room=self.config.admit_all,
            seq=seq,
            random=random,
            date=date,
            outbox=Outbox(self.config.correction_window, self.config.message_lifetime),
        )
        #: The connection's phase, handshake step and timers.
        self.link = Link(self.config)
        self.reconnect_wanted = False
        self.closed_reason = ""
        #: The refusal that ended the session, if one did (the session's outcome).
        self.refusal: ev.Refused | None = None
        self._out: list[list[bytes]] = []
        self._events: list[ev.Event] = []
        #: Once welcomed, the resend owed: (whether, since when the broker may have lost
        #: what it acknowledged: `Link.ready`). See `resend`.
        self._owed: tuple[bool, float | None] = (False, None)
        #: Our session keys (forward secrecy): the current one and those in their grace.
        self._ring = KeyRing(self.config.key_grace)
        self._wants_key = False
        self._hello_waiting = False  # start() was called; HELLO goes out with the new key

    # --- outputs ---------------------------------------------------------------------

    def take_outgoing(self) -> list[list[bytes]]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[ev.Event]:
        events, self._events = self._events, []
        return events

    def take_pins(self) -> PinChanges | None:
        """What changed in the pins since the last call (None when nothing did): the
        loop merges it into the file (`peer.pinfile`), once per batch of input."""
        return self.roster.take_pins()

    def forgotten_elsewhere(self, tombstones: tuple[Tombstone, ...], now: float) -> None:
        """The pins file holds `tombstones` (`zchat keys forget`): new ones act as /revoke."""
        self._take(self.roster.forgotten_elsewhere(tombstones, now))

    @property
    def wants_session_key(self) -> bool:
        """Whether the loop should make a session key (off its event loop: tens of ms)
        and hand it to `add_session_key`; HELLO waits for it."""
        return self._wants_key

    def pending_acks(self) -> list[Entry]:
        """What people typed that the broker has not acknowledged yet (not vouches)."""
        return self.roster.pending_acks()

    # --- state, for the front ends and for inspection --------------------------------

    @property
    def phase(self) -> Phase:
        return self.link.phase

    @property
    def nick(self) -> str:
        return self.roster.nick

    @property
    def room(self) -> str:
        """The room's name (`config.room`): what we sign is bound to it, by its id."""
        return self.roster.room

    @property
    def room_id(self) -> bytes:
        return self.roster.room_id

    @property
    def members(self) -> dict[str, Contact]:
        """The members present, by case-folded nickname."""
        return self.roster.directory.members

    @property
    def pins(self) -> Pins:
        return self.roster.pinning.pins

    @property
    def outbox(self) -> Outbox:
        return self.roster.sending.outbox

    @property
    def seq(self) -> int:
        """The next sequence number we seal with."""
        return self.roster.sending.seq

    @property
    def session_keys(self) -> KeyRing:
        """Our session keys, for inspection; the core alone changes them."""
        return self._ring

    @property
    def gate(self) -> Gate:
        return self.roster.admission.gate

    # --- session ---------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Say hello on a new connection: the first, or after a reconnect.

        Every HELLO gets a new session key: it goes out when the loop hands the key in
        (`wants_session_key`, `add_session_key`).
        """
        self._hello(now, same_connection=False)

    def _hello(self, now: float, *, same_connection: bool) -> None:
        self.link.start(now, same_connection=same_connection)
        self.reconnect_wanted = False
        self._ring.withdraw()  # a REKEY not answered yet: the HELLO's key supersedes it
        self.roster.expire_pins()
        self._hello_waiting = self._wants_key = True

    def add_session_key(self, key: SessionKey, now: float, *, wall: float) -> None:
        """Take the session key the loop made, certified as of `wall`, and announce it.

        It goes out in the HELLO that waited for it, current at once; or in a REKEY when
        connected (a scheduled rotation), current once the broker accepts it. A key
        nobody waits for any more (we left, or were refused) is dropped. Its private
        half stays in memory, in our ring.
        """
        self.roster.note_date(now, wall)
        self._wants_key = False
        nick = self.nick.encode("ascii", "replace")
        life = certificate_lifetime_ms(self.config.rotate_every)
        cert = _certificate(self.identity, self.nick, key, self.room_id, life, wall)
        if self.phase is Phase.HANDSHAKING and self._hello_waiting:
            self._hello_waiting = False
            self.link.hello_sent(now)
            if cert is not None:
                self._ring.install(key, cert, now)
            raw = b"" if cert is None else cert.encode()
            self._send(p.Hello(nick, self.identity.public_der, raw, self.room.encode()))
        elif self.phase is Phase.READY and cert is not None and not self.link.rekeying:
            self.link.rekey_sent(now)
            self._send(p.Rekey(self._ring.propose(key, cert)))

    def leave(self) -> None:
        """End the session. Whoever a message still waited for (away, or their delivery
        corrected) is named as not having got it: nothing is dropped silently."""
        if self.phase is Phase.READY:
            self._send(p.Bye())
        self.link.closed()
        self._events += self.roster.sending.expire(0.0, -math.inf)

    # --- input -----------------------------------------------------------------------

    def receive(self, frames: list[bytes], now: float) -> None:
        self.receive_many((frames,), now)

    def receive_many(self, batch: Iterable[list[bytes]], now: float) -> None:
        """Messages read in one go, in order; DELIVERs in a row are opened in one pass."""
        for msg in _parsed(batch):
            self._dispatch(msg, now)

    def _dispatch(self, msg: p.BrokerMessage | Deliveries | ProtocolError, now: float) -> None:
        if isinstance(msg, ProtocolError):
            return self._events.append(ev.Problem(P.MALFORMED, detail=str(msg)))
        self.link.heard(now)
        step, here = self.link.step, self.link.in_room
        match msg:
            case p.Challenge(nonce) if step is Step.HELLO:
                # One signature per HELLO, or the broker could have us sign whatever
                # nonces it likes, at RSA cost each.
                self.link.proved()
                keys = (self.broker_key, self.transport_key)
                self._send(p.Proof(_proof(self.identity, self.nick, nonce, *keys)))
            case p.Welcome() if step is Step.PROOF:
                self._welcome(msg, now)
            case p.Snapshot(members) if step is Step.WELCOME:
                self._snapshot(members, now)
            case p.Refuse() | p.VersionRefusal() if step in (Step.HELLO, Step.PROOF):
                self._refused(msg, now)
            # What the broker says of the room counts while we are in it: ready, or
            # saying HELLO again on a connection we were ready on (the broker keeps
            # delivering there, and acknowledged those deliveries to their senders).
            case Deliveries(deliveries) if here:
                self._take(self.roster.deliver(deliveries, now, self._ring.held()))
            case p.Join(member) if here:
                self._take(self.roster.join(member, now))
            case p.Leave(nick, reason) if here:
                self._take(self.roster.leave(nick, _leave_reason(reason)))
            case p.Rekeyed(nick, cert) if here:
                self._rekeyed(nick, cert, now)
            case p.Ack(msg_id, delivered, absent):
                self._take(self.roster.acknowledge(msg_id, delivered, absent, now))
            case p.Error(code, reason, msg_id):
                self._error(code, reason, msg_id, now)
            case p.Heartbeat():
                pass
            case _:
                self._events.append(ev.Problem(P.UNEXPECTED, context=type(msg).__name__))

    def _welcome(self, welcome: p.Welcome, now: float) -> None:
        # Our nickname as we sent it, byte for byte: a spelling the broker chose would
        # make every SEND of ours a FORGED_SENDER. The room is ours to choose.
        if welcome.nick != self.nick:
            self._events.append(ev.Problem(P.UNEXPECTED, welcome.nick, context="Welcome"))
        elif welcome.room != self.room:
            self._events.append(
                ev.Problem(P.UNEXPECTED, detail=welcome.room, context="Welcome room")
            )
        else:
            self.link.welcomed(welcome.heartbeat_ms, welcome.timeout_ms)
            return
        self.link.spoiled(now)  # a new connection, after the backoff

    def _snapshot(self, members: tuple[p.Member, ...], now: float) -> None:
        # Vouches sealed while the room is listed are not sent yet (we are not ready):
        # the outbox keeps them, and the resend below sends them.
        reconnected = self.link.welcomed_once
        news = self.roster.snapshot(members, now, first=not reconnected)
        lost_since = self.link.ready(now)
        peers = tuple(m.nick for m in self.members.values())
        # The Ready event goes first; joins and key news follow.
        self._events.append(ev.Ready(self.nick, peers, reconnected=reconnected))
        self._events += news.events
        self._owed = (True, lost_since)

    @property
    def owes_resend(self) -> bool:
        """Welcomed, with the resend still to do: the loop calls `resend` once it has
        shown that we are back (resealing for new session keys takes a signature per
        message: seconds, for a busy sender back after a broker restart)."""
        return self._owed[0]

    def resend(self, now: float) -> None:
        """After a welcome: what the broker has not acknowledged, and what it may have
        lost (`peer.roster.Roster.resend`). `tick` does it too, if the loop did not."""
        (owed, lost_since), self._owed = self._owed, (False, None)
        if owed and self.phase is Phase.READY:
            self._take(self.roster.resend(now, lost_since=lost_since))

    def _refused(self, refusal: p.Refuse | p.VersionRefusal, now: float) -> None:
        event = _refusal(refusal, rejoining=self.link.welcomed_once)
        may_pass = isinstance(refusal, p.Refuse) and refusal.code in _MAY_PASS
        if not self.link.refused(now, may_pass=may_pass):  # final
            self.refusal = event
            self._events.append(event)
        elif self.link.refusals == 1:  # said once a streak; typed lines say it again
            wait = round(self.config.rejoin_patience)
            told = ev.Problem(P.REJOIN_REFUSED, detail=event.reason, context=event.code, count=wait)
            self._events.append(told)

    def _rekeyed(self, nick: str, cert: bytes, now: float) -> None:
        if nick_key(nick) != nick_key(self.nick):
            self._take(self.roster.rekeyed(nick, cert, now))
        elif self.link.rekeying and self._ring.accepted(cert, now):
            self.link.rekey_answered()  # our new key is current: the old one's grace begins
        else:
            self._events.append(ev.Problem(P.UNEXPECTED, nick, context="Rekeyed us"))

    def _error(self, code: p.ErrorCode | int, reason: str, msg_id: bytes, now: float) -> None:
        phase = self.phase
        if code == p.ErrorCode.HELLO_FIRST:
            if phase is Phase.READY:  # the broker restarted and forgot us
                self._lost("the broker restarted", now, new_socket=False)
            return
        if code == p.ErrorCode.REPLACED:
            # Final: two clients with one key would take the place from each other
            # forever. The session ends, and says why (`zchat: error: ...`).
            self.link.closed()
            self.closed_reason = "this nickname logged in again elsewhere with our key"
            self._events.append(ev.Disconnected(self.closed_reason, final=True))
            return
        if code == p.ErrorCode.EVICTED:
            if phase in (Phase.READY, Phase.HANDSHAKING, Phase.WAITING):
                self._lost("evicted by the broker", now, new_socket=True)
            return
        if code == p.ErrorCode.BAD_CERTIFICATE and self.link.rekeying:
            self._ring.withdraw()  # refused: the new key is dropped, the old one stays
            self.link.rekey_refused(now)
        if msg_id and code in _DROPS_MESSAGE:
            self._take(self.roster.refused(msg_id))
        self._events.append(_error_problem(code, reason))

    # --- time ------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        self.resend(now)
        self._ring.expire(now)
        for due in self.link.tick(now):
            match due:
                case Due.BEAT:
                    self._send(p.Heartbeat())
                case Due.SILENT:
                    self._lost("the broker stopped answering", now, new_socket=True)
                case Due.KEY_NOT_ACCEPTED:
                    reason = "the broker did not accept our new session key"
                    self._lost(reason, now, new_socket=True)
                case Due.UNANSWERED:  # no answer to our hello: try again, backing off
                    self._new_socket()
                case Due.RETRY:  # refused on coming back: HELLO again
                    self._hello(now, same_connection=True)
        if self.link.rotation_due(now, self._ring.installed_at):
            self._wants_key = True  # a scheduled rotation: add_session_key announces it
        grace, wait = self.config.absent_grace, self.link.timeout * 2
        self._take(self.roster.tick(now, absent_grace=grace, missing_wait=wait))

    def connection_lost(self, reason: str, now: float) -> None:
        """The I/O layer saw the connection dropped for good (its transport refused
        what the broker sent): reconnect now, rather than after the heartbeat timeout."""
        if self.phase in (Phase.READY, Phase.HANDSHAKING, Phase.WAITING):
            self._lost(reason, now, new_socket=True)

    def _lost(self, reason: str, now: float, *, new_socket: bool) -> None:
        """The broker went away or forgot us: say so (once until the next welcome), and
        say HELLO again, here or on a new socket."""
        if self.link.went_away():
            self._events.append(ev.Disconnected(reason))
        if new_socket:
            self._new_socket()
        else:
            self._hello(now, same_connection=True)

    def _new_socket(self) -> None:
        self.link.lost()
        self.reconnect_wanted = True  # the I/O layer calls start() on a new socket

    # --- user actions ----------------------------------------------------------------

    def send_text(
        self, text: str, now: float, to: list[str] | None = None, *, wall: float
    ) -> bytes:
        """Seal `text` for the room, or for the nicknames in `to`; return its id.

        Sealed at once for the members present now; sent at once when connected,
        otherwise when the broker welcomes us back. Raises a `peer.errors.PeerError`
        saying why when it cannot be.

        Two clocks: `now` (monotonic) runs the timers, `wall` is the date the envelope
        tells its recipients. Only sealing needs the date, so only this call takes it;
        one derived from `now` would drift whenever the system clock is set.
        """
        msg_id, output = self.roster.send_text(text, now, to, wall=wall)
        self._take(output)
        if self.phase is Phase.WAITING:  # it waits in the outbox: say so
            self._events.append(ev.Problem(P.REJOIN_REFUSED, context="Sent"))
        return msg_id

    def admit(self, nick: str, typed: str, now: float, *, command: str = "admit") -> None:
        """Let `nick` read what we send: the user compared `typed`, at least the first
        16 characters of their fingerprint as shown (spaces and case do not matter),
        and it must match their key *now*. A changed key is accepted this way too.

        Raises UnknownRecipient, or FingerprintMismatch with what to do instead.
        """
        self._take(self.roster.admit(nick, typed, now, self._ring.held(), command=command))

    def trust(self, nick: str, typed: str, now: float) -> None:
        """Accept `nick`'s changed key: `admit`, under the name the user knows for it."""
        self.admit(nick, typed, now, command="trust")

    def revoke(self, nick: str, now: float) -> None:
        """Take back `nick`'s admission (`Roster.revoke`); raises a PeerError if it cannot."""
        self._take(self.roster.revoke(nick, now))

    # --- helpers ---------------------------------------------------------------------

    def _take(self, output: Output) -> None:
        """Show what the roster's call came to, and send its envelopes when connected;
        otherwise the outbox keeps them for the resend after the next welcome."""
        self._events += output.events
        if self.phase is Phase.READY:
            for envelope in output.envelopes:
                self._send(p.Send(envelope))

    def _send(self, msg: p.PeerMessage) -> None:
        self._out.append(p.encode(msg))


@dataclass(frozen=True, slots=True)
class Deliveries:
    """DELIVERs that came in a row, read in one go: opened in one pass."""

    deliveries: list[Delivery]


def _parsed(
    batch: Iterable[list[bytes]],
) -> Iterator[p.BrokerMessage | Deliveries | ProtocolError]:
    """What `batch` holds, parsed, in order: DELIVERs in a row as one `Deliveries`,
    every other message alone, and what did not parse as its error."""
    run: list[Delivery] = []
    for frames in batch:
        try:
            msg: p.BrokerMessage | ProtocolError = p.parse_from_broker(frames)
        except ProtocolError as exc:
            msg = exc
        if isinstance(msg, p.Deliver):
            run.append(msg.delivery)
            continue
        if run:
            yield Deliveries(run)
            run = []
        yield msg
    if run:
        yield Deliveries(run)


def _wire_name(code: p.RefuseCode | p.ErrorCode | int) -> str:
    """A refusal's or an error's name as events and ``--json`` spell it: nick-taken.
    A code this version does not know (a later version's) is ``code-N``."""
    if isinstance(code, p.RefuseCode | p.ErrorCode):
        return code.name.lower().replace("_", "-")
    return f"code-{code}"


def _refusal(refusal: p.Refuse | p.VersionRefusal, *, rejoining: bool) -> ev.Refused:
    """A refusal as the event that ends the session; a version refusal says which
    version the broker speaks (no retry can help then, nor another nickname)."""
    if isinstance(refusal, p.VersionRefusal):
        name = _wire_name(p.RefuseCode.UNSUPPORTED_VERSION)
        return ev.Refused(name, refusal.reason, refusal.version, rejoining=rejoining)
    return ev.Refused(_wire_name(refusal.code), refusal.reason, rejoining=rejoining)


def _error_problem(code: p.ErrorCode | int, reason: str) -> ev.Problem:
    """An ERROR the core does not act on, as a problem; a later version's code is
    reported as unexpected, and otherwise ignored."""
    if isinstance(code, p.ErrorCode):
        return ev.Problem(P(_wire_name(code)), detail=reason, context="Error")
    return ev.Problem(P.UNEXPECTED, detail=reason, context=f"Error {code}")


def _leave_reason(reason: p.LeaveReason | int) -> str:
    """Why a member left, as events spell it; a reason this version does not know
    (a later version's) is ``other``: the member left all the same."""
    return reason.name.lower() if isinstance(reason, p.LeaveReason) else "other"


def _certificate(
    identity: Identity, nick: str, key: SessionKey, room: bytes, life_ms: int, wall: float
) -> SessionCertificate | None:
    """A certificate of `key` for `nick` in room `room`, made at `wall`. None when no
    certificate can name `nick`: the broker refuses the nickname anyway before it
    looks at one (and the user gets to pick another)."""
    if not is_valid_nick(nick):
        return None
    created = int(wall * 1000)
    return certify(identity, nick, key, room_id=room, created_ms=created, lifetime_ms=life_ms)


def _proof(identity: Identity, nick: str, nonce: bytes, broker: bytes, transport: bytes) -> bytes:
    """Our proof of key for the broker's CHALLENGE `nonce`."""
    raw = nick.encode("ascii", "replace")
    return sign_proof(
        identity.private_key,
        nonce,
        raw,
        identity.public_der,
        broker_key=broker,
        transport_key=transport,
    )
