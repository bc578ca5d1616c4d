"""The swarm's identity keys: made once, in parallel, and kept in the user's cache directory.

A swarm of 1,000 members needs 1,000 RSA-2048 identity keys (each its own: the broker
refuses one key under two nicknames). Making one takes 50-150 ms, so a first run
makes the missing ones on every core at once, and later runs read them back
(``platformdirs.user_cache_dir("zchat")/swarm-keys``, ``ZCHAT_SWARM_KEYS`` to move it).
They are benchmark keys: unencrypted, never used for anything else, and safe to delete.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import platformdirs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.bench.machine import cores
from zchat.envelope import Identity, generate_identity

KEYS_ENV = "ZCHAT_SWARM_KEYS"


def key_dir() -> Path:
    where = os.environ.get(KEYS_ENV)
    if where:
        return Path(where)
    return Path(platformdirs.user_cache_dir("zchat", appauthor=False)) / "swarm-keys"


def key_file(directory: Path, index: int) -> Path:
    return directory / f"{index:04d}.der"


def ensure_keys(directory: Path, count: int) -> int:
    """Make sure keys 0 .. count-1 exist in `directory`; return how many were made now."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    missing = [i for i in range(count) if not key_file(directory, i).exists()]
    if not missing:
        return 0
    workers = max(1, min(cores(), len(missing)))
    with ProcessPoolExecutor(workers) as pool:
        for index, der in zip(missing, pool.map(_new_key, missing, chunksize=8), strict=True):
            _write(key_file(directory, index), der)
    return len(missing)


def read_identity(directory: Path, index: int) -> Identity:
    der = key_file(directory, index).read_bytes()
    # Our own keys, made by `ensure_keys`: OpenSSL's consistency check (milliseconds
    # per key, so seconds for a swarm) would only re-check what we generated.
    key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey)
    return Identity(key)


def _new_key(index: int) -> bytes:
    del index  # one key per call: the pool maps over the missing indices
    return generate_identity(2048).private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, der: bytes) -> None:
    """Readable by its owner only; written under a temporary name and renamed, so an
    interrupted run never leaves half a key behind."""
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(der)
    temporary.replace(path)
