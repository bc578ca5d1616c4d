"""The pin store: admitted keys are kept, the rest expire and give way (issue 11,
defect 2: a flood of 10,000 JOINs left 10,000 pins forever), and the file keeps how,
by whom and when each key was admitted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.room import CLOSED, MemoryRoom
from zchat.envelope import Identity
from zchat.peer import events as ev
from zchat.peer.pinfile import PINS_FILE, PinFile
from zchat.peer.pins import (
    MAX_PINS,
    SEEN_STEP_MS,
    UNADMITTED_LIFETIME_MS,
    Admission,
    How,
    Pin,
    Pins,
    PinsError,
    encode_pins,
    parse_pins,
)
from zchat.peer.render import problem_text
from zchat.wire import protocol as p

DAY = 24 * 3600 * 1000
T0 = 1_700_000_000_000
YOU = Admission(How.YOU, "alice", T0)


def fp(i: int) -> bytes:
    return i.to_bytes(32, "big")


def test_a_pin_never_admitted_expires_thirty_days_after_it_was_last_seen() -> None:
    pins = Pins()
    pins.pin("stranger", fp(1), seen_ms=T0)
    pins.admit("friend", fp(2), YOU, seen_ms=T0)
    assert UNADMITTED_LIFETIME_MS == 30 * DAY
    assert not pins.expire(T0 + 30 * DAY)  # not yet
    assert pins.seen("stranger", T0 + 20 * DAY)  # seen again: its 30 days start over
    assert not pins.expire(T0 + 45 * DAY)
    assert pins.expire(T0 + 51 * DAY)
    assert [pin.nick for pin in pins.items()] == ["friend"]  # the admitted one stays
    assert not pins.expire(T0 + 10_000 * DAY)


def test_seeing_a_key_again_moves_its_date_once_a_day_not_at_every_join() -> None:
    pins = Pins([Pin("bob", fp(1), None, T0)])
    assert not pins.seen("bob", T0 + SEEN_STEP_MS - 1)  # nothing worth a write
    assert pins.seen("BOB", T0 + SEEN_STEP_MS)
    assert pins.items()[0].seen_ms == T0 + SEEN_STEP_MS


def test_a_full_store_pushes_out_the_unadmitted_pin_seen_longest_ago() -> None:
    pins = Pins([Pin(f"u{i:04}", fp(i), None, T0 + i) for i in range(MAX_PINS)])
    pins.seen("u0000", T0 + 10 * DAY)  # seen lately: no longer the oldest
    assert pins.pin("newcomer", fp(99_999), seen_ms=T0 + 11 * DAY)
    assert len(pins) == MAX_PINS
    assert pins.get("u0001") is None  # the oldest went
    assert pins.get("u0000") == fp(0)
    assert pins.get("newcomer") == fp(99_999)


def test_admitted_pins_are_never_pushed_out_and_when_they_fill_the_store_none_is_added() -> None:
    pins = Pins([Pin(f"a{i:04}", fp(i), YOU, T0) for i in range(MAX_PINS)])
    assert not pins.pin("stranger", fp(99_999), seen_ms=T0)
    assert not pins.admit("friend", fp(99_998), YOU, seen_ms=T0)
    assert len(pins) == MAX_PINS
    assert all(pin.admitted for pin in pins.items())
    # A key already pinned can still change, and be admitted again.
    assert pins.pin("a0001", fp(99_997), seen_ms=T0)
    assert pins.record("a0001") == Pin("a0001", fp(99_997), None, T0)


def test_an_admission_belongs_to_a_key_and_an_open_room_stores_none() -> None:
    pins = Pins()
    pins.admit("bob", fp(1), YOU, seen_ms=T0)
    pins.pin("bob", fp(2), seen_ms=T0 + 1)  # another key for bob: its admission is gone
    assert pins.record("bob") == Pin("bob", fp(2), None, T0 + 1)
    pins.admit("carol", fp(3), Admission(How.OPEN, "", T0), seen_ms=T0)
    record = pins.record("carol")
    assert record is not None
    assert not record.admitted


@pytest.mark.slow
def test_a_flood_of_joins_leaves_a_bounded_pins_file_and_the_admitted_pins_in_it(
    tmp_path: Path, alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice, config=CLOSED)
    core = room.peers[a]
    core.pins.admit("carol", carol.fingerprint, YOU, seen_ms=T0)
    for i in range(10_000):  # the broker makes up 10,000 members, each in and out
        # (they come and go: a room holds 256 at once, and the peer refuses more)
        core.receive(p.encode(p.Join(p.Member(f"fake{i:05}", bob.public_der))), room.now)
        core.receive(p.encode(p.Leave(f"fake{i:05}", p.LeaveReason.BYE)), room.now)
    events = core.take_events()
    assert len([e for e in events if isinstance(e, ev.AdmitNeeded)]) == 10_000
    assert not [e for e in events if isinstance(e, ev.Problem)]
    changed = core.take_pins()
    assert changed is not None
    saved = changed.pins
    assert len(saved) == MAX_PINS
    assert Pin("carol", carol.fingerprint, YOU, T0) in saved
    assert {pin.nick for pin in saved} >= {f"fake{i:05}" for i in range(10_000 - 4000, 10_000)}
    # The loop merges the changes into the file (where carol was, from an earlier
    # run), as they were made: the same store.
    PinFile.open(tmp_path).save([Pin("carol", carol.fingerprint, YOU, T0)])
    assert PinFile.open(tmp_path).merge(changed.changes).items() == saved
    size = (tmp_path / PINS_FILE).stat().st_size
    assert size < MAX_PINS * 200  # about 130 bytes a pin
    assert len(PinFile.open(tmp_path).pins) == MAX_PINS
    # Nothing in the flood was admitted, so nothing would be sealed to it.
    assert not any(pin.admission for pin in saved if pin.nick.startswith("fake"))


def test_a_flood_into_a_store_of_admitted_pins_is_refused_and_said_once(
    alice: Identity, bob: Identity
) -> None:
    pins = Pins([Pin(f"a{i:04}", fp(i), YOU, T0) for i in range(MAX_PINS)])
    room = MemoryRoom()
    a = room.join("alice", alice, pins=pins, config=CLOSED)
    core = room.peers[a]
    for i in range(50):
        core.receive(p.encode(p.Join(p.Member(f"fake{i:02}", bob.public_der))), room.now)
    problems = [e for e in core.take_events() if isinstance(e, ev.Problem)]
    assert [e.code for e in problems] == ["pins"]
    assert "full of admitted keys" in problem_text(problems[0])
    assert len(pins) == MAX_PINS


# --- the file ---------------------------------------------------------------------------


def test_the_file_keeps_how_by_whom_and_when_a_key_was_admitted(tmp_path: Path) -> None:
    pins = (
        Pin("bob", fp(1), Admission(How.YOU, "alice", T0), T0),
        Pin("carol", fp(2), Admission(How.VOUCH, "bob", T0 + 5), T0 + 5),
        Pin("mallory", fp(3), None, T0 + 9),
    )
    PinFile.open(tmp_path).save(pins)
    assert PinFile.open(tmp_path).pins == pins
    raw = json.loads((tmp_path / PINS_FILE).read_text())["pins"]
    assert raw["carol"] == {
        "fingerprint": fp(2).hex(),
        "seen": T0 + 5,
        "admitted": {"how": "vouch", "by": "bob", "at": T0 + 5},
    }
    assert "admitted" not in raw["mallory"]


def test_a_pins_file_of_an_older_zchat_loads_as_pins_nobody_admitted() -> None:
    (pin,) = parse_pins(json.dumps({"pins": {"bob": fp(1).hex()}}).encode())
    assert pin == Pin("bob", fp(1), None, 0)
    pins = Pins([pin])
    assert pins.expire(T0)  # its thirty days start at the first run that reads it
    assert pins.record("bob") == Pin("bob", fp(1), None, T0)


@pytest.mark.parametrize(
    "entry",
    [
        {"fingerprint": fp(1).hex(), "admitted": {"how": "open", "by": "", "at": 0}},
        {"fingerprint": fp(1).hex(), "admitted": {"how": "you", "by": "evil\x1b[2J", "at": 0}},
        {"fingerprint": fp(1).hex(), "admitted": {"how": "boss", "by": "", "at": 0}},
        {"fingerprint": fp(1).hex(), "seen": -1},
        {"fingerprint": fp(1).hex(), "seen": True},
        {"fingerprint": "abcd"},
        {"seen": 0},
    ],
)
def test_a_pin_that_is_not_one_is_refused(entry: dict[str, object]) -> None:
    with pytest.raises(PinsError):
        parse_pins(json.dumps({"pins": {"bob": entry}}).encode())


def test_a_pins_file_grown_past_the_bound_is_cut_back_to_it_keeping_the_admitted() -> None:
    many = [Pin(f"u{i:05}", fp(i), None, T0 + i) for i in range(MAX_PINS + 100)]
    admitted = Pin("friend", fp(10**6), YOU, T0)
    pins = Pins([*many, admitted])
    assert len(pins) == MAX_PINS
    assert pins.record("friend") == admitted
    assert pins.get("u00000") is None  # the oldest went first
    assert encode_pins(pins.items()).count(b'"fingerprint"') == MAX_PINS
