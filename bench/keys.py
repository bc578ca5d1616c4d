"""The room's keys, generated once by the parent and left in the run's directory.

Generating 2048-bit RSA keys takes a while; the parent makes one per peer of the
largest room before anything is timed, and worker `index` of every room reads
`key_path(workdir, index)`, so the same key stands for the same seat in each room.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import Identity


def key_path(workdir: Path, index: int) -> Path:
    return workdir / f"key{index:02d}.pem"


def write_key(path: Path, identity: Identity) -> None:
    """Write the private key, readable by its owner only; never over an existing file."""
    pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def read_key(path: Path) -> Identity:
    pem = path.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return Identity(key)
