"""Files that hold secrets: written so that nobody else ever sees them, and read only
when nobody else could have read or replaced them.

The identity key (`envelope.keys`) and the broker's CURVE secret (`wire.curve`) both go
through here, so the rules are written once.

Writing: a fresh temporary file is created 0600 with ``O_EXCL``, filled, synced and
renamed into place, so the secret is never visible with looser permissions, not even
for an instant, and a leftover temporary file (whatever its mode) is never reused.

Reading, as ssh reads a private key, but without its stat-then-open race:

1. ``open`` with ``O_NOFOLLOW``: a symbolic link in the file's place is refused, not
   followed to wherever someone pointed it. ``O_NONBLOCK``, so that a FIFO put there
   cannot hang us before the checks run.
2. ``fstat`` on the descriptor just opened, so that the checks and the read are about
   the same file: a regular file, owned by us, with no permission bit for group or
   others (``mode & 0o077``).
3. Read at most `limit` bytes: a key file is small, and a huge one is refused rather
   than read into memory.

Callers turn `SecretFileRefused` into their own package's error (`IdentityError`,
`CurveKeyError`), with `problem` as the words for people.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

#: errno of an ``O_NOFOLLOW`` open that met a symbolic link: ELOOP on Linux and macOS,
#: EMLINK on FreeBSD.
_SYMLINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK})


class SecretFileRefused(Exception):
    """A secret file that is not read. `problem` completes a sentence that starts with
    the file's name: "is readable by others (mode 0644); fix it with: chmod 600 ..."."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem


class ExposedSecretFile(SecretFileRefused):
    """Someone else could have read or replaced the file: refused, as ssh refuses it."""

    def __init__(self, path: Path, problem: str, mode: int | None = None) -> None:
        super().__init__(path, problem)
        self.mode = mode


class OversizedSecretFile(SecretFileRefused):
    """The file is larger than any secret of its kind: not what it claims to be."""


def read_secret_file(path: Path, limit: int) -> bytes:
    """The contents of the secret file `path`, after the checks in the module docstring.

    Raises `ExposedSecretFile` or `OversizedSecretFile`, or `OSError` when the file
    cannot be opened or read at all (missing, no permission, ...).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in _SYMLINK_ERRNOS and path.is_symlink():
            raise ExposedSecretFile(
                path, "is a symbolic link; zchat reads secret files only in place"
            ) from exc
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ExposedSecretFile(path, "is not a regular file")
        if info.st_uid != os.geteuid():
            raise ExposedSecretFile(
                path, f"belongs to another user (uid {info.st_uid}, we are {os.geteuid()})"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise ExposedSecretFile(
                path,
                f"is readable by others (mode {mode:04o}); fix it with: chmod 600 {path}",
                mode,
            )
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OversizedSecretFile(path, f"is larger than {limit:,} bytes")
    return data


def write_secret_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by its owner only (0600), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:  # unlike one os.write, writes every byte
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
