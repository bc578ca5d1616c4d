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

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import (
    BadCertificate,
    BadPublicKey,
    Delivery,
    EnvelopeError,
    Identity,
    MessageKind,
    NotForMe,
    SessionKey,
    UnknownSessionKey,
    Vouch,
    certify,
    decrypt_verified,
    encode_vouches,
    fingerprint,
    is_valid_nick,
    load_public_key,
    nick_key,
    reseal,
    seal,
    verify_delivery,
)
from zchat.envelope.limits import (
    KEY_ID_BYTES,
    MAX_ROOM,
    MAX_TEXT_BYTES,
    MAX_VOUCHES_PER_MESSAGE,
    MSG_ID_BYTES,
)
from zchat.envelope.proof import sign_proof
from zchat.peer import events as ev
from zchat.peer.admission import AdmissionMixin, Gate, admit_command, check_fingerprint
from zchat.peer.errors import (
    CannotSeal,
    MessageTooLong,
    NobodyHere,
    NoSessionKey,
    NotAdmitted,
    NotText,
    OutboxFull,
    UnknownRecipient,
    UntrustedRecipient,
)
from zchat.peer.outbox import MAX_OUTBOX, Entry, Outbox
from zchat.peer.pins import Admission, How, Pin, Pins
from zchat.peer.replay import ReplayGuard
from zchat.peer.session_keys import (
    DEFAULT_KEY_GRACE,
    DEFAULT_ROTATE_EVERY,
    CertifiedKey,
    KeyRing,
    announced_key,
    certificate_lifetime_ms,
)
from zchat.peer.withheld import MAX_WITHHELD, MAX_WITHHELD_BYTES, Withheld
from zchat.wire import protocol as p
from zchat.wire.errors import ProtocolError

#: Other members we keep in the directory: a room holds MAX_ROOM, ourselves included,
#: so an envelope to everyone never names more recipients than a header can.
MAX_OTHERS = MAX_ROOM - 1
#: Bounds on the timers a broker may impose on us in WELCOME.
_MIN_TIMER = 0.01
_MAX_TIMER = 3600.0


@dataclass(frozen=True, slots=True)
class PeerConfig:
    heartbeat_interval: float = 1.0  # until the broker's WELCOME says otherwise
    heartbeat_timeout: float = 5.0
    #: How long a message waits for a recipient who was away to come back.
    absent_grace: float = 30.0
    #: An open room: admit every key at first sight, a changed one too (still
    #: reported, never silent). For bots, the benchmark and load tests: the broker
    #: then decides who reads (README, "Admitting people").
    admit_all: bool = False
    reconnect_min: float = 0.1
    reconnect_max: float = 5.0
    #: Seconds between our session-key rotations while connected (and one at every
    #: connection). See `peer.session_keys`.
    rotate_every: float = DEFAULT_ROTATE_EVERY
    #: Seconds a replaced session key of ours still opens what was sealed to it.
    key_grace: float = DEFAULT_KEY_GRACE


@dataclass
class Contact:
    """Someone in the room as we see them: their key, checked against our pin.

    Not `wire.protocol.Member`, which is only what the broker claims (a nickname
    and a key); a contact is what we made of that claim.
    """

    nick: str
    public_key: rsa.RSAPublicKey
    public_der: bytes
    fingerprint: bytes
    trust: ev.Trust
    #: How we admitted them; None: not admitted, so nothing is sealed to them.
    admission: Admission | None = None

    #: The session key we seal to: its certificate verified under the pin. None while
    #: there is no valid one, and then nothing is sealed to this member.
    session: CertifiedKey | None = None
    #: The certificate as last announced, to check once more if the key is trusted later.
    announced: bytes = b""

    @property
    def may_read(self) -> bool:
        return self.admission is not None and self.trust is not ev.Trust.CHANGED

    @property
    def vouches_count(self) -> bool:
        """Whether their vouches admit: we admitted them ourselves or by a vouch."""
        return self.may_read and self.admission is not None and self.admission.how is not How.OPEN


#: Names whose newest certificate time is remembered; past this the oldest is forgotten.
MAX_NEWEST_CERTIFICATES = 4096


def _no_calendar() -> float:
    return 0.0


class Phase(Enum):
    IDLE = "idle"
    HANDSHAKING = "handshaking"
    READY = "ready"
    REFUSED = "refused"  # the broker said no; the front end decides what next
    CLOSED = "closed"


@dataclass
class PeerCore(AdmissionMixin):
    nick: str
    identity: Identity
    #: The pins as loaded; the core updates them in memory and hands them out.
    pins: Pins = field(default_factory=Pins)
    config: PeerConfig = field(default_factory=PeerConfig)
    #: The first sequence number to seal with. The loop derives it from the wall
    #: clock (`peer.client.initial_seq`), so numbers keep increasing across restarts.
    seq: int = field(kw_only=True)
    #: Where message ids come from: `os.urandom` in the client, a seeded generator
    #: in tests. Required, so the core never reaches for the OS itself.
    random: Callable[[int], bytes] = field(kw_only=True)
    #: Today's date, in seconds since the epoch (`time.time` in the client): pins note
    #: when a key was last seen and admitted, and vouches carry it. Without one, every
    #: date reads 1970 and no pin expires.
    date: Callable[[], float] = field(default=_no_calendar, kw_only=True)
    #: The CURVE keys of our connection, Z85, empty without CURVE: the broker's public
    #: key we were told to expect (`--broker-key`) and our own transport key. The proof
    #: of key names both, so a proof relayed to another broker does not verify there.
    broker_key: bytes = field(default=b"", kw_only=True)
    transport_key: bytes = field(default=b"", kw_only=True)

    phase: Phase = Phase.IDLE
    members: dict[str, Contact] = field(default_factory=dict)
    outbox: Outbox = field(default_factory=Outbox)
    reconnect_wanted: bool = False
    closed_reason: str = ""
    #: The room's name, as the broker's WELCOME gives it: vouches are bound to it.
    room: str = p.DEFAULT_ROOM
    gate: Gate = field(default_factory=Gate)

    _out: list[list[bytes]] = field(default_factory=list)
    _events: list[ev.Event] = field(default_factory=list)
    _replay: ReplayGuard = field(default_factory=ReplayGuard)
    _withheld: Withheld = field(default_factory=Withheld)
    #: (nick, identity fingerprint) -> creation time of the newest certificate accepted
    #: in this run; kept when the member leaves, so no leave-and-join rolls a key back.
    _newest_certificate: OrderedDict[tuple[str, bytes], int] = field(default_factory=OrderedDict)
    _missing: dict[str, tuple[Contact, float]] = field(default_factory=dict)
    _pins_changed: bool = False
    _full_reported: bool = False  # said that the room is full, until there is room again
    _welcomed_once: bool = False
    _welcomed: bool = False  # WELCOME received for the current hello
    #: A CHALLENGE answered for the current hello: one signature per HELLO, or the
    #: broker could have us sign whatever nonces it likes, at RSA cost each.
    _answered: bool = False
    _pins_full_said: bool = False
    #: When we last heard the broker that went away; None while connected. Set from
    #: noticing a dead broker until the next welcome, which resends what it may have lost.
    _lost_at: float | None = None
    _last_heard: float = 0.0
    _next_beat: float = 0.0
    _backoff: float = 0.0
    _interval: float = field(init=False)
    _timeout: float = field(init=False)
    #: Our session keys (forward secrecy): the current one and those in their grace.
    _ring: KeyRing = field(init=False)
    _wants_key: bool = False
    _hello_waiting: bool = False  # start() was called; HELLO goes out with the new key
    #: The date minus the monotonic clock, as of the last call that gave both.
    _wall_offset: float | None = None

    def __post_init__(self) -> None:
        self._interval = self.config.heartbeat_interval
        self._timeout = self.config.heartbeat_timeout
        self._backoff = self.config.reconnect_min
        self._ring = KeyRing(self.config.key_grace)

    # --- outputs ---------------------------------------------------------------------

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
        if not self._pins_changed:
            return None
        self._pins_changed = False
        return self.pins.items()

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
        if self.pins.expire(self._date_ms()):
            self._pins_changed = True
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
                self._leave(nick, reason.name.lower())
            case p.Deliver(delivery) if self.phase is Phase.READY:
                self._deliver(delivery, now)
            case p.Rekeyed(nick, cert) if self.phase is Phase.READY:
                self._rekeyed(nick, cert, now)
            case p.Ack(msg_id, delivered, absent):
                self._ack(msg_id, delivered, absent, now)
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
        previous = self.members
        self.members = {}
        announce = self._events
        self._events = []  # the Ready event goes first; joins and key news follow
        self._full_reported = False
        refused = 0
        for wire in members:
            key = nick_key(wire.nick)
            if key == nick_key(self.nick):
                continue  # a lying broker listing us: ignore
            if key not in self.members and len(self.members) >= MAX_OTHERS:
                refused += 1  # checked before any work for the member (loading its key)
                continue
            missing = self._missing.pop(key, None)
            known = previous.get(key) or (missing[0] if missing else None)
            new = known is None or known.public_der != wire.public_der
            self._admit(wire, now, announce=new, already_here=True, known=known)
        # Members we knew who are not back yet (after a broker restart everyone
        # reconnects at once): wait a little before saying they left.
        for key, known_member in previous.items():
            if key not in self.members:
                self._missing[key] = (known_member, now)
        # Members present win over members missing: those gone longest are let go.
        self._shed_missing(MAX_OTHERS)
        if refused:
            self._room_full(f"the broker announced {refused} member(s) more than")
        reconnected = self._welcomed_once
        self._welcomed_once = True
        self.phase = Phase.READY
        self._backoff = self.config.reconnect_min
        self._next_beat = now + self._interval
        peers = tuple(m.nick for m in self.members.values())
        news, self._events = self._events, announce
        self._events.append(ev.Ready(self.nick, peers, reconnected=reconnected))
        self._events.extend(news)
        self._resend(now)

    def _join(self, wire: p.Member, now: float) -> None:
        key = nick_key(wire.nick)
        if key == nick_key(self.nick):
            return
        missing = self._missing.pop(key, None)
        if missing is None and key not in self.members and not self._make_room():
            self._room_full(f"{wire.nick} joined, but that is one more than")
            return
        quiet = missing is not None and missing[0].public_der == wire.public_der
        known = self.members.get(nick_key(wire.nick)) or (missing[0] if missing else None)
        member = self._admit(wire, now, announce=not quiet, known=known)
        if member is not None and member.may_read:
            self._resend_to(member, now)

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

        (Into the directory: who may read is `member.admission`, decided here from the
        pin, from `known` (how we listed them until now), or the open room; later by
        /admit and vouches.)
        """
        try:
            key = load_public_key(wire.public_der)
        except BadPublicKey as exc:
            self._problem("bad-key", f"{wire.nick} announced an unusable key: {exc}")
            return None
        fp = fingerprint(wire.public_der)
        record = self.pins.record(wire.nick)
        pinned = None if record is None else record.fingerprint
        if pinned is None:
            self._pin(wire.nick, fp)
            trust = ev.Trust.NEW
        elif pinned == fp:
            trust = ev.Trust.PINNED
            if self.pins.seen(wire.nick, self._date_ms()):
                self._pins_changed = True
        else:
            trust = ev.Trust.CHANGED
        member = Contact(wire.nick, key, wire.public_der, fp, trust)
        if known is not None and known.public_der != wire.public_der:
            self.gate.leave(wire.nick)  # another key: what we told the old one is not known
        if record is not None and record.fingerprint == fp and record.admitted:
            member.admission = record.admission  # a returning member: admitted at once
        elif (
            known is not None
            and known.fingerprint == fp
            and known.may_read
            and trust is not ev.Trust.CHANGED
        ):
            member.admission = known.admission  # admitted this session (the pins were full)
        elif self.config.admit_all and trust is not ev.Trust.CHANGED:
            member.admission = Admission(How.OPEN, "", self._date_ms())
        self.members[nick_key(wire.nick)] = member
        # `announce` is False for a member we already list with this very key (back
        # after a reconnect): it was warned about then, and a warning repeated at
        # every reconnect would teach people to skim it.
        if trust is ev.Trust.CHANGED and announce:
            assert pinned is not None
            self._events.append(ev.KeyChanged(wire.nick, pinned, fp))
            for entry, nicks in self.outbox.forget_recipient(wire.nick):
                if not _quiet(entry):
                    self._events.append(ev.Undelivered(entry.msg_id, nicks))
            if self.config.admit_all:
                self._accept_key(member, now)
                member.admission = Admission(How.OPEN, "", self._date_ms())
        if announce:
            self._events.append(ev.Joined(wire.nick, fp, member.trust, already_here))
        # The session key first: what admission sends (vouches) is sealed to it.
        self._take_certificate(member, wire.certificate, self._cert_date_ms(now), known)
        self._arrived(member, now, announce=announce, already_here=already_here)
        return member

    def _rekeyed(self, nick: str, cert: bytes, now: float) -> None:
        member = self.members.get(nick_key(nick))
        if member is None:
            self._problem("unexpected", f"a new session key for {nick}, who is not here")
            return
        self._take_certificate(member, cert, self._cert_date_ms(now), member)

    def _take_certificate(
        self, member: Contact, raw: bytes, date_ms: int | None, known: Contact | None = None
    ) -> None:
        """Check the certificate announced for `member`: its session key if it is valid.

        `known` is how we knew the member before, if at all. A certificate we refuse
        changes nothing, as any junk announcement: the member keeps the session key we
        had for it, if any (a broker that wanted us to keep sealing to it need only not
        pass the new one on). Refused too: a certificate older than the one we have,
        a rollback to a key the member dropped.
        """
        member.announced = raw
        pinned = self.pins.get(member.nick)
        if member.trust is ev.Trust.CHANGED or pinned != member.fingerprint:
            member.session = None  # checked against the new key if and when it is trusted
            return
        same_key = known is not None and known.public_der == member.public_der
        previous = known.session if known is not None and same_key else None
        newest = (nick_key(member.nick), member.fingerprint)
        try:
            member.session = announced_key(
                raw,
                nick=member.nick,
                identity_key=member.public_key,
                identity_fingerprint=member.fingerprint,
                date_ms=date_ms,
                previous=previous,
                not_before_ms=self._newest_certificate.get(newest, 0),
            )
            self._remember_certificate(member)
        except BadCertificate as exc:
            member.session = previous
            if not member.may_read:
                # Nothing would be sealed to them anyway; a broker that floods the room
                # with made-up members must not flood the screen too. Sending to them
                # once admitted says there is no valid key (NoSessionKey, Unsealed).
                return
            self._problem(
                "bad-certificate",
                f"{member.nick}'s session key is refused ({exc}): nothing is sealed to "
                f"{member.nick} until a valid one comes",
            )

    def _remember_certificate(self, member: Contact) -> None:
        """Remember how new `member`'s session key is, so no leave and join rolls it back.

        Only for members who may read: nothing is sealed to anyone else, and a broker
        that invents members must not be able to push a real member's record out.
        Admission calls this too, for the key the member has when it is admitted.
        """
        if member.session is None or not member.may_read:
            return
        newest = (nick_key(member.nick), member.fingerprint)
        known = self._newest_certificate.get(newest, 0)
        self._newest_certificate[newest] = max(known, member.session.created_ms)
        self._newest_certificate.move_to_end(newest)
        while len(self._newest_certificate) > MAX_NEWEST_CERTIFICATES:
            self._newest_certificate.popitem(last=False)

    def _leave(self, nick: str, reason: str) -> None:
        member = self.members.pop(nick_key(nick), None)
        self._withheld.forget(nick_key(nick))
        self._replay.forget(nick)
        self.gate.leave(nick)
        if member is not None:
            self._full_reported = False  # there is room again
            self._events.append(ev.Left(member.nick, reason))

    # --- the room limit: MAX_ROOM members, ourselves included ------------------------

    def _make_room(self) -> bool:
        """Whether one more member fits, letting the longest-missing member go if need be.

        Members present and members missing since a broker restart count alike: a room
        message is addressed to both, and must name at most MAX_ROOM - 1 recipients.
        """
        self._shed_missing(MAX_OTHERS - 1)
        return len(self.members) + len(self._missing) < MAX_OTHERS

    def _shed_missing(self, limit: int) -> None:
        """Stop waiting for missing members, longest gone first, until at most `limit`
        members are present and missing together."""
        while self._missing and len(self.members) + len(self._missing) > limit:
            key = min(self._missing, key=lambda k: self._missing[k][1])
            member, _ = self._missing.pop(key)
            self._gone(key, member, "room-full")

    def _gone(self, key: str, member: Contact, reason: str) -> None:
        """A missing member is no longer waited for: as `_leave` does."""
        self._withheld.forget(key)
        self._replay.forget(member.nick)
        self.gate.leave(member.nick)
        self._full_reported = False
        self._events.append(ev.Left(member.nick, reason))

    def _room_full(self, what: str) -> None:
        """Say once, until someone leaves, that announced members were ignored: a flood
        of joins must not become a flood of lines."""
        if self._full_reported:
            return
        self._full_reported = True
        self._problem(
            "room-full",
            f"{what} a room holds ({MAX_ROOM}, us included): ignored, "
            "and so is anyone else announced until someone leaves",
        )

    def _deliver(self, delivery: Delivery, now: float) -> None:
        header = delivery.header
        member = self.members.get(nick_key(header.sender))
        if member is None:
            self._problem("unknown-sender", f"message from {header.sender}, who is not here")
            return
        try:
            verify_delivery(
                delivery,
                me=self.nick,
                sender_key=member.public_key,
                sender_fingerprint=member.fingerprint,
            )
        except NotForMe:
            self._problem("not-for-me", f"a message from {member.nick} not addressed to us")
            return
        except EnvelopeError as exc:
            self._problem("bad-signature", f"message claiming to be from {member.nick}: {exc}")
            return
        if member.trust is ev.Trust.CHANGED:
            # A resend of a message already held is the same message: report it once.
            added, dropped = self._withheld.hold(nick_key(member.nick), delivery)
            if added and header.kind is not MessageKind.VOUCH:  # a vouch is no message
                self._events.append(ev.Untrusted(member.nick, member.fingerprint, header.msg_id))
            for lost in dropped:
                self._problem(
                    "held-back-dropped",
                    f"the oldest message held back from {lost.delivery.header.sender} was "
                    f"dropped: at most {MAX_WITHHELD} a sender and "
                    f"{MAX_WITHHELD_BYTES // (1024 * 1024)} MiB in all are held",
                )
            return
        self._open(delivery, member, now)

    def _open(self, delivery: Delivery, member: Contact, now: float) -> None:
        header = delivery.header
        if not self._replay.is_new(member.nick, member.fingerprint, header.seq):
            if self._replay.is_stale(member.nick, member.fingerprint, header.seq):
                # Older than the whole window: not one of our resends, which are
                # always recent. A replay, or the sender's clock went back.
                self._problem("stale", f"an old message from {member.nick} was dropped (a replay?)")
            return  # a duplicate (a resend) is silent: it was shown once
        try:
            plaintext = decrypt_verified(delivery, me=self.nick, keys=self._ring.held())
            text = "" if header.kind is MessageKind.VOUCH else plaintext.decode("utf-8")
        except UnknownSessionKey:
            # Sealed to a key of ours past its grace: late, or replayed from a
            # recording. Nothing to open it with, and nothing to show.
            self._events.append(ev.Expired(member.nick, header.msg_id))
            return
        except (EnvelopeError, UnicodeDecodeError):
            self._problem("cannot-decrypt", f"a message from {member.nick} did not decrypt")
            return
        self._replay.record(member.nick, member.fingerprint, header.seq)
        if header.kind is MessageKind.VOUCH:
            self._take_vouches(member, plaintext, now)  # never shown as text
            return
        self._events.append(
            ev.MessageReceived(
                member.nick,
                text,
                header.msg_id,
                header.timestamp_ms,
                header.kind is MessageKind.DIRECT,
                header.recipients,
                admitted=member.may_read,
            )
        )

    def _ack(
        self, msg_id: bytes, delivered: tuple[str, ...], absent: tuple[str, ...], now: float
    ) -> None:
        entry = self.outbox.find(msg_id)
        if entry is None:
            return  # settled long ago, or given up on: nothing to change
        strangers = entry.strangers((*delivered, *absent))
        if strangers:
            # The signed recipient list says otherwise: a lie, or a broken broker.
            # Believe none of it, so that it settles nothing.
            self._problem(
                "bad-ack",
                f"the broker acknowledged a message of ours to {', '.join(strangers)}, "
                "whom it was not for: ignored",
            )
            return
        news = self.outbox.acknowledge(msg_id, delivered, absent, now)
        if news is not None and not _quiet(entry):
            self._events.append(ev.Acked(msg_id, *news))

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
            entry = self.outbox.drop(msg_id)
            if entry is not None and not _quiet(entry):
                self._events.append(ev.Undelivered(msg_id, entry.envelope.header.recipients))
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
        for entry, nicks in self.outbox.expire(now, self.config.absent_grace):
            if not _quiet(entry):
                self._events.append(ev.Undelivered(entry.msg_id, nicks))
        for key, (member, since) in list(self._missing.items()):
            if now - since > self._timeout * 2:
                del self._missing[key]
                if key not in self.members:
                    self._gone(key, member, "timeout")

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
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            # Standard input decodes stray bytes to lone surrogates (surrogateescape),
            # which UTF-8 cannot carry: refuse the line rather than crash the session.
            raise NotText(
                f"the text holds bytes that are not UTF-8 (at character {exc.start + 1}): not sent"
            ) from exc
        if len(raw) > MAX_TEXT_BYTES:
            raise MessageTooLong(
                f"message is {len(raw):,} bytes; the limit is {MAX_TEXT_BYTES:,}: not sent"
            )
        if len(self.outbox) >= MAX_OUTBOX:
            raise OutboxFull("too many messages are waiting for the broker: not sent")
        self._wall_offset = wall - now
        recipients = self._recipients(to)
        # Sealed only to session keys whose certificate is valid now, not when it came.
        date_ms = int(wall * 1000)
        keys = {nick_key(m.nick): m.session for m in recipients if m.session is not None}
        sealable = {k: s for k, s in keys.items() if s.usable(date_ms)}
        unsealable = tuple(m.nick for m in recipients if nick_key(m.nick) not in sealable)
        if unsealable and (to is not None or len(unsealable) == len(recipients)):
            raise NoSessionKey(
                f"no valid session key from {', '.join(unsealable)} (yet): message not sent"
            )
        kind = MessageKind.ROOM if to is None else MessageKind.DIRECT
        try:
            envelope = seal(
                raw,
                sender=self.identity,
                sender_nick=self.nick,
                recipients=[
                    sealable[nick_key(m.nick)].recipient(m.nick)
                    for m in recipients
                    if nick_key(m.nick) in sealable
                ],
                seq=self.seq,
                kind=kind,
                now=wall,
                msg_id=self.random(MSG_ID_BYTES),
            )
        except ValueError as exc:
            # Unreachable while the directory keeps the room limit; should that ever
            # break, the user reads why and the session (with its outbox) goes on.
            raise CannotSeal(f"the message cannot be sealed: {exc}: not sent") from exc
        self.seq += 1
        entry = self.outbox.add(envelope, text, now)
        entry.sealed_to = sealable
        self._events.append(
            ev.Sent(entry.msg_id, text, envelope.header.recipients, kind is MessageKind.DIRECT)
        )
        if unsealable:
            self._events.append(ev.Unsealed(entry.msg_id, unsealable))
        if self.phase is Phase.READY:
            self._send(p.Send(envelope))
        return entry.msg_id

    def _recipients(self, to: list[str] | None) -> list[Contact]:
        if to is None:
            members = self._readers()
            if not members:
                waiting = [
                    m.nick
                    for m in self.members.values()
                    if m.admission is None and m.trust is not ev.Trust.CHANGED
                ]
                if waiting:
                    waiting.sort(key=nick_key)
                    more = f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
                    named = ", ".join(waiting[:5]) + more
                    raise NobodyHere(
                        f"nobody here is admitted yet ({named}): message not sent; compare"
                        " fingerprints with someone you know (/who shows them), then"
                        " /admit NICK FINGERPRINT"
                    )
                raise NobodyHere("nobody else is here (or trusted): message not sent")
            return members
        chosen: dict[str, Contact] = {}
        for nick in to:
            member = self.members.get(nick_key(nick))
            if member is None:
                raise UnknownRecipient(f"{nick} is not in the room: message not sent")
            if member.trust is ev.Trust.CHANGED:
                raise UntrustedRecipient(
                    f"{member.nick}'s key changed; check it and /trust {member.nick} first"
                )
            if not member.may_read:
                raise NotAdmitted(
                    f"{member.nick} is not admitted: nothing is sent to them until you compare"
                    f" fingerprints (/fingerprint {member.nick}) and type"
                    f" {admit_command('admit', member.nick, member.fingerprint)}"
                )
            chosen[nick_key(nick)] = member
        if not chosen:
            raise UnknownRecipient("no recipient given")
        return list(chosen.values())

    def admit(self, nick: str, typed: str, now: float, *, command: str = "admit") -> None:
        """Let `nick` read what we send: the user compared `typed`, at least the first
        8 characters of their fingerprint as shown (spaces and case do not matter),
        and it must match their key *now*. A changed key is accepted this way too.

        Raises UnknownRecipient, or FingerprintMismatch with what to do instead.
        """
        member = self.members.get(nick_key(nick))
        if member is None:
            raise UnknownRecipient(f"{nick} is not in the room")
        check_fingerprint(member.nick, typed, member.fingerprint, command=command)
        if member.may_read and member.admission is not None and member.admission.how is How.YOU:
            self._events.append(ev.Notice(f"{member.nick} is already admitted (by you)"))
            return
        held: list[Delivery] = []
        if member.trust is ev.Trust.CHANGED:
            held = self._accept_key(member, now)
        self._grant(member, Admission(How.YOU, self.nick, self._date_ms()), now)
        for delivery in held:
            self._open(delivery, member, now)

    def trust(self, nick: str, typed: str, now: float) -> None:
        """Accept `nick`'s changed key: `admit`, under the name the user knows for it."""
        self.admit(nick, typed, now, command="trust")

    def _accept_key(self, member: Contact, now: float) -> list[Delivery]:
        """Pin a changed key; return the messages held back that it signed, to open.

        Only what the key being trusted signed: if the key changed again meanwhile (or
        back to the pin), messages held under another key stay unread.
        """
        self._pin(member.nick, member.fingerprint)
        member.trust = ev.Trust.PINNED
        if member.announced:  # its session key can be checked against the new pin now
            self._take_certificate(member, member.announced, None)
        # Release only what the key being trusted signed: if the key changed again
        # meanwhile (or back to the pin), messages held under another key stay unread.
        held = [
            d
            for d in self._withheld.release(nick_key(member.nick))
            if d.header.sender_fingerprint == member.fingerprint
        ]
        texts = sum(1 for d in held if d.header.kind is not MessageKind.VOUCH)
        self._events.append(ev.Trusted(member.nick, member.fingerprint, texts))
        return held

    # --- admission: the rules are peer.admission's; sealing is ours -------------------

    def _seal_vouches(self, vouches: list[Vouch], recipients: list[Contact], now: float) -> None:
        """Seal `vouches` to `recipients`, `MAX_VOUCHES_PER_MESSAGE` a message.

        Like a message: its own sequence number, kept in the outbox and resent until
        acknowledged; unlike one, never shown, and its acknowledgement is no event.
        """
        # Like a message, only to session keys whose certificate is valid now: never to
        # an identity key (forward secrecy), and to nobody without a key (yet).
        date_ms = int(self.date() * 1000)
        sealable = {
            nick_key(m.nick): m.session
            for m in recipients
            if m.session is not None and m.session.usable(date_ms)
        }
        if not vouches or not sealable:
            return
        sealed_to = [
            sealable[nick_key(m.nick)].recipient(m.nick)
            for m in recipients
            if nick_key(m.nick) in sealable
        ]
        for i in range(0, len(vouches), MAX_VOUCHES_PER_MESSAGE):
            payload = encode_vouches(vouches[i : i + MAX_VOUCHES_PER_MESSAGE])
            envelope = seal(
                payload,
                sender=self.identity,
                sender_nick=self.nick,
                recipients=sealed_to,
                seq=self.seq,
                kind=MessageKind.VOUCH,
                now=self.date(),
                msg_id=self.random(MSG_ID_BYTES),
            )
            self.seq += 1
            if len(self.outbox) < MAX_OUTBOX:  # a full outbox holds what people typed
                entry = self.outbox.add(envelope, "", now)
                entry.sealed_to = dict(sealable)
                entry.payload = payload
            if self.phase is Phase.READY:
                self._send(p.Send(envelope))

    # --- helpers ---------------------------------------------------------------------

    def _resend(self, now: float) -> None:
        """After a welcome: everything not yet acknowledged, then what others missed.

        After a reconnect, also what the broker acknowledged just before it went
        away: a broker acknowledges a delivery when it queues it, and a crash loses
        its queues. Recipients drop the copies they already have by sequence number.
        """
        if self._lost_at is not None:
            since = self._lost_at - self._timeout - 1.0
            self.outbox.reopen_since(since, self._sendable)
            self._lost_at = None
        for entry in self.outbox.unacked():
            keep = {n for k, n in entry.pending.items() if self._sendable(k)}
            if keep:
                entry.sent_at = now
                self._resend_entry(entry, keep, now)
        for member in self.members.values():
            if member.may_read:
                self._resend_to(member, now)

    def _resend_to(self, member: Contact, now: float) -> None:
        key = nick_key(member.nick)
        for entry in self.outbox.waiting_for(member.nick):
            # Resending an earlier entry may have given up on the member everywhere
            # (no valid session key): then there is nothing left to send it here.
            spelled = entry.pending.get(key)
            if spelled is None:
                continue
            entry.absent_since.pop(key, None)
            self._resend_entry(entry, {spelled}, now)

    def _resend_entry(self, entry: Entry, keep: set[str], now: float) -> None:
        """Send `entry` again to `keep` (nicknames as its header spells them).

        The very same envelope while every one of them still has the session key it
        was wrapped to; otherwise sealed again, each recipient wrapped to the newest
        valid key we know for it (`_resend_targets`), with the same id and number.
        Who has no valid key at all is given up on, as after a key change.

        Someone missing since a broker restart is not sent to: they come back with a
        new session key (every connection makes one), which the resend must wait for.
        They count as absent, so their JOIN brings the resend (`_resend_to`).
        """
        for nick in list(keep):
            key = nick_key(nick)
            if key in self._missing and key not in self.members:
                keep.discard(nick)
                entry.absent_since.setdefault(key, now)
        targets = self._resend_targets(entry, now)
        for nick in keep - targets.keys():
            for dropped, nicks in self.outbox.forget_recipient(nick):
                self._events.append(ev.Undelivered(dropped.msg_id, nicks))
        keep = {n for n in keep if nick_key(n) in entry.pending}
        if not keep:
            return
        for nick in keep:  # sent to again: absent only if the broker says so once more
            entry.absent_since.pop(nick_key(nick), None)
        envelope = entry.envelope
        header = envelope.header
        stale = any(
            not wrapped or targets[nick].fingerprint[:KEY_ID_BYTES] != key_id
            for nick, key_id, wrapped in zip(
                header.recipients, header.key_ids, envelope.wrapped_keys, strict=True
            )
            if nick in keep
        )
        if stale:
            envelope = reseal(
                envelope,
                entry.payload or entry.text.encode("utf-8"),
                sender=self.identity,
                recipients=[key.recipient(nick) for nick, key in targets.items()],
            )
            entry.envelope = envelope
            entry.sealed_to = {nick_key(nick): key for nick, key in targets.items()}
        # Awaiting an answer again (only now that something goes out): should this
        # resend be lost with the broker, the resend after the next welcome covers it,
        # and `exit` waits for it.
        entry.acked = False
        self._send(p.Send(envelope.only_for(keep)))

    def _resend_targets(self, entry: Entry, now: float) -> dict[str, CertifiedKey]:
        """For each recipient of `entry`, the session key a resend is wrapped to.

        Its current key if we list it (present, or missing since a broker restart),
        else, for someone who left, the key the message was sealed to. Only keys whose
        certificate is still valid; a recipient with none is left out.
        """
        date_ms = self._cert_date_ms(now)
        targets: dict[str, CertifiedKey] = {}
        for nick in entry.envelope.header.recipients:
            key = nick_key(nick)
            missing = self._missing.get(key)
            contact = self.members.get(key) or (missing[0] if missing else None)
            if contact is not None:
                usable = contact.session if contact.trust is not ev.Trust.CHANGED else None
            else:
                usable = entry.sealed_to.get(key)
            if usable is not None and (date_ms is None or usable.usable(date_ms)):
                targets[nick] = usable
        return targets

    def _sendable(self, key: str) -> bool:
        member = self.members.get(key)
        return member is None or member.may_read

    def _send(self, msg: p.PeerMessage) -> None:
        self._out.append(p.encode(msg))

    def _cert_date_ms(self, now: float) -> int | None:
        """The date at monotonic `now`, from the last one we were given; None before any."""
        if self._wall_offset is None:
            return None
        return int((now + self._wall_offset) * 1000)

    def _pin(self, nick: str, fp: bytes) -> None:
        if self.pins.pin(nick, fp, seen_ms=self._date_ms()):
            self._pins_changed = True
        elif self.pins.get(nick) != fp:
            self._pins_full()

    def _problem(self, code: str, message: str) -> None:
        self._events.append(ev.Problem(code, message))

    def pending_acks(self) -> list[Entry]:
        """What people typed that the broker has not acknowledged yet (not vouches)."""
        return [entry for entry in self.outbox.unacked() if not _quiet(entry)]


def _clamp(seconds: float) -> float:
    return min(max(seconds, _MIN_TIMER), _MAX_TIMER)


def _quiet(entry: Entry) -> bool:
    """Vouches are sent, resent and acknowledged as messages are, but never shown."""
    return entry.envelope.header.kind is MessageKind.VOUCH
