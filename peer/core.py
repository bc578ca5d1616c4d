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

from collections.abc import Callable
from enum import Enum

from zchat.envelope import Identity, SessionKey, certify, is_valid_nick, nick_key, room_id
from zchat.envelope.proof import sign_proof
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.contact import Contact
from zchat.peer.events import ProblemCode as P
from zchat.peer.gate import Gate
from zchat.peer.outbox import Entry, Outbox
from zchat.peer.pinning import PinChanges
from zchat.peer.pins import Pins, Tombstone
from zchat.peer.replay import ReplayGuard
from zchat.peer.roster import Output, Roster
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
    """One peer's connection to the broker, and the room behind it (`roster`)."""

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
        """`pins`: as loaded; the core updates them in memory and hands them out.

        `seq`: the first sequence number to seal with. The loop derives it from the
        wall clock (`peer.client.initial_seq`), so numbers keep increasing across
        restarts. `random`: where message ids come from (`os.urandom` in the client, a
        seeded generator in tests), so the core never reaches for the OS itself.
        `date`: today's date, in seconds since the epoch (`time.time` in the client):
        pins note when a key was last seen and admitted, and vouches carry it. Without
        one, every date reads 1970 and no pin expires.

        `broker_key` and `transport_key`: the CURVE keys of our connection, Z85, empty
        without CURVE: the broker's public key we were told to expect (`--broker-key`)
        and our own transport key. The proof of key names both, so a proof relayed to
        another broker does not verify there.
        """
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
        self.phase = Phase.IDLE
        self.reconnect_wanted = False
        self.closed_reason = ""
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
        """Whether the loop should make a session key and hand it to `add_session_key`.

        Making one takes tens of milliseconds, so the loop does it off its event loop;
        it need not hurry more than that (HELLO waits for it), nor make two at once.
        """
        return self._wants_key

    def pending_acks(self) -> list[Entry]:
        """What people typed that the broker has not acknowledged yet (not vouches)."""
        return self.roster.pending_acks()

    # --- state, for the front ends and for inspection --------------------------------

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

    @seq.setter
    def seq(self, value: int) -> None:
        self.roster.sending.seq = value

    @property
    def session_keys(self) -> KeyRing:
        """Our session keys, for inspection; the core alone changes them."""
        return self._ring

    @property
    def gate(self) -> Gate:
        return self.roster.admission.gate

    @property
    def _replay(self) -> ReplayGuard:
        return self.roster.inbox.replay

    @property
    def _withheld(self) -> Withheld:
        return self.roster.inbox.withheld

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
        self.roster.expire_pins()
        self._hello_waiting = True
        self._wants_key = True

    def add_session_key(self, key: SessionKey, now: float, *, wall: float) -> None:
        """Take the session key the loop made: certify it as of `wall`, use it, announce it.

        It goes out in the HELLO that waited for it, or in a REKEY when connected (a
        scheduled rotation). A key nobody waits for any more (we left, or were
        refused) is dropped. Its private half stays in memory, in our ring.
        """
        self.roster.note_date(now, wall)
        self._wants_key = False
        nick = self.nick.encode("ascii", "replace")
        if self.phase is Phase.HANDSHAKING and self._hello_waiting:
            self._hello_waiting = False
            self._last_heard = now  # the handshake's timer starts with the HELLO
            cert = self._install(key, now, wall)
            self._send(p.Hello(nick, self.identity.public_der, cert, self.room.encode()))
        elif self.phase is Phase.READY:
            self._send(p.Rekey(self._install(key, now, wall)))

    def _install(self, key: SessionKey, now: float, wall: float) -> bytes:
        """Make `key` our current one; its certificate, encoded."""
        if not is_valid_nick(self.nick):
            # No certificate can name it, and the broker refuses the nickname anyway
            # before it looks at one (the user gets to pick another).
            return b""
        life, ms = certificate_lifetime_ms(self.config.rotate_every), int(wall * 1000)
        cert = certify(
            self.identity, self.nick, key, room_id=self.room_id, created_ms=ms, lifetime_ms=life
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
            self._problem(ev.Problem(P.MALFORMED, detail=str(exc)))
            return
        self._last_heard = now
        ready = self.phase is Phase.READY
        match msg:
            case p.Challenge(nonce) if self.phase is Phase.HANDSHAKING and not self._answered:
                self._answered = True
                self._send(p.Proof(self._prove(nonce)))
            case p.Welcome() if self.phase is Phase.HANDSHAKING:
                self._welcome(msg)
            case p.Snapshot(members) if self.phase is Phase.HANDSHAKING and self._welcomed:
                self._snapshot(members, now)
            case p.Refuse() | p.VersionRefusal() if self.phase is Phase.HANDSHAKING:
                self.phase = Phase.REFUSED
                self._events.append(_refused(msg))
            case p.Join(member) if ready:
                self._take(self.roster.join(member, now))
            case p.Leave(nick, reason) if ready:
                self._take(self.roster.leave(nick, _leave_reason(reason)))
            case p.Deliver(delivery) if ready:
                self._take(self.roster.deliver(delivery, now, self._ring.held()))
            case p.Heartbeat() | p.Rekeyed(self.nick):  # ours: the answer to our REKEY
                pass
            case p.Rekeyed(nick, cert) if ready:
                self._take(self.roster.rekeyed(nick, cert, now))
            case p.Ack(msg_id, delivered, absent):
                self._take(self.roster.acknowledge(msg_id, delivered, absent, now))
            case p.Error(code, reason, msg_id):
                self._error(code, reason, msg_id, now)
            case _:
                self._problem(ev.Problem(P.UNEXPECTED, context=type(msg).__name__))

    def _prove(self, nonce: bytes) -> bytes:
        """Our proof of key for the broker's CHALLENGE `nonce`."""
        return sign_proof(
            self.identity.private_key,
            nonce,
            self.nick.encode("ascii", "replace"),
            self.identity.public_der,
            broker_key=self.broker_key,
            transport_key=self.transport_key,
        )

    def _welcome(self, welcome: p.Welcome) -> None:
        if nick_key(welcome.nick) != nick_key(self.nick):
            self._problem(ev.Problem(P.UNEXPECTED, welcome.nick, context="Welcome"))
            return
        if welcome.room != self.room:  # the room is ours to choose, never the broker's
            self._problem(ev.Problem(P.UNEXPECTED, detail=welcome.room, context="Welcome room"))
            return
        self.roster.nick = welcome.nick
        self._welcomed = True  # a snapshot counts only after a welcome to this hello
        self._interval = _clamp(welcome.heartbeat_ms / 1000)
        self._timeout = _clamp(welcome.timeout_ms / 1000)

    def _snapshot(self, members: tuple[p.Member, ...], now: float) -> None:
        # Vouches sealed while the room is listed are not sent yet (we are not ready):
        # the outbox keeps them, and the resend below sends them.
        news = self.roster.snapshot(members, now, first=not self._welcomed_once)
        reconnected = self._welcomed_once
        self._welcomed_once = True
        self.phase = Phase.READY
        self._backoff = self.config.reconnect_min
        self._next_beat = now + self._interval
        peers = tuple(m.nick for m in self.members.values())
        # The Ready event goes first; joins and key news follow.
        self._events.append(ev.Ready(self.nick, peers, reconnected=reconnected))
        self._events += news.events
        lost_since = None
        if self._lost_at is not None:
            lost_since = self._lost_at - self._timeout - 1.0
            self._lost_at = None
        self._take(self.roster.resend(now, lost_since=lost_since))

    def _error(self, code: p.ErrorCode | int, reason: str, msg_id: bytes, now: float) -> None:
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
            self._take(self.roster.refused(msg_id))
        self._problem(_error_problem(code, reason))

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
        grace, wait = self.config.absent_grace, self._timeout * 2
        self._take(self.roster.tick(now, absent_grace=grace, missing_wait=wait))

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
        otherwise when the broker welcomes us back. Raises a `peer.errors.PeerError`
        saying why when it cannot be.

        Two clocks here, where every other call takes one: `now` is the monotonic
        time that runs the timers (here the outbox's grace period), `wall` the date
        (seconds since the epoch) the envelope tells its recipients. Only sealing
        needs the date, so only this call takes it, rather than a (monotonic, wall)
        pair on every call; and a date derived from `now` plus an offset fixed at
        start would drift from the real one whenever the system clock is set.
        """
        msg_id, output = self.roster.send_text(text, now, to, wall=wall)
        self._take(output)
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

    def _problem(self, problem: ev.Problem) -> None:
        self._events.append(problem)


def _wire_name(code: p.RefuseCode | p.ErrorCode | int) -> str:
    """A refusal's or an error's name as events and ``--json`` spell it: nick-taken.
    A code this version does not know (a later version's) is ``code-N``."""
    if isinstance(code, p.RefuseCode | p.ErrorCode):
        return code.name.lower().replace("_", "-")
    return f"code-{code}"


def _refused(refusal: p.Refuse | p.VersionRefusal) -> ev.Refused:
    """A refusal as an event; a version refusal says which version the broker speaks:
    no retry can help then."""
    if isinstance(refusal, p.VersionRefusal):
        name = _wire_name(p.RefuseCode.UNSUPPORTED_VERSION)
        return ev.Refused(name, refusal.reason, broker_version=refusal.version)
    return ev.Refused(_wire_name(refusal.code), refusal.reason)


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


def _clamp(seconds: float) -> float:
    return min(max(seconds, _MIN_TIMER), _MAX_TIMER)
