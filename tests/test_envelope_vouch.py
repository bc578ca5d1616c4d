"""Vouches: signed, for one room, one name and one key, from the member who sent them."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zchat.envelope import (
    BadVouch,
    Identity,
    MalformedEnvelope,
    Vouch,
    check_vouch,
    encode_vouches,
    make_vouch,
    parse_vouches,
    same_member,
)
from zchat.envelope.limits import MAX_VOUCHES_PER_MESSAGE

ROOM = "tcp://127.0.0.1:5555"


def vouch(bob: Identity, carol: Identity, room: str = ROOM, nick: str = "carol") -> Vouch:
    return make_vouch(bob, room=room, nick=nick, fingerprint=carol.fingerprint, time_ms=1234)


def check(v: Vouch, voucher: Identity, room: str = ROOM) -> None:
    check_vouch(
        v, room=room, voucher_key=voucher.public_key, voucher_fingerprint=voucher.fingerprint
    )


def test_a_genuine_vouch_checks_and_names_its_member(bob: Identity, carol: Identity) -> None:
    v = vouch(bob, carol)
    check(v, bob)
    assert same_member(v, "Carol", carol.fingerprint)
    assert not same_member(v, "carol2", carol.fingerprint)
    assert not same_member(v, "carol", bob.fingerprint)


def test_a_forged_vouch_is_refused(alice: Identity, bob: Identity, carol: Identity) -> None:
    # Alice signs, but the vouch claims to come from Bob.
    forged = dataclasses.replace(vouch(alice, carol), voucher_fingerprint=bob.fingerprint)
    with pytest.raises(BadVouch, match="does not verify"):
        check(forged, bob)


def test_a_vouch_from_someone_other_than_its_sender_is_refused(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    with pytest.raises(BadVouch, match="another voucher"):
        check(vouch(bob, carol), alice)


def test_a_vouch_for_another_room_is_refused(bob: Identity, carol: Identity) -> None:
    with pytest.raises(BadVouch, match="another room"):
        check(vouch(bob, carol, room="tcp://elsewhere:5555"), bob)


@pytest.mark.parametrize("field", ["room", "nick", "vouched_fingerprint", "time_ms"])
def test_every_vouched_field_is_covered_by_the_signature(
    alice: Identity, bob: Identity, carol: Identity, field: str
) -> None:
    v = vouch(bob, carol)
    changed = {
        "room": ROOM,
        "nick": "carol2",
        "vouched_fingerprint": alice.fingerprint,
        "time_ms": 99,
    }[field]
    original_room = "other-room" if field == "room" else ROOM
    v = vouch(bob, carol, room=original_room)
    tampered = dataclasses.replace(v, **{field: changed})
    with pytest.raises(BadVouch):
        check(tampered, bob, room=tampered.room)


def test_vouches_round_trip_in_a_message(bob: Identity, alice: Identity, carol: Identity) -> None:
    vs = [vouch(bob, carol), vouch(bob, alice, nick="alice")]
    assert parse_vouches(encode_vouches(vs)) == vs


def test_a_vouch_message_bounds_its_count(bob: Identity, carol: Identity) -> None:
    with pytest.raises(ValueError, match="1 to"):
        encode_vouches([])
    with pytest.raises(ValueError, match="1 to"):
        encode_vouches([vouch(bob, carol)] * (MAX_VOUCHES_PER_MESSAGE + 1))
    raw = encode_vouches([vouch(bob, carol)])
    with pytest.raises(MalformedEnvelope, match="count"):
        parse_vouches(bytes([MAX_VOUCHES_PER_MESSAGE + 1]) + raw[1:])
    with pytest.raises(MalformedEnvelope):
        parse_vouches(raw + b"\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_vouch_parsing_never_raises_anything_but_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedEnvelope):
        parse_vouches(data)
