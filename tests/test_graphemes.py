"""Emoji render as people wrote them: the invisible characters that hold an emoji
sequence together are kept there and only there (`peer.graphemes`), and a line is
never wrapped inside an emoji."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zchat.peer.graphemes import (
    EXTENDED_PICTOGRAPHIC,
    KEYCAP,
    SUBDIVISION_FLAGS,
    VS16,
    ZWJ,
    clusters,
    emoji_joiners,
    is_pictographic,
)
from zchat.peer.sanitize import for_terminal

#: Emoji people send, each one drawn unit: every kind of sequence UTS #51 names.
EMOJI = {
    "zwj-technologist": "\U0001f469\u200d\U0001f4bb",  # woman, ZWJ, laptop
    "zwj-family": "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "zwj-with-vs16": "\u2764\ufe0f\u200d\U0001f525",  # heart on fire
    "zwj-rainbow-flag": "\U0001f3f3\ufe0f\u200d\U0001f308",
    "zwj-skin-tone": "\U0001f9d1\U0001f3fd\u200d\U0001f4bb",
    "zwj-handshake-two-tones": "\U0001faf1\U0001f3fb\u200d\U0001faf2\U0001f3ff",
    "zwj-newer-than-python": "\U0001f426\u200d\U0001f525",  # phoenix, Emoji 15.1
    "skin-tone": "\U0001f44d\U0001f3fd",
    "presentation-selector": "\u2764\ufe0f",
    "text-selector": "\u263a\ufe0e",
    "flag": "\U0001f1eb\U0001f1f7",
    "subdivision-flag": SUBDIVISION_FLAGS[1],  # Scotland
    "keycap": "1\ufe0f\u20e3",
    "keycap-hash": "#\ufe0f\u20e3",
    "combining-marks": "e\u0301",
    "unicode-15-emoji": "\U0001fae8",  # shaking face: unassigned to Python 3.11
}
IDS = list(EMOJI)


@pytest.mark.parametrize("emoji", EMOJI.values(), ids=IDS)
def test_an_emoji_reaches_the_terminal_as_it_was_sent(emoji: str) -> None:
    text = f"look {emoji} here"
    assert for_terminal(text) == text


@pytest.mark.parametrize("emoji", EMOJI.values(), ids=IDS)
def test_an_emoji_is_one_unit_that_a_line_never_breaks_inside(emoji: str) -> None:
    assert list(clusters(f"a{emoji}b")) == ["a", emoji, "b"]


#: The same invisible characters where they hold no emoji together: they can hide or
#: disguise text, so they stay escaped.
OUTSIDE_EMOJI = {
    "zwj-between-letters": ("pay\u200dpal", "pay<U+200D>pal"),
    "zwj-after-emoji-before-letter": ("\U0001f469\u200dx", "\U0001f469<U+200D>x"),
    "zwj-before-emoji-after-letter": ("x\u200d\U0001f4bb", "x<U+200D>\U0001f4bb"),
    "zwj-at-the-end": ("\U0001f469\u200d", "\U0001f469<U+200D>"),
    "two-zwj": (
        "\U0001f469\u200d\u200d\U0001f4bb",
        "\U0001f469<U+200D><U+200D>\U0001f4bb",
    ),
    "vs16-after-a-letter": ("pay\ufe0fpal", "pay<U+FE0F>pal"),
    "two-vs16": ("\u2764\ufe0f\ufe0f", "\u2764\ufe0f<U+FE0F>"),
    "vs16-on-a-digit-without-keycap": ("1\ufe0f", "1<U+FE0F>"),
    "tags-after-a-letter": ("hi\U000e0041\U000e0042", "hi<U+E0041><U+E0042>"),
    "tags-hiding-text-after-a-flag": (
        "\U0001f3f4\U000e0068\U000e0069\U000e007f",
        "\U0001f3f4<U+E0068><U+E0069><U+E007F>",
    ),
    "unterminated-subdivision-flag": (
        SUBDIVISION_FLAGS[0][:-1],
        "\U0001f3f4<U+E0067><U+E0062><U+E0065><U+E006E><U+E0067>",
    ),
}


@pytest.mark.parametrize(("raw", "shown"), OUTSIDE_EMOJI.values(), ids=list(OUTSIDE_EMOJI))
def test_joiners_and_selectors_outside_an_emoji_stay_escaped(raw: str, shown: str) -> None:
    assert for_terminal(raw) == shown


def test_what_is_kept_is_exactly_what_holds_the_emoji_together() -> None:
    technologist = EMOJI["zwj-technologist"]
    assert emoji_joiners(technologist) == {1}
    assert emoji_joiners(EMOJI["keycap"]) == {1}
    assert emoji_joiners(EMOJI["subdivision-flag"]) == set(range(1, 7))
    assert emoji_joiners("plain text") == frozenset()


def test_the_pictograph_table_is_sorted_and_disjoint_and_leaves_out_what_is_not_one() -> None:
    bounds = [code for pair in EXTENDED_PICTOGRAPHIC for code in pair]
    assert bounds == sorted(bounds)
    assert all(first <= last for first, last in EXTENDED_PICTOGRAPHIC)
    for ch in ("a", "1", "#", ZWJ, VS16, KEYCAP, "\U0001f3fb", "\U0001f1eb", "中"):
        assert not is_pictographic(ch), ch
    for ch in ("\u00a9", "\u2764", "\U0001f600", "\U0001fae8", "\U0001fffd"):
        assert is_pictographic(ch), ch


def test_the_pictograph_table_is_the_one_wcwidth_generates_from_unicode() -> None:
    table = pytest.importorskip("wcwidth.table_grapheme")
    theirs = {c for first, last in table.EXTENDED_PICTOGRAPHIC for c in range(first, last + 1)}
    ours = {c for first, last in EXTENDED_PICTOGRAPHIC for c in range(first, last + 1)}
    assert ours == theirs


# --- against a second opinion: wcwidth's UAX #29 segmentation -----------------------

_PIECES = [*EMOJI.values(), "a", " ", "中", "\u0301", ZWJ, VS16, "\U0001f3fb", "\U0001f1e6"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join))
def test_clusters_of_sanitised_text_agree_with_uax29_on_every_emoji_kept(text: str) -> None:
    """Where the sanitiser kept an emoji sequence whole, UAX #29 (wcwidth's
    implementation) sees one grapheme cluster there too: the rules keep no joiner that
    a standard segmenter would not join."""
    wcwidth = pytest.importorskip("wcwidth")
    safe = for_terminal(text)
    ours = list(clusters(safe))
    assert "".join(ours) == safe
    theirs = set(wcwidth.iter_graphemes(safe))
    for unit in ours:
        if any(unicodedata.category(c) == "Cf" or c == VS16 for c in unit):
            assert unit in theirs, (unit, theirs)


def test_a_wrapped_line_never_splits_an_emoji_across_rows() -> None:
    from itertools import accumulate

    from zchat.peer.render import Role, Span
    from zchat.peer.tui_style import CONTINUATION, rows

    text = "".join(EMOJI.values()) * 6
    boundaries = set(accumulate(len(unit) for unit in clusters(text)))
    for width in range(8, 41):
        cut = rows((Span(Role.TEXT, text),), width)
        pieces = ["".join(t for _, t in row).removeprefix(CONTINUATION) for row in cut]
        assert "".join(pieces) == text
        ends = set(accumulate(len(piece) for piece in pieces))
        assert ends <= boundaries, f"a row ends inside an emoji at width {width}"
