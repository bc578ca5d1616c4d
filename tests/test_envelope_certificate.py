"""Session-key certificates: only the pinned identity can certify, and only for a while."""

from __future__ import annotations

import contextlib
import dataclasses
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zchat.envelope import (
    BadCertificate,
    Identity,
    MalformedEnvelope,
    SessionCertificate,
    SessionKey,
    UnsupportedVersion,
    certify,
    check_certificate,
    generate_session_key,
    room_id,
)
from zchat.envelope import _primitives as prim
from zchat.envelope.certificate import CERT_CONTEXT
from zchat.envelope.limits import CLOCK_SKEW_MS, MAX_CERT_LIFETIME_MS

NOW = 1_800_000_000_000
HOUR = 3600 * 1000
ROOM = room_id("general")


@cache
def session() -> SessionKey:
    return generate_session_key()


def cert_for(
    alice: Identity, nick: str = "alice", *, room: bytes = ROOM, **kw: int
) -> SessionCertificate:
    times = {"created_ms": NOW, "lifetime_ms": HOUR} | kw
    return certify(alice, nick, session(), room_id=room, **times)


def check(
    cert: SessionCertificate,
    who: Identity,
    nick: str = "alice",
    now: int = NOW,
    room: bytes = ROOM,
) -> None:
    check_certificate(
        cert,
        nick=nick,
        identity_key=who.public_key,
        identity_fingerprint=who.fingerprint,
        room_id=room,
        now_ms=now,
    )


def test_a_certificate_from_the_pinned_identity_yields_the_session_key(alice: Identity) -> None:
    cert = cert_for(alice)
    key = check_certificate(
        cert,
        nick="Alice",  # nicknames compare case-insensitively
        identity_key=alice.public_key,
        identity_fingerprint=alice.fingerprint,
        room_id=ROOM,
        now_ms=NOW + HOUR // 2,
    )
    assert key.public_numbers() == session().private_key.public_key().public_numbers()
    assert cert.session_fingerprint == session().fingerprint


def test_a_certificate_round_trips_through_its_bytes(alice: Identity) -> None:
    cert = cert_for(alice)
    assert SessionCertificate.parse(cert.encode()) == cert


def test_a_certificate_signed_by_another_identity_is_refused(
    alice: Identity, bob: Identity
) -> None:
    # Bob certifies a key under Alice's name: what a broker with a key of its own does.
    forged = cert_for(bob, "alice")
    with pytest.raises(BadCertificate, match="another identity"):
        check(forged, alice)
    # Even claiming Alice's fingerprint, the signature is Bob's.
    claimed = dataclasses.replace(forged, identity_fingerprint=alice.fingerprint)
    with pytest.raises(BadCertificate, match="does not verify"):
        check(claimed, alice)


def test_a_certificate_checked_against_a_changed_key_is_refused(
    alice: Identity, bob: Identity
) -> None:
    # Alice's genuine certificate, but we pinned another key for "alice".
    with pytest.raises(BadCertificate):
        check(cert_for(alice), bob)


def test_a_certificate_for_another_nickname_is_refused(alice: Identity) -> None:
    with pytest.raises(BadCertificate, match="not mallory"):
        check(cert_for(alice, "alice"), alice, nick="mallory")


def test_a_certificate_for_another_room_is_refused(alice: Identity) -> None:
    """bob in "general" and "exec" with one identity: his "general" session key must
    not be taken for an "exec" one (a message for "exec" sealed to it would open in
    "general"), nor one room's key on one broker for that room on another."""
    cert = cert_for(alice, room=room_id("exec"))
    with pytest.raises(BadCertificate, match="another room"):
        check(cert, alice)
    with pytest.raises(BadCertificate, match="another room"):
        check(cert_for(alice), alice, room=room_id("general", b"K" * 40))
    check(cert, alice, room=room_id("exec"))


def test_a_certificate_of_another_version_is_unsupported(alice: Identity) -> None:
    raw = bytearray(cert_for(alice).encode())
    raw[0] = 2
    with pytest.raises(UnsupportedVersion) as info:
        SessionCertificate.parse(bytes(raw))
    assert (info.value.version, info.value.what) == (2, "certificate")


@pytest.mark.parametrize(
    "field", ["nick", "room_id", "created_ms", "expires_ms", "session_der", "identity_fingerprint"]
)
def test_every_certified_field_is_covered_by_the_signature(
    alice: Identity, bob: Identity, field: str
) -> None:
    cert = cert_for(alice)
    changed = {
        "nick": "alicf",
        "room_id": b"\x09" * 32,
        "created_ms": cert.created_ms - 1,
        "expires_ms": cert.expires_ms + 1,
        "session_der": generate_session_key().public_der,
        "identity_fingerprint": bob.fingerprint,
    }[field]
    tampered = dataclasses.replace(cert, **{field: changed})
    with pytest.raises(BadCertificate):
        check(tampered, alice, nick=tampered.nick, room=tampered.room_id)


def test_an_expired_certificate_is_refused_after_the_clock_skew(alice: Identity) -> None:
    cert = cert_for(alice)
    check(cert, alice, now=cert.expires_ms + CLOCK_SKEW_MS)  # still within the skew
    with pytest.raises(BadCertificate, match="expired"):
        check(cert, alice, now=cert.expires_ms + CLOCK_SKEW_MS + 1)


def test_a_certificate_from_the_future_is_refused(alice: Identity) -> None:
    cert = cert_for(alice, created_ms=NOW + CLOCK_SKEW_MS + 1)
    with pytest.raises(BadCertificate, match="future"):
        check(cert, alice, now=NOW)


def test_nobody_can_certify_for_longer_than_the_limit(alice: Identity) -> None:
    with pytest.raises(ValueError, match="certificate lives"):
        cert_for(alice, lifetime_ms=MAX_CERT_LIFETIME_MS + 1)


def test_the_signature_is_domain_separated(alice: Identity) -> None:
    # The same body signed without the context (as another kind of statement would
    # be) does not verify as a certificate.
    cert = cert_for(alice)
    for context in (prim.MEMBERSHIP_CONTEXT, b"zchat/2 session key certificate\x00"):
        other = prim.pss_sign(alice.private_key, context + cert.body())
        assert context != CERT_CONTEXT
        with pytest.raises(BadCertificate):
            check(dataclasses.replace(cert, signature=other), alice)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_certificate_parsing_never_raises_anything_but_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedEnvelope):
        SessionCertificate.parse(data)


def test_every_truncation_of_a_certificate_is_refused(alice: Identity) -> None:
    raw = cert_for(alice).encode()
    for cut in range(len(raw) - 255):  # shorter than body + the smallest signature
        with pytest.raises(MalformedEnvelope):
            SessionCertificate.parse(raw[:cut])
