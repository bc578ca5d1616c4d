"""Every size and count limit of the zchat wire format, in one place.

Parsers check these *before* doing any work proportional to the input, so a hostile
frame costs a length comparison, not an allocation or an RSA operation.
"""

from typing import Final

#: The envelope format version carried in every header (byte 0). Version 2 names, for
#: each recipient, the session key its message key is wrapped to.
ENVELOPE_VERSION: Final = 2

#: Nicknames: 1-32 ASCII letters, digits, "_", "-", ".". See `envelope.nick`.
NICK_MIN_LEN: Final = 1
NICK_MAX_LEN: Final = 32

#: A message names at most this many recipients, and a room holds at most this many peers.
MAX_RECIPIENTS: Final = 256
MAX_ROOM: Final = 256

MSG_ID_BYTES: Final = 16  # 128 random bits
FINGERPRINT_BYTES: Final = 32  # SHA-256
FERNET_KEY_BYTES: Final = 32  # Fernet: 16 bytes signing key + 16 bytes AES key

#: Longest message text, in UTF-8 bytes. Senders refuse longer text; nobody truncates.
MAX_TEXT_BYTES: Final = 16 * 1024

#: A Fernet token for MAX_TEXT_BYTES is 21,944 bytes (base64 of version, time, IV,
#: padded ciphertext and HMAC); round up so the limit never bites a legal message.
MAX_TOKEN_BYTES: Final = 22 * 1024

#: RSA moduli zchat accepts: 2048 to 4096 bits. Wrapped keys and signatures are as long
#: as the modulus, so they are 256 to 512 bytes.
KEY_SIZES: Final = (2048, 3072, 4096)
MIN_KEY_BITS: Final = 2048
MAX_KEY_BITS: Final = 4096
MIN_RSA_BYTES: Final = MIN_KEY_BITS // 8
MAX_RSA_BYTES: Final = MAX_KEY_BITS // 8
#: The only RSA public exponent zchat accepts. OpenSSL bounds the exponent only above
#: 3072 bits, and a 2000-bit exponent makes each verify and wrap cost about 1.5 ms
#: instead of 23 us: one HELLO and PROOF would buy a stranger that much broker CPU.
RSA_PUBLIC_EXPONENT: Final = 65537

#: DER SubjectPublicKeyInfo of an RSA-4096 key is 550 bytes.
MAX_PUBLIC_KEY_DER: Final = 1024

#: The header names each recipient's session key by the first bytes of its fingerprint:
#: enough to pick among the few keys one recipient holds at once. The OAEP label binds
#: the whole fingerprint, so a short id gives nobody a collision to aim at.
KEY_ID_BYTES: Final = 8

#: Header: version, kind, id, time, seq, fingerprint, nick-len, nick, count, then
#: (len, nick, key id) for every recipient. See docs/PROTOCOL.md.
HEADER_FIXED_BYTES: Final = 1 + 1 + MSG_ID_BYTES + 8 + 8 + FINGERPRINT_BYTES + 1 + 2
MAX_HEADER_BYTES: Final = (
    HEADER_FIXED_BYTES + NICK_MAX_LEN + MAX_RECIPIENTS * (1 + NICK_MAX_LEN + KEY_ID_BYTES)
)

#: No legal frame is larger than this; the broker sets it as ZMQ_MAXMSGSIZE, which
#: libzmq enforces per frame before the frame reaches Python.
MAX_FRAME_BYTES: Final = 64 * 1024

#: An envelope is header, signature, token, then one wrapped key per recipient.
ENVELOPE_FIXED_FRAMES: Final = 3
MAX_ENVELOPE_FRAMES: Final = ENVELOPE_FIXED_FRAMES + MAX_RECIPIENTS
DELIVERY_FRAMES: Final = ENVELOPE_FIXED_FRAMES + 1

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
#: Certificate: version, nick, identity fingerprint, two times, key length and key,
#: then the identity key's signature.
CERT_FIXED_BYTES: Final = 1 + 1 + FINGERPRINT_BYTES + 8 + 8 + 2
MAX_CERT_BYTES: Final = CERT_FIXED_BYTES + NICK_MAX_LEN + MAX_PUBLIC_KEY_DER + MAX_RSA_BYTES

#: Vouches: a room name is 1 to this many ASCII bytes.
MAX_ROOM_ID_BYTES: Final = 64
VOUCH_FIXED_BYTES: Final = 1 + 1 + 1 + 2 * FINGERPRINT_BYTES + 8
MAX_VOUCH_BYTES: Final = VOUCH_FIXED_BYTES + MAX_ROOM_ID_BYTES + NICK_MAX_LEN + MAX_RSA_BYTES
#: Vouches travel sealed, several to a message; a message holds at most this many.
MAX_VOUCHES_PER_MESSAGE: Final = 16
