"""The cryptographic primitives, each pinned to one choice of parameters.

Private on purpose: callers use `seal` and `open_delivery` (and `sign_proof` /
`verify_proof` in `proof`), which apply them in the only safe order. Every padding
choice zchat makes is here, and every constant below is part of the wire format.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidSignature
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from zchat.envelope.errors import BadSignature, DecryptionFailed
from zchat.envelope.limits import FERNET_KEY_BYTES

# Domain separation: a signature or a wrapped key made for one purpose can never be
# taken for another, whatever the bytes after the prefix.
# Each names the protocol version, so that nothing signed under version 2 passes for
# version 3. `ROOM_CONTEXT` is no signature context but a hash prefix (`envelope.room`).
SIGNATURE_CONTEXT = b"zchat/3 envelope signature\x00"
WRAP_CONTEXT = b"zchat/3 wrapped key\x00"
PROOF_CONTEXT = b"zchat/3 hello proof\x00"
CERT_CONTEXT = b"zchat/3 session key certificate\x00"
MEMBERSHIP_CONTEXT = b"zchat/3 membership\x00"
ROOM_CONTEXT = b"zchat/3 room\x00"

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def new_message_key() -> bytes:
    return os.urandom(FERNET_KEY_BYTES)


def signed_bytes(header: bytes, token: bytes) -> bytes:
    # The header's length goes in first so that no header/token split is ambiguous.
    return SIGNATURE_CONTEXT + len(header).to_bytes(4, "big") + header + token


def sign(private_key: rsa.RSAPrivateKey, header: bytes, token: bytes) -> bytes:
    return pss_sign(private_key, signed_bytes(header, token))


def verify(public_key: rsa.RSAPublicKey, signature: bytes, header: bytes, token: bytes) -> None:
    pss_verify(public_key, signature, signed_bytes(header, token))


def pss_sign(private_key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """Sign `data`, which must already start with one of the contexts above."""
    return private_key.sign(data, _PSS, hashes.SHA256())


def pss_verify(public_key: rsa.RSAPublicKey, signature: bytes, data: bytes) -> None:
    try:
        public_key.verify(signature, data, _PSS, hashes.SHA256())
    except InvalidSignature:
        raise BadSignature("signature does not verify") from None


def _oaep(msg_id: bytes, sender_fp: bytes, recipient: str, key_fp: bytes) -> padding.OAEP:
    # The OAEP label binds a wrapped key to its message, its sender, its recipient and
    # the session key it is wrapped to: it cannot be lifted into another envelope or
    # handed to another member, nobody who re-signs a message under their own name (a
    # broker with a member in league) can make it open as theirs, and the whole
    # fingerprint stands behind the short key id the header carries.
    label = WRAP_CONTEXT + msg_id + sender_fp + key_fp + recipient.encode("ascii")
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label)


def wrap(
    public_key: rsa.RSAPublicKey,
    key: bytes,
    msg_id: bytes,
    sender_fp: bytes,
    recipient: str,
    key_fp: bytes,
) -> bytes:
    return public_key.encrypt(key, _oaep(msg_id, sender_fp, recipient, key_fp))


def unwrap(
    private_key: rsa.RSAPrivateKey,
    wrapped: bytes,
    msg_id: bytes,
    sender_fp: bytes,
    recipient: str,
    key_fp: bytes,
) -> bytes:
    try:
        key = private_key.decrypt(wrapped, _oaep(msg_id, sender_fp, recipient, key_fp))
    except ValueError:
        raise DecryptionFailed("cannot decrypt") from None
    if len(key) != FERNET_KEY_BYTES:
        raise DecryptionFailed("cannot decrypt")
    return key


def encrypt(key: bytes, plaintext: bytes, now: int) -> bytes:
    return Fernet(base64.urlsafe_b64encode(key)).encrypt_at_time(plaintext, now)


def decrypt(key: bytes, token: bytes) -> bytes:
    try:
        return Fernet(base64.urlsafe_b64encode(key)).decrypt(token)
    except InvalidToken:
        raise DecryptionFailed("cannot decrypt") from None
