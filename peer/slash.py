"""What a typed line means: chat text, or a slash command. Shared by every front end.

(Slash commands, typed in a chat; the ``zchat`` command line's own are `zchat.commands`.)

A line starting with ``/`` is a command; ``//`` sends a literal slash. A bare ``exit``
leaves, as in the original design.
"""

from __future__ import annotations

from dataclasses import dataclass

HELP = """\
commands:
  /msg NICK TEXT      send TEXT to NICK only (a direct message)
  /who                who is here, with fingerprints and who admitted them
  /fingerprint [NICK] your fingerprint, or NICK's, to compare aloud
  /admit NICK FP      let NICK read the room, once FP (at least its first 16
                      characters) matches the fingerprint NICK reads out to you
  /trust NICK FP      accept NICK's changed key, the same way
  /revoke NICK        take NICK's admission back: nothing more is sealed to NICK,
                      and those who admitted NICK on your word drop NICK too
  /quit  or  exit     leave (after the broker has everything you sent)
  /help               this list
  //text              send a line that starts with a slash
keys (at a terminal):
  Tab                 complete a command or a nickname
  Up / Down           earlier lines (kept in memory only)
  Ctrl-C              clear the line (Up brings it back); on an empty line, leave
  Ctrl-D              leave
  a paste             one message, however many lines (over 5, you are asked)"""
#: The commands, as Tab completes them.
COMMANDS = ("/msg", "/who", "/fingerprint", "/admit", "/trust", "/revoke", "/help", "/quit")


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class DirectMessage:
    nick: str
    text: str


@dataclass(frozen=True, slots=True)
class WhoCommand:
    pass


@dataclass(frozen=True, slots=True)
class FingerprintCommand:
    nick: str | None


@dataclass(frozen=True, slots=True)
class TrustCommand:
    nick: str
    fingerprint: str = ""  # as typed; the core refuses it unless it matches


@dataclass(frozen=True, slots=True)
class AdmitCommand:
    nick: str
    fingerprint: str  # as typed, spaces and all: "7CM5 TFYE" and "7cm5tfye" are one


@dataclass(frozen=True, slots=True)
class RevokeCommand:
    nick: str


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Empty:
    pass


@dataclass(frozen=True, slots=True)
class Invalid:
    """A line that looks like a command but is not one; `hint` says what to do."""

    hint: str


Command = (
    Say
    | DirectMessage
    | WhoCommand
    | FingerprintCommand
    | TrustCommand
    | AdmitCommand
    | RevokeCommand
    | Quit
    | Help
    | Empty
    | Invalid
)


def parse_line(line: str) -> Command:
    line = line.rstrip("\r\n")
    if not line.strip():
        return Empty()
    if line.strip() == "exit":
        return Quit()
    if line.startswith("//"):
        return Say(line[1:])
    if not line.startswith("/"):
        return Say(line)
    # Any run of whitespace separates the command and its arguments (a tab too).
    name, rest = _first_word(line[1:])
    args = rest.split()
    match name.lower():
        case "msg" | "m":
            nick, text = _first_word(rest)
            if not nick or not text.strip():
                return Invalid("usage: /msg NICK TEXT")
            return DirectMessage(nick, text)
        case "who" | "names":
            return WhoCommand()
        case "fingerprint" | "fp":
            if len(args) > 1:
                return Invalid("usage: /fingerprint [NICK]")
            return FingerprintCommand(args[0] if args else None)
        case "trust":
            if not args:
                return Invalid("usage: /trust NICK FINGERPRINT (at least its first 16 characters)")
            return TrustCommand(args[0], " ".join(args[1:]))
        case "admit":
            if len(args) < 2:
                return Invalid(
                    "usage: /admit NICK FINGERPRINT (at least its first 16 characters, "
                    "as NICK reads it out to you; /who shows what you have)"
                )
            return AdmitCommand(args[0], " ".join(args[1:]))
        case "revoke":
            if len(args) != 1:
                return Invalid("usage: /revoke NICK")
            return RevokeCommand(args[0])
        case "quit" | "exit" | "q":
            return Quit()
        case "help" | "h" | "?":
            return Help()
    return Invalid(f"unknown command /{name}; /help lists the commands, // sends a slash")


def _first_word(text: str) -> tuple[str, str]:
    """`text` cut at its first run of whitespace: (word, the rest)."""
    parts = text.split(None, 1)
    return (parts[0], parts[1] if len(parts) > 1 else "") if parts else ("", "")
