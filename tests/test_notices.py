"""Joins and leaves that come close together are said once, in the terminal UI: a
flaky member is "reconnected", a burst of arrivals one line; what is news (a newcomer,
a changed key, a message) is never held, and shows what was held before it."""

from __future__ import annotations

import asyncio

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from zchat.envelope import Identity
from zchat.peer import events as ev
from zchat.peer.client import Client
from zchat.peer.interactive import Parts, Screen, Terminal
from zchat.peer.notices import WINDOW, Quiet
from zchat.peer.render import Renderer, plain

FP = bytes(range(32))
OTHER = bytes(32)
ADMIT = "/admit bob AAAQ EAYE"


def said(quiet: Quiet) -> list[str]:
    return [plain(line) for line in quiet.release()]


def test_a_member_who_drops_out_and_comes_back_at_once_is_one_line() -> None:
    quiet = Quiet()
    assert quiet.hold(ev.Left("bob", "timeout"), 0.0)
    assert quiet.hold(ev.Joined("bob", FP, ev.Trust.PINNED), 1.0)
    assert not quiet.due(WINDOW - 0.1)
    assert quiet.due(WINDOW)
    assert said(quiet) == ["* bob reconnected"]
    assert quiet.release() == []  # said once


def test_arrivals_together_are_one_line_and_leaves_keep_their_reason() -> None:
    quiet = Quiet()
    for name in ("bob", "carol", "dave"):
        quiet.hold(ev.Joined(name, FP, ev.Trust.PINNED), 0.5)
    quiet.hold(ev.Left("erin", "timeout"), 0.6)
    quiet.hold(ev.Left("frank", "bye"), 0.7)
    quiet.hold(ev.Joined("gina", FP, ev.Trust.PINNED), 0.8)
    quiet.hold(ev.Left("gina", "bye"), 0.9)
    assert said(quiet) == [
        "* bob, carol, dave joined",
        "* erin left (timed out)",
        "* frank left",
        "* gina joined and left",
    ]


def test_a_member_still_not_admitted_is_reminded_in_one_line_not_the_whole_warning() -> None:
    quiet = Quiet()
    first = ev.AdmitNeeded("bob", FP, False, ADMIT)
    assert not quiet.hold(ev.Joined("bob", FP, ev.Trust.NEW), 0.0)  # a newcomer: news
    assert not quiet.hold(first, 0.0)  # the whole warning, the first time
    quiet.hold(ev.Left("bob", "timeout"), 10.0)
    quiet.hold(ev.Joined("bob", FP, ev.Trust.PINNED), 11.0)
    assert quiet.hold(ev.AdmitNeeded("bob", FP, False, ADMIT), 11.0)
    assert said(quiet) == [
        f"! bob reconnected, still NOT ADMITTED: compare fingerprints, then {ADMIT}"
    ]


def test_a_member_back_with_another_key_is_warned_in_full() -> None:
    quiet = Quiet()
    quiet.hold(ev.AdmitNeeded("bob", FP, False, ADMIT), 0.0)
    quiet.hold(ev.Left("bob", "bye"), 1.0)
    assert not quiet.hold(ev.AdmitNeeded("bob", OTHER, False, "/admit bob AAAA AAAA"), 2.0)


@pytest.mark.parametrize(
    "event",
    [
        ev.Joined("bob", FP, ev.Trust.NEW),
        ev.Joined("bob", FP, ev.Trust.CHANGED),
        ev.Joined("bob", FP, ev.Trust.PINNED, already_here=True),
        ev.KeyChanged("bob", FP, OTHER),
        ev.MessageReceived("bob", "hi", b"\x01" * 16, 0, False, ("alice",)),
        ev.Ready("alice", ("bob",), reconnected=True),
        ev.Problem("unexpected", "odd"),
    ],
)
def test_news_is_never_held(event: ev.Event) -> None:
    assert not Quiet().hold(event, 0.0)


def test_the_terminal_shows_what_was_held_before_news_and_on_time(alice: Identity) -> None:
    """`peer.interactive.Terminal` releases what `Quiet` holds before the next line of
    news, and after the window when nothing else comes."""

    async def scenario() -> None:
        now = [100.0]
        screen = Screen(keep=True)
        client = Client.create("alice", alice, "tcp://127.0.0.1:9")  # never started
        front = Terminal(client, Parts(screen, quiet=Quiet(window=0.2)), clock=lambda: now[0])
        front.show([ev.Left("bob", "timeout")])
        front.show([ev.Joined("bob", FP, ev.Trust.PINNED)])
        assert screen.transcript == []
        front.show([ev.MessageReceived("bob", "back!", b"\x01" * 16, 100_000, False, ("alice",))])
        assert screen.transcript is not None
        assert len(screen.transcript) == 2
        assert screen.transcript[0] == "* bob reconnected"
        assert screen.transcript[1].endswith("<bob> back!")
        front.show([ev.Left("carol", "bye")])
        now[0] += 0.3
        await asyncio.sleep(0.5)
        assert screen.transcript[-1] == "* carol left"

    with create_pipe_input() as keys, create_app_session(input=keys, output=DummyOutput()):
        asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_reconnect_is_one_line_with_how_many_are_here() -> None:
    (line,) = Renderer("alice").render(ev.Ready("alice", ("bob", "carol"), reconnected=True), 0.0)
    assert plain(line) == "* back in the room: 3 members"
