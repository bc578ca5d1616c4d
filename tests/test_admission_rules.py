"""The admission rules alone, against a fake room: no core, no broker, no sealing.

`peer.admission.Admission` sees the room through a `RoomView` and returns what the
core is to do. Here the view is a few dictionaries, and each rule is a row of a table:
how a member just listed is admitted (`on_sight`), what its arrival does (`arrived`),
and what a vouch does (`take_vouches`). The flows across real cores are in
tests/test_admission.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import sha256

import pytest

from tests.support.keys import KeyPool
from zchat.envelope import (
    Identity,
    MembershipRecord,
    RecordType,
    encode_records,
    make_record,
    make_vouch,
    nick_key,
    room_id,
)
from zchat.peer import events as ev
from zchat.peer import gate as gate_module
from zchat.peer.admission import Admission, Effect, Record, SealVouches
from zchat.peer.contact import Contact
from zchat.peer.pins import Admission as Grant
from zchat.peer.pins import How, Pin, Pins

ROOM = room_id("lobby")
TODAY_MS = 1_700_000_000_000
YOU = Grant(How.YOU, "me", 1)
VOUCHED = Grant(How.VOUCH, "carol", 2)
OPEN = Grant(How.OPEN, "", 3)


@dataclass
class FakeRoom:
    """A `RoomView`: who is here, who is missing, and who we are."""

    identity: Identity
    nick: str = "me"
    room_id: bytes = ROOM
    here: dict[str, Contact] = field(default_factory=dict)
    missing: list[Contact] = field(default_factory=list)
    pins: Pins = field(default_factory=Pins)
    #: Revocations the test has the room hear (`test_a_held_vouch_is_checked_again...`).
    revocations: list[MembershipRecord] = field(default_factory=list)

    def member(self, nick: str) -> Contact | None:
        return self.here.get(nick_key(nick))

    def listed(self, nick: str) -> Contact | None:
        missing = [m for m in self.missing if nick_key(m.nick) == nick_key(nick)]
        return self.member(nick) or (missing[0] if missing else None)

    def present(self) -> Iterable[Contact]:
        return self.here.values()

    def pin(self, nick: str) -> Pin | None:
        return self.pins.record(nick)

    def pinned(self) -> Iterable[Pin]:
        return self.pins.items()

    def forgotten(self, nick: str, fingerprint: bytes) -> bool:
        return self.pins.tombstone(fingerprint) is not None

    def readers(self) -> list[Contact]:
        return [m for m in (*self.here.values(), *self.missing) if m.may_read]

    def date_ms(self) -> int:
        return TODAY_MS

    def add(
        self,
        nick: str,
        identity: Identity,
        admission: Grant | None = None,
        trust: ev.Trust = ev.Trust.PINNED,
    ) -> Contact:
        member = contact(nick, identity, admission, trust)
        self.here[nick_key(nick)] = member
        return member


def contact(
    nick: str,
    identity: Identity,
    admission: Grant | None = None,
    trust: ev.Trust = ev.Trust.PINNED,
) -> Contact:
    public = identity.private_key.public_key()
    return Contact(nick, public, identity.public_der, identity.fingerprint, trust, admission)


def vouches(
    voucher: Identity, *named: tuple[str, Identity], room: bytes = ROOM, time_ms: int = 5
) -> bytes:
    """A MEMBERSHIP message's plaintext: `voucher`'s vouch for each (nick, identity)."""
    return encode_records(
        [
            make_vouch(voucher, room_id=room, nick=n, fingerprint=i.fingerprint, time_ms=time_ms)
            for n, i in named
        ]
    )


def revocation(
    signer: Identity, nick: str, subject: Identity, room: bytes = ROOM, time_ms: int = 6
) -> MembershipRecord:
    """`signer`'s REVOKE of `nick`'s key `subject`, made for `room` at `time_ms`."""
    return make_record(
        signer,
        RecordType.REVOKE,
        room_id=room,
        nick=nick,
        fingerprint=subject.fingerprint,
        time_ms=time_ms,
    )


def events(effects: list[Effect]) -> list[ev.Event]:
    return [e for e in effects if not isinstance(e, SealVouches | Record)]


def sealed(effects: list[Effect]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(whom each vouch is for, to whom it is sealed), per SealVouches, in order."""
    return [
        (tuple(v.nick for v in e.vouches), tuple(r.nick for r in e.recipients))
        for e in effects
        if isinstance(e, SealVouches)
    ]


# --- on_sight: how a member just listed is admitted --------------------------------------

SAME, OTHER = "same key", "another key"


@pytest.mark.parametrize(
    ("pin", "known", "open_room", "trust", "admitted"),
    [
        # A returning member, admitted in an earlier run: its pin says so.
        ((SAME, YOU), None, False, ev.Trust.PINNED, YOU),
        ((SAME, VOUCHED), None, False, ev.Trust.PINNED, VOUCHED),
        # Pinned at first sight only, never admitted: waits for /admit.
        ((SAME, None), None, False, ev.Trust.PINNED, None),
        # Admitted under another key, now changed: only the user accepts a new key.
        ((OTHER, YOU), None, False, ev.Trust.CHANGED, None),
        ((OTHER, YOU), None, True, ev.Trust.CHANGED, None),
        # Admitted this session with this key (the pins were full): still admitted.
        (None, (SAME, YOU), False, ev.Trust.NEW, YOU),
        # ...but not with another key, nor a key that changed.
        (None, (OTHER, YOU), False, ev.Trust.NEW, None),
        ((OTHER, None), (SAME, YOU), False, ev.Trust.CHANGED, None),
        # Known but never admitted: nothing to carry over.
        (None, (SAME, None), False, ev.Trust.NEW, None),
        # An open room admits every unchanged key at first sight, and stores nothing.
        (None, None, True, ev.Trust.NEW, OPEN),
        ((SAME, None), None, True, ev.Trust.PINNED, OPEN),
        # A closed room admits nobody by sight.
        (None, None, False, ev.Trust.NEW, None),
    ],
)
def test_a_member_just_listed_is_admitted_by_its_pin_by_this_session_or_by_an_open_room(
    keys: KeyPool,
    pin: tuple[str, Grant | None] | None,
    known: tuple[str, Grant | None] | None,
    open_room: bool,
    trust: ev.Trust,
    admitted: Grant | None,
) -> None:
    bob, other = keys.get(1), keys.get(3)
    member = contact("bob", bob, trust=trust)
    record = None
    if pin is not None:
        which, grant = pin
        record = Pin("bob", (bob if which == SAME else other).fingerprint, grant)
    before = None
    if known is not None:
        which, grant = known
        before = contact("bob", bob if which == SAME else other, grant)
    admission = Admission(open_room=open_room)
    admission.on_sight(member, record, before, date_ms=3)
    assert member.admission == admitted


def test_a_member_back_with_another_key_is_told_everything_again(keys: KeyPool) -> None:
    bob, carol, laptop = keys.get(1), keys.get(2), keys.get(3)
    admission = Admission()
    admission.gate.tell("bob", "carol", carol.fingerprint)
    admission.on_sight(contact("bob", laptop), None, contact("bob", bob), date_ms=3)
    assert not admission.gate.told("bob", "carol", carol.fingerprint)


# --- arrived: what a member's arrival does ------------------------------------------------


@pytest.mark.parametrize(
    ("admission", "trust", "announce", "expected"),
    [
        # Not admitted: the user is told what to compare and type, once per arrival.
        (None, ev.Trust.NEW, True, [ev.AdmitNeeded]),
        (None, ev.Trust.PINNED, False, []),  # back quietly after a reconnect
        # A changed key: the key-change warning says what to do, nothing else.
        (YOU, ev.Trust.CHANGED, True, []),
        (None, ev.Trust.CHANGED, True, []),
        # Admitted already, here before us: nothing to announce, nothing to send.
        (YOU, ev.Trust.PINNED, True, []),
        # An open room's admission vouches for nobody.
        (OPEN, ev.Trust.NEW, True, []),
    ],
)
def test_an_arrival_asks_for_admission_or_does_nothing_when_nothing_changed(
    keys: KeyPool,
    admission: Grant | None,
    trust: ev.Trust,
    announce: bool,
    expected: list[type],
) -> None:
    room = FakeRoom(keys.get(0))
    bob = room.add("bob", keys.get(1), admission, trust)
    effects = Admission().arrived(
        room, bob, announce=announce, already_here=True, first_snapshot=True
    )
    assert [type(e) for e in effects] == expected


def test_the_admit_needed_event_names_the_command_to_type(keys: KeyPool) -> None:
    room = FakeRoom(keys.get(0))
    bob = room.add("bob", keys.get(1))
    (needed,) = Admission().arrived(
        room, bob, announce=True, already_here=False, first_snapshot=False
    )
    assert isinstance(needed, ev.AdmitNeeded)
    assert needed.command.startswith("/admit bob ")
    assert not needed.already_here


def test_a_vouch_held_before_a_member_arrived_admits_it_on_arrival(keys: KeyPool) -> None:
    me, carol, dave = keys.get(0), keys.get(2), keys.get(4)
    room = FakeRoom(me)
    room.add("carol", carol, YOU)
    admission = Admission()
    # carol vouches for dave before dave's JOIN: held, nothing to do yet.
    assert admission.take_vouches(room, room.here["carol"], vouches(carol, ("dave", dave))) == []
    assert admission.gate.held_count() == 1
    arriving = room.add("dave", dave)
    effects = admission.arrived(
        room, arriving, announce=True, already_here=False, first_snapshot=False
    )
    assert arriving.admission is not None
    assert (arriving.admission.how, arriving.admission.by) == (How.VOUCH, "carol")
    assert [type(e) for e in events(effects)] == [ev.Admitted]
    assert [e.member for e in effects if isinstance(e, Record)] == [arriving]
    # dave learns of carol, whom we admitted; carol vouched for dave, so she knows.
    assert sealed(effects) == [(("carol",), ("dave",))]


#: What may change between a vouch held and its release; each must leave dave out.
MOVED_ON = {
    "a room of another name": lambda room, me, carol, dave: setattr(
        room, "room_id", room_id("exec")
    ),
    "carol took it back since": lambda room, me, carol, dave: room.revocations.append(
        revocation(carol, "dave", dave)
    ),
    "the user forgot dave's key since": lambda room, me, carol, dave: room.pins.forget(
        "dave", dave.fingerprint, at_ms=TODAY_MS
    ),
}


@pytest.mark.parametrize("moved_on", MOVED_ON)
@pytest.mark.parametrize("held_because", ["carol not admitted yet", "dave not here yet"])
def test_a_held_vouch_is_checked_again_when_released_as_a_fresh_one_would_be(
    keys: KeyPool, moved_on: str, held_because: str
) -> None:
    """Issue 18.3: a vouch held for an absent member, or from a voucher not admitted
    yet, was released as it was checked on arrival: a broker that then put the peer in
    a room of another name had it admit someone there. It is checked again on release
    (the room, the voucher's key and the member's, revocations, tombstones)."""
    me, carol, dave = keys.get(0), keys.get(2), keys.get(4)
    room = FakeRoom(me)
    voucher = room.add("carol", carol, None if held_because == "carol not admitted yet" else YOU)
    if held_because == "carol not admitted yet":
        room.add("dave", dave)
    admission = Admission()
    admission.take_vouches(room, voucher, vouches(carol, ("dave", dave)))
    assert admission.gate.held_count() == 1
    MOVED_ON[moved_on](room, me, carol, dave)
    for revoke in room.revocations:
        admission.take_vouches(room, voucher, encode_records([revoke]))
    if held_because == "carol not admitted yet":
        effects = admission.grant(room, voucher, YOU)
        dave_here = room.here["dave"]
    else:
        dave_here = room.add("dave", dave)
        effects = admission.arrived(
            room, dave_here, announce=True, already_here=False, first_snapshot=False
        )
    assert dave_here.admission is None
    assert "dave" not in [e.nick for e in events(effects) if isinstance(e, ev.Admitted)]


def test_a_member_back_after_leaving_hears_only_of_who_arrived_meanwhile(keys: KeyPool) -> None:
    me, bob, carol, dave = keys.get(0), keys.get(1), keys.get(2), keys.get(4)
    room = FakeRoom(me)
    admission = Admission()
    for nick, who in (("bob", bob), ("carol", carol)):
        member = room.add(nick, who, YOU)
        admission.arrived(room, member, announce=False, already_here=True, first_snapshot=True)
    admission.gate.tell("bob", "carol", carol.fingerprint)
    admission.gate.tell("carol", "bob", bob.fingerprint)
    # bob leaves; dave arrives and is admitted while bob is away.
    del room.here["bob"]
    admission.left("bob")
    admission.grant(room, room.add("dave", dave), YOU)
    back = room.add("bob", bob, YOU)
    effects = admission.arrived(room, back, announce=True, already_here=False, first_snapshot=False)
    # Our vouch for dave to bob; our vouch for bob to dave. Not carol: nothing changed.
    assert sealed(effects) == [(("dave",), ("bob",)), (("bob",), ("dave",))]


# --- grant: the user admits someone ----------------------------------------------------


def test_admitting_by_fingerprint_records_it_and_tells_both_sides(keys: KeyPool) -> None:
    me, bob, carol = keys.get(0), keys.get(1), keys.get(2)
    room = FakeRoom(me)
    room.add("carol", carol, YOU)
    bob_here = room.add("bob", bob)
    effects = Admission().grant(room, bob_here, YOU)
    assert bob_here.admission == YOU
    assert [type(e) for e in effects] == [Record, ev.Admitted, SealVouches, SealVouches]
    # Our vouch for bob to carol; our vouch for carol to bob.
    assert sealed(effects) == [(("bob",), ("carol",)), (("carol",), ("bob",))]
    vouch = next(e for e in effects if isinstance(e, SealVouches)).vouches[0]
    assert (vouch.room_id, vouch.nick, vouch.subject_fingerprint) == (ROOM, "bob", bob.fingerprint)
    assert vouch.time_ms == YOU.at_ms


def test_admitting_again_sends_nothing_anyone_was_told_already(keys: KeyPool) -> None:
    room = FakeRoom(keys.get(0))
    room.add("carol", keys.get(2), YOU)
    bob = room.add("bob", keys.get(1))
    admission = Admission()
    admission.grant(room, bob, YOU)
    again = admission.grant(room, bob, YOU)
    assert sealed(again) == []


# --- take_vouches: what a VOUCH message does -------------------------------------------

FROM_ADMITTED, FROM_STRANGER = "admitted voucher", "voucher not admitted"


@pytest.mark.parametrize(
    ("voucher", "vouch", "outcome"),
    [
        # An admitted member's vouch for a member here with that key admits it.
        (FROM_ADMITTED, "dave as here", "admitted"),
        # From a member we have not admitted: held, and said so.
        (FROM_STRANGER, "dave as here", "held"),
        # Never: another room, another key, a changed key, another key under our name.
        (FROM_ADMITTED, "dave, another room", "rejected"),
        (FROM_ADMITTED, "dave with eve's key", "rejected"),
        (FROM_ADMITTED, "dave with a changed key", "rejected"),
        (FROM_ADMITTED, "me with eve's key", "rejected"),
        (FROM_ADMITTED, "eve's key as frank", "rejected"),
        # A vouch for us with our key, or for someone not here yet: nothing to say.
        (FROM_ADMITTED, "me as I am", "nothing"),
        (FROM_ADMITTED, "frank, not here", "nothing"),
    ],
)
def test_a_vouch_admits_is_held_or_is_rejected_and_says_why(
    keys: KeyPool, voucher: str, vouch: str, outcome: str
) -> None:
    me, carol, dave, eve, frank = (keys.get(i) for i in (0, 2, 4, 5, 6))
    room = FakeRoom(me)
    sender = room.add("carol", carol, YOU if voucher == FROM_ADMITTED else None)
    room.add("eve", eve)
    trust = ev.Trust.CHANGED if vouch == "dave with a changed key" else ev.Trust.PINNED
    dave_here = room.add("dave", dave, trust=trust)
    plaintext = {
        "dave as here": vouches(carol, ("dave", dave)),
        "dave, another room": vouches(carol, ("dave", dave), room=room_id("elsewhere")),
        "dave with eve's key": vouches(carol, ("dave", eve)),
        "dave with a changed key": vouches(carol, ("dave", dave)),
        "me with eve's key": vouches(carol, ("me", eve)),
        "eve's key as frank": vouches(carol, ("frank", eve)),
        "me as I am": vouches(carol, ("me", me)),
        "frank, not here": vouches(carol, ("frank", frank)),
    }[vouch]
    effects = Admission().take_vouches(room, sender, plaintext)
    said = events(effects)
    match outcome:
        case "admitted":
            assert dave_here.admission == Grant(How.VOUCH, "carol", TODAY_MS)
            assert [type(e) for e in said] == [ev.Admitted]
        case "held":
            assert dave_here.admission is None
            assert said == [
                ev.VouchRejected("carol", ("dave",), "you have not admitted carol", held=True)
            ]
        case "rejected":
            assert dave_here.admission is None
            (rejected,) = said
            assert isinstance(rejected, ev.VouchRejected)
            assert not rejected.held
            assert rejected.reason
        case "nothing":
            assert effects == []


def test_an_open_room_takes_no_vouches(keys: KeyPool) -> None:
    room = FakeRoom(keys.get(0))
    carol = room.add("carol", keys.get(2), YOU)
    dave = room.add("dave", keys.get(4))
    plaintext = vouches(keys.get(2), ("dave", keys.get(4)))
    assert Admission(open_room=True).take_vouches(room, carol, plaintext) == []
    assert dave.admission is None


def test_unreadable_vouches_are_rejected_not_raised(keys: KeyPool) -> None:
    room = FakeRoom(keys.get(0))
    carol = room.add("carol", keys.get(2), YOU)
    (rejected,) = Admission().take_vouches(room, carol, b"\x01junk")
    assert isinstance(rejected, ev.VouchRejected)
    assert rejected.reason.startswith("unreadable vouches")


def test_each_record_is_weighed_on_its_own_and_a_revocation_outranks_older_vouches(
    keys: KeyPool,
) -> None:
    """carol's message holds an unreadable record, her revocation of dave (at 6) and
    her vouch for dave (at 5): the first is reported, the vouch is older than the
    revocation and admits nobody (however the broker orders them), and only a later
    vouch, newer than the revocation, admits him."""
    me, carol, dave = keys.get(0), keys.get(2), keys.get(4)
    room = FakeRoom(me)
    sender = room.add("carol", carol, YOU)
    dave_here = room.add("dave", dave)
    future = bytearray(
        make_vouch(
            carol, room_id=ROOM, nick="dave", fingerprint=dave.fingerprint, time_ms=5
        ).encode()
    )
    future[0] = 4  # a record version this zchat does not know
    revoke = revocation(carol, "dave", dave)
    old = make_vouch(carol, room_id=ROOM, nick="dave", fingerprint=dave.fingerprint, time_ms=5)
    records = [bytes(future), revoke.encode(), old.encode()]
    plaintext = bytes([len(records)]) + b"".join(len(r).to_bytes(2, "big") + r for r in records)
    admission = Admission()
    unreadable, refused = events(admission.take_vouches(room, sender, plaintext))
    assert isinstance(unreadable, ev.VouchRejected)
    assert unreadable.reason.startswith("unreadable: ")
    assert refused == ev.VouchRejected("carol", ("dave",), "carol took it back later")
    assert dave_here.admission is None
    (admitted,) = events(
        admission.take_vouches(room, sender, vouches(carol, ("dave", dave), time_ms=7))
    )
    assert admitted == ev.Admitted("dave", dave.fingerprint, How.VOUCH.value, "carol")
    assert dave_here.admission == Grant(How.VOUCH, "carol", TODAY_MS)


def test_a_flood_of_revocations_from_a_member_nobody_admitted_cannot_push_out_anothers(
    keys: KeyPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found attacking: revocations were remembered in one table, the newest 2,000,
    whoever signed them. A broker alone announced a member of its own making, whose
    REVOKE records (of its own signing, for made-up names) pushed carol's revocation of
    dave out; carol's older vouch for dave, withheld until then, then admitted dave:
    "however the broker orders them" no longer held. The revocations of members we
    admitted are kept apart now, and only they can push out each other's. (A small
    table here, so that few signatures show it.)"""
    monkeypatch.setattr(gate_module, "MAX_REVOKED", 4)
    me, carol, mallory, dave = keys.get(0), keys.get(2), keys.get(3), keys.get(4)
    room = FakeRoom(me)
    sender = room.add("carol", carol, YOU)
    stranger = room.add("mallory", mallory)  # the broker's own member: nobody admitted it
    dave_here = room.add("dave", dave)
    admission = Admission()
    revoke = revocation(carol, "dave", dave)
    assert events(admission.take_vouches(room, sender, encode_records([revoke]))) == []
    flood = [
        make_record(
            mallory,
            RecordType.REVOKE,
            room_id=ROOM,
            nick=f"made-up{i}",
            fingerprint=sha256(b"%d" % i).digest(),
            time_ms=1,
        )
        for i in range(8)
    ]
    admission.take_vouches(room, stranger, encode_records(flood))
    (refused,) = events(admission.take_vouches(room, sender, vouches(carol, ("dave", dave))))
    assert refused == ev.VouchRejected("carol", ("dave",), "carol took it back later")
    assert dave_here.admission is None


@pytest.mark.parametrize(
    "elsewhere",
    [room_id("exec"), room_id("lobby", b"B" * 40)],
    ids=["another room", "this room on a CURVE broker"],
)
def test_a_revocation_made_for_another_room_drops_nobody(keys: KeyPool, elsewhere: bytes) -> None:
    """carol revoked dave in another room (or in a room of this name on a broker with
    another key): a broker carrying that REVOKE here drops nobody, and it is reported."""
    me, carol, dave = keys.get(0), keys.get(2), keys.get(4)
    room = FakeRoom(me)
    sender = room.add("carol", carol, YOU)
    dave_here = room.add("dave", dave, VOUCHED)
    revoke = revocation(carol, "dave", dave, room=elsewhere)
    (refused,) = events(Admission().take_vouches(room, sender, encode_records([revoke])))
    assert isinstance(refused, ev.VouchRejected)
    assert "another room" in refused.reason
    assert dave_here.admission == VOUCHED


def test_vouches_held_from_a_stranger_count_once_the_user_admits_it(keys: KeyPool) -> None:
    me, carol, dave = keys.get(0), keys.get(2), keys.get(4)
    room = FakeRoom(me)
    stranger = room.add("carol", carol)
    dave_here = room.add("dave", dave)
    admission = Admission()
    admission.take_vouches(room, stranger, vouches(carol, ("dave", dave)))
    assert dave_here.admission is None
    effects = admission.grant(room, stranger, YOU)
    assert dave_here.admission == Grant(How.VOUCH, "carol", TODAY_MS)
    admitted = [e.nick for e in events(effects) if isinstance(e, ev.Admitted)]
    assert admitted == ["carol", "dave"]


def test_a_member_who_leaves_takes_its_held_vouches_with_it(keys: KeyPool) -> None:
    me, carol, dave = keys.get(0), keys.get(2), keys.get(4)
    room = FakeRoom(me)
    stranger = room.add("carol", carol)
    room.add("dave", dave)
    admission = Admission()
    admission.take_vouches(room, stranger, vouches(carol, ("dave", dave)))
    admission.left("carol")
    assert admission.gate.held_count() == 0
