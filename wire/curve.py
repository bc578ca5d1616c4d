"""The broker's CURVE key pair, and CURVE public keys as people pass them around.

The broker's state directory (default ``~/.local/share/zchat/broker``, or
``--curve-dir`` / ``ZCHAT_BROKER_HOME``) holds two one-line Z85 files::

    curve_secret.key   the secret key: directory 0700, file 0600
    curve_public.key   the public key, to give to peers (``zchat peer --broker-key FILE``)

The pair is created once, on the first ``zchat broker --curve``, and loaded from then
on: a broker whose key changed is, to its peers, another broker, and they refuse it.
The secret gets the care of an identity key, through the same code
(`envelope._files`): written through a fresh 0600 file and renamed into place, and
refused, as ssh refuses one, when someone else could read or replace it (a group or
other permission bit, another owner, a symbolic link), checked on the open file. The
public key is derived from the secret on every load, so a stale or edited public file
cannot disagree with it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import platformdirs
import zmq
from zmq.utils import z85

from zchat.envelope._files import (
    ExposedSecretFile,
    SecretFileRefused,
    read_secret_file,
    write_secret_file,
)

SECRET_FILE: Final = "curve_secret.key"  # noqa: S105 (a file name, not a secret)
PUBLIC_FILE: Final = "curve_public.key"
#: A CURVE key is 32 bytes, which Z85 writes as 40 characters.
Z85_KEY_LENGTH: Final = 40
#: The secret file holds one key and a newline; anything much larger is not one.
MAX_SECRET_FILE_BYTES: Final = 1024
_Z85_VALUE: Final = {c: i for i, c in enumerate(z85.Z85CHARS)}


class CurveKeyError(Exception):
    """The broker's CURVE key files cannot be used; the message says why, for people."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class InsecureCurveKey(CurveKeyError):
    """Someone else could read or replace the secret key file; `problem` says how."""

    def __init__(self, path: Path, problem: str, mode: int | None = None) -> None:
        super().__init__(f"CURVE secret key {path} {problem}", path)
        self.mode = mode


@dataclass(frozen=True, slots=True)
class CurvePair:
    """A CURVE key pair, both halves Z85-encoded as libzmq's socket options take them."""

    public: bytes
    secret: bytes


def default_broker_home() -> Path:
    return Path(platformdirs.user_data_dir("zchat", appauthor=False)) / "broker"


def is_z85_key(text: bytes) -> bool:
    """Whether `text` is a Z85-encoded 32-byte CURVE key (40 characters)."""
    if len(text) != Z85_KEY_LENGTH or not all(c in _Z85_VALUE for c in text):
        return False
    # Five characters carry one 32-bit word; "#####" and the like overflow it.
    for i in range(0, Z85_KEY_LENGTH, 5):
        word = 0
        for c in text[i : i + 5]:
            word = word * 85 + _Z85_VALUE[c]
        if word >= 2**32:
            return False
    return True


def load_or_create(home: Path) -> tuple[CurvePair, bool]:
    """Load the broker's key pair from `home`, or create it there. Returns (pair, created)."""
    if (home / SECRET_FILE).exists():
        return load(home), False
    public, secret = zmq.curve_keypair()
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        home.chmod(0o700)
        write_secret_file(home / SECRET_FILE, secret + b"\n")
        (home / PUBLIC_FILE).write_bytes(public + b"\n")
    except OSError as exc:
        raise CurveKeyError(f"cannot write the CURVE key in {home}: {exc.strerror}", home) from exc
    return CurvePair(public, secret), True


def load(home: Path) -> CurvePair:
    path = home / SECRET_FILE
    try:
        secret = read_secret_file(path, MAX_SECRET_FILE_BYTES).strip()
    except ExposedSecretFile as exc:
        raise InsecureCurveKey(path, exc.problem, exc.mode) from exc
    except SecretFileRefused as exc:
        raise CurveKeyError(f"CURVE secret key {path} {exc.problem}", path) from exc
    except OSError as exc:
        raise CurveKeyError(f"cannot read {path}: {exc.strerror}", path) from exc
    if not is_z85_key(secret):
        raise CurveKeyError(f"{path} does not hold a Z85 CURVE secret key", path)
    public = zmq.curve_public(secret)
    # Keep the file peers are pointed at in step with the secret that is in use.
    public_path = home / PUBLIC_FILE
    with contextlib.suppress(OSError):
        if public_path.read_bytes().strip() == public:
            return CurvePair(public, secret)
    with contextlib.suppress(OSError):
        public_path.write_bytes(public + b"\n")
    return CurvePair(public, secret)


def read_public_key(value: str) -> bytes:
    """A broker public key given by a person: the Z85 key itself, or a file holding it.

    Raises ValueError with a message for people when it is neither.
    """
    text = value.strip().encode("ascii", "replace")
    if is_z85_key(text):
        return text
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(
            f"broker key {value!r} is neither a CURVE public key "
            f"({Z85_KEY_LENGTH} Z85 characters) nor a file"
        )
    try:
        text = path.read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    if not is_z85_key(text):
        raise ValueError(f"{path} does not hold a CURVE public key ({Z85_KEY_LENGTH} Z85 chars)")
    return text
