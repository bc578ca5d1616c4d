"""The known-answer vectors in tests/vectors/, and the keys that made them, as tests read
them (docs/PROTOCOL.md §7)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import Identity

VECTORS = Path(__file__).parent.parent / "vectors"


@cache
def vector(name: str) -> dict[str, Any]:
    """The vector file `name`, parsed (once)."""
    loaded: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return loaded


def private(name: str) -> rsa.RSAPrivateKey:
    """The private key in `name`.pem beside the vectors."""
    key = serialization.load_pem_private_key((VECTORS / f"{name}.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def identity(name: str) -> Identity:
    return Identity(private(name))


def unhex(frames: list[str]) -> list[bytes]:
    return [bytes.fromhex(f) for f in frames]
