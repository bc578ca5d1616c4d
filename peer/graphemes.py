"""Which characters form one drawn emoji, so that the sanitiser can let emoji through.

Most emoji are one visible character and need nothing from us. Some are *sequences*
held together by characters that draw nothing on their own, and those are exactly the
characters `peer.sanitize` escapes (they can hide text): a ZERO WIDTH JOINER between
👩 and 💻 makes 👩‍💻, VARIATION SELECTOR-16 turns ❤ into the emoji ❤️, and tag characters
after 🏴 make the flag of Scotland. This module says when such a character is part of
an emoji, by a handful of rules (UTS #51's sequences, and UAX #29's rule GB11 that
keeps them in one grapheme cluster), and nowhere else:

1. ZWJ joins two pictographs: it is kept only between an emoji (with, at most, its
   variation selector or skin tone) and another pictograph. "pay" ZWJ "pal" stays
   escaped.
2. A variation selector (VS15 text, VS16 emoji) is kept only right after a
   pictograph, or after a keycap base (0-9, # or *) that COMBINING ENCLOSING KEYCAP
   follows. One selector, never a run.
3. Tag characters are kept only as one of the three subdivision flags Unicode
   recommends (England, Scotland, Wales): a black flag, a fixed run of tags, CANCEL
   TAG. Tags can spell out hidden text, so any other run stays escaped.
4. Skin tones (U+1F3FB..U+1F3FF), regional indicators (flags are pairs of them) and
   COMBINING ENCLOSING KEYCAP are visible characters: nothing to decide.
5. A pictograph this Python's Unicode database does not know yet (Python 3.11 has
   Unicode 14; 🫨 is Unicode 15) is shown as it is: the pictograph ranges are reserved
   for emoji, and a terminal draws a newer emoji, or at worst a box.

`clusters` cuts sanitised text into what a terminal draws as one unit, so that a line
is never wrapped inside an emoji (`peer.tui_style`).
"""

from __future__ import annotations

import bisect
import unicodedata
from collections.abc import Iterator
from typing import Final

#: The Extended_Pictographic property of Unicode's emoji-data.txt (UTS #51), merged
#: into inclusive ranges; copied from the table wcwidth 0.9 generates from it, and
#: checked against that table by tests/test_graphemes.py where wcwidth is installed.
#: Unassigned code points are included on purpose: the property reserves them for
#: future emoji. Python's unicodedata does not expose the property, hence the copy.
_PICTOGRAPHIC_RANGES: Final = """
    00A9 00AE 203C 2049 2122 2139 2194-2199 21A9-21AA 231A-231B 2328 23CF 23E9-23F3
    23F8-23FA 24C2 25AA-25AB 25B6 25C0 25FB-25FE 2600-2604 260E 2611 2614-2615 2618 261D
    2620 2622-2623 2626 262A 262E-262F 2638-263A 2640 2642 2648-2653 265F-2660 2663
    2665-2666 2668 267B 267E-267F 2692-2697 2699 269B-269C 26A0-26A1 26A7 26AA-26AB
    26B0-26B1 26BD-26BE 26C4-26C5 26C8 26CE-26CF 26D1 26D3-26D4 26E9-26EA 26F0-26F5
    26F7-26FA 26FD 2702 2705 2708-270D 270F 2712 2714 2716 271D 2721 2728 2733-2734 2744
    2747 274C 274E 2753-2755 2757 2763-2764 2795-2797 27A1 27B0 27BF 2934-2935 2B05-2B07
    2B1B-2B1C 2B50 2B55 3030 303D 3297 3299 1F004 1F02C-1F02F 1F094-1F09F 1F0AF-1F0B0 1F0C0
    1F0CF-1F0D0 1F0F6-1F0FF 1F170-1F171 1F17E-1F17F 1F18E 1F191-1F19A 1F1AF-1F1E5
    1F201-1F20F 1F21A 1F22F 1F232-1F23A 1F23C-1F23F 1F249-1F25F 1F266-1F321 1F324-1F393
    1F396-1F397 1F399-1F39B 1F39E-1F3F0 1F3F3-1F3F5 1F3F7-1F3FA 1F400-1F4FD 1F4FF-1F53D
    1F549-1F54E 1F550-1F567 1F56F-1F570 1F573-1F57A 1F587 1F58A-1F58D 1F590 1F595-1F596
    1F5A4-1F5A5 1F5A8 1F5B1-1F5B2 1F5BC 1F5C2-1F5C4 1F5D1-1F5D3 1F5DC-1F5DE 1F5E1 1F5E3
    1F5E8 1F5EF 1F5F3 1F5FA-1F64F 1F680-1F6C5 1F6CB-1F6D2 1F6D5-1F6E5 1F6E9 1F6EB-1F6F0
    1F6F3-1F6FF 1F7DC-1F7F0 1F80C-1F80F 1F848-1F84F 1F85A-1F85F 1F888-1F88F 1F8AE-1F8AF
    1F8BC-1F8BF 1F8C2-1F8CF 1F8D9-1F8FF 1F90C-1F93A 1F93C-1F945 1F947-1F9FF 1FA58-1FA5F
    1FA6E-1FAFF 1FC00-1FFFD
"""
EXTENDED_PICTOGRAPHIC: Final[tuple[tuple[int, int], ...]] = tuple(
    (int(first, 16), int(last or first, 16))
    for first, _, last in (item.partition("-") for item in _PICTOGRAPHIC_RANGES.split())
)

ZWJ: Final = "\u200d"
VS15: Final = "\ufe0e"  # text presentation
VS16: Final = "\ufe0f"  # emoji presentation
KEYCAP: Final = "\u20e3"  # COMBINING ENCLOSING KEYCAP: 1️⃣ is "1", VS16, KEYCAP
KEYCAP_BASES: Final = frozenset("0123456789#*")
#: Fitzpatrick skin tones: an emoji modifier follows the emoji it colours.
SKIN_TONES: Final = range(0x1F3FB, 0x1F400)
#: A flag is a pair of these (🇫🇷 is F, R).
REGIONAL_INDICATORS: Final = range(0x1F1E6, 0x1F200)
#: Tag characters, TAG SPACE..CANCEL TAG.
TAGS: Final = range(0xE0020, 0xE0080)

_BLACK_FLAG = "\U0001f3f4"
_CANCEL_TAG = "\U000e007f"


def _tag_flag(region: str) -> str:
    """The subdivision flag for `region` ("gbsct"): 🏴, the region as tags, CANCEL TAG."""
    return _BLACK_FLAG + "".join(chr(0xE0000 + ord(c)) for c in region) + _CANCEL_TAG


#: The only tag sequences kept: UTS #51's RGI_Emoji_Tag_Sequence list, all of it.
SUBDIVISION_FLAGS: Final = tuple(_tag_flag(region) for region in ("gbeng", "gbsct", "gbwls"))

_PICTO_STARTS = tuple(start for start, _ in EXTENDED_PICTOGRAPHIC)
_PICTO_ENDS = tuple(end for _, end in EXTENDED_PICTOGRAPHIC)


def is_pictographic(ch: str) -> bool:
    """Whether `ch` is Extended_Pictographic: an emoji, or a code point kept for one."""
    code = ord(ch)
    i = bisect.bisect_right(_PICTO_STARTS, code) - 1
    return i >= 0 and code <= _PICTO_ENDS[i]


def emoji_joiners(text: str) -> frozenset[int]:
    """Positions in `text` of the invisible characters that belong to an emoji (rules
    1 to 3 of the module docstring); every other invisible character is not."""
    kept: set[int] = set()
    # After a pictograph, and still after its variation selector or skin tone: where
    # a ZWJ may follow (UAX #29 GB11 allows more between the two; zchat keeps to the
    # forms emoji take).
    after_emoji = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == _BLACK_FLAG:
            flag = next((f for f in SUBDIVISION_FLAGS if text.startswith(f, i)), None)
            if flag is not None:
                kept.update(range(i + 1, i + len(flag)))
                i += len(flag)
                after_emoji = False
                continue
        before = text[i - 1] if i else ""
        if ch == ZWJ:
            if after_emoji and i + 1 < len(text) and is_pictographic(text[i + 1]):
                kept.add(i)
            after_emoji = False
        elif ch in (VS15, VS16):
            keycap = before in KEYCAP_BASES and text[i + 1 : i + 2] == KEYCAP
            if keycap or (before and is_pictographic(before)):
                kept.add(i)
            else:
                after_emoji = False
        elif ord(ch) in SKIN_TONES:
            pass  # visible; keeps `after_emoji` as it was: 🧑🏽‍💻
        else:
            after_emoji = is_pictographic(ch)
        i += 1
    return frozenset(kept)


def _attaches(ch: str) -> bool:
    """Whether `ch` draws as part of the cluster before it."""
    code = ord(ch)
    return (
        ch in (VS15, VS16)
        or code in SKIN_TONES
        or code in TAGS
        or unicodedata.category(ch) in ("Mn", "Me")
    )


def clusters(text: str) -> Iterator[str]:
    """`text` as the units a terminal draws, for text `peer.sanitize` made safe: a
    character with the marks, selectors, skin tones and tags that follow it, a ZWJ
    and the pictograph after it, and regional indicators in pairs."""
    i = 0
    while i < len(text):
        j = i + 1
        if (
            ord(text[i]) in REGIONAL_INDICATORS
            and ord(text[j : j + 1] or "\0") in REGIONAL_INDICATORS
        ):
            j += 1
        while j < len(text):
            if _attaches(text[j]):
                j += 1
            elif text[j] == ZWJ and j + 1 < len(text) and is_pictographic(text[j + 1]):
                j += 2
            else:
                break
        yield text[i:j]
        i = j
