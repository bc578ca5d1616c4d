"""Session keys, ours and the other members': what gives a room forward secrecy.

Every message key is wrapped to the recipient's *session key*, a short-lived RSA key
its identity key certifies (`zchat.envelope.certificate`), never to the identity key.
Someone who records the traffic and later steals an identity key finds nothing it
opens: the session keys the recordings were wrapped to are gone.

Ours (`KeyRing`): the current key, whose certificate went out in our last HELLO (or
REKEY, once the broker accepted it), and the keys it replaced, each kept for `grace`
seconds after its successor came in, so that what was already on the way to it (and
resends of that) still opens; then every reference to it is dropped. A key announced
in a REKEY is *proposed* until the broker's REKEYED naming us with it: the current key
stays current meanwhile (its grace has not begun), and a refused proposal is dropped.
Keys are made by the loop, off the event loop (about 40 ms each), and handed in: the
core stays sans-I/O.

Theirs (`CertifiedKey`): a member's session key, taken only from a certificate that
verifies under the member's *pinned* identity key, and sealed to only while that
certificate is valid at the moment of sealing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import (
    Recipient,
    SessionCertificate,
    SessionKey,
    check_validity,
    verify_certificate,
)
from zchat.envelope.errors import BadCertificate, MalformedEnvelope
from zchat.envelope.limits import MAX_CERT_LIFETIME_MS

#: How often a peer makes a new session key while connected (it also makes one at
#: every connection). An identity key stolen later opens none of the traffic; one of
#: these keys stolen *during* a session opens at most this long of it, plus the grace.
DEFAULT_ROTATE_EVERY: Final = 3600.0
#: How long a replaced key of ours is kept: long enough for what others sealed to it
#: before they heard of its successor (in flight, or resent after a broker restart).
DEFAULT_KEY_GRACE: Final = 120.0
#: Replaced keys kept at once, whatever their deadlines: a peer that reconnects over
#: and over (a flapping network) must not pile up keys.
MAX_RETIRED_KEYS: Final = 8
#: A certificate may be used for this many rotation periods after it was made, so a
#: rotation that comes late (a reconnect, a slow key) does not cut anyone off.
LIFETIME_PERIODS: Final = 2
#: The shortest certificate we make, whatever the rotation period (tests rotate fast).
MIN_LIFETIME_MS: Final = 1000


def certificate_lifetime_ms(rotate_every: float) -> int:
    """How long our certificates live, for a rotation every `rotate_every` seconds."""
    lifetime = int(LIFETIME_PERIODS * rotate_every * 1000)
    return min(max(lifetime, MIN_LIFETIME_MS), MAX_CERT_LIFETIME_MS)


@dataclass
class KeyRing:
    """Our session keys: the current one, and the replaced ones until their deadline."""

    grace: float = DEFAULT_KEY_GRACE
    current: SessionKey | None = None
    certificate: SessionCertificate | None = None
    #: When the current key came in (monotonic): the rotation schedule counts from it.
    installed_at: float = 0.0
    #: A key announced in a REKEY that the broker has not accepted yet, with its
    #: certificate as sent: it opens what comes to it, but the current key stays current.
    proposed: tuple[SessionKey, SessionCertificate, bytes] | None = None
    #: (key, drop it at), oldest first.
    _retired: deque[tuple[SessionKey, float]] = field(default_factory=deque)

    def install(self, key: SessionKey, certificate: SessionCertificate, now: float) -> None:
        """`key` is current from now on; the one it replaces is kept `grace` seconds."""
        if self.current is not None:
            self._retired.append((self.current, now + self.grace))
            while len(self._retired) > MAX_RETIRED_KEYS:
                self._retired.popleft()
        self.current, self.certificate, self.installed_at = key, certificate, now

    def propose(self, key: SessionKey, certificate: SessionCertificate) -> bytes:
        """`key` goes out in a REKEY; returns its certificate, encoded."""
        encoded = certificate.encode()
        self.proposed = (key, certificate, encoded)
        return encoded

    def accepted(self, encoded: bytes, now: float) -> bool:
        """The broker accepted the certificate `encoded`: if it is our proposal, that key
        is current from now on, and the grace of the one it replaces begins."""
        if self.proposed is None or self.proposed[2] != encoded:
            return False
        key, certificate, _ = self.proposed
        self.proposed = None
        self.install(key, certificate, now)
        return True

    def withdraw(self) -> None:
        """The proposal was refused, or superseded by a new connection: it is dropped."""
        self.proposed = None

    def expire(self, now: float) -> None:
        """Drop every replaced key whose grace ran out: after this, nothing here holds it."""
        while self._retired and self._retired[0][1] <= now:
            self._retired.popleft()

    def held(self) -> tuple[SessionKey, ...]:
        """Every key we can still open with: the current one first, then a proposed one
        (a broker may relay it to the others before it answers us), then the retired."""
        keys = tuple(key for key, _ in reversed(self._retired))
        if self.proposed is not None:
            keys = (self.proposed[0], *keys)
        return keys if self.current is None else (self.current, *keys)

    def fingerprints(self) -> tuple[bytes, ...]:
        """The fingerprints of `held()`: what a test checks for what is still held."""
        return tuple(key.fingerprint for key in self.held())


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    """A member's session key, its certificate verified under the member's pinned key."""

    certificate: SessionCertificate
    public_key: rsa.RSAPublicKey
    fingerprint: bytes

    @property
    def created_ms(self) -> int:
        return self.certificate.created_ms

    def usable(self, date_ms: int) -> bool:
        """Whether we may seal to it at `date_ms` (the certificate is valid then)."""
        try:
            check_validity(self.certificate, now_ms=date_ms)
        except BadCertificate:
            return False
        return True

    def recipient(self, nick: str) -> Recipient:
        return Recipient(nick, self.public_key, self.fingerprint)


def certified_key(
    certificate: SessionCertificate,
    *,
    nick: str,
    identity_key: rsa.RSAPublicKey,
    identity_fingerprint: bytes,
    room_id: bytes,
    date_ms: int | None,
) -> CertifiedKey:
    """The session key `certificate` certifies for `nick` in our room `room_id`, or raise
    BadCertificate.

    `identity_key` and `identity_fingerprint` must be the pinned ones. The date is
    checked when there is one; the sender checks it again whenever it seals.
    """
    key = verify_certificate(
        certificate,
        nick=nick,
        identity_key=identity_key,
        identity_fingerprint=identity_fingerprint,
        room_id=room_id,
    )
    if date_ms is not None:
        check_validity(certificate, now_ms=date_ms)
    return CertifiedKey(certificate, key, certificate.session_fingerprint)


def announced_key(
    raw: bytes,
    *,
    nick: str,
    identity_key: rsa.RSAPublicKey,
    identity_fingerprint: bytes,
    room_id: bytes,
    date_ms: int | None,
    previous: CertifiedKey | None,
    not_before_ms: int = 0,
) -> CertifiedKey:
    """The session key in a certificate a broker announced (`raw`), or BadCertificate.

    As `certified_key`, and also refused: no certificate at all, one that does not
    parse, and one older than `previous`, the key we hold for the member already, or
    than `not_before_ms`, the newest we accepted for this name and identity in this run,
    even if the member left since (a rollback to a key the member dropped, which a thief
    of that key would want, by a broker that announces a leave and a join in between).
    """
    if not raw:
        raise BadCertificate("none was announced")
    try:
        certificate = SessionCertificate.parse(raw)
    except MalformedEnvelope as exc:
        raise BadCertificate(str(exc)) from None
    key = certified_key(
        certificate,
        nick=nick,
        identity_key=identity_key,
        identity_fingerprint=identity_fingerprint,
        room_id=room_id,
        date_ms=date_ms,
    )
    if previous is not None and key.created_ms < previous.created_ms:
        raise BadCertificate("it is older than the one we have")
    if key.created_ms < not_before_ms:
        raise BadCertificate("it is older than one we had for this key")
    return key
