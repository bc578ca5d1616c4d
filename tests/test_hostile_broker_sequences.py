"""A hostile broker plays whole *sequences* of lies to one peer core, in memory.

`test_hostile_broker.py` fuzzes the peer core one mutated frame at a time. Some holes
open only after several steps: a review found that ACKs naming bob absent for two
messages, then LEAVE bob, then JOIN bob with an empty, expired or future certificate
made `PeerCore.receive` raise KeyError (fixed since; see `test_session_keys.py`). No
single frame reaches that state, so here hypothesis drives the sans-I/O core through
sequences of broker messages, user actions and clock jumps, and shrinks whatever
breaks to the shortest sequence that still does.

The core under test is alice, in a closed room, who admitted bob by fingerprint
earlier (her pins say so). The broker holds bob's identity *public* key, every
certificate bob ever made (it can replay older ones, expired ones, one from a clock
that ran ahead), and an identity key of its own, mallory's, with which it certifies
session keys of its own under any name. It announces JOINs, LEAVEs, REKEYEDs and
SNAPSHOTs of bob and of made-up members, under case variants of their names, answers
messages with ACKs that split recipients at random (naming strangers too), sends
ERRORs, evicts alice and welcomes her back, goes silent while the clock jumps up to
an hour and more, relays genuine messages from bob, forgeries of its own, and replays
of both. alice meanwhile sends to the room and to people, and admits made-up members
by their fingerprint, as a user who compared it would.

After every step, whatever happened, this file checks that:

1. nothing escapes `receive`, `tick`, `start` or `add_session_key`, and `send_text`
   and `admit` raise nothing but the peer's own errors (`zchat.peer.errors`);
2. every wrapped key in every SEND alice emits is for a session key certified, under
   that recipient's name, by an identity alice admitted for that name (bob's, or one
   she admitted by fingerprint), by a certificate valid at that moment; and it really
   opens with that key. So never a key of mallory's under bob's name, never an identity
   key, never an expired or future session key, never anyone alice did not admit;
3. alice shows each message once at most, and nothing as bob's that bob did not send;
4. alice signs one handshake proof per HELLO at most, however many CHALLENGEs come.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import ClassVar, Final

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from tests.support.keys import KeyPool
from tests.support.room import CLOSED, ROOM_ID, WALL_AT_ZERO, pooled_session_keys, seeded
from zchat.envelope import (
    Envelope,
    Identity,
    MessageKind,
    Recipient,
    SessionKey,
    certify,
    format_fingerprint,
    nick_key,
    seal,
)
from zchat.envelope import _primitives as prim
from zchat.envelope.errors import DecryptionFailed
from zchat.envelope.limits import CLOCK_SKEW_MS, KEY_ID_BYTES
from zchat.peer import events as ev
from zchat.peer.core import PeerCore, Phase
from zchat.peer.errors import PeerError
from zchat.peer.pins import Admission, How, Pin, Pins
from zchat.wire import protocol as p

# --- the cast, made once: RSA keys cost tens of milliseconds each ---------------------------

#: bob rotates his session key every EPOCH seconds (20 minutes: the clock jumps up to
#: 4000 s a step, and should cross a few) and certifies each key for one and a half
#: epochs (a real peer certifies for two rotation periods, `certificate_lifetime_ms`:
#: shorter is his choice to make, and it puts more of a run near an expiry, where a
#: single new key the broker keeps back lets the one alice holds run out). His
#: certificates are made at the start of an epoch, so the set the broker may replay
#: stays small and is signed once per test run, whatever hypothesis tries.
EPOCH: Final = 1200.0
LIFETIME_MS: Final = 1_800_000
#: bob's session keys, reused round robin from epoch to epoch. With four of them a key
#: is certified again only two and a half epochs after its last certificate expired,
#: so sealing to one that expired never passes for sealing to one that is valid.
BOB_KEYS: Final = 4
MALLORY_KEYS: Final = 2
ALICE_KEYS: Final = 2


@dataclass(frozen=True)
class Cast:
    alice: Identity
    bob: Identity
    #: The broker's own identity key.
    mallory: Identity
    alice_keys: tuple[SessionKey, ...]
    bob_keys: tuple[SessionKey, ...]
    mallory_keys: tuple[SessionKey, ...]
    #: key id (as a header names it) -> the session key, to check what a wrap opens with
    by_key_id: dict[bytes, SessionKey]


_CAST: dict[str, Cast] = {}


def the_cast(keys: KeyPool) -> Cast:
    """The identities and session keys, from the shared pools, made once per run."""
    if "cast" not in _CAST:
        make = pooled_session_keys()
        alice_keys = tuple(make() for _ in range(ALICE_KEYS))
        bob_keys = tuple(make() for _ in range(BOB_KEYS))
        mallory_keys = tuple(make() for _ in range(MALLORY_KEYS))
        by_key_id = {k.fingerprint[:KEY_ID_BYTES]: k for k in (*bob_keys, *mallory_keys)}
        # Distinct keys, or a key id could stand for a key of bob's and one of mallory's.
        assert len(by_key_id) == BOB_KEYS + MALLORY_KEYS
        _CAST["cast"] = Cast(
            alice=keys.get(0),
            bob=keys.get(1),
            mallory=keys.get(2),
            alice_keys=alice_keys,
            bob_keys=bob_keys,
            mallory_keys=mallory_keys,
            by_key_id=by_key_id,
        )
    return _CAST["cast"]


@dataclass(frozen=True)
class Issued:
    """A certificate the test made, and what it says, for the checks."""

    raw: bytes
    signer: bytes  # the fingerprint of the identity key that signed it
    nick: str
    key_id: bytes
    created_ms: int
    expires_ms: int

    def valid_at(self, date_ms: int) -> bool:
        """As `envelope.check_validity`, written out again so that the test does not
        take the code under test's word for it."""
        return self.created_ms - CLOCK_SKEW_MS <= date_ms <= self.expires_ms + CLOCK_SKEW_MS


#: Every certificate made, by what it was made from: signatures cost a millisecond or
#: more, and hypothesis asks for the same ones over and over.
_ISSUED: dict[tuple[bytes, str, bytes, int], Issued] = {}


def issue(signer: Identity, nick: str, key: SessionKey, epoch: int) -> Issued:
    """`signer`'s certificate of `key` for `nick`, made at the start of `epoch`."""
    index = (signer.fingerprint, nick, key.fingerprint, epoch)
    if index not in _ISSUED:
        created_ms = int((WALL_AT_ZERO + epoch * EPOCH) * 1000)
        cert = certify(
            signer, nick, key, room_id=ROOM_ID, created_ms=created_ms, lifetime_ms=LIFETIME_MS
        )
        _ISSUED[index] = Issued(
            cert.encode(),
            signer.fingerprint,
            nick,
            key.fingerprint[:KEY_ID_BYTES],
            cert.created_ms,
            cert.expires_ms,
        )
    return _ISSUED[index]


# --- what the broker may say -----------------------------------------------------------------

#: Names the broker announces: bob, a case variant of his, two it makes up, and alice's
#: own (which she must ignore).
NICKS: Final = ("bob", "Bob", "carol", "dave", "alice")
#: Whose identity key a member is announced with.
IDENTITIES: Final = ("bob", "mallory")
#: What certificate comes with an announcement. The first four are bob's genuine ones,
#: always for "bob" (the broker cannot make him sign any other name): his newest, the
#: one before (a rollback; valid for the first half of an epoch), one that expired an
#: epoch ago or more, and one from a clock two epochs ahead. "mallory" is the broker's
#: own, for the announced name.
CERTIFICATES: Final = ("current", "older", "expired", "future", "mallory", "empty", "junk")
#: Names in ACKs: recipients, case variants, and strangers (alice included).
ACK_NICKS: Final = ("bob", "Bob", "carol", "dave", "alice", "mallory")
#: Whom alice writes to: the room, or people.
ADDRESSEES: Final[tuple[tuple[str, ...] | None, ...]] = (
    None,
    None,
    None,
    ("bob",),
    ("Bob",),
    ("carol",),
    ("dave",),
    ("bob", "carol"),
)
#: How the broker answers a message at once (see `alice_writes`). Absent most: what
#: waits for a member is what a LEAVE and a JOIN later make alice resend.
ANSWERS: Final = ("absent", "absent", "delivered", "none")
#: Errors that leave the session to go on, or to reconnect. Not REPLACED: it ends the
#: session for good (the client exits), and nothing after it is the core's to handle.
ERRORS: Final = (
    p.ErrorCode.HELLO_FIRST,
    p.ErrorCode.EVICTED,
    p.ErrorCode.MALFORMED,
    p.ErrorCode.FORGED_SENDER,
    p.ErrorCode.BAD_CERTIFICATE,
)
#: WELCOME timers (heartbeat, timeout, in ms): the usual, long, and absurdly short.
TIMERS: Final = ((1000, 5000), (1000, 3_600_000), (0, 0))

any_member = st.tuples(
    st.sampled_from(NICKS), st.sampled_from(IDENTITIES), st.sampled_from(CERTIFICATES)
)

#: A certificate for bob where the broker may pass on his newest one: half the time it
#: does, as a broker that works would. Uniform lies leave alice without a valid key of
#: bob's for most of a run, where little reaches the code that seals and resends.
honest_or_not = st.just("current") | st.sampled_from(CERTIFICATES)


def is_bob(nick: str) -> bool:
    return nick_key(nick) == "bob"


@dataclass
class Checks:
    """What the checks need to know of the run so far."""

    #: nickname (case-folded) -> identity fingerprints alice admitted for it: a seal to
    #: that name may use a key certified by one of these (bob's from the start).
    admitted: dict[str, set[bytes]] = field(default_factory=dict)
    #: certificates the broker announced to alice, any name, any signer
    announced: dict[bytes, Issued] = field(default_factory=dict)
    #: ids of the messages bob really sent
    from_bob: set[bytes] = field(default_factory=set)
    #: (sender, id) of every message alice showed
    shown: set[tuple[str, bytes]] = field(default_factory=set)


def connected(machine: HostileBroker) -> bool:
    """Whether the broker can reach alice: not between a dead connection and the next
    HELLO, when the client has dropped the socket (then only time and the user act)."""
    return machine.core.phase is not Phase.IDLE


def out(machine: HostileBroker) -> bool:
    """Whether alice is out of the room (evicted, timed out, told to say HELLO again,
    refused): the client would connect again."""
    return machine.core.phase is not Phase.READY


class HostileBroker(RuleBasedStateMachine):
    """alice's core, and a broker that says whatever hypothesis picks."""

    #: Set by the test before it runs the machine: made once, from the session's pool.
    cast: ClassVar[Cast]

    def __init__(self) -> None:
        super().__init__()
        cast = self.cast
        self.now = 10.0
        self.checks = Checks(admitted={"bob": {cast.bob.fingerprint}})
        pins = Pins([Pin("bob", cast.bob.fingerprint, Admission(How.YOU, "alice", 1))])
        self.core = PeerCore(
            "alice", cast.alice, pins, CLOSED, seq=1, random=seeded(3), date=lambda: self.wall
        )
        self.alice_keys = itertools.cycle(cast.alice_keys)
        #: ids of what alice sealed (texts and vouches): what the broker acknowledges
        self.sent: list[bytes] = []
        #: DELIVERs the broker relayed, genuine or forged, to replay
        self.recorded: list[list[bytes]] = []
        #: sequence numbers of what the broker relays (bob's messages, its forgeries)
        self.seq = 0
        #: alice said HELLO and has not signed a proof for it yet
        self.hello_unanswered = False
        self.handshake(snapshot=[("bob", "bob", "current")], welcome="alice", timers=TIMERS[0])
        assert self.core.phase is Phase.READY
        assert self.core.members["bob"].session is not None

    # --- the clock --------------------------------------------------------------------

    @property
    def wall(self) -> float:
        """The date: it moves with the monotonic clock, as in `tests.support.room`."""
        return WALL_AT_ZERO + self.now

    @property
    def epoch(self) -> int:
        return int(self.now // EPOCH)

    # --- what the broker sends ---------------------------------------------------------

    def certificate(self, kind: str, nick: str) -> bytes:
        """The certificate `kind` the broker announces for `nick` now (and notes it)."""
        cast, e = self.cast, self.epoch
        bob_epoch = {"current": e, "older": e - 1, "expired": e - 3, "future": e + 2}
        if kind in bob_epoch:
            k = bob_epoch[kind]
            issued = issue(cast.bob, "bob", cast.bob_keys[k % BOB_KEYS], k)
        elif kind == "mallory":
            issued = issue(cast.mallory, nick, cast.mallory_keys[e % MALLORY_KEYS], e)
        else:
            return {"empty": b"", "junk": b"\x02" + b"junk" * 30}[kind]
        self.checks.announced[issued.raw] = issued
        return issued.raw

    def member(self, nick: str, identity: str, cert: str) -> p.Member:
        who = self.cast.bob if identity == "bob" else self.cast.mallory
        return p.Member(nick, who.public_der, self.certificate(cert, nick))

    def receive(self, msg: p.BrokerMessage) -> None:
        """Hand `msg` to alice: whatever it is, nothing may escape (check 1)."""
        self.core.receive(p.encode(msg), self.now)

    def handshake(
        self, snapshot: list[tuple[str, str, str]], welcome: str, timers: tuple[int, int]
    ) -> None:
        """What the client does on a new socket and a broker answers: start, a new
        session key and HELLO, CHALLENGE and PROOF, WELCOME, SNAPSHOT."""
        self.core.start(self.now)
        self.loop()
        self.receive(p.Challenge(bytes(p.CHALLENGE_BYTES)))
        proofs = [m for m in self.loop() if isinstance(m, p.Proof)]
        assert len(proofs) == 1, "no answer to the challenge of a handshake"
        self.receive(p.Welcome(welcome, *timers))
        self.receive(p.Snapshot(tuple(self.member(*m) for m in snapshot)))
        self.loop()

    # --- the loop's part, and the checks -------------------------------------------------

    def loop(self) -> list[p.PeerMessage]:
        """Do what `peer.client` does after each call (hand in a session key when asked,
        take frames, events and pins), checking all of it; the messages alice sent."""
        core = self.core
        if core.wants_session_key:
            core.add_session_key(next(self.alice_keys), self.now, wall=self.wall)
        sent = [p.parse_from_peer(frames) for frames in core.take_outgoing()]
        for msg in sent:
            if isinstance(msg, p.Send):
                self.check_sealed(msg.envelope)
                self.sent.append(msg.envelope.header.msg_id)
            # Check 4: one signature per HELLO, or a broker could have alice sign
            # whatever nonces it likes (at RSA cost each).
            if isinstance(msg, p.Hello):
                self.hello_unanswered = True
            elif isinstance(msg, p.Proof):
                assert self.hello_unanswered, "a proof for a hello answered already"
                self.hello_unanswered = False
        for event in core.take_events():
            if isinstance(event, ev.MessageReceived):
                self.check_shown(event)
        core.take_pins()
        return sent

    def check_sealed(self, envelope: Envelope) -> None:
        """Check 2: every wrapped key goes to a session key alice may seal to, now."""
        header = envelope.header
        date_ms = int(self.wall * 1000)
        for nick, key_id, wrapped in zip(
            envelope.recipients, envelope.key_ids, envelope.wrapped_keys, strict=True
        ):
            if not wrapped:
                continue  # blanked: a resend for the others; the leaf keeps its old id
            trusted = self.checks.admitted.get(nick_key(nick), set())
            assert trusted, f"sealed to {nick}, whom alice never admitted"
            certified = [
                c
                for c in self.checks.announced.values()
                if c.key_id == key_id and c.signer in trusted and nick_key(c.nick) == nick_key(nick)
            ]
            assert certified, f"sealed to a key of {nick}'s no identity alice admitted certified"
            assert any(c.valid_at(date_ms) for c in certified), (
                f"sealed to a key of {nick}'s whose certificate is not valid now"
            )
            # The id is what the header claims; the wrap must open with that very key
            # (the OAEP label binds its whole fingerprint), so nobody else's opens it.
            key = self.cast.by_key_id[key_id]
            try:
                prim.unwrap(
                    key.private_key,
                    wrapped,
                    header.msg_id,
                    header.sender_fingerprint,
                    nick,
                    key.fingerprint,
                )
            except DecryptionFailed:
                pytest.fail(f"the key wrapped for {nick} does not open with the key it names")

    def check_shown(self, event: ev.MessageReceived) -> None:
        """Check 3: shown once at most, and nothing as bob's that bob did not send."""
        seen = (nick_key(event.sender), event.msg_id)
        assert seen not in self.checks.shown, f"shown twice: {event}"
        self.checks.shown.add(seen)
        if is_bob(event.sender):
            assert event.msg_id in self.checks.from_bob, f"a forgery shown as bob's: {event}"

    # --- announcements -------------------------------------------------------------------

    @precondition(connected)
    @rule(what=st.sampled_from(("join", "rekeyed", "leave")), announced=any_member)
    def announce(self, what: str, announced: tuple[str, str, str]) -> None:
        """A JOIN, REKEYED or LEAVE of anyone, with any key and certificate."""
        nick, _, cert = announced
        if what == "join":
            self.receive(p.Join(self.member(*announced)))
        elif what == "rekeyed":
            self.receive(p.Rekeyed(nick, self.certificate(cert, nick)))
        else:
            self.receive(p.Leave(nick, p.LeaveReason.BYE))
        self.loop()

    @precondition(connected)
    @rule(nick=st.sampled_from(("bob", "Bob")), cert=honest_or_not)
    def bob_comes_back(self, nick: str, cert: str) -> None:
        """bob drops out and back in, with his identity key, as a broker announces a
        reconnection: LEAVE, then JOIN with whatever certificate it likes. (`announce`
        makes the same sequence, but rarely: this is what a broker says most, and what
        brings the resends of what waited for him.)"""
        self.receive(p.Leave("bob", p.LeaveReason.TIMEOUT))
        self.loop()
        self.receive(p.Join(self.member(nick, "bob", cert)))
        self.loop()

    @precondition(connected)
    @rule(
        what=st.sampled_from(("challenge", "welcome", "snapshot", "refuse")),
        listed=st.lists(any_member, max_size=3),
    )
    def stray(self, what: str, listed: list[tuple[str, str, str]]) -> None:
        """A handshake message out of turn: a CHALLENGE for alice to sign (check 4), a
        WELCOME, a SNAPSHOT listing whom it likes, a REFUSE."""
        if what == "challenge":
            self.receive(p.Challenge(b"\x01" * p.CHALLENGE_BYTES))
        elif what == "welcome":
            self.receive(p.Welcome("alice", 1000, 5000))
        elif what == "snapshot":
            self.receive(p.Snapshot(tuple(self.member(*m) for m in listed)))
        else:
            self.receive(p.Refuse(p.RefuseCode.NICK_TAKEN, "go away"))
        self.loop()

    # --- acknowledgements and errors ---------------------------------------------------

    def pick_sent(self, which: int) -> bytes:
        """One of alice's messages, or (with none yet) an id she never used."""
        return self.sent[which % len(self.sent)] if self.sent else bytes(16)

    @precondition(connected)
    @rule(
        which=st.integers(0, 63),
        verdicts=st.lists(st.tuples(st.sampled_from(ACK_NICKS), st.booleans()), max_size=4),
    )
    def ack(self, which: int, verdicts: list[tuple[str, bool]]) -> None:
        """An ACK for one of alice's messages, splitting whom it likes into delivered
        and absent: recipients, case variants, people it was not for."""
        delivered = tuple(nick for nick, got in verdicts if got)
        absent = tuple(nick for nick, got in verdicts if not got)
        self.receive(p.Ack(self.pick_sent(which), delivered, absent))
        self.loop()

    @precondition(connected)
    @rule(code=st.sampled_from(ERRORS), which=st.integers(0, 63), about=st.booleans())
    def error(self, code: p.ErrorCode, which: int, about: bool) -> None:
        msg_id = self.pick_sent(which) if about else b""
        self.receive(p.Error(code, "the broker says so", msg_id))
        self.loop()

    @precondition(out)
    @rule(
        bob=honest_or_not,
        listed=st.lists(any_member, max_size=3),
        welcome=st.sampled_from(("alice", "Alice")),
        timers=st.sampled_from(TIMERS),
        refused=st.sampled_from((False, False, False, True)),
    )
    def comes_back(
        self,
        bob: str,
        listed: list[tuple[str, str, str]],
        welcome: str,
        timers: tuple[int, int],
        refused: bool,
    ) -> None:
        """alice is out (evicted, timed out, told to hello again, refused): she comes
        back on a new socket. The broker refuses her, or welcomes her (as she spelled
        her name, or not) and lists bob, with some certificate, and whom else it likes
        (bob again among them, maybe: a duplicate makes the snapshot malformed)."""
        if refused:
            self.core.start(self.now)
            self.loop()
            self.receive(p.Refuse(p.RefuseCode.NICK_TAKEN, "try again"))
            self.loop()
        else:
            self.handshake([("bob", "bob", bob), *listed], welcome, timers)

    # --- the clock ---------------------------------------------------------------------

    @rule(
        # Just either side of the timers that matter (the heartbeat timeout, the grace
        # for absent recipients and for our replaced keys, an epoch), or anything.
        seconds=st.sampled_from((0.0, 1.0, 6.0, 29.0, 31.0, 121.0, 1800.0, 3600.0, 4000.0))
        | st.floats(0.0, 4000.0),
        # Mostly as a broker that works would: otherwise alice is soon disconnected,
        # or without a valid key of bob's, for the rest of the run, and little of what
        # follows reaches the code that seals and resends.
        heard=st.sampled_from((True, True, True, False)),
        relayed=st.sampled_from((True, True, True, False)),
    )
    def advance(self, seconds: float, heard: bool, relayed: bool) -> None:
        """Time passes. A broker still there says so (a heartbeat) and relays the new
        session key bob made at the turn of the epoch, unless it keeps it back; a
        silent one says nothing at all."""
        before = self.epoch
        self.now += seconds
        if heard and connected(self):
            self.receive(p.Heartbeat())
            if relayed and self.epoch != before:
                self.receive(p.Rekeyed("bob", self.certificate("current", "bob")))
        self.core.tick(self.now)
        self.loop()

    # --- messages to alice ---------------------------------------------------------------

    @precondition(connected)
    @rule(
        source=st.sampled_from(("bob", "bob to an old key", "mallory", "a replay")),
        nick=st.sampled_from(("bob", "Bob", "carol", "dave")),
        which=st.integers(0, 63),
    )
    def deliver(self, source: str, nick: str, which: int) -> None:
        """A DELIVER for alice: a genuine message from bob (to her current session key,
        or to another of hers, retired or dropped), one the broker signed itself as
        `nick`, or a replay of any relayed before."""
        if source == "a replay":
            if not self.recorded:
                return
            frames = self.recorded[which % len(self.recorded)]
        else:
            forged = source == "mallory"
            sender, name = (self.cast.mallory, nick) if forged else (self.cast.bob, "bob")
            key = self.alice_key(current=source != "bob to an old key")
            self.seq += 1
            envelope = seal(
                b"hello alice",
                sender=sender,
                sender_nick=name,
                room_id=ROOM_ID,
                recipients=[Recipient("alice", key.private_key.public_key(), key.fingerprint)],
                seq=self.seq,
                kind=MessageKind.DIRECT if which % 2 else MessageKind.ROOM,
                now=self.wall,
                # Ids that repeat from run to run (hypothesis replays runs), bob's and
                # the broker's apart, so that a forgery never passes for one of bob's.
                msg_id=bytes([forged]) + self.seq.to_bytes(15, "big"),
            )
            if not forged:
                self.checks.from_bob.add(envelope.header.msg_id)
            frames = p.encode(p.Deliver(envelope.delivery_for(0)))
            self.recorded.append(frames)
        self.core.receive(frames, self.now)
        self.loop()

    def alice_key(self, *, current: bool) -> SessionKey:
        """alice's current session key, or another one of hers (retired, or dropped)."""
        held = self.core.session_keys.held()
        if current and held:
            return held[0]
        return next(k for k in self.cast.alice_keys if not held or k is not held[0])

    # --- what alice does -----------------------------------------------------------------

    @rule(
        to=st.sampled_from(ADDRESSEES),
        lines=st.integers(1, 3),
        answer=st.sampled_from(ANSWERS),
    )
    def alice_writes(self, to: tuple[str, ...] | None, lines: int, answer: str) -> None:
        """alice sends a line or a few; a refusal must be one of the peer's errors,
        which the user reads.

        The broker answers each at once, as it does: every recipient delivered, every
        one absent, or no ACK at all (yet). `ack` sends the odder ones, at any time.
        """
        for _ in range(lines):
            try:
                self.core.send_text(
                    "hello", self.now, None if to is None else list(to), wall=self.wall
                )
            except PeerError:
                self.loop()
                return
            sends = [m for m in self.loop() if isinstance(m, p.Send)]
            if sends and answer != "none":
                header = sends[-1].envelope.header
                everyone = sends[-1].envelope.recipients
                if answer == "delivered":
                    self.receive(p.Ack(header.msg_id, everyone, ()))
                else:
                    self.receive(p.Ack(header.msg_id, (), everyone))
                self.loop()

    @rule(nick=st.sampled_from(("carol", "dave")))
    def alice_admits(self, nick: str) -> None:
        """alice admits a member the broker made up, typing the start of the fingerprint
        it shows: she compared it (with whom, the test does not care), so from now on
        sealing to that key under that name is her choice, not a leak."""
        member = self.core.members.get(nick_key(nick))
        typed = format_fingerprint(member.fingerprint)[:19] if member else "AAAA AAAA"
        try:
            self.core.admit(nick, typed, self.now)
        except PeerError:
            pass
        else:
            assert member is not None
            self.checks.admitted.setdefault(nick_key(nick), set()).add(member.fingerprint)
        self.loop()


#: About four seconds on a shared machine, most of it RSA: a signature for each seal,
#: handshake and certificate, an unwrap for each key check 2 opens. Sized against bugs
#: put back in on purpose, each run with 30 seeds: with the fix in `_resend_to`
#: reverted, these settings found the KeyError in 24 runs out of 30, shrunk to two
#: steps (alice writes two lines that bob is said to be absent for; bob comes back
#: with a certificate she refuses); with `CertifiedKey.usable` always true (a seal to
#: an expired key, check 2) in 24 out of 30. Deadlines are off: a step costs what its
#: RSA operations cost, which varies with how loaded the machine is.
SETTINGS: Final = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_no_sequence_of_broker_lies_crashes_the_peer_or_gets_a_key_sealed_to(
    keys: KeyPool,
) -> None:
    """Runs `HostileBroker`. A failure prints the steps that make it, shrunk: to replay
    them by hand, set `HostileBroker.cast = the_cast(keys)` first."""
    HostileBroker.cast = the_cast(keys)
    run_state_machine_as_test(HostileBroker, settings=SETTINGS)
