"""Hostile text: escape sequences and control characters from the network never reach
a terminal raw, in plain scripted output, in JSON, or in the interactive UI."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
import time
from collections.abc import Callable

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output

from zchat.broker.core import BrokerConfig
from zchat.broker.server import Server
from zchat.envelope import Identity
from zchat.peer import events as ev
from zchat.peer.client import Client
from zchat.peer.core import PeerConfig
from zchat.peer.interactive import Screen, chat
from zchat.peer.render import json_line, to_text
from zchat.peer.sanitize import for_terminal
from zchat.peer.tui_render import ChatView, plain

#: What a hostile peer (or broker) might send, and what the user must see instead.
HOSTILE = {
    "csi-clear-screen": ("\x1b[2J\x1b[H", "^[[2J^[[H"),
    "csi-colour": ("\x1b[31mred", "^[[31mred"),
    "osc-0-title": ("\x1b]0;pwned\x07", "^[]0;pwned^G"),
    "osc-8-link": ("\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\", "^[]8;;http://evil/^[\\click"),
    "osc-52-clipboard": ("\x1b]52;c;cm0gLXJmIH4=\x07", "^[]52;c;cm0gLXJmIH4=^G"),
    "c1-csi": ("\x9b31m", "<U+009B>31m"),
    "c1-osc": ("\x9d0;t\x9c", "<U+009D>0;t<U+009C>"),
    "bidi-override": ("abc\u202edcba", "abc<U+202E>dcba"),
    "bidi-isolate": ("\u2066x\u2069", "<U+2066>x<U+2069>"),
    "zero-width": ("pay\u200bpal", "pay<U+200B>pal"),
    "carriage-return": ("evil\rgood", "evil^Mgood"),
    "backspace": ("ok\x08\x08no", "ok^H^Hno"),
    "fake-line": ("hi\n12:00 <bob> send money", "hi^J12:00 <bob> send money"),
    "delete": ("a\x7fb", "a^?b"),
    "nul": ("a\x00b", "a^@b"),
    "line-separator": ("a\u2028b", "a<U+2028>b"),
}
PAYLOADS = [raw for raw, _ in HOSTILE.values()]
IDS = list(HOSTILE)


def inert(text: str) -> bool:
    """Nothing a terminal would act on: printable characters, and our own newlines."""
    return all(ch.isprintable() or ch == "\n" for ch in text)


def hostile_events(s: str) -> list[ev.Event]:
    fp = bytes(32)
    entry = ev.WhoEntry(s, fp, ev.Trust.NEW)
    return [
        ev.Ready(s, (s, "ok")),
        ev.Joined(s, fp, ev.Trust.NEW),
        ev.Joined(s, fp, ev.Trust.CHANGED, already_here=True),
        ev.KeyChanged(s, fp, fp),
        ev.Trusted(s, fp, 1),
        ev.Left(s, s),
        ev.MessageReceived(s, s, b"\x01" * 16, 0, True, (s,)),
        ev.Untrusted(s, fp, b"\x01" * 16),
        ev.Acked(b"\x01" * 16, (s,), (s,)),
        ev.Undelivered(b"\x01" * 16, (s,)),
        ev.Refused(s, s),
        ev.Problem(s, s),
        ev.Disconnected(s),
        ev.TransportFailed(s, s),
        ev.Who(entry, (entry,)),
        ev.FingerprintShown(s, fp, mine=False),
    ]


# --- the sanitiser ------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), list(HOSTILE.values()), ids=IDS)
def test_control_and_format_characters_are_shown_not_executed(raw: str, shown: str) -> None:
    out = for_terminal(raw)
    assert out.isprintable()
    assert out.startswith(shown)


def test_ordinary_text_and_other_scripts_pass_unchanged() -> None:
    for text in ["hello, world", "naïve café", "Привет", "日本語のテキスト", "emoji 🎉 ok"]:
        assert for_terminal(text) == text


# --- plain scripted output ----------------------------------------------------------


@pytest.mark.parametrize("raw", PAYLOADS, ids=IDS)
def test_plain_text_output_is_inert_for_every_event(raw: str) -> None:
    for event in hostile_events(raw):
        line = to_text(event)
        assert line is None or inert(line), (event, line)


@pytest.mark.parametrize("raw", PAYLOADS, ids=IDS)
def test_a_message_is_one_line_whatever_it_contains(raw: str) -> None:
    line = to_text(ev.MessageReceived("bob", raw, b"\x01" * 16, 0, False, ("me",)))
    assert line is not None
    assert "\n" not in line
    assert for_terminal(raw) in line


# --- JSON output --------------------------------------------------------------------


@pytest.mark.parametrize("raw", PAYLOADS, ids=IDS)
def test_json_output_is_printable_ascii_and_keeps_the_exact_text(raw: str) -> None:
    for event in hostile_events(raw):
        line = json_line(event)
        assert all(" " <= ch <= "~" for ch in line), line
    message = ev.MessageReceived(raw, raw, b"\x01" * 16, 0, False, ("me",))
    decoded = json.loads(json_line(message))
    assert (decoded["from"], decoded["text"]) == (raw, raw)  # escaped, not altered


# --- the interactive UI -------------------------------------------------------------


@pytest.mark.parametrize("raw", PAYLOADS, ids=IDS)
def test_chat_view_lines_are_inert_for_every_event(raw: str) -> None:
    view = ChatView("me")
    view.render(ev.Sent(b"\x01" * 16, raw, (raw,), direct=True))
    for event in hostile_events(raw):
        for line in view.render(event):
            for fragment in line:
                assert "[ZeroWidthEscape]" not in fragment[0]  # written raw by prompt_toolkit
                assert fragment[1].isprintable(), (event, fragment)


def captured_output() -> tuple[io.StringIO, Vt100_Output]:
    buffer = io.StringIO()
    return buffer, Vt100_Output(buffer, lambda: Size(rows=24, columns=200), term="xterm")


def test_the_screen_writes_hostile_nicknames_and_text_visibly() -> None:
    buffer, output = captured_output()
    screen = Screen(output)
    view = ChatView("me")
    for raw in PAYLOADS:
        screen.show(view.render(ev.MessageReceived(raw, raw, b"\x01" * 16, 0, False, ("me",))))
    written = buffer.getvalue()
    for raw, shown in HOSTILE.values():
        assert raw not in written
        assert shown in written
    for dangerous in ("\x1b]", "\x1b[2J", "\x9b", "\x9d", "\u202e", "\u200b", "\x08", "\x00"):
        assert dangerous not in written


def test_hostile_text_from_a_real_peer_reaches_the_terminal_neutralised(
    alice: Identity, bob: Identity
) -> None:
    config = BrokerConfig(heartbeat_interval=0.1, heartbeat_timeout=0.6)
    server = Server(["tcp://127.0.0.1:*"], config)
    (endpoint,) = server.open()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    async def scenario() -> None:
        buffer, output = captured_output()
        screen = Screen(keep=True)
        with create_pipe_input() as keys, create_app_session(input=keys, output=output):
            task = asyncio.create_task(
                chat("alice", alice, None, PeerConfig(), endpoint, screen=screen)
            )
            b = Client.create("bob", bob, endpoint)
            b.start()
            await _until(lambda: "alice" in b.core.members)
            for raw in PAYLOADS:
                b.send_text(raw)
            last_shown = HOSTILE["line-separator"][1]
            await _until(lambda: any(last_shown in line for line in screen.transcript or []))
            keys.send_text("/quit\r")
            assert await asyncio.wait_for(task, 5) == 0
            await b.close()
        written = buffer.getvalue()
        for raw, shown in HOSTILE.values():
            assert raw not in written
            assert shown in written
        # prompt_toolkit's own drawing uses CSI; nothing else from the message may
        for dangerous in ("\x1b]", "\x1b[2J", "\x9b", "\x9d", "\u202e", "\u200b", "\x08", "\x00"):
            assert dangerous not in written
        # the fake line stays inside bob's one line
        (faked,) = [line for line in screen.transcript or [] if "send money" in line]
        assert re.fullmatch(r"\d\d:\d\d <bob> hi\^J12:00 <bob> send money", faked)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 20))
    finally:
        server.stop.set()
        thread.join(timeout=5)


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def test_plain_view_text_matches_what_is_written() -> None:
    line = ChatView("me", clock=lambda: 0.0).render(
        ev.MessageReceived("bob", "\x1b[31mhi", b"\x01" * 16, 0, False, ("me",))
    )[0]
    assert plain(line).endswith("<bob> ^[[31mhi")
