"""Write the broker protocol's vectors: the proof of key, and every message, frame by frame.

Run through `python -m tests.vectors.make_vectors messages`. Built from the stored
envelope and certificate vectors (a SEND and each DELIVER are those bytes, HELLO
carries bob's stored certificate), so that the files agree with each other; a second
implementation can check its encoder and parser against them without running zchat.

Each message is written as `frames` (hex, the tag and command frames included) and as
`fields`, the values its frames carry, in the words of docs/PROTOCOL.md §3.2. Values
a later version may add (a command byte, a REFUSE, ERROR or LEAVE code) appear too,
with what this version parses them as.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.vectors.make_vectors import (
    BROKER_KEY,
    CREATED_MS,
    HERE,
    LIFETIME_MS,
    ROOM,
    _identity,
    _write,
)
from zchat.envelope import (
    Envelope,
    SessionKey,
    certify,
    generate_session_key,
    room_id,
    sign_proof,
)
from zchat.envelope.certificate import SessionCertificate
from zchat.envelope.proof import proof_bytes
from zchat.wire import protocol as p

#: The client key of libzmq's CurveZMQ example (`curve_keygen`), as bob's transport key.
TRANSPORT_KEY = b"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
#: The broker's CHALLENGE nonce in every vector: 0x00 ... 0x1f.
NONCE = bytes(range(p.CHALLENGE_BYTES))
#: bob's next session key is certified an hour after his first (REKEY, REKEYED).
REKEY_CREATED_MS = CREATED_MS + LIFETIME_MS


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((HERE / name).read_text())
    return loaded


def _hex(frames: list[bytes]) -> list[str]:
    return [f.hex() for f in frames]


def _message(name: str, desc: str, msg: p.Message, fields: dict[str, Any]) -> dict[str, Any]:
    frames = p.encode(msg)
    return {"name": name, "desc": desc, "fields": fields, "frames": _hex(frames)}


def _raw(name: str, desc: str, frames: list[bytes], parses_as: dict[str, Any]) -> dict[str, Any]:
    """A message this version does not send but must parse (a later version's value)."""
    return {"name": name, "desc": desc, "frames": _hex(frames), "parses_as": parses_as}


def _session_certificate(nick: str, session: SessionKey, created_ms: int) -> SessionCertificate:
    return certify(
        _identity(nick),
        nick,
        session,
        room_id=room_id(ROOM, BROKER_KEY),
        created_ms=created_ms,
        lifetime_ms=LIFETIME_MS,
    )


def _stored_session(nick: str) -> SessionKey:
    key = serialization.load_pem_private_key((HERE / f"{nick}_session.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return SessionKey(key)


def write_message_vectors() -> None:
    bob = _identity("bob")
    certificate = bytes.fromhex(_load("certificate_v3.json")["certificate"])
    envelope_vector = _load("envelope_v3.json")
    envelope = Envelope.parse([bytes.fromhex(f) for f in envelope_vector["send"]])
    msg_id = envelope.header.msg_id

    # --- the proof of key -----------------------------------------------------------
    cases = []
    for desc, broker_key, transport_key in (
        ("without CURVE: both keys empty (length 0)", b"", b""),
        (
            "with CURVE: the broker's public key bob was given, and his own transport key",
            BROKER_KEY,
            TRANSPORT_KEY,
        ),
    ):
        signed = proof_bytes(
            NONCE, b"bob", bob.public_der, broker_key=broker_key, transport_key=transport_key
        )
        signature = sign_proof(
            bob.private_key,
            NONCE,
            b"bob",
            bob.public_der,
            broker_key=broker_key,
            transport_key=transport_key,
        )
        cases.append(
            {
                "desc": desc,
                "nonce": NONCE.hex(),
                "nick": "bob",
                "public_der": bob.public_der.hex(),
                "broker_key": broker_key.decode(),
                "transport_key": transport_key.decode(),
                "signed": signed.hex(),
                "signature": signature.hex(),
            }
        )
    _write(
        "proof_v3.json",
        {
            "desc": (
                "bob (bob.pem) proves his key to the broker's CHALLENGE (nonce 00..1f): "
                "`signed` is PROOF_CONTEXT || nonce || u8 len || nick || u8 len || broker key "
                "|| u8 len || transport key || public DER (PROTOCOL.md §3.4); `signature` is "
                "RSA-PSS-SHA256 (salt 32) over it by bob.pem, randomised: verify it, do not "
                "compare it"
            ),
            "cases": cases,
        },
    )

    # --- peer -> broker -------------------------------------------------------------
    rekey_certificate = _session_certificate("bob", generate_session_key(), REKEY_CREATED_MS)
    new_certificate = rekey_certificate.encode()
    proof = bytes.fromhex(cases[1]["signature"])
    peer = [
        _message(
            "HELLO",
            "bob asks to join room 'general', with his stored certificate (certificate_v3.json)",
            p.Hello(b"bob", bob.public_der, certificate, ROOM.encode()),
            {
                "nick": "bob",
                "public_der": bob.public_der.hex(),
                "certificate": certificate.hex(),
                "room": ROOM,
            },
        ),
        _message(
            "PROOF",
            "bob answers the CHALLENGE below, over CURVE (proof_v3.json, second case)",
            p.Proof(proof),
            {"signature": proof.hex()},
        ),
        _message(
            "SEND",
            "alice's envelope of envelope_v3.json: header, signature, token, recipients, "
            "three wrapped keys",
            p.Send(envelope),
            {"envelope": "envelope_v3.json send"},
        ),
        _message("HEARTBEAT", "a peer's heartbeat: no body", p.Heartbeat(), {}),
        _message("BYE", "a peer leaves: no body", p.Bye(), {}),
        _message(
            "REKEY",
            f"bob's next session key, certified at {REKEY_CREATED_MS} (an hour later)",
            p.Rekey(new_certificate),
            {"certificate": new_certificate.hex()},
        ),
        _raw(
            "unknown command",
            "command byte 0x07, which version 3 does not define: a later version's; it parses "
            "as its number, its body unread (a broker answers ERROR MALFORMED to a session)",
            [p.PROTOCOL_TAG, b"\x07", b"body of a later version"],
            {"command": 7},
        ),
    ]
    _write(
        "peer_messages_v3.json",
        {
            "desc": (
                "every message a peer sends in protocol 3 (PROTOCOL.md §3.2): `frames` hex, tag "
                "and command frames included; `fields` what they carry. PROOF's signature is "
                "randomised (PSS): the encoding is checked, and the signature verifies"
            ),
            "messages": peer,
        },
    )

    # --- broker -> peer -------------------------------------------------------------
    members = [("bob", certificate)]
    for nick in ("carol", "dave"):
        cert = _session_certificate(nick, _stored_session(nick), CREATED_MS)
        members.append((nick, cert.encode()))
    snapshot = tuple(p.Member(n, _identity(n).public_der, c) for n, c in members)

    def member_fields(member: p.Member) -> dict[str, str]:
        return {
            "nick": member.nick,
            "public_der": member.public_der.hex(),
            "certificate": member.certificate.hex(),
        }

    deliveries = [
        _message(
            "DELIVER",
            f"recipient {i} ({nick}) of envelope_v3.json: header, signature, token, leaf, path, "
            "wrapped key",
            p.Deliver(envelope.delivery_for(i)),
            {"delivery": f"envelope_v3.json deliveries[{i}]"},
        )
        for i, nick in enumerate(envelope.recipients)
    ]
    broker = [
        _message(
            "CHALLENGE",
            "the nonce bob signs in proof_v3.json",
            p.Challenge(NONCE),
            {"nonce": NONCE.hex()},
        ),
        _message(
            "WELCOME",
            "bob is in room 'general'; heartbeats every 2 s, evicted after 10 s of silence",
            p.Welcome("bob", 2000, 10_000, ROOM),
            {"nick": "bob", "heartbeat_ms": 2000, "timeout_ms": 10_000, "room": ROOM},
        ),
        _message(
            "REFUSE",
            "the nickname is held by another key",
            p.Refuse(p.RefuseCode.NICK_TAKEN, "bob is taken"),
            {"code": int(p.RefuseCode.NICK_TAKEN), "reason": "bob is taken"},
        ),
        _message(
            "version refusal",
            "a version-3 broker answers a message tagged ZCHAT2: tagged ZCHAT2 itself, REFUSE "
            "UNSUPPORTED_VERSION, in the layout no version changes (PROTOCOL.md §1.5)",
            p.VersionRefusal(b"ZCHAT2", f"this broker speaks zchat protocol {p.PROTOCOL_VERSION}"),
            {"tag": "ZCHAT2", "reason": f"this broker speaks zchat protocol {p.PROTOCOL_VERSION}"},
        ),
        _message(
            "SNAPSHOT",
            "alice arrives in a room where bob, carol and dave are (their identity keys "
            "NAME.pem, their session-key certificates for room 'general')",
            p.Snapshot(snapshot),
            {"members": [member_fields(m) for m in snapshot]},
        ),
        _message("SNAPSHOT (empty)", "the newcomer is alone", p.Snapshot(()), {"members": []}),
        _message(
            "JOIN",
            "bob comes in, with his key and certificate",
            p.Join(snapshot[0]),
            {"member": member_fields(snapshot[0])},
        ),
        _message(
            "LEAVE",
            "carol fell silent",
            p.Leave("carol", p.LeaveReason.TIMEOUT),
            {"nick": "carol", "reason": int(p.LeaveReason.TIMEOUT)},
        ),
        *deliveries,
        _message(
            "ACK",
            "the SEND above: bob and carol got it, dave is not in the room",
            p.Ack(msg_id, ("bob", "carol"), ("dave",)),
            {"msg_id": msg_id.hex(), "delivered": ["bob", "carol"], "absent": ["dave"]},
        ),
        _message(
            "ACK (correction)",
            "the broker could not queue the delivery to carol after all (PROTOCOL.md §3.9): "
            "empty delivered list, one name absent",
            p.Ack(msg_id, (), ("carol",)),
            {"msg_id": msg_id.hex(), "delivered": [], "absent": ["carol"]},
        ),
        _message(
            "ERROR",
            "a message with no session behind it",
            p.Error(p.ErrorCode.HELLO_FIRST, "say hello first"),
            {"code": int(p.ErrorCode.HELLO_FIRST), "reason": "say hello first", "msg_id": ""},
        ),
        _message(
            "ERROR (with msg_id)",
            "the SEND above named another sender than the session's",
            p.Error(p.ErrorCode.FORGED_SENDER, "sender is not you", msg_id),
            {
                "code": int(p.ErrorCode.FORGED_SENDER),
                "reason": "sender is not you",
                "msg_id": msg_id.hex(),
            },
        ),
        _message(
            "ERROR (MALFORMED, with msg_id)",
            "a SEND whose header was read as far as its msg_id, and refused",
            p.Error(p.ErrorCode.MALFORMED, "the recipients are not those the header signs", msg_id),
            {
                "code": int(p.ErrorCode.MALFORMED),
                "reason": "the recipients are not those the header signs",
                "msg_id": msg_id.hex(),
            },
        ),
        _message(
            "HEARTBEAT", "the broker's heartbeat over a quiet link: no body", p.Heartbeat(), {}
        ),
        _message(
            "REKEYED",
            "bob's next session key (the REKEY of peer_messages_v3.json), accepted: to the "
            "others and, as the positive answer, to bob",
            p.Rekeyed("bob", new_certificate),
            {"nick": "bob", "certificate": new_certificate.hex()},
        ),
        _raw(
            "REFUSE (unknown code)",
            "refuse code 42, which version 3 does not define: a permanent refusal",
            [p.PROTOCOL_TAG, b"\x13", b"\x2a", b"a reason of a later version"],
            {"code": 42, "reason": "a reason of a later version"},
        ),
        _raw(
            "ERROR (unknown code)",
            "error code 99 with a msg_id: reported; the msg_id is ignored",
            [p.PROTOCOL_TAG, b"\x19", b"\x63", b"later", msg_id],
            {"code": 99, "reason": "later", "msg_id": msg_id.hex()},
        ),
        _raw(
            "LEAVE (unknown reason)",
            "leave reason 3 (retired, never sent): the member left, reason 'other'",
            [p.PROTOCOL_TAG, b"\x16", b"carol", b"\x03"],
            {"nick": "carol", "reason": 3},
        ),
        _raw(
            "unknown command",
            "command byte 0x2a, which version 3 does not define: dropped and reported",
            [p.PROTOCOL_TAG, b"\x2a"],
            {"command": 42},
        ),
        _raw(
            "version refusal (of a version-2 broker)",
            "what a version-2 broker answers a version-3 HELLO (hello_v2.json): read as a "
            "version refusal, the broker speaks 2",
            [b"ZCHAT2", b"\x13", b"\x03", b"unsupported protocol b'ZCHAT3'"],
            {"tag": "ZCHAT2", "reason": "unsupported protocol b'ZCHAT3'", "version": 2},
        ),
    ]
    _write(
        "broker_messages_v3.json",
        {
            "desc": (
                "every message a broker sends in protocol 3 (PROTOCOL.md §3.2), the version "
                "refusal included: `frames` hex, tag and command frames included; `fields` what "
                "they carry. Entries with `parses_as` hold values of a later version: what "
                "this version's parser makes of them"
            ),
            "messages": broker,
        },
    )
