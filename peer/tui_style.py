"""How the roles of rendered spans look in the interactive chat (prompt_toolkit).

Lines become lists of ``(style, text)`` fragments, never HTML or ANSI markup, so no
network string can smuggle markup in. The words themselves come from `peer.render`,
which has already made every network string safe: prompt_toolkit only removes ESC
and would let ``\\r``, backspace, C1 controls and bidi overrides through.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.styles import Style

from zchat.envelope import nick_key
from zchat.peer.render import Line, Role

#: Colours for nicknames: readable on dark and light backgrounds (no black, white
#: or grey), and ANSI names so the user's terminal theme decides the exact shade.
PALETTE = (
    "ansired",
    "ansigreen",
    "ansiyellow",
    "ansiblue",
    "ansimagenta",
    "ansicyan",
    "ansibrightred",
    "ansibrightgreen",
    "ansibrightyellow",
    "ansibrightblue",
    "ansibrightmagenta",
    "ansibrightcyan",
)

STYLE = Style.from_dict(
    {
        "time": "ansibrightblack",
        "info": "ansibrightblack",
        "warning": "bold ansired",
        "problem": "ansired",
        "fingerprint": "bold",
    }
)


def nick_colour(nick: str) -> str:
    """The same colour for a nickname in every run and on every peer's screen.

    crc32, not hash(): Python randomises str hashes per process.
    """
    digest = zlib.crc32(nick_key(nick).encode("utf-8", "replace"))
    return PALETTE[digest % len(PALETTE)]


def fragments(line: Line) -> FormattedText:
    """One line as prompt_toolkit fragments: each role as its class, nicknames in colour."""
    out: list[tuple[str, str]] = []
    for span in line:
        match span.role:
            case Role.TEXT:
                style = ""
            case Role.NICK:
                style = f"fg:{nick_colour(span.text)} bold"
            case _:
                style = f"class:{span.role.value}"
        out.append((style, span.text))
    return FormattedText(out)


def screenful(lines: Iterable[Line]) -> FormattedText:
    """Several lines as one batch of fragments, each line ended."""
    out: list[tuple[str, str]] = []
    for line in lines:
        out += [*fragments(line), ("", "\n")]
    return FormattedText(out)
