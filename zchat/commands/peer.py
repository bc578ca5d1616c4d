"""``zchat peer``: join the room, interactively on a terminal or scripted otherwise."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Annotated

import typer
import zmq

from zchat import crash
from zchat.console import error, fail
from zchat.envelope import DEFAULT_ROOM, is_valid_nick, is_valid_room
from zchat.envelope.nick import NICK_RULES
from zchat.envelope.room import ROOM_RULES
from zchat.exit_codes import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NICK_TAKEN,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNDELIVERED,
    EXIT_USAGE,
)
from zchat.home import InUse, Occupancy, default_home, occupy, unlock
from zchat.peer.client import Client, CurveKeys
from zchat.peer.config import PeerConfig
from zchat.peer.errors import NicknameUnavailable
from zchat.peer.pinfile import PinFile
from zchat.peer.pins import PinsError
from zchat.peer.sanitize import for_terminal
from zchat.peer.scripted import run_scripted
from zchat.peer.session import Closed, Left, NoAnswer, Outcome, Refused, TransportFailed
from zchat.peer.session_keys import DEFAULT_ROTATE_EVERY
from zchat.wire.curve import read_public_key
from zchat.wire.protocol import PROTOCOL_VERSION
from zchat.wire.transport import TransportError

DEFAULT_CONNECT = "tcp://127.0.0.1:5555"

app = typer.Typer()


@app.command("peer")
def peer(
    nick: Annotated[
        str | None,
        typer.Option(
            "--nick", "-n", envvar="ZCHAT_NICK", help="Your nickname (asked for when missing)."
        ),
    ] = None,
    connect: Annotated[
        str, typer.Option("--connect", "-c", envvar="ZCHAT_CONNECT", help="Broker endpoint.")
    ] = DEFAULT_CONNECT,
    room: Annotated[
        str,
        typer.Option(
            "--room",
            envvar="ZCHAT_ROOM",
            help="The room to join: keys, messages and vouches are good in this room only.",
        ),
    ] = DEFAULT_ROOM,
    home: Annotated[
        Path | None,
        typer.Option(
            envvar="ZCHAT_HOME",
            help="The zchat home: an identity (key pair and pins) per nickname, in "
            "HOME/NICK. Default: your data directory.",
            show_default=False,
        ),
    ] = None,
    json_mode: Annotated[
        bool, typer.Option("--json", help="Scripted mode: one JSON object per event.")
    ] = False,
    admit_all: Annotated[
        bool,
        typer.Option(
            "--admit-all",
            envvar="ZCHAT_ADMIT_ALL",
            help="An open room: let every key read at first sight, a changed one too (still "
            "reported). For bots, benchmarks and load tests: the broker then decides who "
            "reads. Without it, nobody reads until you /admit them or someone you admitted "
            "vouches for them.",
        ),
    ] = False,
    trust_new_keys: Annotated[
        bool,
        # The name before there was admission; it meant the same for changed keys.
        typer.Option("--trust-new-keys", hidden=True, help="Another name for --admit-all."),
    ] = False,
    connect_timeout: Annotated[
        float,
        typer.Option(
            envvar="ZCHAT_CONNECT_TIMEOUT",
            help="Scripted mode: seconds to wait for the broker's welcome before giving up.",
        ),
    ] = 10.0,
    broker_key: Annotated[
        str | None,
        typer.Option(
            "--broker-key",
            envvar="ZCHAT_BROKER_KEY",
            help="The broker's CURVE public key (Z85), or a file holding it: encrypts the "
            "transport and refuses any other broker.",
            show_default=False,
        ),
    ] = None,
    absent_grace: Annotated[
        float,
        typer.Option(
            envvar="ZCHAT_ABSENT_GRACE",
            help="Seconds a message waits for a recipient who dropped out to come back.",
        ),
    ] = 30.0,
    rotate: Annotated[
        float,
        typer.Option(
            "--rotate",
            envvar="ZCHAT_ROTATE",
            min=1.0,
            help="Seconds between new session keys (one is also made at every connection). "
            "A key stolen during a session opens at most this long of it.",
        ),
    ] = DEFAULT_ROTATE_EVERY,
) -> None:
    """Join the room. On a terminal: a chat UI. Otherwise: lines in, events out."""
    home = home or default_home()
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not json_mode
    if nick is not None and not is_valid_nick(nick):
        fail(f"invalid nickname {nick!r}", NICK_RULES, EXIT_USAGE)
    if not is_valid_room(room):
        fail(f"invalid room name {for_terminal(room)!r}", ROOM_RULES, EXIT_USAGE)
    if nick is None and not interactive:
        fail(
            "--nick is required in scripted mode (--json, or input or output not a terminal)",
            code=EXIT_USAGE,
        )
    curve = None if broker_key is None else _curve_keys(broker_key)
    config = PeerConfig(
        admit_all=admit_all or trust_new_keys,
        absent_grace=absent_grace,
        rotate_every=rotate,
        room=room,
    )
    held: list[Occupancy] = []  # the identity we run as, locked for this process

    def make_client(nick: str) -> Client:
        """A client for `nick`, with the identity of `nick` in the home."""
        for occupancy in held:
            # A nickname tried before and refused: an identity made for it goes too.
            occupancy.release(discard=True)
        held.clear()
        try:
            held.append(occupy(home, nick))
        except InUse as exc:
            raise NicknameUnavailable(
                f"{nick} is in use by another zchat on this machine (process {exc.pid or '?'})"
            ) from exc
        directory = held[0].directory
        identity = unlock(directory)
        try:
            pins = PinFile.open(directory)
        except PinsError as exc:
            fail(str(exc), "fix it as said; removing it forgets every key you pinned and admitted")
        return Client.create(nick, identity, connect, pin_file=pins, config=config, curve=curve)

    try:
        if interactive:
            from zchat.peer.interactive import chat  # noqa: PLC0415 (loads prompt_toolkit only here)

            outcome = crash.run(chat(nick, make_client))
            if isinstance(outcome, Closed) or (
                isinstance(outcome, Refused) and (outcome.rejoining or outcome.broker_version)
            ):
                # The chat said it too; this is what stays after it (a refusal no other
                # nickname can answer: another protocol version, or one on coming back).
                report(outcome, nick or "your nickname")
        else:
            assert nick is not None
            try:
                client = make_client(nick)
            except NicknameUnavailable as exc:
                fail(str(exc), "choose another --nick, or leave that chat first", EXIT_NICK_TAKEN)
            # Text from the network may not fit a narrow locale: escape it rather
            # than die on it (JSON output is ASCII anyway).
            if isinstance(sys.stdout, io.TextIOWrapper):
                sys.stdout.reconfigure(errors="backslashreplace")
            outcome = crash.run(
                run_scripted(client, json_mode=json_mode, connect_timeout=connect_timeout)
            )
            report(outcome, nick)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except TransportError as exc:
        fail(str(exc), "an endpoint looks like tcp://HOST:PORT or ipc:///PATH", EXIT_USAGE)
    if isinstance(outcome, Refused) and not outcome.rejoining:
        for occupancy in held:  # never in the room: an identity made for it goes
            occupancy.release(discard=True)
    raise typer.Exit(exit_code(outcome))


def exit_code(outcome: Outcome) -> int:
    """How a session ended, for scripts (the README lists these)."""
    match outcome:
        case Left(unacked) if unacked:
            return EXIT_UNDELIVERED
        case Left():
            return EXIT_OK
        case Refused(code) if code == "nick-taken":
            return EXIT_NICK_TAKEN
        case Refused():
            return EXIT_REFUSED
        case NoAnswer() | TransportFailed() | Closed():
            return EXIT_ERROR


#: Refusals a script can do something about: what to say, and what to do.
_REFUSALS = {
    "nick-taken": ("{nick} is taken in this room", "choose another nickname with --nick"),
    "nick-invalid": ("the broker does not take {nick} as a nickname: {reason}", None),
    "key-in-use": (
        "your key is in the room under another nickname",
        "is another zchat running with a copy of this identity? leave it first",
    ),
    "unsupported-version": (
        "the broker speaks another version of zchat's protocol: {reason}",
        "run the same zchat release on both sides",
    ),
    "room-full": ("the room is full", "try again when someone has left"),
}


def report(outcome: Outcome, nick: str = "") -> None:
    """Say on standard error why a session ended badly (the events said the rest)."""
    match outcome:
        case Left(unacked, unreadable):
            if unreadable:
                error(
                    f"cannot read standard input: {unreadable}",
                    "send UTF-8 text, one message a line",
                )
            _unacknowledged(unacked)
        case NoAnswer(endpoint, waited):
            error(
                f"no answer from a broker at {endpoint} within {waited:g} s",
                "start one with 'make broker' or point --connect at it",
            )
        case Refused(broker_version=version, unacked=unacked) if version:
            error(
                f"the broker speaks zchat protocol {version}; this zchat speaks {PROTOCOL_VERSION}",
                "run the same zchat release on the broker and on every peer",
            )
            _unacknowledged(unacked)
        case Refused(code, reason, _, rejoining, unacked):
            said, hint = _REFUSALS.get(code, ("the broker refused us: {reason}", None))
            said = said.format(nick=nick, reason=for_terminal(reason))
            if rejoining:
                # We were in the room: the broker would not take us back, however long
                # we tried. Choosing another nickname is no answer to that.
                error(f"the broker would not let us back into the room: {said}", None)
            else:
                error(said, hint)
            _unacknowledged(unacked)
        case TransportFailed(reason, hint):
            error(reason, hint or None)
        case Closed(reason, unacked):
            error(
                reason,
                "another zchat with your key took your place; if that was not you, "
                "someone else holds your key",
            )
            _unacknowledged(unacked)


def _unacknowledged(unacked: tuple[str, ...]) -> None:
    """Name what the broker never acknowledged, if anything (nothing goes silently)."""
    if unacked:
        some = "1 message" if len(unacked) == 1 else f"{len(unacked)} messages"
        error(
            f"the broker never acknowledged {some}, which may not have been "
            "delivered: " + "; ".join(repr(text[:40]) for text in unacked[:5])
        )


def _curve_keys(broker_key: str) -> CurveKeys:
    """CURVE keys for a connection to the broker whose public key is `broker_key`.

    Our own pair is made fresh for each run and never stored. The broker admits any
    client key (peers prove who they are with their RSA identity in HELLO, not with
    this key), so a lasting key would add nothing but a second secret to guard, and
    a handle to link our connections across runs; CURVE's own short-term keys give
    the transport forward secrecy either way.
    """
    if not zmq.has("curve"):
        fail("this libzmq was built without CURVE support", "install pyzmq's wheel")
    try:
        server_public = read_public_key(broker_key)
    except ValueError as exc:
        fail(str(exc), "pass the key 'zchat broker --curve --print-key' shows", EXIT_USAGE)
    public, secret = zmq.curve_keypair()
    return CurveKeys(server_public=server_public, public=public, secret=secret)
