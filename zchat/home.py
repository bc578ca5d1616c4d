"""Where a peer keeps its identity and pins, and how the shell unlocks them: asking
for a passphrase on a terminal, and saying what went wrong otherwise.

The zchat home is the per-user data directory (XDG on Linux: ``~/.local/share/zchat``),
or ``--home`` / ``ZCHAT_HOME``. It holds one identity directory per nickname::

    ~/.local/share/zchat/
        carol/    private_key.pem  public_key.pem  pins.json  peer.lock
        dave/     ...

So two nicknames on one machine are two people with two keys, and two terminals on
one machine can chat, as the README's quick start does. The directory is named for
the nickname case-folded, as the broker compares nicknames: "Carol" is carol/.

A zchat before this one kept a single identity in the home itself. The first peer to
run with that home takes it over (`take_over`): the files move into its nickname's
directory, and zchat says so once. Moving, rather than reading it in place for every
nickname, is what gives the next nickname a key of its own; and the files move only
when a peer runs, never for a `zchat keys` command, which only reads.

A running peer holds ``peer.lock`` in its identity directory (`occupy`): a second
peer with the same nickname and home would be the same key in the room twice, which
the broker settles by throwing the first out. It is refused here instead, at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import sys
from pathlib import Path
from typing import IO, Final, NoReturn

import platformdirs

from zchat.console import fail, info
from zchat.envelope import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    Identity,
    IdentityError,
    PassphraseRequired,
    WrongPassphrase,
    load_identity,
    load_or_create_identity,
    nick_key,
)
from zchat.exit_codes import EXIT_NO_KEY, EXIT_USAGE
from zchat.peer.pinfile import PINS_FILE

PASSPHRASE_ENV = "ZCHAT_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
#: Passphrases asked on a terminal before giving up, as sudo and ssh do.
PASSPHRASE_TRIES = 3
#: Held by the peer running with an identity (see the module docstring).
LOCK_FILE: Final = "peer.lock"
#: An identity's files, as a take-over moves them.
_IDENTITY_FILES: Final = (PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, PINS_FILE)


class InUse(Exception):
    """Another zchat process holds this identity (`pid`, when it said)."""

    def __init__(self, directory: Path, pid: str) -> None:
        super().__init__(f"{directory} is in use by zchat process {pid or '?'}")
        self.directory = directory
        self.pid = pid


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("zchat", appauthor=False))


def identity_dir(home: Path, nick: str) -> Path:
    """The identity directory of `nick` in `home`."""
    return home / nick_key(nick)


def is_identity(directory: Path) -> bool:
    """Whether `directory` holds an identity (a key pair, or pins kept without one)."""
    return any((directory / name).exists() for name in (PRIVATE_KEY_FILE, PINS_FILE))


def identities(home: Path) -> list[str]:
    """The nicknames (case-folded) with an identity directory in `home`."""
    try:
        return sorted(d.name for d in home.iterdir() if d.is_dir() and is_identity(d))
    except OSError:  # no home yet, or not one we can read
        return []


def find(home: Path, nick: str | None) -> Path | None:
    """The identity directory a `zchat keys` command reads, changing nothing on disk.

    `nick`'s own, or the single identity of an older home; without `nick`, the one
    identity in `home`. None when there is none. Several and no `nick` is a usage error.
    """
    single = home if is_identity(home) else None
    if nick is not None:
        own = identity_dir(home, nick)
        return own if is_identity(own) else single
    found = [home / name for name in identities(home)] + ([home] if single else [])
    if len(found) > 1:
        names = ", ".join(identities(home)) + (" and the one in the home itself" if single else "")
        fail(f"{home} holds several identities ({names})", "say whose with --nick", EXIT_USAGE)
    return found[0] if found else None


def no_identity(home: Path, nick: str | None) -> NoReturn:
    """Say that there is no identity to show, and how to make one (exit status 3)."""
    whose = f"for {nick} " if nick else ""
    fail(
        f"no identity {whose}in {home} yet",
        f"'zchat keys init --nick {nick or 'NICK'}' makes one; 'zchat peer' makes one on first use",
        EXIT_NO_KEY,
    )


def take_over(home: Path, nick: str) -> bool:
    """Move the single identity of an older home into `nick`'s directory, unless that
    one has its own; True when it moved (module docstring)."""
    directory = identity_dir(home, nick)
    if not is_identity(home) or is_identity(directory):
        return False
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # Two peers starting at once under two nicknames: one takes all the files.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not is_identity(home):
            return False  # the other one was first
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in _IDENTITY_FILES:
            if (home / name).exists():
                (home / name).rename(directory / name)
        return True
    finally:
        os.close(fd)  # and the lock with it


class Occupancy:
    """The lock a running peer holds on its identity directory, until `release`."""

    def __init__(self, directory: Path) -> None:
        #: Whether this process made the directory, with nothing in it yet: what a
        #: nickname tried and refused would leave behind (`release(discard=True)`).
        self.fresh = not directory.exists()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        path = directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        self._file: IO[str] | None = os.fdopen(fd, "r+")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = self._file.read(20).strip()
            self.release()
            raise InUse(directory, pid) from None
        self._file.truncate(0)
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self, *, discard: bool = False) -> None:
        """Let the identity go (the lock goes with the process anyway). With `discard`,
        remove it too if it is `fresh`: made in this run for a nickname we did not get."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if discard and self.fresh:
            for name in (*_IDENTITY_FILES, LOCK_FILE):
                (self.directory / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # something else in it: leave it be
                self.directory.rmdir()


def occupy(home: Path, nick: str) -> Occupancy:
    """Hold `nick`'s identity directory for this process, after taking over an older
    home's identity if there is one; raises `InUse` if another zchat holds it."""
    occupancy = Occupancy(identity_dir(home, nick))
    if take_over(home, nick):
        occupancy.fresh = False
        info(
            f"moved the identity in {home} to {occupancy.directory}: each nickname has its "
            "own identity now (to use it under another nickname, rename that directory)"
        )
    return occupancy


def unlock(directory: Path, *, create: bool = True, key_size: int = 2048) -> Identity:
    """Load the identity in `directory` (with `create`, making one if there is none);
    ask for a passphrase on a terminal when the key needs one. Exits with a readable
    error otherwise."""
    from_env = os.environ.get(PASSPHRASE_ENV, "")
    passphrase = from_env.encode() or None
    asked = 0  # passphrases typed so far: each one is tried before asking again
    while True:
        try:
            if create:
                identity, created = load_or_create_identity(directory, passphrase, key_size)
            else:
                identity, created = load_identity(directory, passphrase), False
        except PassphraseRequired as exc:
            if not sys.stdin.isatty():
                fail(
                    f"{exc.path} is protected by a passphrase, and there is no terminal to "
                    "ask for it",
                    f"set {PASSPHRASE_ENV} to the passphrase",
                )
            if asked:  # Enter on an empty prompt: nothing to try
                fail(f"{exc.path} is protected by a passphrase, and none was typed")
            path = exc.path
        except WrongPassphrase as exc:
            if not sys.stdin.isatty():
                hint = f"{PASSPHRASE_ENV} holds another passphrase" if from_env else None
                fail(str(exc), hint)
            if asked >= PASSPHRASE_TRIES:
                fail(f"wrong passphrase ({asked} attempts)")
            info("wrong passphrase, try again")
            path = exc.path
        except IdentityError as exc:
            fail(str(exc))
        else:
            if created:
                info(f"created a new identity in {directory}")
            return identity
        passphrase = getpass.getpass(f"passphrase for {path}: ").encode()
        asked += 1


def new_passphrase() -> bytes:
    """A passphrase for a new key: `PASSPHRASE_ENV`, or asked twice on a terminal."""
    from_env = os.environ.get(PASSPHRASE_ENV, "")
    if from_env:
        return from_env.encode()
    if not sys.stdin.isatty():
        fail(
            "--passphrase asks for the passphrase on a terminal, and there is none",
            f"set {PASSPHRASE_ENV} to the passphrase",
        )
    secret = getpass.getpass("new passphrase: ").encode()
    if not secret or secret != getpass.getpass("again: ").encode():
        fail("the two passphrases differ, or are empty: nothing was created")
    return secret
