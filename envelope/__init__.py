"""zchat's end-to-end envelope: pure functions and types, no sockets, no threads.

A message is encrypted once with a fresh Fernet key; that key is wrapped with RSA-OAEP
for each recipient; the sender signs with RSA-PSS a header that carries the Merkle tree
head over the recipients (`merkle`) and the room it is for (`room`). The proof of key a
peer gives the broker (`proof`) is signed here too, so every padding choice is made in
this package. See docs/PROTOCOL.md for the bytes.
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
    BadRecord,
    BadSignature,
    DecryptionFailed,
    EnvelopeError,
    IdentityError,
    InsecureKeyFile,
    MalformedEnvelope,
    MalformedKeyFile,
    NotForMe,
    PassphraseRequired,
    UnknownRecordType,
    UnknownSessionKey,
    UnsupportedVersion,
    WrongPassphrase,
    WrongRoom,
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
from zchat.envelope.membership import (
    MembershipRecord,
    RecordType,
    check_record,
    encode_records,
    make_record,
    make_vouch,
    parse_records,
    same_member,
)
from zchat.envelope.nick import is_valid_nick, nick_key
from zchat.envelope.proof import sign_proof, verify_proof
from zchat.envelope.recipients import Leaf
from zchat.envelope.room import DEFAULT_ROOM, is_valid_room, room_id
from zchat.envelope.sealing import (
    Opened,
    Recipient,
    decrypt_verified,
    decrypt_verified_many,
    open_delivery,
    reseal,
    seal,
    verify_delivery,
)

__all__ = [
    "DEFAULT_ROOM",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "BadCertificate",
    "BadPublicKey",
    "BadRecord",
    "BadSignature",
    "DecryptionFailed",
    "Delivery",
    "Envelope",
    "EnvelopeError",
    "Header",
    "Identity",
    "IdentityError",
    "InsecureKeyFile",
    "Leaf",
    "MalformedEnvelope",
    "MalformedKeyFile",
    "MembershipRecord",
    "MessageKind",
    "NotForMe",
    "Opened",
    "PassphraseRequired",
    "Recipient",
    "RecordType",
    "SessionCertificate",
    "SessionKey",
    "UnknownRecordType",
    "UnknownSessionKey",
    "UnsupportedVersion",
    "WrongPassphrase",
    "WrongRoom",
    "certify",
    "check_certificate",
    "check_record",
    "check_validity",
    "decrypt_verified",
    "decrypt_verified_many",
    "encode_records",
    "fingerprint",
    "format_fingerprint",
    "generate_identity",
    "generate_session_key",
    "is_valid_nick",
    "is_valid_room",
    "load_identity",
    "load_or_create_identity",
    "load_public_key",
    "make_record",
    "make_vouch",
    "nick_key",
    "open_delivery",
    "parse_records",
    "public_der",
    "reseal",
    "room_id",
    "same_member",
    "save_identity",
    "seal",
    "sign_proof",
    "verify_certificate",
    "verify_delivery",
    "verify_proof",
]
