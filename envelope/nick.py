"""Nicknames: the one place that says which names are legal.

An ASCII allow-list rules out look-alike letters from other scripts, control
characters and bidi overrides in one stroke; uniqueness is case-insensitive.
"""

import re

from zchat.envelope.limits import NICK_MAX_LEN, NICK_MIN_LEN

#: The rules, in the words every side uses: broker refusals, prompts and usage errors.
NICK_RULES = (
    f"a nickname is {NICK_MIN_LEN}-{NICK_MAX_LEN} characters: "
    "ASCII letters, digits, '_', '-' or '.'"
)

_NICK = re.compile(rf"[A-Za-z0-9_.\-]{{{NICK_MIN_LEN},{NICK_MAX_LEN}}}")


def is_valid_nick(nick: str) -> bool:
    """True when `nick` is 1-32 characters from ``A-Z a-z 0-9 _ - .``."""
    return _NICK.fullmatch(nick) is not None


def nick_key(nick: str) -> str:
    """The case-folded form under which a nickname is unique ("Carol" is "carol")."""
    return nick.lower()
