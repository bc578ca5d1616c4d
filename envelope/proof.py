"""The proof of key: what a peer signs to show the broker it holds the key it says hello with.

The broker answers HELLO with a fresh nonce; the peer signs the nonce together with the
exact nickname and key bytes of that HELLO (docs/PROTOCOL.md §3.4). The signature uses
the same RSA-PSS parameters as an envelope signature, under its own context string, so a
proof can never pass for an envelope signature or the other way round.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import _primitives as prim
from zchat.envelope.errors import BadSignature

PROOF_CONTEXT = prim.PROOF_CONTEXT


def proof_bytes(nonce: bytes, nick: bytes, public_der: bytes) -> bytes:
    """What a peer signs: context, nonce, then the HELLO it answers."""
    # The nickname's length goes in first so that no nick/key split is ambiguous.
    return PROOF_CONTEXT + nonce + bytes([len(nick)]) + nick + public_der


def sign_proof(key: rsa.RSAPrivateKey, nonce: bytes, nick: bytes, public_der: bytes) -> bytes:
    return prim.pss_sign(key, proof_bytes(nonce, nick, public_der))


def verify_proof(
    key: rsa.RSAPublicKey, signature: bytes, nonce: bytes, nick: bytes, public_der: bytes
) -> bool:
    """Whether `signature` proves `key`'s holder answered this nonce for this HELLO."""
    try:
        prim.pss_verify(key, signature, proof_bytes(nonce, nick, public_der))
    except BadSignature:
        return False
    return True
