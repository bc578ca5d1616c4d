"""Identity keys: an RSA key pair in an identity directory, and public-key fingerprints.

The directory holds ``private_key.pem`` (PKCS#8) and ``public_key.pem``
(SubjectPublicKeyInfo), as in the original design, but created safely: the directory
0700, the private key 0600, and a private key that group or others can read is refused
outright, as ssh refuses one.

With a passphrase the private key is stored as encrypted PKCS#8 whose password is
derived with scrypt (about 100 ms and 64 MiB per guess). cryptography's own
`BestAvailableEncryption` runs PBKDF2 for only a few thousand rounds, which is cheap to
brute-force, and its PKCS#8 builder does not let us raise that, so scrypt runs first
and its parameters travel as RFC 7468 explanatory text above the PEM block::

    zchat-kdf: scrypt n=65536 r=8 p=1 salt=<base64>
    -----BEGIN ENCRYPTED PRIVATE KEY-----

The file is read through `envelope._files.read_secret_file` (no symbolic link, ours,
0600, at most `MAX_KEY_FILE_BYTES`), in a directory that is ours and that nobody else
can write in (`check_owned_directory`), and the scrypt parameters it names are bounded
before any work: whatever is in the file, loading it ends in an `Identity` or an
`IdentityError`, never in a traceback or an exhausted machine.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from zchat.envelope._files import (
    ExposedSecretFile,
    SecretFileRefused,
    check_owned_directory,
    read_secret_file,
)

# Re-exported (PEP 484's `as` form, which mypy --strict honours): code that imports it
# from here, where it was first written, keeps working.
from zchat.envelope._files import write_secret_file as write_secret_file  # noqa: PLC0414
from zchat.envelope.errors import (
    BadPublicKey,
    IdentityError,
    InsecureKeyFile,
    MalformedKeyFile,
    PassphraseRequired,
    WrongPassphrase,
)
from zchat.envelope.limits import (
    KEY_SIZES,
    MAX_PUBLIC_KEY_DER,
    RSA_PUBLIC_EXPONENT,
)

PRIVATE_KEY_FILE = "private_key.pem"
PUBLIC_KEY_FILE = "public_key.pem"

#: scrypt cost: n=2**16, r=8 takes about 0.1 s and 64 MiB on a laptop core.
SCRYPT_N = 2**16
SCRYPT_R = 8
SCRYPT_P = 1

#: The most a key file may ask of scrypt. The file names its own parameters, and scrypt
#: takes 128·n·r bytes of memory and time in proportion to n·r·p, so a corrupt or
#: planted file could otherwise ask for 4 GiB (n=2**22, r=8: a MemoryError) or hours.
#: The bounds leave headroom above what zchat writes (n=2**16, r=8, p=1: 64 MiB, 0.1 s)
#: for a future, costlier default: n and r may each grow 16 and 2 times, p 4 times,
#: but memory only 4 times, to 256 MiB, which any machine that runs zchat can lend.
MAX_SCRYPT_N: Final = 2**20
MAX_SCRYPT_R: Final = 16
MAX_SCRYPT_P: Final = 4
MAX_SCRYPT_MEMORY: Final = 256 * 2**20
#: A 4096-bit key, encrypted, with its zchat-kdf line, is about 3.4 KB of PEM.
MAX_KEY_FILE_BYTES: Final = 16 * 1024

_KDF_PREFIX: Final = b"zchat-kdf:"
# Digit counts are bounded so that no number is ever parsed from thousands of digits
# (int() refuses more than 4,300, with a ValueError of its own).
_KDF_LINE: Final = re.compile(
    rb"zchat-kdf: scrypt n=([0-9]{1,10}) r=([0-9]{1,10}) p=([0-9]{1,10}) "
    rb"salt=([A-Za-z0-9+/=]{1,256})\n"
)


@dataclass(frozen=True)
class Identity:
    """A private key together with what peers need to know about its public half."""

    private_key: rsa.RSAPrivateKey
    public_key: rsa.RSAPublicKey = field(init=False)
    public_der: bytes = field(init=False)
    fingerprint: bytes = field(init=False)

    def __post_init__(self) -> None:
        public = self.private_key.public_key()
        der = public_der(public)
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "public_der", der)
        object.__setattr__(self, "fingerprint", fingerprint(der))


def generate_identity(key_size: int = 2048) -> Identity:
    if key_size not in KEY_SIZES:
        raise ValueError(f"key size must be one of {KEY_SIZES}")
    return Identity(rsa.generate_private_key(RSA_PUBLIC_EXPONENT, key_size))


def public_der(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(der: bytes) -> bytes:
    """SHA-256 over the DER SubjectPublicKeyInfo: 32 bytes."""
    return hashlib.sha256(der).digest()


def format_fingerprint(fp: bytes) -> str:
    """The fingerprint as 13 groups of 4 base32 characters, easy to read aloud.

    All 256 bits are shown: a shortened fingerprint is a collision target.
    """
    text = base64.b32encode(fp).decode("ascii").rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def load_public_key(der: bytes) -> rsa.RSAPublicKey:
    """Load a peer's public key from DER: only RSA of 2048, 3072 or 4096 bits, e = 65537."""
    if len(der) > MAX_PUBLIC_KEY_DER:
        raise BadPublicKey("public key too large")
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # UnsupportedAlgorithm is no ValueError: well-formed DER naming an unknown
        # algorithm OID raises it, and it must not escape into the broker's loop.
        raise BadPublicKey("public key does not parse") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadPublicKey("public key is not RSA")
    # Exactly the sizes zchat makes: anything between (4095 bits, 2056) has no honest
    # use, and each accepted size is one more shape a parser must get right.
    if key.key_size not in KEY_SIZES:
        raise BadPublicKey(f"RSA key size {key.key_size} is not accepted (2048, 3072 or 4096)")
    if key.public_numbers().e != RSA_PUBLIC_EXPONENT:
        raise BadPublicKey(f"RSA public exponent must be {RSA_PUBLIC_EXPONENT}")
    # DER is canonical, so re-encoding must give back the same bytes; anything else
    # would let two byte strings (two fingerprints) stand for one key.
    if public_der(key) != der:
        raise BadPublicKey("public key is not canonical DER")
    return key


def load_or_create_identity(
    home: Path, passphrase: bytes | None = None, key_size: int = 2048
) -> tuple[Identity, bool]:
    """Load the identity in `home`, or create one there. Returns (identity, created)."""
    if (home / PRIVATE_KEY_FILE).exists():
        return load_identity(home, passphrase), False
    identity = generate_identity(key_size)
    save_identity(identity, home, passphrase)
    return identity, True


def save_identity(
    identity: Identity,
    home: Path,
    passphrase: bytes | None = None,
    *,
    scrypt_n: int = SCRYPT_N,
) -> None:
    """Write the key pair into `home` (created 0700); the private key is written 0600."""
    problem = scrypt_problem(scrypt_n, SCRYPT_R, SCRYPT_P)
    if problem:
        raise ValueError(f"scrypt parameters that load_identity would refuse: {problem}")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    if passphrase:
        salt = os.urandom(16)
        password = _derive(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
        preamble = (
            f"zchat-kdf: scrypt n={scrypt_n} r={SCRYPT_R} p={SCRYPT_P} "
            f"salt={base64.b64encode(salt).decode()}\n"
        ).encode()
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
        )
    else:
        preamble = b""
        encryption = serialization.NoEncryption()
    private_pem = preamble + identity.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = identity.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_secret_file(home / PRIVATE_KEY_FILE, private_pem)
    (home / PUBLIC_KEY_FILE).write_bytes(public_pem)


def load_identity(home: Path, passphrase: bytes | None = None) -> Identity:
    """The identity in `home`. Every way the file can be wrong is an `IdentityError`, and
    so is a directory that someone else could write in (and so replace the key)."""
    path = home / PRIVATE_KEY_FILE
    try:
        pem = read_secret_file(path, MAX_KEY_FILE_BYTES)
        check_owned_directory(home)
    except ExposedSecretFile as exc:
        if exc.path != path:
            raise IdentityError(f"identity directory {exc.path} {exc.problem}", home) from exc
        raise InsecureKeyFile(path, exc.problem, exc.mode) from exc
    except SecretFileRefused as exc:
        raise MalformedKeyFile(f"private key {path} {exc.problem}", path) from exc
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror}", path) from exc
    password = None
    if pem.startswith(_KDF_PREFIX):
        n, r, p, salt = _kdf_parameters(pem, path)
        if not passphrase:
            raise PassphraseRequired(f"{path} is protected by a passphrase", path)
        password = _derive(passphrase, salt, n, r, p)
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except TypeError as exc:  # encrypted without our preamble, or vice versa
        raise PassphraseRequired(f"{path} is encrypted in a way zchat cannot open", path) from exc
    except UnsupportedAlgorithm as exc:  # no ValueError: it would escape the next clause
        raise MalformedKeyFile(f"{path} holds a key of a kind zchat cannot read", path) from exc
    except ValueError as exc:
        if password is not None:
            raise WrongPassphrase(f"wrong passphrase for {path}", path) from exc
        raise MalformedKeyFile(f"{path} is not a PEM private key", path) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise MalformedKeyFile(f"{path} is not an RSA private key", path)
    try:  # the key peers will be given: refuse here what they would refuse there
        load_public_key(public_der(key.public_key()))
    except BadPublicKey as exc:
        raise MalformedKeyFile(f"{path} holds a key peers refuse: {exc}", path) from exc
    return Identity(key)


def scrypt_problem(n: int, r: int, p: int) -> str:
    """Why scrypt with these parameters is refused, or "" when it is not."""
    if n < 2 or n & (n - 1) or n > MAX_SCRYPT_N:
        return f"n={n} must be a power of two from 2 to {MAX_SCRYPT_N:,}"
    if not 1 <= r <= MAX_SCRYPT_R:
        return f"r={r} must be from 1 to {MAX_SCRYPT_R}"
    if not 1 <= p <= MAX_SCRYPT_P:
        return f"p={p} must be from 1 to {MAX_SCRYPT_P}"
    if n >= 2 ** (16 * r):  # RFC 7914, 2; OpenSSL refuses it (cryptography: a MemoryError)
        return f"n={n} must be below 2^{16 * r} when r={r}"
    if 128 * n * r > MAX_SCRYPT_MEMORY:
        mib = 128 * n * r // 2**20
        return f"n={n}, r={r} need {mib:,} MiB; the limit is {MAX_SCRYPT_MEMORY // 2**20} MiB"
    return ""


def _kdf_parameters(pem: bytes, path: Path) -> tuple[int, int, int, bytes]:
    """n, r, p and the salt from the zchat-kdf line, checked before any work."""
    match = _KDF_LINE.match(pem)
    if match is None:
        raise MalformedKeyFile(
            f"{path} starts with a zchat-kdf line that does not read "
            f"'zchat-kdf: scrypt n=N r=R p=P salt=BASE64'",
            path,
        )
    n, r, p = (int(g) for g in match.groups()[:3])
    problem = scrypt_problem(n, r, p)
    if problem:
        raise MalformedKeyFile(f"{path} has unusable scrypt parameters: {problem}", path)
    try:  # binascii.Error is a ValueError
        salt = base64.b64decode(match.group(4), validate=True)
    except ValueError as exc:
        raise MalformedKeyFile(
            f"{path} has unusable scrypt parameters: the salt is not base64", path
        ) from exc
    return n, r, p, salt


def _derive(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return base64.b64encode(Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase))
