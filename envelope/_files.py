"""Files that hold secrets, or decide trust: written so that nobody else ever sees
them, and read only when nobody else could have read or replaced them.

The identity key (`envelope.keys`) and the broker's CURVE secret (`wire.curve`) both go
through here, and so do the pins (`peer.pinfile`), so the rules are written once.

Writing: a temporary file with a name of its own (``mkstemp``: ``O_EXCL``, 0600) is
made in the same directory, filled, synced, renamed into place, and the directory is
synced too. So the file is never visible with looser permissions, not even for an
instant; two writers never share a temporary file; a leftover one (whatever its mode)
is never reused; and after a crash the file is the old one or the new one, whole.

Reading, as ssh reads a private key, but without its stat-then-open race:

1. ``open`` with ``O_NOFOLLOW``: a symbolic link in the file's place is refused, not
   followed to wherever someone pointed it. ``O_NONBLOCK``, so that a FIFO put there
   cannot hang us before the checks run.
2. ``fstat`` on the descriptor just opened, so that the checks and the read are about
   the same file: a regular file, owned by us, with no permission bit for group or
   others (``mode & 0o077``).
3. Read at most `limit` bytes: a key file is small, and a huge one is refused rather
   than read into memory.

A file that only decides trust (the pins: who is admitted) may be read by others, but
must not be writable by them: `read_owned_file` makes the same checks with
``mode & 0o022``, and `check_owned_directory` the same for the directory that holds
it (an identity directory), as ssh checks ``~/.ssh``. Each refusal names the file and
the command that fixes it.

Callers turn `SecretFileRefused` into their own package's error (`IdentityError`,
`CurveKeyError`, `PinsError`), with `problem` as the words for people.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
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


#: Mode bits that may not be set: none for group or others on a secret, no write
#: permission for them on a file or directory that decides trust.
SECRET_MODE_BITS = 0o077
WRITE_MODE_BITS = 0o022


def read_secret_file(path: Path, limit: int) -> bytes:
    """The contents of the secret file `path`, after the checks in the module docstring.

    Raises `ExposedSecretFile` or `OversizedSecretFile`, or `OSError` when the file
    cannot be opened or read at all (missing, no permission, ...).
    """
    return _read_checked(path, limit, SECRET_MODE_BITS)


def read_owned_file(path: Path, limit: int) -> bytes:
    """The contents of `path`, a file that decides trust: as `read_secret_file`, but
    others may read it; they may not write it (``chmod go-w`` fixes that)."""
    return _read_checked(path, limit, WRITE_MODE_BITS)


def check_owned_directory(path: Path) -> None:
    """Raise `ExposedSecretFile` unless the directory `path` is ours and nobody else can
    write in it (where they could replace the files it holds); `OSError` if missing."""
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise ExposedSecretFile(path, "is not a directory")
    _check_owner_and_mode(path, info, WRITE_MODE_BITS)


def _check_owner_and_mode(path: Path, info: os.stat_result, forbidden: int) -> None:
    if info.st_uid != os.geteuid():
        raise ExposedSecretFile(
            path,
            f"belongs to another user (uid {info.st_uid}, we are {os.geteuid()}); "
            f"fix it with: chown {os.geteuid()} {path}",
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & forbidden:
        if forbidden == SECRET_MODE_BITS:
            fix = "600"
            what = "readable by others"
        else:
            fix = "go-w"
            what = "writable by others"
        raise ExposedSecretFile(
            path, f"is {what} (mode {mode:04o}); fix it with: chmod {fix} {path}", mode
        )


def _read_checked(path: Path, limit: int, forbidden: int) -> bytes:
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
        _check_owner_and_mode(path, info, forbidden)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OversizedSecretFile(path, f"is larger than {limit:,} bytes")
    return data


def write_secret_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by its owner only (0600), atomically and durably
    (module docstring)."""
    # mkstemp: a name of its own in the same directory (a rename never crosses file
    # systems), created with O_EXCL and mode 0600, whatever the umask.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:  # unlike one os.write, writes every byte
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    sync_directory(path.parent)


def sync_directory(path: Path) -> None:
    """fsync the directory `path`, so that a rename in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
