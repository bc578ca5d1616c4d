"""Membership records: a member's signed word that a key belongs in the room, or no longer.

The broker announces who is present, but only members decide who may read. A peer
seals to a member only once it has admitted that member: by comparing fingerprints
itself, or on the vouch of a member it has already admitted, until that member takes
the vouch back. Records travel end to end, sealed like a message (kind MEMBERSHIP),
so the broker can neither read nor forge one. A record (big-endian)::

    version      u8        RECORD_VERSION (3)
    type         u8        RecordType: 1 VOUCH, 2 REVOKE
    room_id      32 bytes  the room it is good for (`envelope.room`)
    nick         u8 length, then that many ASCII bytes: whom it is about
    subject_fp   32 bytes  SHA-256 of their identity key
    signer_fp    32 bytes  SHA-256 of the signer's identity key
    time_ms      u64       when the signer admitted them (VOUCH) or took that back
                           (REVOKE), the signer's clock
    signature    the rest: RSA-PSS-SHA256 by the signer's identity key over
                 MEMBERSHIP_CONTEXT || every byte above

A MEMBERSHIP message's plaintext carries one or more of them::

    count        u8        1..MAX_RECORDS_PER_MESSAGE
    record       u16 length, then that many bytes; `count` times

Each record is parsed, and later checked, on its own: one that is unreadable, of a
version or type this code does not know, or forged, is reported and skipped, and the
others in the same message still count.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import _primitives as prim
from zchat.envelope._codec import Reader, short_string
from zchat.envelope._signed import (
    U64_MAX,
    SignedRecord,
    from_fields,
    open_record,
    signature_size_ok,
    verify_in_room,
)
from zchat.envelope.errors import (
    BadRecord,
    MalformedEnvelope,
    UnknownRecordType,
)
from zchat.envelope.keys import Identity
from zchat.envelope.limits import (
    FINGERPRINT_BYTES,
    MAX_RECORD_BYTES,
    MAX_RECORDS_PER_MESSAGE,
    RECORD_FIXED_BYTES,
    RECORD_VERSION,
    ROOM_ID_BYTES,
)
from zchat.envelope.nick import is_valid_nick, nick_key

#: Domain separation: a record signature can never pass for a message signature, a
#: certificate or a handshake proof.
MEMBERSHIP_CONTEXT: Final = prim.MEMBERSHIP_CONTEXT


class RecordType(IntEnum):
    """What a membership record says about its subject."""

    VOUCH = 1  # the signer admitted the subject's key under this nickname
    REVOKE = 2  # the signer takes that back


@dataclass(frozen=True, slots=True)
class MembershipRecord(SignedRecord):
    """`signer_fingerprint`'s signed word about `nick` holding `subject_fingerprint`."""

    type: RecordType
    room_id: bytes
    nick: str
    subject_fingerprint: bytes
    signer_fingerprint: bytes
    time_ms: int
    signature: bytes

    def _problem(self) -> str | None:
        if len(self.room_id) != ROOM_ID_BYTES:
            return "room id must be 32 bytes"
        if not is_valid_nick(self.nick):
            return "invalid nickname in record"
        if len(self.subject_fingerprint) != FINGERPRINT_BYTES:
            return "subject fingerprint must be 32 bytes"
        if len(self.signer_fingerprint) != FINGERPRINT_BYTES:
            return "signer fingerprint must be 32 bytes"
        if not 0 <= self.time_ms <= U64_MAX:
            return "record time must fit in 64 bits"
        if not signature_size_ok(self.signature):
            return "record signature size out of range"
        return None

    def body(self) -> bytes:
        return _body(
            self.type,
            self.room_id,
            self.nick,
            self.subject_fingerprint,
            self.signer_fingerprint,
            self.time_ms,
        )

    @classmethod
    def parse(cls, data: bytes) -> MembershipRecord:
        """Parse one record strictly: UnsupportedVersion, UnknownRecordType or
        MalformedEnvelope for anything but a canonical record of a known type."""
        reader = open_record(
            data,
            what="record",
            version=RECORD_VERSION,
            fixed=RECORD_FIXED_BYTES,
            limit=MAX_RECORD_BYTES,
        )
        raw_type = reader.u8()
        try:
            record_type = RecordType(raw_type)
        except ValueError:
            raise UnknownRecordType(raw_type) from None
        room = reader.take(ROOM_ID_BYTES)
        nick = reader.short_string()
        subject = reader.take(FINGERPRINT_BYTES)
        signer = reader.take(FINGERPRINT_BYTES)
        time_ms = reader.u64()
        return from_fields(cls, record_type, room, nick, subject, signer, time_ms, reader.rest())


def make_record(
    signer: Identity,
    record_type: RecordType,
    *,
    room_id: bytes,
    nick: str,
    fingerprint: bytes,
    time_ms: int,
) -> MembershipRecord:
    """Sign a `record_type` record that `nick` holds the identity key `fingerprint`."""
    fields = (record_type, room_id, nick, fingerprint, signer.fingerprint, time_ms)
    signature = prim.pss_sign(signer.private_key, MEMBERSHIP_CONTEXT + _body(*fields))
    return MembershipRecord(*fields, signature)


def make_vouch(
    signer: Identity, *, room_id: bytes, nick: str, fingerprint: bytes, time_ms: int
) -> MembershipRecord:
    """Sign that `nick` holds the identity key `fingerprint` in room `room_id`."""
    return make_record(
        signer,
        RecordType.VOUCH,
        room_id=room_id,
        nick=nick,
        fingerprint=fingerprint,
        time_ms=time_ms,
    )


def check_record(
    record: MembershipRecord,
    *,
    room_id: bytes,
    signer_key: rsa.RSAPublicKey,
    signer_fingerprint: bytes,
) -> None:
    """Raise BadRecord unless `record` is for `room_id` and signed by the signer we trust.

    `signer_key` and `signer_fingerprint` are the caller's own record of the member
    who sent it (the sealed message's verified sender), never taken from the record.
    Whether the nickname and key it names match someone present is the caller's
    question: a record is only ever a statement about one name and one key.
    """
    if record.signer_fingerprint != signer_fingerprint:
        raise BadRecord("the record names another signer than its sender")
    verify_in_room(
        record, signer_key, room_id, context=MEMBERSHIP_CONTEXT, error=BadRecord, what="record"
    )


def same_member(record: MembershipRecord, nick: str, fingerprint: bytes) -> bool:
    """True when the record is about exactly this nickname (case-insensitive) and key."""
    return nick_key(record.nick) == nick_key(nick) and record.subject_fingerprint == fingerprint


def encode_records(records: list[MembershipRecord]) -> bytes:
    """The plaintext of one MEMBERSHIP message."""
    if not 1 <= len(records) <= MAX_RECORDS_PER_MESSAGE:
        raise ValueError(f"a MEMBERSHIP message carries 1 to {MAX_RECORDS_PER_MESSAGE} records")
    parts = [len(records).to_bytes(1, "big")]
    for record in records:
        raw = record.encode()
        parts.append(len(raw).to_bytes(2, "big") + raw)
    return b"".join(parts)


def parse_records(plaintext: bytes) -> list[MembershipRecord | MalformedEnvelope]:
    """Every record of a MEMBERSHIP message's plaintext, in order; in place of one that
    does not parse, the error saying why (reported and skipped by the caller).

    The count and every length are checked before any record is read: a plaintext
    whose framing is broken is MalformedEnvelope as a whole, since no record in it
    can be told from the next.
    """
    reader = Reader(plaintext, what="record list")
    count = reader.u8()
    if not 1 <= count <= MAX_RECORDS_PER_MESSAGE:
        raise MalformedEnvelope("record count out of range")
    raw = [reader.take(reader.u16()) for _ in range(count)]
    reader.expect_end()
    return [_parsed(data) for data in raw]


def _parsed(data: bytes) -> MembershipRecord | MalformedEnvelope:
    try:
        return MembershipRecord.parse(data)
    except MalformedEnvelope as exc:
        return exc


def _body(
    record_type: RecordType,
    room_id: bytes,
    nick: str,
    subject_fp: bytes,
    signer_fp: bytes,
    time_ms: int,
) -> bytes:
    return b"".join(
        [
            RECORD_VERSION.to_bytes(1, "big"),
            record_type.to_bytes(1, "big"),
            room_id,
            short_string(nick),
            subject_fp,
            signer_fp,
            time_ms.to_bytes(8, "big"),
        ]
    )
