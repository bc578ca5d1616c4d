"""The proof of key: what a peer signs to show the broker it holds the key it says hello with.

The broker answers HELLO with a fresh nonce; the peer signs the nonce together with the
exact nickname and key bytes of that HELLO, and with the two CURVE keys of the
connection as the peer sees it (docs/PROTOCOL.md §3.4): the broker's public key it was
told to expect (`--broker-key`), and its own transport public key. The broker checks
them against its own key and the key the connection really came with, so a proof
relayed by a man in the middle, who holds neither, does not verify. Without CURVE both
are empty, and a relay remains possible (docs/SECURITY.md says what that gives).

The signature uses the same RSA-PSS parameters as an envelope signature, under its own
context string, so a proof can never pass for an envelope signature or the other way
round.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import _primitives as prim
from zchat.envelope.errors import BadSignature
from zchat.envelope.limits import CURVE_KEY_TEXT

PROOF_CONTEXT = prim.PROOF_CONTEXT


def proof_bytes(
    nonce: bytes,
    nick: bytes,
    public_der: bytes,
    *,
    broker_key: bytes = b"",
    transport_key: bytes = b"",
) -> bytes:
    """What a peer signs: context, nonce, the HELLO it answers, and the connection's keys."""
    for key in (broker_key, transport_key):
        if len(key) not in (0, CURVE_KEY_TEXT):
            raise ValueError("a CURVE key is 40 Z85 characters, or empty without CURVE")
    # Every variable part but the last carries its length, so no split is ambiguous.
    return b"".join(
        [
            PROOF_CONTEXT,
            nonce,
            bytes([len(nick)]),
            nick,
            bytes([len(broker_key)]),
            broker_key,
            bytes([len(transport_key)]),
            transport_key,
            public_der,
        ]
    )


def sign_proof(
    key: rsa.RSAPrivateKey,
    nonce: bytes,
    nick: bytes,
    public_der: bytes,
    *,
    broker_key: bytes = b"",
    transport_key: bytes = b"",
) -> bytes:
    """Sign the proof for this HELLO over a connection to `broker_key` from `transport_key`."""
    signed = proof_bytes(
        nonce, nick, public_der, broker_key=broker_key, transport_key=transport_key
    )
    return prim.pss_sign(key, signed)


def verify_proof(
    key: rsa.RSAPublicKey,
    signature: bytes,
    nonce: bytes,
    nick: bytes,
    public_der: bytes,
    *,
    broker_key: bytes = b"",
    transport_key: bytes = b"",
) -> bool:
    """Whether `signature` proves `key`'s holder answered this nonce for this HELLO, on
    a connection to the broker holding `broker_key`, from `transport_key`."""
    try:
        signed = proof_bytes(
            nonce, nick, public_der, broker_key=broker_key, transport_key=transport_key
        )
        prim.pss_verify(key, signature, signed)
    except (BadSignature, ValueError):
        return False
    return True
