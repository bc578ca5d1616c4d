"""Make network-supplied text safe to put on a terminal.

Escape sequences (ANSI CSI, OSC titles and hyperlinks, ...) all start with a control
character, so neutralising every control and format character neutralises them all.
They are *shown*, not dropped, so a user sees that someone sent something odd:
``ESC[31m`` becomes ``^[[31m``. Bidi overrides and zero-width characters, which can make
text read differently from what it is, are shown as ``<U+202E>``.
"""

from __future__ import annotations

import unicodedata


def for_terminal(text: str) -> str:
    """`text` with every control, format and separator character made visible."""
    if text.isprintable():  # the common case: nothing to do
        return text
    return "".join(_visible(ch) for ch in text)


def _visible(ch: str) -> str:
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x20:
        return "^" + chr(code + 0x40)  # caret notation, as `cat -v`: ESC is ^[
    if code == 0x7F:
        return "^?"
    if unicodedata.category(ch) == "Zs":
        return " "  # no-break and other spaces: harmless, shown as a space
    return f"<U+{code:04X}>"
