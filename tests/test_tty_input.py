"""What the terminal sends is filtered before prompt_toolkit parses it: keys pass,
stray escape sequences (mouse reports, unknown key codes, absurd parameters, terminal
answers) are dropped whole, and a paste passes untouched."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.input.ansi_escape_sequences import ANSI_SEQUENCES
from prompt_toolkit.input.vt100_parser import Vt100Parser
from prompt_toolkit.key_binding import KeyPress
from prompt_toolkit.keys import Keys

from zchat.peer.tty_input import MAX_SEQUENCE, PASTE_END, PASTE_START, InputFilter, guard

#: Sequences a terminal may send that are no key of ours: each is dropped whole.
STRAY = {
    "sgr-mouse": "\x1b[<0;10;10M",
    "sgr-mouse-release": "\x1b[<0;10;10m",
    "x10-mouse": "\x1b[M !!",
    "x10-mouse-far-corner": "\x1b[M\xff\xff\xff",  # prompt_toolkit raised KeyError: 255
    "urxvt-mouse": "\x1b[32;10;10M",
    "kitty-key": "\x1b[57399u",
    "focus-in": "\x1b[I",
    "focus-out": "\x1b[O",
    "device-attributes": "\x1b[?64;1;2;6;9;15;18;21;22c",
    "absurd-parameter": "\x1b[" + "9" * 5000 + "A",
    "absurd-cursor-report": "\x1b[" + "9" * 5000 + ";1R",
    "osc-colour-answer": "\x1b]11;rgb:0000/0000/0000\x1b\\",
    "osc-ended-by-bel": "\x1b]0;title\x07",
    "dcs": "\x1bP1$r0m\x1b\\",
    "unknown-ss3": "\x1bOZ",
    "paste-end-alone": PASTE_END,
}
#: Keys prompt_toolkit knows, as terminals send them.
KEYS = {
    "up": "\x1b[A",
    "up-application-mode": "\x1bOA",
    "f1": "\x1bOP",
    "ctrl-left": "\x1b[1;5D",
    "delete": "\x1b[3~",
    "linux-console-f1": "\x1b[[A",
    "alt-b": "\x1bb",
    "cursor-report": "\x1b[12;40R",
    "ctrl-c": "\x03",
}


def filtered(*chunks: str) -> str:
    f = InputFilter()
    return "".join(f.feed(chunk) for chunk in chunks) + f.flush()


@pytest.mark.parametrize("stray", STRAY.values(), ids=list(STRAY))
def test_a_stray_sequence_is_dropped_whole_and_typing_goes_on(stray: str) -> None:
    assert filtered(f"ab{stray}cd") == "abcd"


@pytest.mark.parametrize("key", KEYS.values(), ids=list(KEYS))
def test_a_key_passes_as_it_came(key: str) -> None:
    assert filtered(f"ab{key}cd") == f"ab{key}cd"


def test_a_lone_escape_is_the_escape_key_but_a_lone_esc_o_is_nothing() -> None:
    f = InputFilter()
    assert f.feed("a\x1b") == "a"
    assert f.flush() == "\x1b"
    assert f.feed("b\x1bO") == "b"
    assert f.flush() == ""
    assert f.feed("c") == "c"


def test_a_sequence_cut_short_is_dropped_and_what_cut_it_is_read() -> None:
    assert filtered("\x1b[12\x03x") == "\x03x"
    assert filtered("\x1bO\rx") == "\rx"
    assert filtered("\x1b\x1b[A") == "\x1b[A"  # Escape, run into Up: Up alone


def test_a_paste_passes_untouched_escape_sequences_and_all() -> None:
    pasted = "line one\r\x1b[31mred\x1b]0;t\x07\x1b[<0;1;1M\rline two"
    assert (
        filtered("x", PASTE_START, pasted, PASTE_END, "y") == f"x{PASTE_START}{pasted}{PASTE_END}y"
    )


def test_sequences_split_across_reads_are_judged_whole() -> None:
    data = f"a{STRAY['x10-mouse-far-corner']}b{KEYS['ctrl-left']}c{PASTE_START}p{PASTE_END}d"
    expected = filtered(data)
    for cut in range(len(data) + 1):
        assert filtered(data[:cut], data[cut:]) == expected


def test_an_absurd_parameter_costs_linear_time_and_no_memory() -> None:
    f = InputFilter()
    start = time.process_time()
    assert f.feed("\x1b[" + "9" * 200_000) == ""
    assert len(f._sequence) <= MAX_SEQUENCE
    assert f.feed("Az") == "z"
    assert time.process_time() - start < 2.0


_ALPHABET = st.sampled_from(
    ["a", " ", "\x1b", "[", "O", "M", "<", "0", "9", ";", "~", "\x03", "é", "\x07", "\\", "]"]
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(_ALPHABET, st.sampled_from([*STRAY.values(), *KEYS.values()])), max_size=30
    ).map("".join)
)
def test_nothing_reaches_the_parser_but_text_and_whole_keys(data: str) -> None:
    out = filtered(data)
    i = 0
    while i < len(out):
        if out.startswith(PASTE_START, i):
            end = out.find(PASTE_END, i)
            i = len(out) if end < 0 else end + len(PASTE_END)
            continue
        if out[i] != "\x1b":
            i += 1
            continue
        known = [k for k in ANSI_SEQUENCES if len(k) > 1 and out.startswith(k, i)]
        report = re.match(r"\x1b\[\d+;\d+R", out[i:])
        if known or report:
            i += max([len(k) for k in known] + [len(report.group()) if report else 0])
            continue
        # otherwise the Escape key: alone at a pause, or as Alt with a key
        after = out[i + 1 : i + 2]
        assert after not in ("[", "O", "]", "P", "X", "^", "_", "\x1b"), repr(out[i : i + 12])
        i += 2


def test_guarded_input_turns_what_the_filter_passes_into_keys() -> None:
    with create_pipe_input() as source:
        guard(source)
        guard(source)  # guarding twice is guarding once
        source.send_text(
            f"a{STRAY['x10-mouse-far-corner']}{KEYS['up']}{PASTE_START}x\ry{PASTE_END}"
        )
        keys = [*source.read_keys(), *source.flush_keys()]
    assert [(k.key, k.data) for k in keys] == [
        ("a", "a"),
        (Keys.Up, "\x1b[A"),
        (Keys.BracketedPaste, "x\ry"),
    ]


def test_unguarded_prompt_toolkit_chokes_on_what_the_filter_drops() -> None:
    """Why the filter exists: prompt_toolkit's own parser inserts an absurd CSI into
    the line as text, and passes an X10 report its mouse handler cannot decode."""
    keys: list[KeyPress] = []
    parser = Vt100Parser(keys.append)
    parser.feed_and_flush("\x1b[M\xff\xff\xff" + "\x1b[" + "9" * 40 + "X")
    assert keys[0].key is Keys.Vt100MouseEvent
    assert "9" * 40 in "".join(k.data for k in keys)
