"""zchat's end-to-end envelope: pure functions and types, no sockets, no threads.

A message is encrypted once with a fresh Fernet key; that key is wrapped with RSA-OAEP
for each recipient; the sender signs with RSA-PSS. The proof of key a peer gives the
broker (`proof`) is signed here too, so every padding choice is made in this package.
See docs/PROTOCOL.md for the bytes.
"""

from zchat.envelope.certificate import (
    SessionCertificate,
    SessionKey,
    certify,
    check_certificate,
    check_validity,
    generate_session_key,
    verify_certificate,
)
from zchat.envelope.errors import (
    BadCertificate,
    BadPublicKey,
    BadSignature,
    BadVouch,
    DecryptionFailed,
    EnvelopeError,
    IdentityError,
    InsecureKeyFile,
    MalformedEnvelope,
    MalformedKeyFile,
    NotForMe,
    PassphraseRequired,
    UnknownSessionKey,
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
from zchat.envelope.proof import sign_proof, verify_proof
from zchat.envelope.sealing import (
    Opened,
    Recipient,
    decrypt_verified,
    open_delivery,
    reseal,
    seal,
    verify_delivery,
)
from zchat.envelope.vouch import (
    Vouch,
    check_vouch,
    encode_vouches,
    is_valid_room,
    make_vouch,
    parse_vouches,
    same_member,
)

__all__ = [
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "BadCertificate",
    "BadPublicKey",
    "BadSignature",
    "BadVouch",
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
    "SessionCertificate",
    "SessionKey",
    "UnknownSessionKey",
    "UnsupportedVersion",
    "Vouch",
    "WrongPassphrase",
    "certify",
    "check_certificate",
    "check_validity",
    "check_vouch",
    "decrypt_verified",
    "encode_vouches",
    "fingerprint",
    "format_fingerprint",
    "generate_identity",
    "generate_session_key",
    "is_valid_nick",
    "is_valid_room",
    "load_identity",
    "load_or_create_identity",
    "load_public_key",
    "make_vouch",
    "nick_key",
    "open_delivery",
    "parse_vouches",
    "public_der",
    "reseal",
    "same_member",
    "save_identity",
    "seal",
    "sign_proof",
    "verify_certificate",
    "verify_delivery",
    "verify_proof",
]
