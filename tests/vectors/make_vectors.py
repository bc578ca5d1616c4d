"""Regenerate the known-answer vectors. Run only when the wire format changes on purpose.

    python -m tests.vectors.make_vectors

The envelope is randomised (OAEP, PSS, Fernet IV), so a fresh run writes different
bytes; what the test checks is that the *stored* bytes keep opening to the stored
plaintext and header, so that an accidental format change fails the suite.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from zchat.envelope import MessageKind, Recipient, generate_identity, seal

HERE = Path(__file__).parent


def main() -> None:
    alice, bob, carol = (generate_identity(2048) for _ in range(3))
    for name, ident in (("alice", alice), ("bob", bob), ("carol", carol)):
        pem = ident.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (HERE / f"{name}.pem").write_bytes(pem)
    env = seal(
        "hello, bob and carol: ünïcödé ✓".encode(),
        sender=alice,
        sender_nick="alice",
        recipients=[Recipient("bob", bob.public_key), Recipient("carol", carol.public_key)],
        seq=42,
        kind=MessageKind.ROOM,
        now=1_764_000_000.123,
        msg_id=bytes(range(16)),
    )
    vector = {
        "desc": "alice to bob and carol, envelope version 1; keys in alice/bob/carol.pem",
        "plaintext": "hello, bob and carol: ünïcödé ✓",
        "header": {
            "version": 1,
            "kind": 1,
            "msg_id": bytes(range(16)).hex(),
            "timestamp_ms": 1_764_000_000_123,
            "seq": 42,
            "sender": "alice",
            "sender_fingerprint": alice.fingerprint.hex(),
            "recipients": ["bob", "carol"],
        },
        "frames": [f.hex() for f in env.frames()],
    }
    (HERE / "envelope_v1.json").write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
