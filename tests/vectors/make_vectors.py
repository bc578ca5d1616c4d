"""Regenerate the known-answer vectors. Run only when the wire format changes on purpose.

    python -m tests.vectors.make_vectors [envelope] [messages] [outbox]

With no argument every group is written; with names, only those groups. `messages` and
`outbox` are built from the stored envelope and certificate vectors (they quote their
bytes), so write `envelope` first when both change.

Identity keys (alice/bob/carol/dave.pem) are kept when present; session keys
(bob_session.pem, carol_session.pem, dave_session.pem) and everything signed with them
are made afresh. Signatures (PSS), wrapped keys (OAEP) and tokens (Fernet's IV) are
randomised, so a fresh run writes different bytes; what the tests check is that the
*stored* bytes keep parsing to the stored fields, re-encode to the same bytes, verify and
open, so that an accidental format change fails the suite. The room id and the Merkle
tree are deterministic: there the tests also build the bytes from the fields.

Files written, each with a `desc`:

    envelope_v3.json     alice to bob, carol and dave: the SEND body and each DELIVER body
    certificate_v3.json  bob's session-key certificate, its fields and bytes
    vouch_v3.json        bob's vouch for carol, its fields and bytes
    revoke_v3.json       bob's revocation of that vouch
    membership_v3.json   the plaintext of a MEMBERSHIP message carrying the two
    merkle.json          a tree of seven leaves: its head and every audit path
    room_id.json         room ids, with and without a broker's CURVE key

    (messages, `vector_messages.py`)
    proof_v3.json            the proof of key's signed input, with and without CURVE
    peer_messages_v3.json    every peer -> broker message, frame by frame
    broker_messages_v3.json  every broker -> peer message, the version refusal included

    (outbox, `vector_outbox.py`)
    outbox_v3.json           a scripted series of SENDs, ACKs, corrections, ERRORs and
                             ticks, with the outbox's state expected after each
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import (
    Identity,
    MembershipRecord,
    MessageKind,
    Recipient,
    RecordType,
    SessionKey,
    certify,
    encode_records,
    generate_identity,
    generate_session_key,
    make_record,
    room_id,
    seal,
)
from zchat.envelope.limits import CERT_VERSION, ENVELOPE_VERSION, RECORD_VERSION
from zchat.envelope.merkle import MerkleTree

HERE = Path(__file__).parent
CREATED_MS = 1_764_000_000_000
LIFETIME_MS = 3600 * 1000
ROOM = "general"
#: The server key of the CurveZMQ example (RFC 26): any 40 Z85 characters serve.
BROKER_KEY = b"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
RECIPIENTS = ("bob", "carol", "dave")
MERKLE_LEAVES = [b"\x03bob" + bytes([i]) * 8 for i in range(7)]


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _identity(name: str) -> Identity:
    path = HERE / f"{name}.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return Identity(key)
    ident = generate_identity(2048)
    path.write_bytes(_pem(ident.private_key))
    return ident


def _session(name: str) -> SessionKey:
    session = generate_session_key()
    (HERE / f"{name}_session.pem").write_bytes(_pem(session.private_key))
    return session


def _write(name: str, vector: dict[str, Any]) -> None:
    (HERE / name).write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n")


def _record(record: MembershipRecord, desc: str) -> dict[str, Any]:
    return {
        "desc": desc,
        "version": RECORD_VERSION,
        "type": int(record.type),
        "room": ROOM,
        "broker_key": BROKER_KEY.decode(),
        "room_id": record.room_id.hex(),
        "nick": record.nick,
        "subject_fingerprint": record.subject_fingerprint.hex(),
        "signer_fingerprint": record.signer_fingerprint.hex(),
        "time_ms": record.time_ms,
        "record": record.encode().hex(),
    }


def write_envelope_vectors() -> None:
    alice = _identity("alice")
    idents = {name: _identity(name) for name in RECIPIENTS}
    sessions = {name: _session(name) for name in RECIPIENTS}
    rid = room_id(ROOM, BROKER_KEY)
    text = "hello, bob, carol and dave: ünïcödé ✓"
    env = seal(
        text.encode(),
        sender=alice,
        sender_nick="alice",
        room_id=rid,
        recipients=[
            Recipient(n, sessions[n].private_key.public_key(), sessions[n].fingerprint)
            for n in RECIPIENTS
        ],
        seq=42,
        kind=MessageKind.ROOM,
        now=1_764_000_000.123,
        msg_id=bytes(range(16)),
    )
    _write(
        f"envelope_v{ENVELOPE_VERSION}.json",
        {
            "desc": (
                f"alice to bob, carol and dave in room {ROOM!r} on the broker whose CURVE key "
                f"is {BROKER_KEY.decode()!r}, envelope version {ENVELOPE_VERSION}, wrapped to "
                "their session keys; identity keys in alice/bob/carol/dave.pem, session keys in "
                "NAME_session.pem. `send` is SEND's body (header, signature, token, recipients, "
                "wrapped keys), `deliveries[i]` DELIVER's body for recipient i (header, "
                "signature, token, leaf, path, wrapped key)"
            ),
            "plaintext": text,
            "header": {
                "version": ENVELOPE_VERSION,
                "kind": int(env.header.kind),
                "msg_id": env.header.msg_id.hex(),
                "timestamp_ms": env.header.timestamp_ms,
                "seq": env.header.seq,
                "sender": env.header.sender,
                "sender_fingerprint": alice.fingerprint.hex(),
                "room_id": rid.hex(),
                "count": env.header.count,
                "root": env.header.root.hex(),
                "named": list(env.header.named),
            },
            "recipients": list(env.recipients),
            "key_ids": [k.hex() for k in env.key_ids],
            "send": [f.hex() for f in env.frames()],
            "deliveries": [
                [f.hex() for f in env.delivery_frames(i)] for i in range(len(RECIPIENTS))
            ],
        },
    )
    cert = certify(
        idents["bob"],
        "bob",
        sessions["bob"],
        room_id=rid,
        created_ms=CREATED_MS,
        lifetime_ms=LIFETIME_MS,
    )
    _write(
        f"certificate_v{CERT_VERSION}.json",
        {
            "desc": "bob's session key (bob_session.pem) certified by bob.pem for the room above",
            "version": CERT_VERSION,
            "nick": cert.nick,
            "identity_fingerprint": cert.identity_fingerprint.hex(),
            "room": ROOM,
            "broker_key": BROKER_KEY.decode(),
            "room_id": cert.room_id.hex(),
            "created_ms": cert.created_ms,
            "expires_ms": cert.expires_ms,
            "session_der": cert.session_der.hex(),
            "certificate": cert.encode().hex(),
        },
    )
    records = [
        make_record(
            idents["bob"],
            record_type,
            room_id=rid,
            nick="carol",
            fingerprint=idents["carol"].fingerprint,
            time_ms=time_ms,
        )
        for record_type, time_ms in (
            (RecordType.VOUCH, CREATED_MS),
            (RecordType.REVOKE, CREATED_MS + 1),
        )
    ]
    _write(f"vouch_v{RECORD_VERSION}.json", _record(records[0], "bob (bob.pem) vouches for carol"))
    _write(
        f"revoke_v{RECORD_VERSION}.json",
        _record(records[1], "bob (bob.pem) takes his vouch for carol back, a millisecond later"),
    )
    _write(
        f"membership_v{RECORD_VERSION}.json",
        {
            "desc": "a MEMBERSHIP message's plaintext: bob's vouch, then his revocation",
            "records": [r.encode().hex() for r in records],
            "plaintext": encode_records(records).hex(),
        },
    )
    tree = MerkleTree(MERKLE_LEAVES)
    _write(
        "merkle.json",
        {
            "desc": (
                "RFC 9162 tree over seven leaves (leaf data: u8 3, 'bob', key id i repeated); "
                "paths leaf side first, as DELIVER carries them"
            ),
            "leaves": [d.hex() for d in MERKLE_LEAVES],
            "root": tree.root.hex(),
            "paths": [tree.path(i).hex() for i in range(len(MERKLE_LEAVES))],
        },
    )
    _write(
        "room_id.json",
        {
            "desc": "SHA-256('zchat/3 room' 0x00 || u8 len || room || u8 len || broker key)",
            "ids": [
                {"room": room, "broker_key": key.decode(), "room_id": room_id(room, key).hex()}
                for room, key in (
                    ("zchat", b""),
                    ("general", b""),
                    ("general", BROKER_KEY),
                    ("a room with spaces & ~", BROKER_KEY),
                )
            ],
        },
    )


def main(groups: list[str]) -> None:
    # Imported here: both read what `write_envelope_vectors` wrote.
    from tests.vectors.vector_messages import write_message_vectors
    from tests.vectors.vector_outbox import write_outbox_vector

    writers = {
        "envelope": write_envelope_vectors,
        "messages": write_message_vectors,
        "outbox": write_outbox_vector,
    }
    unknown = [g for g in groups if g not in writers]
    if unknown:
        raise SystemExit(f"unknown group {unknown[0]!r}: choose from {', '.join(writers)}")
    for name, write in writers.items():
        if not groups or name in groups:
            write()


if __name__ == "__main__":
    main(sys.argv[1:])
