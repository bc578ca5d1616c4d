"""Every size and count limit of the zchat wire format, in one place.

Parsers check these *before* doing any work proportional to the input, so a hostile
frame costs a length comparison, not an allocation or an RSA operation.

Everything that grows with the room is derived from one figure, `MAX_ROOM`: change it
and every bound below (header, frames, snapshot) follows, with the reason beside it.
"""

from typing import Final

#: The format version byte of every envelope header, session-key certificate and
#: membership record (byte 0 of each). Version 3 binds all three to a room and signs a
#: Merkle root over the recipients instead of listing them.
ENVELOPE_VERSION: Final = 3
CERT_VERSION: Final = 3
RECORD_VERSION: Final = 3

#: Nicknames: 1-32 ASCII letters, digits, "_", "-", ".". See `envelope.nick`.
NICK_MIN_LEN: Final = 1
NICK_MAX_LEN: Final = 32

#: A room holds at most this many members, the sender included.
MAX_ROOM: Final = 1000
#: A message goes to everyone in the room but its sender.
MAX_RECIPIENTS: Final = MAX_ROOM - 1
#: A direct message names every recipient in its signed header, so that each can be
#: shown who else got it; a /msg is to a few people, and this keeps the header small.
MAX_NAMED: Final = 16

MSG_ID_BYTES: Final = 16  # 128 random bits
FINGERPRINT_BYTES: Final = 32  # SHA-256
FERNET_KEY_BYTES: Final = 32  # Fernet: 16 bytes signing key + 16 bytes AES key
HASH_BYTES: Final = 32  # SHA-256: Merkle tree nodes, the room id

#: A room's name: 1 to this many printable ASCII characters (`envelope.room`).
MAX_ROOM_NAME_BYTES: Final = 64
#: What everything signed for one room carries: SHA-256 of its name and broker key.
ROOM_ID_BYTES: Final = HASH_BYTES
#: A CURVE public key as libzmq's socket options take it: 40 Z85 characters.
CURVE_KEY_TEXT: Final = 40

#: Longest message text, in UTF-8 bytes. Senders refuse longer text; nobody truncates.
MAX_TEXT_BYTES: Final = 16 * 1024

#: A Fernet token for MAX_TEXT_BYTES is 21,944 bytes (base64 of version, time, IV,
#: padded ciphertext and HMAC); round up so the limit never bites a legal message.
MAX_TOKEN_BYTES: Final = 22 * 1024

#: RSA moduli zchat accepts: exactly 2048, 3072 or 4096 bits. Wrapped keys and
#: signatures are as long as the modulus, so they are 256 to 512 bytes.
KEY_SIZES: Final = (2048, 3072, 4096)
MIN_KEY_BITS: Final = min(KEY_SIZES)
MAX_KEY_BITS: Final = max(KEY_SIZES)
MIN_RSA_BYTES: Final = MIN_KEY_BITS // 8
MAX_RSA_BYTES: Final = MAX_KEY_BITS // 8
#: The only RSA public exponent zchat accepts. OpenSSL bounds the exponent only above
#: 3072 bits, and a 2000-bit exponent makes each verify and wrap cost about 1.5 ms
#: instead of 23 us: one HELLO and PROOF would buy a stranger that much broker CPU.
RSA_PUBLIC_EXPONENT: Final = 65537

#: DER SubjectPublicKeyInfo of an RSA-4096 key is 550 bytes.
MAX_PUBLIC_KEY_DER: Final = 1024

#: A recipient's leaf names its session key by the first bytes of its fingerprint:
#: enough to pick among the few keys one recipient holds at once. The OAEP label binds
#: the whole fingerprint, so a short id gives nobody a collision to aim at.
KEY_ID_BYTES: Final = 8

#: Header (docs/PROTOCOL.md §2.2): version, kind, id, time, seq, sender fingerprint,
#: room id, sender length, count, root, named count; then the sender's nickname and,
#: for a direct message, up to MAX_NAMED (length, nickname).
HEADER_FIXED_BYTES: Final = (
    1 + 1 + MSG_ID_BYTES + 8 + 8 + FINGERPRINT_BYTES + ROOM_ID_BYTES + 1 + 2 + HASH_BYTES + 1
)
#: 694 bytes: no longer grows with the room, only with the names a /msg carries.
MAX_HEADER_BYTES: Final = HEADER_FIXED_BYTES + NICK_MAX_LEN + MAX_NAMED * (1 + NICK_MAX_LEN)

#: A recipient leaf: length, nickname, key id (the Merkle tree's leaf data).
MIN_LEAF_BYTES: Final = 1 + NICK_MIN_LEN + KEY_ID_BYTES
MAX_LEAF_BYTES: Final = 1 + NICK_MAX_LEN + KEY_ID_BYTES
#: SEND's `recipients` frame: every leaf, 40,959 bytes at most (under MAX_FRAME_BYTES).
MAX_RECIPIENTS_BYTES: Final = MAX_RECIPIENTS * MAX_LEAF_BYTES
#: DELIVER's `leaf` frame: the leaf's index (u16, so MAX_RECIPIENTS < 65,536), the leaf.
LEAF_INDEX_BYTES: Final = 2
#: An audit path has at most ceil(log2 n) hashes: 10 for 999 recipients, 320 bytes.
MAX_PATH_HASHES: Final = (MAX_RECIPIENTS - 1).bit_length()
MAX_PATH_BYTES: Final = MAX_PATH_HASHES * HASH_BYTES

#: No legal frame is larger than this; the broker sets it as ZMQ_MAXMSGSIZE, which
#: libzmq enforces per frame before the frame reaches Python.
MAX_FRAME_BYTES: Final = 64 * 1024

#: SEND: header, signature, token and recipients, then one wrapped key per recipient.
ENVELOPE_FIXED_FRAMES: Final = 4
MAX_ENVELOPE_FRAMES: Final = ENVELOPE_FIXED_FRAMES + MAX_RECIPIENTS
#: DELIVER: header, signature, token, leaf, path, wrapped key: the same for every room.
DELIVERY_FRAMES: Final = 6

#: Session keys (forward secrecy): every message key is wrapped to a short-lived RSA key
#: that the sender's identity key certifies. Always 2048 bits: they live an hour, and
#: generating one must not stall a connect (about 40 ms).
SESSION_KEY_BITS: Final = 2048
#: A certificate lives at most this long, whatever it claims: a stolen session key is
#: worth a week of traffic at worst, not forever.
MAX_CERT_LIFETIME_MS: Final = 7 * 24 * 3600 * 1000
#: Clocks disagree: a certificate created this far in the future, or expired this
#: recently, is still accepted.
CLOCK_SKEW_MS: Final = 5 * 60 * 1000
#: Certificate: version, nick length, identity fingerprint, room id, two times, key
#: length; then the nickname, the key and the identity key's signature.
CERT_FIXED_BYTES: Final = 1 + 1 + FINGERPRINT_BYTES + ROOM_ID_BYTES + 8 + 8 + 2
MAX_CERT_BYTES: Final = CERT_FIXED_BYTES + NICK_MAX_LEN + MAX_PUBLIC_KEY_DER + MAX_RSA_BYTES

#: Membership record (vouch or revocation): version, type, room id, nick length,
#: subject and signer fingerprints, time; then the nickname and the signature.
RECORD_FIXED_BYTES: Final = 1 + 1 + ROOM_ID_BYTES + 1 + 2 * FINGERPRINT_BYTES + 8
MAX_RECORD_BYTES: Final = RECORD_FIXED_BYTES + NICK_MAX_LEN + MAX_RSA_BYTES
#: Records travel sealed, several to a MEMBERSHIP message; a message holds at most this
#: many, so its plaintext is at most 1 + 16 x (2 + 651) = 10,449 bytes, under the text limit.
MAX_RECORDS_PER_MESSAGE: Final = 16
