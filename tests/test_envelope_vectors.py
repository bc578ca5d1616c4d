"""Known answers: a stored envelope, sealed by fixed keys, must keep opening."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import Envelope, Identity, NotForMe, open_delivery

VECTORS = Path(__file__).parent / "vectors"


def identity(name: str) -> Identity:
    key = serialization.load_pem_private_key((VECTORS / f"{name}.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return Identity(key)


VECTOR = json.loads((VECTORS / "envelope_v1.json").read_text())


def stored() -> Envelope:
    return Envelope.parse([bytes.fromhex(f) for f in VECTOR["frames"]])


def test_the_stored_header_parses_to_the_stored_fields() -> None:
    header = stored().header
    expected = VECTOR["header"]
    assert header.version == expected["version"]
    assert header.kind == expected["kind"]
    assert header.msg_id.hex() == expected["msg_id"]
    assert header.timestamp_ms == expected["timestamp_ms"]
    assert header.seq == expected["seq"]
    assert header.sender == expected["sender"]
    assert header.sender_fingerprint.hex() == expected["sender_fingerprint"]
    assert list(header.recipients) == expected["recipients"]
    assert header.sender_fingerprint == identity("alice").fingerprint


@pytest.mark.parametrize(("index", "name"), [(0, "bob"), (1, "carol")])
def test_the_stored_envelope_still_opens(index: int, name: str) -> None:
    opened = open_delivery(
        stored().delivery_for(index),
        me=name,
        identity=identity(name),
        sender_key=identity("alice").public_key,
    )
    assert opened.plaintext.decode() == VECTOR["plaintext"]


def test_the_stored_envelope_is_not_for_its_sender() -> None:
    with pytest.raises(NotForMe):
        open_delivery(
            stored().delivery_for(0),
            me="alice",
            identity=identity("alice"),
            sender_key=identity("alice").public_key,
        )


def test_the_stored_frames_reencode_byte_for_byte() -> None:
    env = stored()
    assert [f.hex() for f in env.frames()] == VECTOR["frames"]
    assert env.header.encode() == env.header_bytes
