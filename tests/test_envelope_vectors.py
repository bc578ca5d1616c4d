"""Known answers: a stored envelope, sealed by fixed keys, must keep opening."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import (
    Envelope,
    Identity,
    NotForMe,
    SessionCertificate,
    SessionKey,
    UnknownSessionKey,
    check_certificate,
    open_delivery,
)
from zchat.envelope.limits import ENVELOPE_VERSION

VECTORS = Path(__file__).parent / "vectors"
VECTOR = json.loads((VECTORS / f"envelope_v{ENVELOPE_VERSION}.json").read_text())


def private(name: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((VECTORS / f"{name}.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def identity(name: str) -> Identity:
    return Identity(private(name))


def session(name: str) -> SessionKey:
    return SessionKey(private(f"{name}_session"))


def stored() -> Envelope:
    return Envelope.parse([bytes.fromhex(f) for f in VECTOR["frames"]])


def test_the_stored_header_parses_to_the_stored_fields() -> None:
    header = stored().header
    expected = VECTOR["header"]
    assert header.version == expected["version"] == ENVELOPE_VERSION
    assert header.kind == expected["kind"]
    assert header.msg_id.hex() == expected["msg_id"]
    assert header.timestamp_ms == expected["timestamp_ms"]
    assert header.seq == expected["seq"]
    assert header.sender == expected["sender"]
    assert header.sender_fingerprint.hex() == expected["sender_fingerprint"]
    assert list(header.recipients) == expected["recipients"]
    assert [k.hex() for k in header.key_ids] == expected["key_ids"]
    assert header.sender_fingerprint == identity("alice").fingerprint


@pytest.mark.parametrize(("index", "name"), [(0, "bob"), (1, "carol")])
def test_the_stored_envelope_opens_with_the_session_key_the_header_names(
    index: int, name: str
) -> None:
    assert stored().header.key_ids[index] == session(name).fingerprint[:8]
    opened = open_delivery(
        stored().delivery_for(index),
        me=name,
        keys=(session(name),),
        sender_key=identity("alice").public_key,
    )
    assert opened.plaintext.decode() == VECTOR["plaintext"]


@pytest.mark.parametrize(("index", "name"), [(0, "bob"), (1, "carol")])
def test_the_stored_envelope_does_not_open_with_the_identity_key(index: int, name: str) -> None:
    # Forward secrecy: whoever steals bob's identity key holds no key this names.
    with pytest.raises(UnknownSessionKey):
        open_delivery(
            stored().delivery_for(index),
            me=name,
            keys=(identity(name),),
            sender_key=identity("alice").public_key,
        )


@pytest.mark.parametrize("name", ["bob", "carol"])
def test_the_stored_certificates_certify_the_stored_session_keys(name: str) -> None:
    cert = SessionCertificate.parse(bytes.fromhex(VECTOR["certificates"][name]))
    assert cert.encode().hex() == VECTOR["certificates"][name]
    key = check_certificate(
        cert,
        nick=name,
        identity_key=identity(name).public_key,
        identity_fingerprint=identity(name).fingerprint,
        now_ms=cert.created_ms,
    )
    assert key.public_numbers() == session(name).private_key.public_key().public_numbers()


def test_the_stored_envelope_is_not_for_its_sender() -> None:
    with pytest.raises(NotForMe):
        open_delivery(
            stored().delivery_for(0),
            me="alice",
            keys=(identity("alice"),),
            sender_key=identity("alice").public_key,
        )


def test_the_stored_frames_reencode_byte_for_byte() -> None:
    env = stored()
    assert [f.hex() for f in env.frames()] == VECTOR["frames"]
    assert env.header.encode() == env.header_bytes
