"""zchat's end-to-end envelope: pure functions and types, no sockets, no threads.

A message is encrypted once with a fresh Fernet key; that key is wrapped with RSA-OAEP
for each recipient; the sender signs with RSA-PSS. See docs/PROTOCOL.md for the bytes.
"""

from zchat.envelope.errors import (
    BadPublicKey,
    BadSignature,
    DecryptionFailed,
    EnvelopeError,
    IdentityError,
    InsecureKeyFile,
    MalformedEnvelope,
    MalformedKeyFile,
    NotForMe,
    PassphraseRequired,
    UnsupportedVersion,
    WrongPassphrase,
)
from zchat.envelope.frames import Delivery, Envelope
from zchat.envelope.header import Header, MessageKind
from zchat.envelope.keys import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    Identity,
    fingerprint,
    format_fingerprint,
    generate_identity,
    load_identity,
    load_or_create_identity,
    load_public_key,
    public_der,
    save_identity,
)
from zchat.envelope.nick import is_valid_nick, nick_key
from zchat.envelope.sealing import (
    Opened,
    Recipient,
    decrypt_verified,
    open_delivery,
    seal,
    verify_delivery,
)

__all__ = [
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "BadPublicKey",
    "BadSignature",
    "DecryptionFailed",
    "Delivery",
    "Envelope",
    "EnvelopeError",
    "Header",
    "Identity",
    "IdentityError",
    "InsecureKeyFile",
    "MalformedEnvelope",
    "MalformedKeyFile",
    "MessageKind",
    "NotForMe",
    "Opened",
    "PassphraseRequired",
    "Recipient",
    "UnsupportedVersion",
    "WrongPassphrase",
    "decrypt_verified",
    "fingerprint",
    "format_fingerprint",
    "generate_identity",
    "is_valid_nick",
    "load_identity",
    "load_or_create_identity",
    "load_public_key",
    "nick_key",
    "open_delivery",
    "public_der",
    "save_identity",
    "seal",
    "verify_delivery",
]
