"""The real `zchat peer` in a pseudo-terminal of a fixed size, driven as a person
would: stray escape sequences, an absurd CSI parameter, a lone ESC O, pastes, emoji,
Ctrl-C and Ctrl-D. Never a traceback on the screen.

alice is the person (an open room, so what she writes is sealed to bob at once); bob
is a scripted `--json` peer, whose events say exactly what arrived.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.procs import Peer, start_broker, start_peer

#: Real processes in pseudo-terminals, a second or more each: not in `make check`.
pytestmark = pytest.mark.slow

ROWS, COLUMNS = 24, 100
ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\x1b[=>78]")
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
EMOJI = " ".join(
    [
        "\U0001f469\u200d\U0001f4bb",  # woman technologist: a ZWJ sequence
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # family
        "\U0001f3f3\ufe0f\u200d\U0001f308",  # rainbow flag: VS16 and ZWJ
        "\U0001f44d\U0001f3fd",  # thumbs up, a skin tone
        "\U0001f1eb\U0001f1f7",  # a flag: two regional indicators
    ]
)


class Person:
    """A program at a terminal: keys in, the screen (without its styles) out."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.log = io.StringIO()
        self.seen = 0  # screen characters already matched by `shows`
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            env=env,
            cwd=cwd,
            encoding="utf-8",
            timeout=15,
            dimensions=(ROWS, COLUMNS),
        )
        self.child.logfile_read = self.log
        self._asked = 0  # cursor position requests answered

    def _answer(self) -> None:
        """Answer prompt_toolkit's cursor position requests, as a terminal does: with
        them, it knows there is room below the prompt for the status toolbar."""
        asked = self.log.getvalue().count("\x1b[6n")
        for _ in range(asked - self._asked):
            self.child.send(f"\x1b[{ROWS // 2};1R")
        self._asked = asked

    @property
    def screen(self) -> str:
        return ANSI.sub("", self.log.getvalue()).replace("\r", "")

    def shows(self, pattern: str, timeout: float = 10.0) -> str:
        """What first matches `pattern` (a regex) on the screen after the last match."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.compile(pattern).search(self.screen, self.seen)
            if found:
                self.seen = found.end()
                return found.group()
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not shown; the screen:\n{self.screen[-3000:]}")
            with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF):
                self.child.read_nonblocking(65536, timeout=0.05)
                self._answer()

    def type(self, text: str) -> None:
        self.child.send(text)

    def pause(self) -> None:
        """Longer than prompt_toolkit waits before it takes a lone ESC as a key."""
        time.sleep(0.7)

    def leaves(self) -> int:
        """Ctrl-D; the exit status once it is gone."""
        self.child.sendcontrol("d")
        self.shows(r"\* bye")
        self.child.expect(pexpect.EOF, timeout=15)
        self.child.close()
        assert self.child.exitstatus is not None
        return self.child.exitstatus

    def stop(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


def zchat(home: Path, endpoint: str, *args: str, env: dict[str, str] | None = None) -> Person:
    """`zchat ARGS` at a terminal, in an open room, with `home` and `endpoint`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ZCHAT_")}
    environment.update(
        ZCHAT_HOME=str(home), ZCHAT_CONNECT=endpoint, ZCHAT_ADMIT_ALL="1", TERM="xterm-256color"
    )
    environment.update(env or {})
    return Person([sys.executable, "-m", "zchat", *args], environment)


@pytest.fixture
def room(tmp_path: Path) -> Iterator[tuple[Person, Peer]]:
    """alice at a terminal and bob scripted, both in the room."""
    broker, endpoint = start_broker()
    bob = start_peer("bob", endpoint, tmp_path / "bob")
    alice: Person | None = None
    try:
        bob.wait_event("ready")
        alice = zchat(tmp_path / "alice", endpoint, "peer", "--nick", "alice")
        alice.shows(r"you are alice; here: bob")
        alice.shows(r"alice>")
        bob.wait_event("join", nick="alice")
        yield alice, bob
        assert "Traceback" not in alice.screen
    finally:
        if alice is not None:
            alice.stop()
        for proc in (bob, broker):
            proc.stop()


def no_trace_of(screen: str, *texts: str) -> None:
    for text in ("Traceback", "Exception", "Press ENTER", "^[", *texts):
        assert text not in screen, text


def test_stray_escape_sequences_are_never_shown_nor_typed_into_the_line(
    room: tuple[Person, Peer],
) -> None:
    alice, bob = room
    alice.type("\x1b[<0;10;10M\x1b[<0;10;10m")  # SGR mouse press and release
    alice.type("\x1b[32;10;10M")  # an urxvt mouse report
    alice.type("\x1b[57399u\x1b[I\x1b[O")  # a kitty key code, focus in and out
    alice.type("\x1b]11;rgb:0000/0000/0000\x1b\\")  # a terminal's answer to a query
    alice.type("\x1b[" + "9" * 5000 + "A")  # an absurd CSI parameter
    os.write(alice.child.child_fd, b"\x1b[M\xff\xff\xff")  # X10 mouse past column 223
    alice.type("\x1bO")  # a lone ESC O...
    alice.pause()  # ...that nothing completes
    alice.type("still fine\r")
    assert bob.wait_event("message")["text"] == "still fine"
    alice.shows(r"<alice> still fine  \(to 1\)")
    no_trace_of(alice.screen, "[<0;", "57399", "rgb:", "9999")
    assert alice.leaves() == 0


def test_a_bracketed_paste_of_two_lines_is_one_message_shown_as_two_lines(
    room: tuple[Person, Peer],
) -> None:
    alice, bob = room
    alice.type(f"{PASTE_START}line one\rline two{PASTE_END}\r")  # a terminal pastes CR
    assert bob.wait_event("message")["text"] == "line one\nline two"
    # Shown as lines, the second marked as the message's (a received one is shown so
    # too: test_sanitize.py has one from a real peer).
    alice.shows(r"<alice> line one\n  ┆ line two  \(to 1\)")
    no_trace_of(alice.screen, "^J")
    assert alice.leaves() == 0


def test_emoji_sequences_arrive_and_show_as_typed(room: tuple[Person, Peer]) -> None:
    alice, bob = room
    alice.type(EMOJI + "\r")
    assert bob.wait_event("message")["text"] == EMOJI
    alice.shows(f"<alice> {re.escape(EMOJI)}  \\(to 1\\)")
    bob.send(f"back at you {EMOJI}")
    alice.shows(f"<bob> back at you {re.escape(EMOJI)}")
    no_trace_of(alice.screen, "<U+")
    assert alice.leaves() == 0


def test_ctrl_c_clears_a_typed_line_into_history_and_ctrl_d_leaves_with_status_0(
    room: tuple[Person, Peer],
) -> None:
    alice, bob = room
    alice.type("half a thought")
    alice.shows("half a thought")
    alice.type("\x03")  # Ctrl-C: the line goes, nothing is sent, nobody leaves
    alice.type("something else\r")
    assert bob.wait_event("message")["text"] == "something else"
    alice.shows(r"<alice> something else")
    alice.type("\x1b[A\x1b[A\r")  # Up twice: the line Ctrl-C cleared
    assert bob.wait_event("message")["text"] == "half a thought"
    assert alice.leaves() == 0
    assert bob.wait_event("leave", nick="alice")["reason"] == "bye"


def test_the_status_toolbar_tab_completion_and_help(room: tuple[Person, Peer]) -> None:
    alice, _ = room
    alice.seen = 0
    alice.shows(r"room zchat  alice  admitted 1 of 1 here  connected")
    for keys in ("/fi", "\t", "b", "\t"):  # at a person's pace: completion runs meanwhile
        alice.type(keys)
        time.sleep(0.3)
    alice.type("\r")
    alice.shows(r"bob's fingerprint: (\w{4} ){12}\w{4}")
    alice.type("/help\r")
    alice.shows(r"Ctrl-C +clear the line \(Up brings it back\); on an empty line, leave")
    assert alice.leaves() == 0


def test_a_long_paste_asks_once_before_it_is_sent(room: tuple[Person, Peer]) -> None:
    alice, bob = room
    pasted = "\r".join(f"row {i}" for i in range(8))
    alice.type(f"{PASTE_START}{pasted}{PASTE_END}\r")
    alice.shows(r"send these 8 lines as one message\? \(y/n\)")
    alice.type("n")
    alice.shows(r"not sent; Up brings it back")
    alice.type("\x1b[A\r")
    alice.shows(r"send these 8 lines as one message\? \(y/n\)")
    alice.type("y")
    assert bob.wait_event("message")["text"] == pasted.replace("\r", "\n")
    alice.shows(r"<alice> row 0\n(  ┆ row \d\n){6}  ┆ row 7  \(to 1\)")
    assert alice.leaves() == 0


#: An SGR sequence that sets a colour (foreground or background, any palette).
COLOUR = re.compile(r"\x1b\[[0-9;]*(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}], ids=["no-color", "dumb"])
def test_colours_follow_no_color_and_a_dumb_terminal(tmp_path: Path, env: dict[str, str]) -> None:
    broker, endpoint = start_broker()
    bob = start_peer("bob", endpoint, tmp_path / "bob")
    alice = None
    try:
        bob.wait_event("ready")
        alice = zchat(tmp_path / "alice", endpoint, "peer", "--nick", "alice", env=env)
        alice.shows(r"you are alice; here: bob")
        alice.type("hello\r")
        assert bob.wait_event("message")["text"] == "hello"
        alice.shows(r"<alice> hello  \(to 1\)")
        raw = alice.log.getvalue()
        assert not COLOUR.search(raw), COLOUR.search(raw)
        if env.get("TERM") == "dumb":  # and no style at all on the chat's lines
            assert re.search(r"\r\d\d:\d\d <alice> hello  \(to 1\)\r+\n", raw)
        assert alice.leaves() == 0
    finally:
        if alice is not None:
            alice.stop()
        bob.stop()
        broker.stop()


# --- an error nobody expected ---------------------------------------------------------

#: Loaded at start-up by every Python process with its directory on PYTHONPATH: makes
#: bugs to order, where a user's input reaches zchat's code: in the session (the main
#: task), and in the input line (a task of its own).
BUG = """
import zchat.peer.slash as slash
import zchat.peer.prompt as prompt
import zchat.peer.session as session

parse_line = slash.parse_line
def buggy_parse(line):
    if line.strip() == "/boom":
        raise KeyError("boom")
    return parse_line(line)
session.parse_line = buggy_parse

sendable = prompt.Keyboard._sendable
async def buggy_sendable(self, text):
    if text == "kaboom":
        raise ValueError("kaboom")
    return await sendable(self, text)
prompt.Keyboard._sendable = buggy_sendable
"""


@pytest.mark.parametrize(
    ("typed", "error", "debug"),
    [
        ("/boom", "KeyError: 'boom'", False),
        ("kaboom", "ValueError: kaboom", False),
        ("/boom", "KeyError: 'boom'", True),
    ],
    ids=["in-the-session", "in-the-input-line", "with-debug"],
)
def test_a_bug_ends_the_chat_with_one_line_and_a_hint_never_a_traceback(
    tmp_path: Path, typed: str, error: str, debug: bool
) -> None:
    (tmp_path / "bug").mkdir()
    (tmp_path / "bug" / "sitecustomize.py").write_text(BUG)
    broker, endpoint = start_broker()
    flags = ["--debug"] if debug else []
    alice = zchat(
        tmp_path / "alice",
        endpoint,
        *flags,
        "peer",
        "--nick",
        "alice",
        env={"PYTHONPATH": str(tmp_path / "bug")},
    )
    try:
        alice.shows(r"alice>")
        alice.type(typed + "\r")
        alice.shows(rf"zchat: error: internal error \({re.escape(error)}\); this is a bug in zchat")
        alice.child.expect(pexpect.EOF, timeout=15)
        alice.child.close()
        assert alice.child.exitstatus == 1
        if debug:
            assert "Traceback" in alice.screen
        else:
            alice.seen = 0
            alice.shows(
                r"zchat: hint: to see where, run it again with --debug: "
                r"zchat --debug peer --nick alice"
            )
            no_trace_of(alice.screen)
    finally:
        alice.stop()
        broker.stop()
