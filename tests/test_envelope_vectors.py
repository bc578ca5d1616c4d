"""Known answers: the stored vectors, made by fixed keys, must keep parsing, re-encoding,
verifying and opening. One section per file in tests/vectors (see make_vectors.py).

Both directions where the bytes are deterministic: parse the stored bytes and compare
the fields, and build the bytes from the fields and compare them with the stored ones.
Where a signature or a wrapped key is randomised, the stored bytes are parsed, encoded
back byte for byte, and verified or opened.
"""

from __future__ import annotations

import pytest

from tests.support.vectors import identity, private, unhex, vector
from zchat.envelope import (
    Delivery,
    Envelope,
    MembershipRecord,
    NotForMe,
    RecordType,
    SessionCertificate,
    SessionKey,
    UnknownSessionKey,
    check_certificate,
    check_record,
    encode_records,
    open_delivery,
    parse_records,
    room_id,
)
from zchat.envelope.limits import CERT_VERSION, ENVELOPE_VERSION, RECORD_VERSION
from zchat.envelope.merkle import MerkleTree, leaf_hash, root_from_path, split_path

RECIPIENTS = ("bob", "carol", "dave")


def session(name: str) -> SessionKey:
    return SessionKey(private(f"{name}_session"))


# --- envelope_v3.json -------------------------------------------------------------------

ENVELOPE = f"envelope_v{ENVELOPE_VERSION}.json"


def stored() -> Envelope:
    return Envelope.parse(unhex(vector(ENVELOPE)["send"]))


def test_the_stored_header_parses_to_the_stored_fields() -> None:
    header = stored().header
    expected = vector(ENVELOPE)["header"]
    assert header.version == expected["version"] == ENVELOPE_VERSION
    assert header.kind == expected["kind"]
    assert header.msg_id.hex() == expected["msg_id"]
    assert header.timestamp_ms == expected["timestamp_ms"]
    assert header.seq == expected["seq"]
    assert header.sender == expected["sender"]
    assert header.sender_fingerprint.hex() == expected["sender_fingerprint"]
    assert header.room_id.hex() == expected["room_id"]
    assert header.count == expected["count"] == len(RECIPIENTS)
    assert header.root.hex() == expected["root"]
    assert list(header.named) == expected["named"]
    assert header.sender_fingerprint == identity("alice").fingerprint


def test_the_stored_recipients_are_the_leaves_of_the_signed_root() -> None:
    env = stored()
    assert list(env.recipients) == vector(ENVELOPE)["recipients"]
    assert [k.hex() for k in env.key_ids] == vector(ENVELOPE)["key_ids"]
    assert MerkleTree([leaf.encode() for leaf in env.leaves]).root == env.header.root
    for name, key_id in zip(RECIPIENTS, env.key_ids, strict=True):
        assert key_id == session(name).fingerprint[:8]


def test_the_stored_send_reencodes_byte_for_byte() -> None:
    env = stored()
    assert [f.hex() for f in env.frames()] == vector(ENVELOPE)["send"]
    assert env.header.encode() == env.header_bytes


@pytest.mark.parametrize(("index", "name"), list(enumerate(RECIPIENTS)))
def test_each_stored_delivery_is_what_the_broker_cuts_from_the_send(index: int, name: str) -> None:
    stored_delivery = vector(ENVELOPE)["deliveries"][index]
    assert [f.hex() for f in stored().delivery_frames(index)] == stored_delivery
    delivery = Delivery.parse(unhex(stored_delivery))
    assert [f.hex() for f in delivery.frames()] == stored_delivery
    assert (delivery.index, delivery.leaf.nick) == (index, name)


@pytest.mark.parametrize(("index", "name"), list(enumerate(RECIPIENTS)))
def test_each_stored_delivery_opens_with_the_session_key_its_leaf_names(
    index: int, name: str
) -> None:
    delivery = Delivery.parse(unhex(vector(ENVELOPE)["deliveries"][index]))
    opened = open_delivery(
        delivery,
        me=name,
        room_id=bytes.fromhex(vector(ENVELOPE)["header"]["room_id"]),
        keys=(session(name),),
        sender_key=identity("alice").public_key,
    )
    assert opened.plaintext.decode() == vector(ENVELOPE)["plaintext"]


@pytest.mark.parametrize("name", RECIPIENTS)
def test_the_stored_deliveries_do_not_open_with_the_identity_key(name: str) -> None:
    # Forward secrecy: whoever steals bob's identity key holds no key his leaf names.
    index = RECIPIENTS.index(name)
    with pytest.raises(UnknownSessionKey):
        open_delivery(
            stored().delivery_for(index),
            me=name,
            room_id=stored().header.room_id,
            keys=(identity(name),),
            sender_key=identity("alice").public_key,
        )


def test_the_stored_deliveries_are_not_for_their_sender() -> None:
    with pytest.raises(NotForMe):
        open_delivery(
            stored().delivery_for(0),
            me="alice",
            room_id=stored().header.room_id,
            keys=(identity("alice"),),
            sender_key=identity("alice").public_key,
        )


# --- certificate_v3.json ----------------------------------------------------------------


def test_the_stored_certificate_parses_to_its_fields_and_reencodes() -> None:
    v = vector(f"certificate_v{CERT_VERSION}.json")
    cert = SessionCertificate.parse(bytes.fromhex(v["certificate"]))
    assert cert.encode().hex() == v["certificate"]
    assert cert.nick == v["nick"]
    assert cert.identity_fingerprint.hex() == v["identity_fingerprint"]
    assert cert.room_id.hex() == v["room_id"]
    assert cert.created_ms == v["created_ms"]
    assert cert.expires_ms == v["expires_ms"]
    assert cert.session_der.hex() == v["session_der"]
    assert v["certificate"].startswith(f"{CERT_VERSION:02x}")


def test_the_stored_certificate_certifies_the_stored_session_key_in_its_room() -> None:
    v = vector(f"certificate_v{CERT_VERSION}.json")
    cert = SessionCertificate.parse(bytes.fromhex(v["certificate"]))
    key = check_certificate(
        cert,
        nick="bob",
        identity_key=identity("bob").public_key,
        identity_fingerprint=identity("bob").fingerprint,
        room_id=room_id(v["room"], v["broker_key"].encode()),
        now_ms=cert.created_ms,
    )
    assert key.public_numbers() == session("bob").private_key.public_key().public_numbers()


# --- vouch_v3.json, revoke_v3.json, membership_v3.json ---------------------------------


@pytest.mark.parametrize(
    ("name", "record_type"),
    [(f"vouch_v{RECORD_VERSION}.json", 1), (f"revoke_v{RECORD_VERSION}.json", 2)],
)
def test_the_stored_records_parse_to_their_fields_reencode_and_verify(
    name: str, record_type: int
) -> None:
    v = vector(name)
    record = MembershipRecord.parse(bytes.fromhex(v["record"]))
    assert record.encode().hex() == v["record"]
    assert record.type is RecordType(record_type)
    assert v["type"] == record_type
    assert record.room_id.hex() == v["room_id"]
    assert record.nick == v["nick"]
    assert record.subject_fingerprint.hex() == v["subject_fingerprint"]
    assert record.subject_fingerprint == identity("carol").fingerprint
    assert record.signer_fingerprint.hex() == v["signer_fingerprint"]
    assert record.time_ms == v["time_ms"]
    check_record(
        record,
        room_id=room_id(v["room"], v["broker_key"].encode()),
        signer_key=identity("bob").public_key,
        signer_fingerprint=identity("bob").fingerprint,
    )


def test_the_stored_membership_plaintext_carries_the_stored_records() -> None:
    v = vector(f"membership_v{RECORD_VERSION}.json")
    records = parse_records(bytes.fromhex(v["plaintext"]))
    assert [r.encode().hex() for r in records if isinstance(r, MembershipRecord)] == v["records"]
    parsed = [MembershipRecord.parse(bytes.fromhex(r)) for r in v["records"]]
    assert encode_records(parsed).hex() == v["plaintext"]
    assert v["records"][0] == vector(f"vouch_v{RECORD_VERSION}.json")["record"]


# --- merkle.json, room_id.json: deterministic, so built from the fields too --------------


def test_the_stored_tree_is_built_again_from_its_leaves() -> None:
    v = vector("merkle.json")
    leaves = unhex(v["leaves"])
    tree = MerkleTree(leaves)
    assert tree.root.hex() == v["root"]
    assert [tree.path(i).hex() for i in range(len(leaves))] == v["paths"]


def test_every_stored_path_proves_its_leaf() -> None:
    v = vector("merkle.json")
    leaves = unhex(v["leaves"])
    for i, path in enumerate(unhex(v["paths"])):
        hashes = split_path(path)
        assert hashes is not None
        assert root_from_path(i, len(leaves), leaf_hash(leaves[i]), hashes) == bytes.fromhex(
            v["root"]
        )


def test_the_stored_room_ids_are_made_again() -> None:
    ids = vector("room_id.json")["ids"]
    assert len({entry["room_id"] for entry in ids}) == len(ids)
    for entry in ids:
        assert room_id(entry["room"], entry["broker_key"].encode()).hex() == entry["room_id"]
