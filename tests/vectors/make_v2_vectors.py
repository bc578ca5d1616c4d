"""Write hello_v2.json: protocol-2 frames, written by version 2's own code.

Version negotiation (PROTOCOL.md §1.5) is tested against what the previous version
really sends and accepts, not against what this version believes it did. So this
script runs on the version-2 tree (commit 392af3f, the last of protocol 2), with
its package on the path instead of this one::

    git archive 392af3f | tar -x -C /tmp/v2
    mkdir -p /tmp/v2ns/zchat && cd /tmp/v2ns/zchat
    for d in envelope wire broker peer bench; do ln -s /tmp/v2/$d $d; done
    ln -s /tmp/v2/zchat/* .
    PYTHONPATH=/tmp/v2ns .venv/bin/python tests/vectors/make_v2_vectors.py

It records a version-2 HELLO (alice.pem, with a version-2 certificate), what a
version-2 broker answers a version-3 HELLO with, and which version refusal the
version-2 parser accepts, as it parsed it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.broker.core import Broker
from zchat.envelope import Identity, SessionKey, certify
from zchat.wire import protocol as p

HERE = Path(__file__).parent
V2_COMMIT = "392af3f3b6281b19d4c7f3646a91ebdf7d362b42"
CREATED_MS = 1_764_000_000_000
#: What a version-3 broker says in its refusal (broker.core): the version-2 parser
#: is shown to accept exactly these frames.
V3_REASON = "this broker speaks zchat protocol 3"


def _key(name: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((HERE / f"{name}.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _hex(frames: list[bytes]) -> list[str]:
    return [bytes(f).hex() for f in frames]


def main() -> None:
    assert p.PROTOCOL_TAG == b"ZCHAT2", "run this with the version-2 tree on PYTHONPATH"
    alice = Identity(_key("alice"))
    session = SessionKey(_key("bob_session"))  # any RSA key serves as a session key here
    cert = certify(alice, "alice", session, created_ms=CREATED_MS, lifetime_ms=3_600_000)
    hello = p.encode(p.Hello(b"alice", alice.public_der, cert.encode()))
    # A version-3 HELLO (tag, command, nick, key, certificate, room) to a version-2 broker.
    v3_hello = [b"ZCHAT3", b"\x01", b"alice", alice.public_der, b"certificate", b"zchat"]
    broker = Broker(random=os.urandom)
    (answer,) = broker.handle(b"c1", v3_hello, 0.0)
    refusal = [b"ZCHAT2", b"\x13", b"\x03", V3_REASON.encode()]
    parsed = p.parse_from_broker(refusal)
    assert isinstance(parsed, p.Refuse)
    vectors = {
        "desc": (
            f"protocol-2 frames written by version 2's code (commit {V2_COMMIT[:7]}, by "
            "tests/vectors/make_v2_vectors.py): its HELLO, its broker's answer to a "
            "version-3 HELLO, and a version refusal its parser accepts"
        ),
        "commit": V2_COMMIT,
        "hello": {
            "desc": "alice (alice.pem) says HELLO as version 2 did: tag, command, nick, "
            "key, certificate (version 2, no room)",
            "frames": _hex(hello),
        },
        "broker_answer_to_v3_hello": {
            "desc": "a version-2 broker's answer to a version-3 HELLO (its core, as it ran)",
            "hello": _hex(v3_hello),
            "frames": _hex(answer.frames),
        },
        "accepted_refusal": {
            "desc": "frames version 2's parse_from_broker accepts as REFUSE "
            "UNSUPPORTED_VERSION, and what it made of them",
            "frames": _hex(refusal),
            "parsed_code": int(parsed.code),
            "parsed_reason": parsed.reason,
        },
    }
    (HERE / "hello_v2.json").write_text(json.dumps(vectors, indent=2) + "\n")


if __name__ == "__main__":
    main()
