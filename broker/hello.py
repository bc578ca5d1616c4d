"""What a HELLO must be before the broker looks at its tables, and what a certificate
must be before the broker keeps or relays it.

Pure checks, no state: a nickname and a room name as the rules say, an identity key the
broker can load, and a session-key certificate that key made for the room the HELLO
names (its room id: the room's name and, with CURVE, the broker's key). Each refusal
comes back as a value (`Refusal`: the REFUSE code and the reason the peer is shown); the
core (`broker.core`) sends it, and goes on to the checks that need its tables
(`broker.rooms`: the nickname taken, the key in use, the room full, too many rooms).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import (
    BadCertificate,
    BadPublicKey,
    MalformedEnvelope,
    SessionCertificate,
    fingerprint,
    is_valid_nick,
    is_valid_room,
    load_public_key,
    room_id,
    verify_certificate,
)
from zchat.envelope.nick import NICK_RULES
from zchat.envelope.room import ROOM_RULES
from zchat.wire import protocol as p


@dataclass(frozen=True, slots=True)
class Greeting:
    """A HELLO that passed every check that needs no table."""

    nick: str
    public_der: bytes
    public_key: rsa.RSAPublicKey
    fingerprint: bytes
    certificate: bytes
    #: When the certificate was made: a later REKEY must bring a newer one.
    certificate_created_ms: int
    #: The room the HELLO names, and its id, which the certificate names too.
    room: str
    room_id: bytes


@dataclass(frozen=True, slots=True)
class Refusal:
    code: p.RefuseCode
    reason: str


def check_hello(hello: p.Hello, broker_key: bytes) -> Greeting | Refusal:
    """`hello`, checked, at the broker whose CURVE public key is `broker_key` (empty
    without CURVE): room ids name it (docs/PROTOCOL.md §2.12)."""
    nick = hello.nick.decode("ascii", "replace")
    if not is_valid_nick(nick):
        return Refusal(p.RefuseCode.NICK_INVALID, NICK_RULES)
    room = hello.room.decode("ascii", "replace")
    if not is_valid_room(room):
        return Refusal(p.RefuseCode.ROOM_INVALID, ROOM_RULES)
    try:
        key = load_public_key(hello.public_der)
    except BadPublicKey as exc:
        return Refusal(p.RefuseCode.BAD_KEY, str(exc))
    fp = fingerprint(hello.public_der)
    rid = room_id(room, broker_key)
    checked = check_certificate(hello.certificate, nick, key, fp, rid)
    if isinstance(checked, str):
        return Refusal(p.RefuseCode.BAD_CERTIFICATE, checked)
    certificate, created = hello.certificate, checked.created_ms
    return Greeting(nick, hello.public_der, key, fp, certificate, created, room, rid)


def check_certificate(
    raw: bytes, nick: str, identity_key: rsa.RSAPublicKey, identity_fp: bytes, room: bytes
) -> SessionCertificate | str:
    """`raw`, parsed, if it is a certificate `nick`'s identity key made for room id
    `room`; else why it is not.

    One signature check (about 25 us), once per HELLO or REKEY: what the broker relays
    to every member is at least genuine. Not the date: the broker has none it could
    trust, and every peer checks it anyway.
    """
    try:
        cert = SessionCertificate.parse(raw)
        verify_certificate(
            cert,
            nick=nick,
            identity_key=identity_key,
            identity_fingerprint=identity_fp,
            room_id=room,
        )
    except (MalformedEnvelope, BadCertificate) as exc:
        return f"bad session-key certificate: {exc}"
    return cert
