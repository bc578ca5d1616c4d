"""Membership records: signed, for one room, one name and one key, from the member who
sent them; each read on its own, so one bad record spoils nothing else."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zchat.envelope import (
    BadRecord,
    Identity,
    MalformedEnvelope,
    MembershipRecord,
    RecordType,
    UnknownRecordType,
    UnsupportedVersion,
    check_record,
    encode_records,
    make_record,
    make_vouch,
    parse_records,
    room_id,
    same_member,
)
from zchat.envelope.limits import MAX_RECORDS_PER_MESSAGE

ROOM = room_id("general")


def vouch(
    bob: Identity, carol: Identity, room: bytes = ROOM, nick: str = "carol"
) -> MembershipRecord:
    return make_vouch(bob, room_id=room, nick=nick, fingerprint=carol.fingerprint, time_ms=1234)


def revoke(bob: Identity, carol: Identity, time_ms: int = 5678) -> MembershipRecord:
    return make_record(
        bob,
        RecordType.REVOKE,
        room_id=ROOM,
        nick="carol",
        fingerprint=carol.fingerprint,
        time_ms=time_ms,
    )


def check(record: MembershipRecord, signer: Identity, room: bytes = ROOM) -> None:
    check_record(
        record, room_id=room, signer_key=signer.public_key, signer_fingerprint=signer.fingerprint
    )


def test_a_genuine_vouch_checks_and_names_its_member(bob: Identity, carol: Identity) -> None:
    v = vouch(bob, carol)
    check(v, bob)
    assert v.type is RecordType.VOUCH
    assert same_member(v, "Carol", carol.fingerprint)
    assert not same_member(v, "carol2", carol.fingerprint)
    assert not same_member(v, "carol", bob.fingerprint)


def test_a_genuine_revocation_checks_and_is_told_from_a_vouch(
    bob: Identity, carol: Identity
) -> None:
    r = revoke(bob, carol)
    check(r, bob)
    assert r.type is RecordType.REVOKE
    assert MembershipRecord.parse(r.encode()) == r
    # The type is signed: a vouch turned into a revocation (or back) does not verify.
    with pytest.raises(BadRecord, match="does not verify"):
        check(dataclasses.replace(vouch(bob, carol), type=RecordType.REVOKE), bob)


def test_a_forged_record_is_refused(alice: Identity, bob: Identity, carol: Identity) -> None:
    # Alice signs, but the record claims to come from Bob.
    forged = dataclasses.replace(vouch(alice, carol), signer_fingerprint=bob.fingerprint)
    with pytest.raises(BadRecord, match="does not verify"):
        check(forged, bob)


def test_a_record_from_someone_other_than_its_sender_is_refused(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    with pytest.raises(BadRecord, match="another signer"):
        check(vouch(bob, carol), alice)


def test_a_record_for_another_room_is_refused(bob: Identity, carol: Identity) -> None:
    with pytest.raises(BadRecord, match="another room"):
        check(vouch(bob, carol, room=room_id("exec")), bob)
    with pytest.raises(BadRecord, match="another room"):
        check(vouch(bob, carol), bob, room=room_id("general", b"K" * 40))


@pytest.mark.parametrize("field", ["type", "room_id", "nick", "subject_fingerprint", "time_ms"])
def test_every_field_is_covered_by_the_signature(
    alice: Identity, bob: Identity, carol: Identity, field: str
) -> None:
    v = vouch(bob, carol)
    changed = {
        "type": RecordType.REVOKE,
        "room_id": room_id("elsewhere"),
        "nick": "carol2",
        "subject_fingerprint": alice.fingerprint,
        "time_ms": 99,
    }[field]
    tampered = dataclasses.replace(v, **{field: changed})
    with pytest.raises(BadRecord):
        check(tampered, bob, room=tampered.room_id)


def test_records_round_trip_in_a_message(bob: Identity, alice: Identity, carol: Identity) -> None:
    records = [vouch(bob, carol), vouch(bob, alice, nick="alice"), revoke(bob, carol)]
    assert parse_records(encode_records(records)) == records


def test_a_membership_message_bounds_its_count(bob: Identity, carol: Identity) -> None:
    with pytest.raises(ValueError, match="1 to"):
        encode_records([])
    with pytest.raises(ValueError, match="1 to"):
        encode_records([vouch(bob, carol)] * (MAX_RECORDS_PER_MESSAGE + 1))
    raw = encode_records([vouch(bob, carol)])
    with pytest.raises(MalformedEnvelope, match="count"):
        parse_records(bytes([MAX_RECORDS_PER_MESSAGE + 1]) + raw[1:])
    with pytest.raises(MalformedEnvelope):
        parse_records(raw + b"\x00")


def spliced(records: list[bytes]) -> bytes:
    return bytes([len(records)]) + b"".join(len(r).to_bytes(2, "big") + r for r in records)


def test_one_bad_record_in_a_message_does_not_spoil_the_others(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    good = [vouch(bob, carol), revoke(bob, alice)]
    other_version = bytearray(good[0].encode())
    other_version[0] = 4
    other_type = bytearray(good[0].encode())
    other_type[1] = 9
    junk = b"\x03\x01" + bytes(40)
    parsed = parse_records(
        spliced([bytes(other_version), good[0].encode(), junk, bytes(other_type), good[1].encode()])
    )
    assert isinstance(parsed[0], UnsupportedVersion)
    assert parsed[0].what == "record"
    assert parsed[1] == good[0]
    assert isinstance(parsed[2], MalformedEnvelope)
    assert isinstance(parsed[3], UnknownRecordType)
    assert parsed[3].record_type == 9
    assert parsed[4] == good[1]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_record_parsing_never_raises_anything_but_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedEnvelope):
        for record in parse_records(data):
            assert isinstance(record, MembershipRecord | MalformedEnvelope)
