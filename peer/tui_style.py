"""How the roles of rendered spans look in the interactive chat (prompt_toolkit).

Lines become lists of ``(style, text)`` fragments, never HTML or ANSI markup, so no
network string can smuggle markup in. The words themselves come from `peer.render`,
which has already made every network string safe: prompt_toolkit only removes ESC
and would let ``\\r``, backspace, C1 controls and bidi overrides through.

Long lines are wrapped here, not by the terminal: a terminal wraps without a trace,
so a message padded to the width could start a row with a fake ``12:00 <bob> ...``.
Every row a line wraps onto starts with `CONTINUATION` instead, as does every further
line of a message of several lines (`peer.render`). No line of ours starts that way,
and network text reaches the start of a row no other way: each line starts with words
of ours (a time, ``*``, ``!``, `CONTINUATION`), and the line breaks of network text
other than a message's own are shown escaped. A row never ends inside an emoji or
under its combining marks: lines are cut between clusters (`graphemes.clusters`).
"""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Iterable
from typing import Final

from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.styles import Style
from prompt_toolkit.utils import get_cwidth

from zchat.envelope import nick_key
from zchat.peer.graphemes import REGIONAL_INDICATORS, SKIN_TONES, clusters, is_pictographic
from zchat.peer.render import CONTINUATION, Line, Role, Span

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
        "continuation": "ansibrightblack",
    }
)

_CONTINUATION_CELLS: Final = 4


def nick_colour(nick: str) -> str:
    """The same colour for a nickname in every run and on every peer's screen.

    crc32, not hash(): Python randomises str hashes per process.
    """
    digest = zlib.crc32(nick_key(nick).encode("utf-8", "replace"))
    return PALETTE[digest % len(PALETTE)]


def fragments(line: Line) -> FormattedText:
    """One line as prompt_toolkit fragments: each role as its class, nicknames in colour."""
    return FormattedText([(_style(span), span.text) for span in line])


def _style(span: Span) -> str:
    match span.role:
        case Role.TEXT:
            return ""
        case Role.NICK:
            return f"fg:{nick_colour(span.text)} bold"
        case _:
            return f"class:{span.role.value}"


def screenful(lines: Iterable[Line], width: int | None = None) -> FormattedText:
    """Several lines as one batch of fragments, each line ended; with `width` (the
    terminal's columns), each wrapped to it with its continuation rows marked."""
    out: list[tuple[str, str]] = []
    for line in lines:
        if width is None:
            out += [*fragments(line), ("", "\n")]
            continue
        for row in rows(line, width):
            out += [*row, ("", "\n")]
    return FormattedText(out)


def rows(line: Line, width: int) -> list[list[tuple[str, str]]]:
    """`line` as rows of fragments that each fit in `width` columns, every row after
    the first starting with `CONTINUATION`.

    A row stops one column short of the edge: a row that fills the last column leaves
    some terminals about to wrap, and the newline after it would then add a blank row.
    """
    first = max(width - 1, 1)
    rest = max(first - _CONTINUATION_CELLS, 1)
    out: list[list[tuple[str, str]]] = [[]]
    used, limit = 0, first
    for span in line:
        style = _style(span)
        piece: list[str] = []
        units = span.text if span.text.isascii() else clusters(span.text)
        for unit in units:
            cells = 1 if len(unit) == 1 and " " <= unit < "\x7f" else _cells(unit)
            if used + cells > limit and used:
                if piece:
                    out[-1].append((style, "".join(piece)))
                    piece = []
                out.append([("class:continuation", CONTINUATION)])
                used, limit = 0, rest
            piece.append(unit)
            used += cells
        if piece:
            out[-1].append((style, "".join(piece)))
    return out


def _cells(cluster: str) -> int:
    """Columns `cluster` takes, never fewer than any terminal gives it: counting too
    many only ends a row early, too few would let the terminal wrap it unmarked.

    Each character is counted on its own, as a terminal that does not know an emoji
    sequence draws it: 👩‍💻 is 4 here, although most terminals draw it in 2.
    """
    return sum(_char_cells(char) for char in cluster)


def _char_cells(char: str) -> int:
    code = ord(char)
    if is_pictographic(char) or code in SKIN_TONES or code in REGIONAL_INDICATORS:
        return 2  # emoji presentation is wide; newer emoji unknown to this Python too
    if unicodedata.category(char) in ("Mn", "Me", "Cf"):
        # Drawn over the character before (the sanitiser caps how many), or nothing:
        # the only format characters it lets through join an emoji.
        return 0
    if unicodedata.east_asian_width(char) in ("W", "F", "A"):
        return 2  # ambiguous ones are wide in East Asian terminals
    return max(get_cwidth(char), 1)
