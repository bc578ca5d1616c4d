"""Regenerate the known-answer vectors. Run only when the wire format changes on purpose.

    python -m tests.vectors.make_vectors

Identity keys (alice/bob/carol.pem) are kept when present; session keys
(bob_session.pem, carol_session.pem) and the certificates for them are made afresh.
The envelope is randomised (OAEP, PSS, Fernet IV), so a fresh run writes different
bytes; what the test checks is that the *stored* bytes keep opening to the stored
plaintext and header, so that an accidental format change fails the suite.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import (
    Identity,
    MessageKind,
    Recipient,
    SessionKey,
    certify,
    generate_identity,
    generate_session_key,
    seal,
)
from zchat.envelope.limits import ENVELOPE_VERSION

HERE = Path(__file__).parent
CREATED_MS = 1_764_000_000_000
LIFETIME_MS = 3600 * 1000


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


def main() -> None:
    alice, bob, carol = (_identity(n) for n in ("alice", "bob", "carol"))
    sessions = {"bob": _session("bob"), "carol": _session("carol")}
    certs = {
        name: certify(ident, name, sessions[name], created_ms=CREATED_MS, lifetime_ms=LIFETIME_MS)
        for name, ident in (("bob", bob), ("carol", carol))
    }
    env = seal(
        "hello, bob and carol: ünïcödé ✓".encode(),
        sender=alice,
        sender_nick="alice",
        recipients=[
            Recipient(n, sessions[n].private_key.public_key(), sessions[n].fingerprint)
            for n in ("bob", "carol")
        ],
        seq=42,
        kind=MessageKind.ROOM,
        now=1_764_000_000.123,
        msg_id=bytes(range(16)),
    )
    vector = {
        "desc": (
            f"alice to bob and carol, envelope version {ENVELOPE_VERSION}, wrapped to their "
            "session keys; identity keys in alice/bob/carol.pem, session keys in "
            "bob_session.pem and carol_session.pem"
        ),
        "plaintext": "hello, bob and carol: ünïcödé ✓",
        "header": {
            "version": ENVELOPE_VERSION,
            "kind": 1,
            "msg_id": bytes(range(16)).hex(),
            "timestamp_ms": 1_764_000_000_123,
            "seq": 42,
            "sender": "alice",
            "sender_fingerprint": alice.fingerprint.hex(),
            "recipients": ["bob", "carol"],
            "key_ids": [env.header.key_ids[0].hex(), env.header.key_ids[1].hex()],
        },
        "certificates": {name: cert.encode().hex() for name, cert in certs.items()},
        "frames": [f.hex() for f in env.frames()],
    }
    out = HERE / f"envelope_v{ENVELOPE_VERSION}.json"
    out.write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
