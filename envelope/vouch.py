"""Vouches: a member's signed word that a nickname's key belongs in the room.

The broker announces who is present, but only members decide who may read. A peer
seals to a member only once it has admitted that member: by comparing fingerprints
itself, or on the vouch of a member it has already admitted. A vouch travels end to
end, sealed like a message (kind VOUCH), so the broker can neither read nor forge one.
The layout (big-endian)::

    version      u8        VOUCH_VERSION
    room         u8 length, then that many ASCII bytes: the room it is good for
    nick         u8 length, then that many ASCII bytes: who is vouched for
    vouched_fp   32 bytes  SHA-256 of their identity key
    voucher_fp   32 bytes  SHA-256 of the voucher's identity key
    time_ms      u64       when the voucher admitted them, the voucher's clock
    signature    the rest: RSA-PSS-SHA256 by the voucher's identity key over
                 VOUCH_CONTEXT || every byte above

A VOUCH message's plaintext carries one or more of them::

    count        u8        1..MAX_VOUCHES_PER_MESSAGE
    vouch        u16 length, then that many bytes; `count` times
"""

from __future__ import annotations

from dataclasses import dataclass
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
    verify_record,
)
from zchat.envelope.errors import BadVouch, MalformedEnvelope
from zchat.envelope.keys import Identity
from zchat.envelope.limits import (
    FINGERPRINT_BYTES,
    MAX_ROOM_ID_BYTES,
    MAX_VOUCH_BYTES,
    MAX_VOUCHES_PER_MESSAGE,
    VOUCH_FIXED_BYTES,
)
from zchat.envelope.nick import is_valid_nick, nick_key

VOUCH_VERSION: Final = 2
#: Domain separation: a vouch signature can never pass for a message signature, a
#: certificate or a handshake proof.
VOUCH_CONTEXT: Final = prim.VOUCH_CONTEXT


def is_valid_room(room: str) -> bool:
    """A room name is 1-64 printable ASCII characters."""
    return 0 < len(room) <= MAX_ROOM_ID_BYTES and room.isascii() and room.isprintable()


@dataclass(frozen=True, slots=True)
class Vouch(SignedRecord):
    """`voucher_fingerprint`'s signed word that `nick` holds `vouched_fingerprint` in `room`."""

    room: str
    nick: str
    vouched_fingerprint: bytes
    voucher_fingerprint: bytes
    time_ms: int
    signature: bytes

    def _problem(self) -> str | None:
        if not is_valid_room(self.room):
            return "invalid room name in vouch"
        if not is_valid_nick(self.nick):
            return "invalid nickname in vouch"
        if len(self.vouched_fingerprint) != FINGERPRINT_BYTES:
            return "vouched fingerprint must be 32 bytes"
        if len(self.voucher_fingerprint) != FINGERPRINT_BYTES:
            return "voucher fingerprint must be 32 bytes"
        if not 0 <= self.time_ms <= U64_MAX:
            return "vouch time must fit in 64 bits"
        if not signature_size_ok(self.signature):
            return "vouch signature size out of range"
        return None

    def body(self) -> bytes:
        return _body(
            self.room, self.nick, self.vouched_fingerprint, self.voucher_fingerprint, self.time_ms
        )

    @classmethod
    def parse(cls, data: bytes) -> Vouch:
        reader = open_record(
            data,
            what="vouch",
            version=VOUCH_VERSION,
            fixed=VOUCH_FIXED_BYTES,
            limit=MAX_VOUCH_BYTES,
        )
        room = reader.short_string()
        nick = reader.short_string()
        vouched = reader.take(FINGERPRINT_BYTES)
        voucher = reader.take(FINGERPRINT_BYTES)
        time_ms = reader.u64()
        return from_fields(cls, room, nick, vouched, voucher, time_ms, reader.rest())


def make_vouch(
    voucher: Identity, *, room: str, nick: str, fingerprint: bytes, time_ms: int
) -> Vouch:
    """Sign that `nick` holds the identity key `fingerprint` in `room`."""
    fields = (room, nick, fingerprint, voucher.fingerprint, time_ms)
    signature = prim.pss_sign(voucher.private_key, VOUCH_CONTEXT + _body(*fields))
    return Vouch(*fields, signature)


def check_vouch(
    vouch: Vouch,
    *,
    room: str,
    voucher_key: rsa.RSAPublicKey,
    voucher_fingerprint: bytes,
) -> None:
    """Raise BadVouch unless `vouch` is for `room` and signed by the voucher we trust.

    `voucher_key` and `voucher_fingerprint` are the caller's own record of the member
    who sent the vouch (the sealed message's verified sender), never taken from the
    vouch. Whether the vouched nickname and key match someone present is the caller's
    question: a vouch is only ever a statement about one name and one key.
    """
    if vouch.voucher_fingerprint != voucher_fingerprint:
        raise BadVouch("the vouch names another voucher than its sender")
    if vouch.room != room:
        raise BadVouch(f"the vouch is for another room ({vouch.room!r})")
    verify_record(
        voucher_key, vouch.signature, VOUCH_CONTEXT + vouch.body(), error=BadVouch, what="vouch"
    )


def same_member(vouch: Vouch, nick: str, fingerprint: bytes) -> bool:
    """True when the vouch is for exactly this nickname (case-insensitive) and key."""
    return nick_key(vouch.nick) == nick_key(nick) and vouch.vouched_fingerprint == fingerprint


def encode_vouches(vouches: list[Vouch]) -> bytes:
    """The plaintext of one VOUCH message."""
    if not 1 <= len(vouches) <= MAX_VOUCHES_PER_MESSAGE:
        raise ValueError(f"a VOUCH message carries 1 to {MAX_VOUCHES_PER_MESSAGE} vouches")
    parts = [len(vouches).to_bytes(1, "big")]
    for vouch in vouches:
        raw = vouch.encode()
        parts.append(len(raw).to_bytes(2, "big") + raw)
    return b"".join(parts)


def parse_vouches(plaintext: bytes) -> list[Vouch]:
    """Parse a VOUCH message's plaintext; the count is checked before any vouch is read."""
    reader = Reader(plaintext, what="vouch list")
    count = reader.u8()
    if not 1 <= count <= MAX_VOUCHES_PER_MESSAGE:
        raise MalformedEnvelope("vouch count out of range")
    vouches = [Vouch.parse(reader.take(reader.u16())) for _ in range(count)]
    reader.expect_end()
    return vouches


def _body(room: str, nick: str, vouched_fp: bytes, voucher_fp: bytes, time_ms: int) -> bytes:
    return b"".join(
        [
            VOUCH_VERSION.to_bytes(1, "big"),
            short_string(room),
            short_string(nick),
            vouched_fp,
            voucher_fp,
            time_ms.to_bytes(8, "big"),
        ]
    )
