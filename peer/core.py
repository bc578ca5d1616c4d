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

Trust (as ssh's known_hosts): the first key seen for a nickname is pinned. A later,
different key is CHANGED: nothing is encrypted to it and messages signed by it are
held back, until the user trusts it.

Admission (`peer.admission`): nothing is sealed to a member, whatever the broker
announced, until the user admitted it by fingerprint or a member the user admitted
vouched for it (or, in an open room, at first sight).

The core keeps the phases, the handshake, the heartbeats, the dispatch of what the
broker sends and the public API. The rest is in parts that know nothing of it, each
with one job: `peer.directory` (who is here, their session keys, the room limit),
`peer.admission` (who may read, and the vouches), `peer.sending` (sealing, the outbox
and resends). A part returns what happened, and the core applies it.

Forward secrecy (`peer.session_keys`): messages are wrapped to session keys, never to
identity keys. The core asks for a new key of its own (`wants_session_key`) at every
connection and on a schedule, and the loop, which makes it off its event loop, hands
it in (`add_session_key`); HELLO waits for it. A member's session key is sealed to
only after its certificate verified under the member's pinned key, and only while the
certificate is valid.

Dates: only `send_text` and `add_session_key` carry one (`wall`); checks of a
certificate's dates elsewhere use the last such date moved on by the monotonic clock,
which the certificates' five minutes of clock tolerance more than cover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum

from zchat.envelope import (
    BadPublicKey,
    Delivery,
    Identity,
    SessionKey,
    Vouch,
    certify,
    fingerprint,
    is_valid_nick,
    load_public_key,
    nick_key,
)
from zchat.envelope.limits import MAX_ROOM
from zchat.envelope.proof import sign_proof
from zchat.peer import events as ev
from zchat.peer.admission import Admission, Effect, Record, SealVouches
from zchat.peer.config import PeerConfig
from zchat.peer.contact import Contact
from zchat.peer.directory import Directory
from zchat.peer.errors import UnknownRecipient
from zchat.peer.fingerprints import check_fingerprint
from zchat.peer.gate import Gate
from zchat.peer.inbox import Inbox, Opened
from zchat.peer.outbox import Entry, Outbox
from zchat.peer.pinning import Pinning
from zchat.peer.pins import Admission as Grant
from zchat.peer.pins import How, Pin, Pins
from zchat.peer.replay import ReplayGuard
from zchat.peer.sending import Resent, Sending
from zchat.peer.session_keys import KeyRing, certificate_lifetime_ms
from zchat.peer.withheld import Withheld
from zchat.wire import protocol as p
from zchat.wire.errors import ProtocolError

#: Bounds on the timers a broker may impose on us in WELCOME.
_MIN_TIMER = 0.01
_MAX_TIMER = 3600.0


def _no_calendar() -> float:
    return 0.0


class Phase(Enum):
    IDLE = "idle"
    HANDSHAKING = "handshaking"
    READY = "ready"
    REFUSED = "refused"  # the broker said no; the front end decides what next
    CLOSED = "closed"


class PeerCore:
    """One peer's protocol state: call it with what happened, take what to do."""

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
        self.nick = nick
        self.identity = identity
        self.config = PeerConfig() if config is None else config
        #: Where message ids come from: `os.urandom` in the client, a seeded generator
        #: in tests. Required, so the core never reaches for the OS itself.
        self.random = random
        #: Today's date, in seconds since the epoch (`time.time` in the client): pins note
        #: when a key was last seen and admitted, and vouches carry it. Without one, every
        #: date reads 1970 and no pin expires.
        self.date = date
        #: The CURVE keys of our connection, Z85, empty without CURVE: the broker's public
        #: key we were told to expect (`--broker-key`) and our own transport key. The proof
        #: of key names both, so a proof relayed to another broker does not verify there.
        self.broker_key = broker_key
        self.transport_key = transport_key
        self.phase = Phase.IDLE
        self.reconnect_wanted = False
        self.closed_reason = ""
        #: The room's name, as the broker's WELCOME gives it: vouches are bound to it.
        self.room = p.DEFAULT_ROOM
        # The parts, each with one job. The pins (`pins`) are the ones loaded; the core
        # updates them in memory and hands them out (`take_pins`). The first sequence
        # number (`seq`) comes from the loop, derived from the wall clock
        # (`peer.client.initial_seq`), so numbers keep increasing across restarts.
        self.pinning = Pinning(Pins() if pins is None else pins)
        self.directory = Directory()
        self.admission = Admission(open_room=self.config.admit_all)
        self.sending = Sending(identity, seq, random)
        self.inbox = Inbox()
        self._out: list[list[bytes]] = []
        self._events: list[ev.Event] = []
        self._welcomed_once = False
        self._welcomed = False  # WELCOME received for the current hello
        #: A CHALLENGE answered for the current hello: one signature per HELLO, or the
        #: broker could have us sign whatever nonces it likes, at RSA cost each.
        self._answered = False
        #: When we last heard the broker that went away; None while connected. Set from
        #: noticing a dead broker until the next welcome, which resends what it may have lost.
        self._lost_at: float | None = None
        self._last_heard = 0.0
        self._next_beat = 0.0
        self._backoff = self.config.reconnect_min
        self._interval = self.config.heartbeat_interval
        self._timeout = self.config.heartbeat_timeout
        #: Our session keys (forward secrecy): the current one and those in their grace.
        self._ring = KeyRing(self.config.key_grace)
        self._wants_key = False
        self._hello_waiting = False  # start() was called; HELLO goes out with the new key
        #: The date minus the monotonic clock, as of the last call that gave both.
        self._wall_offset: float | None = None

    # --- outputs, and the parts' state for inspection -----------------------------------

    def take_outgoing(self) -> list[list[bytes]]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[ev.Event]:
        events, self._events = self._events, []
        return events

    def take_pins(self) -> tuple[Pin, ...] | None:
        """Every pin, when any changed since the last call (None otherwise).

        The loop writes them to the pins file. They come out whole rather than as
        changes because the file holds them whole, and so that a batch of input
        that pinned many members (a room's snapshot, a flood of joins) costs one
        write, not one a member.
        """
        return self.pinning.take()

    @property
    def wants_session_key(self) -> bool:
        """Whether the loop should make a session key and hand it to `add_session_key`.

        Making one takes tens of milliseconds, so the loop does it off its event loop;
        it need not hurry more than that (HELLO waits for it), nor make two at once.
        """
        return self._wants_key

    @property
    def session_keys(self) -> KeyRing:
        """Our session keys, for inspection; the core alone changes them."""
        return self._ring

    @property
    def pins(self) -> Pins:
        return self.pinning.pins

    @property
    def members(self) -> dict[str, Contact]:
        """The members present, by case-folded nickname (`peer.directory`)."""
        return self.directory.members

    @property
    def outbox(self) -> Outbox:
        return self.sending.outbox

    @property
    def seq(self) -> int:
        """The next sequence number we seal with."""
        return self.sending.seq

    @seq.setter
    def seq(self, value: int) -> None:
        self.sending.seq = value

    @property
    def gate(self) -> Gate:
        """What admission remembers, for inspection."""
        return self.admission.gate

    @property
    def _replay(self) -> ReplayGuard:
        return self.inbox.replay

    @property
    def _withheld(self) -> Withheld:
        return self.inbox.withheld

    def pending_acks(self) -> list[Entry]:
        """What people typed that the broker has not acknowledged yet (not vouches)."""
        return self.sending.pending_acks()

    # --- what admission sees of the room (peer.admission.RoomView) -----------------

    def member(self, nick: str) -> Contact | None:
        return self.directory.get(nick)

    def present(self) -> Iterable[Contact]:
        return self.directory.members.values()

    def readers(self) -> list[Contact]:
        return self.directory.readers()

    def date_ms(self) -> int:
        return max(0, int(self.date() * 1000))

    # --- session ---------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Say hello (again): on first connect, after a reconnect, or with a new nick.

        Every connection gets a new session key: HELLO goes out when the loop hands
        it in (`wants_session_key`, `add_session_key`).
        """
        self.phase = Phase.HANDSHAKING
        self.reconnect_wanted = False
        self._welcomed = False
        self._answered = False
        self._last_heard = now
        self.pinning.expire(self.date_ms())
        self._hello_waiting = True
        self._wants_key = True

    def add_session_key(self, key: SessionKey, now: float, *, wall: float) -> None:
        """Take the session key the loop made: certify it as of `wall`, use it, announce it.

        It goes out in the HELLO that waited for it, or in a REKEY when connected (a
        scheduled rotation). A key nobody waits for any more (we left, or were
        refused) is dropped. Its private half stays in memory, in our ring.
        """
        self._wall_offset = wall - now
        self._wants_key = False
        nick = self.nick.encode("ascii", "replace")
        if self.phase is Phase.HANDSHAKING and self._hello_waiting:
            self._hello_waiting = False
            self._last_heard = now  # the handshake's timer starts with the HELLO
            cert = self._install(key, now, wall)
            self._send(p.Hello(nick, self.identity.public_der, cert))
        elif self.phase is Phase.READY:
            self._send(p.Rekey(self._install(key, now, wall)))

    def _install(self, key: SessionKey, now: float, wall: float) -> bytes:
        """Make `key` our current one; its certificate, encoded."""
        if not is_valid_nick(self.nick):
            # No certificate can name it, and the broker refuses the nickname anyway
            # before it looks at one (the user gets to pick another).
            return b""
        lifetime = certificate_lifetime_ms(self.config.rotate_every)
        cert = certify(
            self.identity, self.nick, key, created_ms=int(wall * 1000), lifetime_ms=lifetime
        )
        self._ring.install(key, cert, now)
        return cert.encode()

    def rename(self, nick: str) -> None:
        """Pick another nickname after a refusal; call `start` to try it."""
        self.nick = nick

    def leave(self) -> None:
        if self.phase is Phase.READY:
            self._send(p.Bye())
        self.phase = Phase.CLOSED

    # --- input -----------------------------------------------------------------------

    def receive(self, frames: list[bytes], now: float) -> None:
        try:
            msg = p.parse_from_broker(frames)
        except ProtocolError as exc:
            self._problem("malformed", f"malformed message from the broker: {exc}")
            return
        self._last_heard = now
        match msg:
            case p.Challenge(nonce) if self.phase is Phase.HANDSHAKING and not self._answered:
                self._answered = True
                nick = self.nick.encode("ascii", "replace")
                der = self.identity.public_der
                proof = sign_proof(
                    self.identity.private_key,
                    nonce,
                    nick,
                    der,
                    broker_key=self.broker_key,
                    transport_key=self.transport_key,
                )
                self._send(p.Proof(proof))
            case p.Welcome() if self.phase is Phase.HANDSHAKING:
                self._welcome(msg)
            case p.Snapshot(members) if self.phase is Phase.HANDSHAKING and self._welcomed:
                self._snapshot(members, now)
            case p.Refuse(code, reason) if self.phase is Phase.HANDSHAKING:
                self.phase = Phase.REFUSED
                self._events.append(ev.Refused(code.name.lower().replace("_", "-"), reason))
            case p.Join(member) if self.phase is Phase.READY:
                self._join(member, now)
            case p.Leave(nick, reason) if self.phase is Phase.READY:
                self._drop(nick, self.directory.remove(nick), reason.name.lower())
            case p.Deliver(delivery) if self.phase is Phase.READY:
                self._deliver(delivery, now)
            case p.Rekeyed(nick, cert) if self.phase is Phase.READY:
                contact = self.directory.get(nick)
                if contact is None:
                    self._problem("unexpected", f"a new session key for {nick}, who is not here")
                else:
                    self._take_certificate(contact, cert, self._date_at(now), known=contact)
            case p.Ack(msg_id, delivered, absent):
                self._events += self.sending.acknowledge(msg_id, delivered, absent, now)
            case p.Error(code, reason, msg_id):
                self._error(code, reason, msg_id, now)
            case p.Heartbeat():
                pass
            case _:
                self._problem("unexpected", f"unexpected {type(msg).__name__} from the broker")

    def _welcome(self, welcome: p.Welcome) -> None:
        if nick_key(welcome.nick) != nick_key(self.nick):
            self._problem("unexpected", "the broker welcomed us under another nickname")
            return
        self.nick = welcome.nick
        self.room = welcome.room
        self._welcomed = True  # a snapshot counts only after a welcome to this hello
        self._interval = _clamp(welcome.heartbeat_ms / 1000)
        self._timeout = _clamp(welcome.timeout_ms / 1000)

    def _snapshot(self, members: tuple[p.Member, ...], now: float) -> None:
        previous = self.directory.relist()
        announce = self._events
        self._events = []  # the Ready event goes first; joins and key news follow
        refused = 0
        for wire in members:
            key = nick_key(wire.nick)
            if key == nick_key(self.nick):
                continue  # a lying broker listing us: ignore
            if not self.directory.fits(key):
                refused += 1  # checked before any work for the member (loading its key)
                continue
            missing = self.directory.back(key)
            known = previous.get(key) or missing
            new = known is None or known.public_der != wire.public_der
            self._admit(wire, now, announce=new, already_here=True, known=known)
        # Members we knew who are not back yet (after a broker restart everyone
        # reconnects at once): wait a little before saying they left.
        for member in self.directory.relisted(previous, now):
            self._drop(member.nick, member, "room-full")
        if refused:
            self._room_full(f"the broker announced {refused} member(s) more than")
        reconnected = self._welcomed_once
        self._welcomed_once = True
        self.phase = Phase.READY
        self._backoff = self.config.reconnect_min
        self._next_beat = now + self._interval
        peers = tuple(m.nick for m in self.directory.members.values())
        news, self._events = self._events, announce
        self._events.append(ev.Ready(self.nick, peers, reconnected=reconnected))
        self._events.extend(news)
        self._resend(now)

    def _join(self, wire: p.Member, now: float) -> None:
        key = nick_key(wire.nick)
        if key == nick_key(self.nick):
            return
        missing = self.directory.back(key)
        if missing is None and key not in self.directory.members:
            fits, shed = self.directory.make_room()
            for gone in shed:
                self._drop(gone.nick, gone, "room-full")
            if not fits:
                self._room_full(f"{wire.nick} joined, but that is one more than")
                return
        quiet = missing is not None and missing.public_der == wire.public_der
        known = self.directory.members.get(key) or missing
        member = self._admit(wire, now, announce=not quiet, known=known)
        if member is not None and member.may_read:
            self._sent(self.sending.resend_to(member, self.directory, now, self._date_at(now)))

    def _admit(
        self,
        wire: p.Member,
        now: float,
        *,
        announce: bool,
        already_here: bool = False,
        known: Contact | None = None,
    ) -> Contact | None:
        """Add a member to the directory, checking its key against our pin.

        (Into the directory: who may read is `member.admission`, which admission decides
        from the pin, from `known` (how we listed them until now), or the open room;
        later by /admit and vouches.)
        """
        try:
            key = load_public_key(wire.public_der)
        except BadPublicKey as exc:
            self._problem("bad-key", f"{wire.nick} announced an unusable key: {exc}")
            return None
        fp = fingerprint(wire.public_der)
        trust, record = self.pinning.sight(wire.nick, fp, self.date_ms())
        if trust is ev.Trust.NEW:
            self._events += self.pinning.pin(wire.nick, fp, self.date_ms())
        member = Contact(wire.nick, key, wire.public_der, fp, trust)
        self.admission.on_sight(member, record, known, self.date_ms())
        self.directory.add(member)
        # `announce` is False for a member we already list with this very key (back
        # after a reconnect): it was warned about then, and a warning repeated at
        # every reconnect would teach people to skim it.
        if trust is ev.Trust.CHANGED and announce:
            assert record is not None
            self._events.append(ev.KeyChanged(wire.nick, record.fingerprint, fp))
            self._events += self.sending.forget_recipient(wire.nick)
            if self.config.admit_all:
                self._accept_key(member, now)
                member.admission = Grant(How.OPEN, "", self.date_ms())
        if announce:
            self._events.append(ev.Joined(wire.nick, fp, member.trust, already_here))
        # The session key first: what admission sends (vouches) is sealed to it.
        self._take_certificate(member, wire.certificate, self._date_at(now), known=known)
        first_snapshot = not self._welcomed_once
        self._apply(
            self.admission.arrived(
                self,
                member,
                announce=announce,
                already_here=already_here,
                first_snapshot=first_snapshot,
            ),
            now,
        )
        return member

    def _take_certificate(
        self, member: Contact, raw: bytes, date_ms: int | None, *, known: Contact | None
    ) -> None:
        pinned = self.pins.get(member.nick)
        refused = self.directory.take_certificate(member, raw, date_ms, pinned=pinned, known=known)
        if refused:
            self._problem(
                "bad-certificate",
                f"{member.nick}'s session key is refused ({refused}): nothing is sealed to "
                f"{member.nick} until a valid one comes",
            )

    def _drop(self, nick: str, member: Contact | None, reason: str) -> None:
        """The one way a member goes (it left, timed out, or was let go to make room):
        what it sent that we held back, its replay window and what admission knew of
        it go too. `member` is the contact the directory let go, None if it had none."""
        self.inbox.forget(nick)
        self.admission.left(nick)
        if member is not None:
            self._events.append(ev.Left(member.nick, reason))

    def _room_full(self, what: str) -> None:
        if self.directory.report_full():
            self._problem(
                "room-full",
                f"{what} a room holds ({MAX_ROOM}, us included): ignored, "
                "and so is anyone else announced until someone leaves",
            )

    def _deliver(self, delivery: Delivery, now: float) -> None:
        member = self.directory.get(delivery.header.sender)
        if member is None:
            sender = delivery.header.sender
            self._problem("unknown-sender", f"message from {sender}, who is not here")
            return
        opened = self.inbox.deliver(delivery, member, me=self.nick, keys=self._ring.held())
        self._opened(opened, member, now)

    def _opened(self, opened: Opened, member: Contact, now: float) -> None:
        self._events += opened.events
        if opened.vouches is not None:
            self._apply(self.admission.take_vouches(self, member, opened.vouches), now)

    def _error(self, code: p.ErrorCode, reason: str, msg_id: bytes, now: float) -> None:
        if code is p.ErrorCode.HELLO_FIRST:
            if self.phase is Phase.READY:  # the broker restarted and forgot us
                self._disconnected("the broker restarted", now, new_socket=False)
            return
        if code is p.ErrorCode.REPLACED:
            # Final: two clients with one key would take the place from each other
            # forever. The session ends, and says why (`zchat: error: ...`).
            self.phase = Phase.CLOSED
            self.closed_reason = "this nickname logged in again elsewhere with our key"
            self._events.append(ev.Disconnected(self.closed_reason, final=True))
            return
        if code is p.ErrorCode.EVICTED:
            self._disconnected("evicted by the broker", now, new_socket=True)
            return
        if msg_id:
            self._events += self.sending.refused(msg_id)
        self._problem(code.name.lower().replace("_", "-"), f"the broker said: {reason}")

    # --- time ------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        self._ring.expire(now)
        if self.phase is Phase.READY and now - self._ring.installed_at >= self.config.rotate_every:
            self._wants_key = True  # a scheduled rotation: add_session_key announces it
        if self.phase in (Phase.READY, Phase.HANDSHAKING):
            silent = now - self._last_heard
            if silent > self._timeout and self.phase is Phase.READY:
                self._disconnected("the broker stopped answering", now, new_socket=True)
            elif silent > self._timeout + self._backoff and self.phase is Phase.HANDSHAKING:
                # No answer to our hello: try again on a fresh socket, backing off.
                self._backoff = min(self._backoff * 2, self.config.reconnect_max)
                self.reconnect_wanted = True
                self._last_heard = now
        if self.phase is Phase.READY and now >= self._next_beat:
            self._next_beat = now + self._interval
            self._send(p.Heartbeat())
        self._events += self.sending.expire(now, self.config.absent_grace)
        for member in self.directory.expire_missing(now, self._timeout * 2):
            self._drop(member.nick, member, "timeout")

    def connection_lost(self, reason: str, now: float) -> None:
        """The I/O layer saw the connection dropped for good (its transport refused
        what the broker sent): reconnect now, rather than after the heartbeat timeout."""
        if self.phase in (Phase.READY, Phase.HANDSHAKING):
            self._disconnected(reason, now, new_socket=True)

    def _disconnected(self, reason: str, now: float, *, new_socket: bool) -> None:
        if self._lost_at is None:
            self._events.append(ev.Disconnected(reason))
            self._lost_at = self._last_heard
        if new_socket:
            self.reconnect_wanted = True  # the I/O layer calls start() on a new socket
            self.phase = Phase.IDLE
        else:
            self.start(now)

    # --- user actions ----------------------------------------------------------------

    def send_text(
        self, text: str, now: float, to: list[str] | None = None, *, wall: float
    ) -> bytes:
        """Seal `text` for the room, or for the nicknames in `to`; return its id.

        Sealed at once for the members present now; sent at once when connected,
        otherwise when the broker welcomes us back.

        Two clocks here, where every other call takes one: `now` is the monotonic
        time that runs the timers (here the outbox's grace period), `wall` the date
        (seconds since the epoch) the envelope tells its recipients. Only sealing
        needs the date, so only this call takes it, rather than a (monotonic, wall)
        pair on every call; and a date derived from `now` plus an offset fixed at
        start would drift from the real one whenever the system clock is set.
        """
        raw = self.sending.check_text(text)
        self._wall_offset = wall - now
        recipients = self.directory.addressees(to)
        direct = to is not None
        entry, unsealable = self.sending.seal_text(
            raw,
            text,
            sender_nick=self.nick,
            recipients=recipients,
            direct=direct,
            wall=wall,
            now=now,
        )
        envelope = entry.envelope
        self._events.append(ev.Sent(entry.msg_id, text, envelope.header.recipients, direct))
        if unsealable:
            self._events.append(ev.Unsealed(entry.msg_id, unsealable))
        if self.phase is Phase.READY:
            self._send(p.Send(envelope))
        return entry.msg_id

    def admit(self, nick: str, typed: str, now: float, *, command: str = "admit") -> None:
        """Let `nick` read what we send: the user compared `typed`, at least the first
        8 characters of their fingerprint as shown (spaces and case do not matter),
        and it must match their key *now*. A changed key is accepted this way too.

        Raises UnknownRecipient, or FingerprintMismatch with what to do instead.
        """
        member = self.directory.get(nick)
        if member is None:
            raise UnknownRecipient(f"{nick} is not in the room")
        check_fingerprint(member.nick, typed, member.fingerprint, command=command)
        if member.may_read and member.admission is not None and member.admission.how is How.YOU:
            self._events.append(ev.Notice(f"{member.nick} is already admitted (by you)"))
            return
        held: list[Delivery] = []
        if member.trust is ev.Trust.CHANGED:
            held = self._accept_key(member, now)
        grant = Grant(How.YOU, self.nick, self.date_ms())
        self._apply(self.admission.grant(self, member, grant), now)
        for delivery in held:
            self._opened(
                self.inbox.open(delivery, member, me=self.nick, keys=self._ring.held()), member, now
            )

    def trust(self, nick: str, typed: str, now: float) -> None:
        """Accept `nick`'s changed key: `admit`, under the name the user knows for it."""
        self.admit(nick, typed, now, command="trust")

    def _accept_key(self, member: Contact, now: float) -> list[Delivery]:
        """Pin a changed key; return the messages held back that it signed, to open.

        Only what the key being trusted signed: if the key changed again meanwhile (or
        back to the pin), messages held under another key stay unread.
        """
        self._events += self.pinning.pin(member.nick, member.fingerprint, self.date_ms())
        member.trust = ev.Trust.PINNED
        if member.announced:  # its session key can be checked against the new pin now
            self._take_certificate(member, member.announced, None, known=None)
        held = self.inbox.release(member)
        self._events.append(ev.Trusted(member.nick, member.fingerprint, len(held)))
        return held

    # --- applying what the parts return ----------------------------------------------

    def _apply(self, effects: list[Effect], now: float) -> None:
        """Do what admission asked, in its order."""
        for effect in effects:
            match effect:
                case SealVouches(vouches, recipients):
                    self._seal_vouches(vouches, recipients, now)
                case Record(member, grant):
                    self.directory.remember_certificate(member)
                    date_ms = self.date_ms()
                    self._events += self.pinning.admitted(
                        member.nick, member.fingerprint, grant, date_ms
                    )
                case _:
                    self._events.append(effect)

    def _seal_vouches(
        self, vouches: tuple[Vouch, ...], recipients: tuple[Contact, ...], now: float
    ) -> None:
        sealed = self.sending.seal_vouches(
            vouches, recipients, sender_nick=self.nick, date=self.date(), now=now
        )
        if self.phase is Phase.READY:
            for envelope in sealed:
                self._send(p.Send(envelope))

    def _resend(self, now: float) -> None:
        """After a welcome: everything not yet acknowledged, then what others missed.

        After a reconnect, also what the broker acknowledged just before it went
        away: a broker acknowledges a delivery when it queues it, and a crash loses
        its queues. Recipients drop the copies they already have by sequence number.
        """
        if self._lost_at is not None:
            since = self._lost_at - self._timeout - 1.0
            self.outbox.reopen_since(since, self.directory.sendable)
            self._lost_at = None
        date_ms = self._date_at(now)
        self._sent(self.sending.resend_unacked(self.directory, now, date_ms))
        for member in self.directory.members.values():
            if member.may_read:
                self._sent(self.sending.resend_to(member, self.directory, now, date_ms))

    def _sent(self, resent: Resent) -> None:
        for envelope in resent.envelopes:
            self._send(p.Send(envelope))
        self._events.extend(resent.events)

    # --- helpers ---------------------------------------------------------------------

    def _send(self, msg: p.PeerMessage) -> None:
        self._out.append(p.encode(msg))

    def _date_at(self, now: float) -> int | None:
        """The date at monotonic `now`, from the last one we were given; None before any."""
        if self._wall_offset is None:
            return None
        return int((now + self._wall_offset) * 1000)

    def _problem(self, code: str, message: str) -> None:
        self._events.append(ev.Problem(code, message))


def _clamp(seconds: float) -> float:
    return min(max(seconds, _MIN_TIMER), _MAX_TIMER)
