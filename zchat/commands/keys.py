"""``zchat keys``: your identity and the keys you have pinned.

Each nickname has its own identity in the zchat home (`zchat.home`); ``--nick`` (or
``ZCHAT_NICK``) says whose. Without it, the one identity the home holds. The commands
that show (`show`, `pins`) never make anything: on an empty home they say how to.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from zchat.console import fail, info
from zchat.envelope import (
    PRIVATE_KEY_FILE,
    format_fingerprint,
    generate_identity,
    is_valid_nick,
    save_identity,
)
from zchat.envelope.limits import KEY_SIZES
from zchat.envelope.nick import NICK_RULES
from zchat.exit_codes import EXIT_NICK_TAKEN, EXIT_USAGE
from zchat.home import (
    InUse,
    Occupancy,
    default_home,
    find,
    identity_dir,
    new_passphrase,
    no_identity,
    unlock,
)
from zchat.peer.pinfile import PinFile
from zchat.peer.pins import How, Pin, PinsError
from zchat.peer.sanitize import for_terminal

app = typer.Typer(name="keys", help="Your identity key and the keys you have pinned.")

HomeOption = Annotated[
    Path | None,
    typer.Option(
        envvar="ZCHAT_HOME",
        help="The zchat home, with an identity per nickname. Default: your data directory.",
        show_default=False,
    ),
]
NickOption = Annotated[
    str | None,
    typer.Option(
        "--nick",
        "-n",
        envvar="ZCHAT_NICK",
        help="Whose identity. Default: the only one in the home.",
        show_default=False,
    ),
]


@app.command()
def show(nick: NickOption = None, home: HomeOption = None) -> None:
    """Print your fingerprint, to compare aloud with the people you chat with."""
    home = home or default_home()
    directory = find(home, nick)
    if directory is None or not (directory / PRIVATE_KEY_FILE).exists():
        no_identity(home, nick)
    identity = unlock(directory, create=False)
    print(format_fingerprint(identity.fingerprint))


@app.command()
def init(
    nick: NickOption = None,
    home: HomeOption = None,
    passphrase: Annotated[
        bool,
        typer.Option(
            "--passphrase",
            help="Protect the private key with a passphrase (asked, or ZCHAT_PASSPHRASE).",
        ),
    ] = False,
    key_size: Annotated[int, typer.Option(help=f"RSA key size, one of {KEY_SIZES}.")] = 2048,
) -> None:
    """Create the identity key pair of a nickname (zchat peer also makes one on first use)."""
    home = home or default_home()
    if nick is None:
        fail("say whose identity to make: --nick NICK", code=EXIT_USAGE)
    if not is_valid_nick(nick):
        fail(f"invalid nickname {nick!r}", NICK_RULES, EXIT_USAGE)
    if key_size not in KEY_SIZES:
        fail(f"key size must be one of {', '.join(map(str, KEY_SIZES))}", code=EXIT_USAGE)
    directory = identity_dir(home, nick)
    if (directory / PRIVATE_KEY_FILE).exists():
        fail(
            f"{nick} has an identity already, in {directory}",
            f"'zchat keys show --nick {nick}' shows its fingerprint",
        )
    try:
        occupancy = Occupancy(directory)  # no peer may make one meanwhile
    except InUse as exc:
        fail(f"a zchat peer is running as {nick} (process {exc.pid or '?'})", code=EXIT_NICK_TAKEN)
    secret = new_passphrase() if passphrase else None
    identity = generate_identity(key_size)
    save_identity(identity, directory, secret)
    occupancy.release()
    info(f"created the identity of {nick} in {directory}")
    print(format_fingerprint(identity.fingerprint))


@app.command()
def pins(nick: NickOption = None, home: HomeOption = None) -> None:
    """List the nicknames whose keys you have pinned, and who admitted them."""
    for pin in _pins(home, nick).pins:
        print(f"{pin.nick:<32}  {format_fingerprint(pin.fingerprint)}  {_admission(pin)}")


@app.command()
def forget(
    pinned: Annotated[str, typer.Argument(metavar="NICK", help="Nickname whose pin to remove.")],
    nick: NickOption = None,
    home: HomeOption = None,
) -> None:
    """Remove a pin and take its admission back: the next key seen for NICK is pinned
    afresh, and only a new comparison admits the forgotten key again (no vouch does).
    A peer running with this identity does as for /revoke NICK at once."""
    try:
        forgotten = _pins(home, nick).forget(pinned, at_ms=int(time.time() * 1000))
    except PinsError as exc:
        fail(str(exc))
    if not forgotten:
        fail(f"no pin for {pinned}", "'zchat keys pins' lists them")
    info(f"forgot the pin for {pinned}; only a new comparison admits that key again")


def _admission(pin: Pin) -> str:
    if not pin.admitted or pin.admission is None:
        return "not admitted"
    when = time.strftime("%Y-%m-%d", time.localtime(pin.admission.at_ms / 1000))
    if pin.admission.how is How.VOUCH:
        return f"vouched by {for_terminal(pin.admission.by)} {when}"
    return f"admitted by you {when}"


def _pins(home: Path | None, nick: str | None) -> PinFile:
    home = home or default_home()
    directory = find(home, nick)
    if directory is None:
        no_identity(home, nick)
    try:
        return PinFile.open(directory)
    except PinsError as exc:
        fail(str(exc))
