"""Session keys and their certificates: what gives zchat forward secrecy.

An identity key (the long-term RSA key others pin) only signs. Every message key is
wrapped to a *session key*: a fresh RSA-2048 key pair made when a peer connects and
again on a schedule, whose private half never touches the disk and is dropped soon
after it is replaced. Someone who records envelopes and later steals the identity key
finds nothing to unwrap them with.

The identity key certifies each session key, so that nobody (the broker included) can
slip in a session key of their own. The certificate layout (big-endian)::

    version      u8        CERT_VERSION (3)
    nick         u8 length, then that many ASCII bytes
    identity_fp  32 bytes  SHA-256 of the identity key (DER SubjectPublicKeyInfo)
    room_id      32 bytes  the one room the key is good in (`envelope.room`)
    created_ms   u64       milliseconds since the Unix epoch, the certifier's clock
    expires_ms   u64       after this the session key is never sealed to
    session_der  u16 length, then the session key as DER SubjectPublicKeyInfo
    signature    the rest: RSA-PSS-SHA256 by the identity key over
                 CERT_CONTEXT || every byte above

The signature is as long as the identity key's modulus (256 to 512 bytes); the parser
checks only its size, and `check_certificate` verifies it against the *pinned*
identity key, never one the certificate names itself, and for the caller's own room:
the same member in two rooms has a session key for each, and a message sealed to its
key in one room never opens in the other.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Final

from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import _primitives as prim
from zchat.envelope._codec import short_string
from zchat.envelope._signed import (
    U64_MAX,
    SignedRecord,
    from_fields,
    open_record,
    signature_size_ok,
    verify_in_room,
)
from zchat.envelope.errors import BadCertificate, BadPublicKey
from zchat.envelope.keys import Identity, fingerprint, load_public_key, public_der
from zchat.envelope.limits import (
    CERT_FIXED_BYTES,
    CERT_VERSION,
    CLOCK_SKEW_MS,
    FINGERPRINT_BYTES,
    MAX_CERT_BYTES,
    MAX_CERT_LIFETIME_MS,
    MAX_PUBLIC_KEY_DER,
    ROOM_ID_BYTES,
    RSA_PUBLIC_EXPONENT,
    SESSION_KEY_BITS,
)
from zchat.envelope.nick import is_valid_nick, nick_key

#: Domain separation: a certificate signature can never pass for a message signature,
#: a handshake proof or a vouch, whatever the bytes after the prefix.
CERT_CONTEXT: Final = prim.CERT_CONTEXT

_TIMES = struct.Struct(">QQ")


@dataclass(frozen=True)
class SessionKey:
    """A session key pair. The private half lives in memory only, and only briefly."""

    private_key: rsa.RSAPrivateKey

    # Cached: a recipient looks its keys up by fingerprint for every delivery it opens.
    @cached_property
    def public_der(self) -> bytes:
        return public_der(self.private_key.public_key())

    @cached_property
    def fingerprint(self) -> bytes:
        return fingerprint(self.public_der)


def generate_session_key() -> SessionKey:
    """A fresh RSA-2048 session key (about 40 ms: call it off any event loop)."""
    return SessionKey(rsa.generate_private_key(RSA_PUBLIC_EXPONENT, SESSION_KEY_BITS))


@dataclass(frozen=True, slots=True)
class SessionCertificate(SignedRecord):
    """An identity key's signed word that `session_der` speaks for `nick` until `expires_ms`."""

    nick: str
    identity_fingerprint: bytes
    room_id: bytes
    created_ms: int
    expires_ms: int
    session_der: bytes
    signature: bytes

    def _problem(self) -> str | None:
        if not is_valid_nick(self.nick):
            return "invalid nickname in certificate"
        if len(self.identity_fingerprint) != FINGERPRINT_BYTES:
            return "identity fingerprint must be 32 bytes"
        if len(self.room_id) != ROOM_ID_BYTES:
            return "room id must be 32 bytes"
        if not 0 <= self.created_ms <= U64_MAX or not 0 <= self.expires_ms <= U64_MAX:
            return "certificate times must fit in 64 bits"
        if not 0 < len(self.session_der) <= MAX_PUBLIC_KEY_DER:
            return "session key size out of range"
        if not signature_size_ok(self.signature):
            return "certificate signature size out of range"
        return None

    @property
    def session_fingerprint(self) -> bytes:
        return fingerprint(self.session_der)

    def body(self) -> bytes:
        return _body(
            self.nick,
            self.identity_fingerprint,
            self.room_id,
            self.created_ms,
            self.expires_ms,
            self.session_der,
        )

    @classmethod
    def parse(cls, data: bytes) -> SessionCertificate:
        """Parse certificate bytes strictly; anything but a canonical encoding is refused."""
        reader = open_record(
            data,
            what="certificate",
            version=CERT_VERSION,
            fixed=CERT_FIXED_BYTES,
            limit=MAX_CERT_BYTES,
        )
        nick = reader.short_string()
        identity_fp = reader.take(FINGERPRINT_BYTES)
        room = reader.take(ROOM_ID_BYTES)
        created, expires = _TIMES.unpack(reader.take(_TIMES.size))
        session_der = reader.take(reader.u16())
        return from_fields(
            cls, nick, identity_fp, room, created, expires, session_der, reader.rest()
        )


def certify(
    identity: Identity,
    nick: str,
    session: SessionKey,
    *,
    room_id: bytes,
    created_ms: int,
    lifetime_ms: int,
) -> SessionCertificate:
    """Sign `session` as `nick`'s session key in room `room_id`, valid for `lifetime_ms`
    from `created_ms`."""
    if not 0 < lifetime_ms <= MAX_CERT_LIFETIME_MS:
        raise ValueError(f"a certificate lives 1 ms to {MAX_CERT_LIFETIME_MS} ms")
    fields = (
        nick,
        identity.fingerprint,
        room_id,
        created_ms,
        created_ms + lifetime_ms,
        session.public_der,
    )
    signature = prim.pss_sign(identity.private_key, CERT_CONTEXT + _body(*fields))
    return SessionCertificate(*fields, signature)


def check_certificate(
    cert: SessionCertificate,
    *,
    nick: str,
    identity_key: rsa.RSAPublicKey,
    identity_fingerprint: bytes,
    room_id: bytes,
    now_ms: int,
) -> rsa.RSAPublicKey:
    """Return the session key `cert` certifies, or raise BadCertificate.

    `identity_key` and `identity_fingerprint` must be the key the caller trusts for
    `nick` (its pin), never one taken from the certificate: a certificate that a
    stranger signed names the stranger's fingerprint and is refused here. `room_id`
    is the caller's own room: a certificate for another is refused.
    """
    key = verify_certificate(
        cert,
        nick=nick,
        identity_key=identity_key,
        identity_fingerprint=identity_fingerprint,
        room_id=room_id,
    )
    check_validity(cert, now_ms=now_ms)
    return key


def verify_certificate(
    cert: SessionCertificate,
    *,
    nick: str,
    identity_key: rsa.RSAPublicKey,
    identity_fingerprint: bytes,
    room_id: bytes,
) -> rsa.RSAPublicKey:
    """`check_certificate` without the clock: everything but whether it is valid *now*.

    For a party with no date it can trust (the broker runs on a monotonic clock and is
    not trusted with dates anyway), and for one that checks the date apart, at the
    moment it seals (`check_validity`).
    """
    if nick_key(cert.nick) != nick_key(nick):
        raise BadCertificate(f"a certificate for {cert.nick}, not {nick}")
    if cert.identity_fingerprint != identity_fingerprint:
        raise BadCertificate("certified by another identity key than the pinned one")
    verify_in_room(
        cert, identity_key, room_id, context=CERT_CONTEXT, error=BadCertificate, what="certificate"
    )
    if cert.expires_ms - cert.created_ms > MAX_CERT_LIFETIME_MS:
        raise BadCertificate("the certificate claims too long a life")
    if cert.expires_ms <= cert.created_ms:
        raise BadCertificate("the certificate expires before it starts")
    try:
        return load_public_key(cert.session_der)
    except BadPublicKey as exc:
        raise BadCertificate(f"the certified session key is unusable: {exc}") from None


def check_validity(cert: SessionCertificate, *, now_ms: int) -> None:
    """Raise BadCertificate unless `cert` is valid at `now_ms` (give or take CLOCK_SKEW_MS).

    Cheap (two comparisons): a sender checks it at every seal, the signature only once.
    """
    if now_ms + CLOCK_SKEW_MS < cert.created_ms:
        raise BadCertificate("the certificate is from the future")
    if now_ms - CLOCK_SKEW_MS > cert.expires_ms:
        raise BadCertificate("the certificate has expired")


def _body(
    nick: str, identity_fp: bytes, room: bytes, created_ms: int, expires_ms: int, der: bytes
) -> bytes:
    return b"".join(
        [
            CERT_VERSION.to_bytes(1, "big"),
            short_string(nick),
            identity_fp,
            room,
            _TIMES.pack(created_ms, expires_ms),
            len(der).to_bytes(2, "big"),
            der,
        ]
    )
