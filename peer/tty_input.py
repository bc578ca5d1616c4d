"""What the terminal sends us, filtered before prompt_toolkit parses it.

A terminal sends more than keys: mouse reports (the mouse moved over the window,
though we never asked for them), answers to queries, focus changes, and key codes of
keyboards and protocols prompt_toolkit has never heard of. prompt_toolkit inserts
what it does not know into the line being typed, takes seconds over a CSI sequence
with a parameter thousands of digits long (it tries every prefix of every prefix), and
raises out of its mouse handler on an X10 report with coordinates past 223: a traceback
on the screen. So every escape sequence is read here first, as ECMA-48 frames it::

    ESC [ params intermediates final    CSI (params 0x30-0x3F, intermediates 0x20-0x2F,
                                        final 0x40-0x7E); ESC [ M and three bytes is an
                                        X10 mouse report, ESC [ [ X a Linux console key
    ESC O final                         SS3
    ESC ] ... BEL or ESC \\              OSC, and the other strings: DCS (ESC P), SOS
                                        (ESC X), PM (ESC ^), APC (ESC _)
    ESC other                           Alt and a key

A complete CSI or SS3 sequence that prompt_toolkit knows as a key (or a cursor position
report, which it asks for) passes; anything else is dropped whole, as is any sequence
longer than `MAX_SEQUENCE`, without being kept in memory. A bracketed paste passes
untouched from its start marker to its end marker: what is pasted is text. A sequence
cut short by another escape or a control character is dropped, and what cut it short
is read as it is. At a pause in the input (`flush`), a lone ESC is the Escape key and
any other sequence begun is dropped: a lone ESC O is no key. An Escape at once followed
by another ESC is dropped too (see `_escape`).

`InputFilter` is the filter (text in, text out, no I/O); `guard` puts one in front of
a prompt_toolkit input's parser.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Final

from prompt_toolkit.input import Input
from prompt_toolkit.input.ansi_escape_sequences import ANSI_SEQUENCES
from prompt_toolkit.input.vt100 import Vt100Input
from prompt_toolkit.input.vt100_parser import Vt100Parser

ESC: Final = "\x1b"
BEL: Final = "\x07"
PASTE_START: Final = "\x1b[200~"
PASTE_END: Final = "\x1b[201~"
#: The longest escape sequence passed on: every key prompt_toolkit knows is at most 10
#: characters, a cursor position report on a terminal 99,999 cells square 14.
MAX_SEQUENCE: Final = 32
#: A cursor position report, the one answer to a query prompt_toolkit reads.
_POSITION_REPORT: Final = re.compile(r"\x1b\[\d{1,5};\d{1,5}R\Z")
#: Bytes after ESC that open a string, ended by BEL or ST (ESC \).
_STRINGS: Final = frozenset("]PX^_")


class _State(Enum):
    TEXT = "text"
    ESCAPE = "escape"  # after ESC
    CSI = "csi"  # after ESC [
    CONSOLE = "console"  # after ESC [ [: one more character ends it
    MOUSE = "mouse"  # after ESC [ M: three more characters end it
    SS3 = "ss3"  # after ESC O
    STRING = "string"  # inside OSC, DCS, ...
    STRING_ESCAPE = "string-escape"  # ESC inside a string: ST if a backslash follows
    PASTE = "paste"


def is_key(sequence: str) -> bool:
    """Whether prompt_toolkit reads `sequence` as a key (or a position report)."""
    return sequence in ANSI_SEQUENCES or bool(_POSITION_REPORT.match(sequence))


class InputFilter:
    """Terminal input in, the same without stray escape sequences out (module docstring)."""

    def __init__(self) -> None:
        self._state = _State.TEXT
        self._sequence = ""  # the sequence being read, up to MAX_SEQUENCE characters
        self._length = 0  # its whole length, however much of it is kept
        self._left = 0  # characters an X10 mouse report still has to come

    def feed(self, data: str) -> str:
        """What of `data` (and of what came before it) goes on to the parser."""
        out: list[str] = []
        for ch in data:
            self._take(ch, out)
        return "".join(out)

    def flush(self) -> str:
        """The input paused: a lone ESC is the Escape key; any other sequence begun
        is dropped (a paste goes on: its end is on its way)."""
        if self._state is _State.PASTE:
            return ""
        lone = self._state is _State.ESCAPE
        self._state = _State.TEXT
        return ESC if lone else ""

    def _take(self, ch: str, out: list[str]) -> None:
        match self._state:
            case _State.TEXT:
                if ch == ESC:
                    self._begin(_State.ESCAPE, ch)
                else:
                    out.append(ch)
            case _State.PASTE:
                out.append(ch)
                self._sequence = (self._sequence + ch)[-len(PASTE_END) :]
                if self._sequence == PASTE_END:
                    self._state = _State.TEXT
            case _State.ESCAPE:
                self._escape(ch, out)
            case _State.CSI:
                self._csi(ch, out)
            case _State.CONSOLE:
                self._add(ch)
                self._end(out)
            case _State.MOUSE:
                self._left -= 1
                if not self._left:
                    self._state = _State.TEXT  # a mouse report: we never asked for one
            case _State.SS3:
                self._ss3(ch, out)
            case _State.STRING:
                if ch == BEL:
                    self._state = _State.TEXT
                elif ch == ESC:
                    self._state = _State.STRING_ESCAPE
            case _State.STRING_ESCAPE:
                if ch == "\\":
                    self._state = _State.TEXT
                else:  # an ESC that is no string terminator: a sequence of its own
                    self._state = _State.TEXT
                    self._take(ESC, out)
                    self._take(ch, out)

    def _escape(self, ch: str, out: list[str]) -> None:
        if ch == "[":
            self._add(ch)
            self._state = _State.CSI
        elif ch == "O":
            self._add(ch)
            self._state = _State.SS3
        elif ch in _STRINGS:
            self._state = _State.STRING
        elif ch == ESC:
            # Escape pressed before whatever this one starts: dropped. Passed on, it
            # would run into what follows, and prompt_toolkit would read the two as
            # one sequence (Escape, a mouse report dropped, then "[5" typed: ESC [ 5).
            self._begin(_State.ESCAPE, ch)
        else:  # Alt and a key
            out.append(ESC + ch)
            self._state = _State.TEXT

    def _csi(self, ch: str, out: list[str]) -> None:
        code = ord(ch)
        if self._length == 2 and ch == "M":
            self._state, self._left = _State.MOUSE, 3
        elif self._length == 2 and ch == "[":
            self._add(ch)
            self._state = _State.CONSOLE
        elif 0x20 <= code <= 0x3F:  # a parameter or an intermediate byte
            self._add(ch)
        elif 0x40 <= code <= 0x7E:
            self._add(ch)
            self._end(out)
        else:  # cut short: drop what came, and read what cut it
            self._state = _State.TEXT
            self._take(ch, out)

    def _ss3(self, ch: str, out: list[str]) -> None:
        code = ord(ch)
        if 0x30 <= code <= 0x3F:  # a modifier, as some terminals send: ESC O 5 P
            self._add(ch)
        elif 0x20 <= code <= 0x7E:
            self._add(ch)
            self._end(out)
        else:
            self._state = _State.TEXT
            self._take(ch, out)

    def _begin(self, state: _State, ch: str) -> None:
        self._state, self._sequence, self._length = state, ch, 1

    def _add(self, ch: str) -> None:
        self._length += 1
        if self._length <= MAX_SEQUENCE:
            self._sequence += ch

    def _end(self, out: list[str]) -> None:
        """A complete sequence: passed on if it is a key, dropped if not."""
        self._state = _State.TEXT
        if self._length <= MAX_SEQUENCE and is_key(self._sequence):
            out.append(self._sequence)
            if self._sequence == PASTE_START:
                self._state, self._sequence = _State.PASTE, ""


class _GuardedParser(Vt100Parser):
    """prompt_toolkit's parser, behind an `InputFilter`.

    It wraps the parser rather than extend it: the parser calls its own `feed` again
    on what follows a paste, which must not go through the filter twice.
    """

    def __init__(self, parser: Vt100Parser) -> None:
        self._parser = parser
        self._filter = InputFilter()
        super().__init__(parser.feed_key_callback)

    def reset(self, request: bool = False) -> None:
        super().reset(request)
        self._filter = InputFilter()
        self._parser.reset(request)

    def feed(self, data: str) -> None:
        self._parser.feed(self._filter.feed(data))

    def flush(self) -> None:
        self._parser.feed(self._filter.flush())
        self._parser.flush()

    def feed_and_flush(self, data: str) -> None:
        self.feed(data)
        self.flush()


def guard(source: Input) -> Input:
    """`source`, its input filtered (`InputFilter`); unchanged when it does not read a
    VT100 stream (Windows' console API delivers keys, not bytes)."""
    if isinstance(source, Vt100Input) and not isinstance(source.vt100_parser, _GuardedParser):
        source.vt100_parser = _GuardedParser(source.vt100_parser)
    return source
