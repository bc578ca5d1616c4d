"""Make network-supplied text safe to put on a terminal.

Escape sequences (ANSI CSI, OSC titles and hyperlinks, ...) all start with a control
character, so neutralising every control and format character neutralises them all.
They are *shown*, not dropped, so a user sees that someone sent something odd:
``ESC[31m`` becomes ``^[[31m``. Bidi overrides and zero-width characters, which can make
text read differently from what it is, are shown as ``<U+202E>``.

"Zero-width" means more than the format characters: a renderer draws every
Default_Ignorable_Code_Point as nothing at all, and some of those are letters or marks
that `str.isprintable` accepts (U+3164 HANGUL FILLER, U+034F COMBINING GRAPHEME JOINER,
U+FE0F VARIATION SELECTOR-16, ...). They are escaped too, as are the few characters that
are not ignorable but draw as a blank cell. Nonspacing marks pile up on the character
before them and spill over the lines above and below, so only the first
`MAX_STACKED_MARKS` in a row are kept and the rest are escaped.

Emoji are text people write, and are shown as they are, sequences included: the few
invisible characters that hold an emoji sequence together (a ZERO WIDTH JOINER between
two pictographs, a variation selector after one, the tags of a subdivision flag) are
kept there, and only there (`peer.graphemes` has the rules).
"""

from __future__ import annotations

import bisect
import unicodedata
from typing import Final

from zchat.peer.graphemes import emoji_joiners, is_pictographic

#: The Default_Ignorable_Code_Point property, copied from Unicode's
#: DerivedCoreProperties.txt, version 14.0.0 (the version of Python 3.11's
#: unicodedata): https://www.unicode.org/Public/14.0.0/ucd/DerivedCoreProperties.txt.
#: 4,174 code points. Python's unicodedata does not expose the property, hence the copy.
#: Unassigned code points are listed too, on purpose: the standard reserves them as
#: ignorable, so a newer terminal may draw them as nothing. Inclusive ranges.
DEFAULT_IGNORABLE: Final[tuple[tuple[int, int], ...]] = (
    (0x00AD, 0x00AD),  # Cf SOFT HYPHEN
    (0x034F, 0x034F),  # Mn COMBINING GRAPHEME JOINER
    (0x061C, 0x061C),  # Cf ARABIC LETTER MARK
    (0x115F, 0x1160),  # Lo HANGUL CHOSEONG FILLER..HANGUL JUNGSEONG FILLER
    (0x17B4, 0x17B5),  # Mn KHMER VOWEL INHERENT AQ..KHMER VOWEL INHERENT AA
    (0x180B, 0x180D),  # Mn MONGOLIAN FREE VARIATION SELECTOR ONE..THREE
    (0x180E, 0x180E),  # Cf MONGOLIAN VOWEL SEPARATOR
    (0x180F, 0x180F),  # Mn MONGOLIAN FREE VARIATION SELECTOR FOUR
    (0x200B, 0x200F),  # Cf ZERO WIDTH SPACE..RIGHT-TO-LEFT MARK
    (0x202A, 0x202E),  # Cf LEFT-TO-RIGHT EMBEDDING..RIGHT-TO-LEFT OVERRIDE
    (0x2060, 0x2064),  # Cf WORD JOINER..INVISIBLE PLUS
    (0x2065, 0x2065),  # Cn <reserved-2065>
    (0x2066, 0x206F),  # Cf LEFT-TO-RIGHT ISOLATE..NOMINAL DIGIT SHAPES
    (0x3164, 0x3164),  # Lo HANGUL FILLER
    (0xFE00, 0xFE0F),  # Mn VARIATION SELECTOR-1..VARIATION SELECTOR-16
    (0xFEFF, 0xFEFF),  # Cf ZERO WIDTH NO-BREAK SPACE
    (0xFFA0, 0xFFA0),  # Lo HALFWIDTH HANGUL FILLER
    (0xFFF0, 0xFFF8),  # Cn <reserved-FFF0>..<reserved-FFF8>
    (0x1BCA0, 0x1BCA3),  # Cf SHORTHAND FORMAT LETTER OVERLAP..SHORTHAND FORMAT UP STEP
    (0x1D173, 0x1D17A),  # Cf MUSICAL SYMBOL BEGIN BEAM..MUSICAL SYMBOL END PHRASE
    (0xE0000, 0xE0000),  # Cn <reserved-E0000>
    (0xE0001, 0xE0001),  # Cf LANGUAGE TAG
    (0xE0002, 0xE001F),  # Cn <reserved-E0002>..<reserved-E001F>
    (0xE0020, 0xE007F),  # Cf TAG SPACE..CANCEL TAG
    (0xE0080, 0xE00FF),  # Cn <reserved-E0080>..<reserved-E00FF>
    (0xE0100, 0xE01EF),  # Mn VARIATION SELECTOR-17..VARIATION SELECTOR-256
    (0xE01F0, 0xE0FFF),  # Cn <reserved-E01F0>..<reserved-E0FFF>
)

#: Characters that draw as an empty cell although they are printable, named here whether
#: or not they are Default_Ignorable. U+2800 is a real braille symbol (no dots), not
#: ignorable, but on a terminal it is indistinguishable from a space that is not one. The
#: Hangul fillers are ignorable already; they are listed again because fonts and shapers
#: disagree about them (HarfBuzz draws them as spacing glyphs), and they are the usual way
#: to make a "blank" nickname.
BLANK_LOOKING: Final[tuple[int, ...]] = (
    0x115F,  # HANGUL CHOSEONG FILLER
    0x1160,  # HANGUL JUNGSEONG FILLER
    0x2800,  # BRAILLE PATTERN BLANK
    0x3164,  # HANGUL FILLER
    0xFFA0,  # HALFWIDTH HANGUL FILLER
)

#: Nonspacing and enclosing marks kept in a row; the rest of the run is escaped. Real
#: text rarely stacks more than three on one letter (decomposed Vietnamese two, pointed
#: Hebrew with a cantillation mark three or four, Tibetan stacks about as many), while
#: "Zalgo" text stacks dozens, drawn over the lines above and below: over other people's
#: messages. (UAX #15's stream-safe limit of 30 is about normalisation buffers, not looks.)
MAX_STACKED_MARKS: Final = 4

_MARK_CATEGORIES: Final = frozenset({"Mn", "Me"})


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sorted, merged inclusive ranges as (starts, ends), for a bisect lookup."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(s for s, _ in merged), tuple(e for _, e in merged)


_HIDDEN_STARTS, _HIDDEN_ENDS = _merge([*DEFAULT_IGNORABLE, *((c, c) for c in BLANK_LOOKING)])


def is_invisible(ch: str) -> bool:
    """Whether `ch` is Default_Ignorable or otherwise draws as an empty cell."""
    code = ord(ch)
    i = bisect.bisect_right(_HIDDEN_STARTS, code) - 1
    return i >= 0 and code <= _HIDDEN_ENDS[i]


def is_stacking_mark(ch: str) -> bool:
    """Whether `ch` draws on top of the character before it (a nonspacing or enclosing mark)."""
    return unicodedata.category(ch) in _MARK_CATEGORIES


def for_terminal(text: str) -> str:
    """`text` with every control, format, separator and invisible character made visible,
    except those inside an emoji, and runs of stacked marks cut to `MAX_STACKED_MARKS`."""
    if text.isascii() and text.isprintable():  # the common case: nothing to do
        return text
    joiners = emoji_joiners(text)
    out: list[str] = []
    marks = 0  # marks in a row so far, all drawn on the same base
    for i, ch in enumerate(text):
        if is_stacking_mark(ch):
            marks += 1
            if marks > MAX_STACKED_MARKS:
                out.append(_escaped(ch))
                continue
        else:
            marks = 0
        out.append(ch if i in joiners else _visible(ch))
    return "".join(out)


def _visible(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return "^" + chr(code + 0x40)  # caret notation, as `cat -v`: ESC is ^[
    if code == 0x7F:
        return "^?"
    if is_invisible(ch):
        return _escaped(ch)
    if ch.isprintable() or is_pictographic(ch):  # an emoji newer than this Python
        return ch
    if unicodedata.category(ch) == "Zs":
        return " "  # no-break and other spaces: harmless, shown as a space
    return _escaped(ch)


def _escaped(ch: str) -> str:
    return f"<U+{ord(ch):04X}>"
