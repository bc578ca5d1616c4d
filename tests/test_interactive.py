"""The interactive chat: keys typed into prompt_toolkit's pipe input, against a real
broker on loopback TCP; and once, the real `zchat peer` in a pseudo-terminal.

Every wait is bounded: a poll of what the screen shows, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from pexpect.popen_spawn import PopenSpawn
from prompt_toolkit.application import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput
from prompt_toolkit.output.vt100 import Vt100_Output
from prompt_toolkit.utils import get_cwidth

from tests.net import FAST, broker_thread, joined, make_client
from tests.support.lying_broker import lying_broker
from tests.support.waits import until
from zchat.broker.core import Broker, Outgoing
from zchat.commands.peer import exit_code
from zchat.envelope import Identity, fingerprint, format_fingerprint, load_identity
from zchat.exit_codes import EXIT_NICK_TAKEN, EXIT_OK, EXIT_UNDELIVERED
from zchat.peer import events as ev
from zchat.peer.client import Client
from zchat.peer.config import PeerConfig
from zchat.peer.core import Phase
from zchat.peer.interactive import Screen, chat
from zchat.peer.pinfile import PINS_FILE, PinFile
from zchat.peer.pins import Admission, How, Pin
from zchat.peer.render import Line, Renderer, plain
from zchat.peer.session import Outcome
from zchat.peer.tui_style import CONTINUATION
from zchat.wire import protocol as p
from zchat.wire.errors import ProtocolError

UP = "\x1b[A"
CTRL_C = "\x03"
CTRL_D = "\x04"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"  # bracketed paste: one key event


# --- harness ------------------------------------------------------------------------


@contextlib.contextmanager
def broker(endpoint: str = "tcp://127.0.0.1:*") -> Iterator[str]:
    """A real broker in a thread; yields the endpoint it bound."""
    with broker_thread(FAST, endpoint) as server:
        yield server.bound[0]


class Terminal:
    """The user's side of a chat() session: keys in, screen lines out."""

    def __init__(self, keys: PipeInput, screen: Screen, task: asyncio.Task[Outcome]) -> None:
        self.keys = keys
        self.screen = screen
        self.task = task
        self._seen = 0  # lines already matched by `shows`

    @property
    def lines(self) -> list[str]:
        assert self.screen.transcript is not None
        return self.screen.transcript

    def type(self, text: str) -> None:
        self.keys.send_text(text)

    async def shows(self, pattern: str, timeout: float = 5.0) -> str:
        """The first line after the last match that matches `pattern` (a regex)."""

        def match() -> int | None:
            lines = self.lines
            return next(
                (i for i in range(self._seen, len(lines)) if re.search(pattern, lines[i])), None
            )

        with contextlib.suppress(AssertionError):
            await until(lambda: self.task.done() or match() is not None, timeout)
        i = match()
        if i is None:
            screen = "\n".join(self.lines)
            raise AssertionError(f"{pattern!r} not shown; the screen:\n{screen}")
        self._seen = i + 1
        return self.lines[i]

    async def exit_status(self, timeout: float = 5.0) -> int:
        """What `zchat peer` would exit with, once the session ended."""
        return exit_code(await asyncio.wait_for(self.task, timeout))


@contextlib.asynccontextmanager
async def terminal(
    endpoint: str,
    identity: Identity,
    nick: str | None = "alice",
    pins: PinFile | None = None,
    config: PeerConfig | None = None,
    hint_after: float = 5.0,
) -> AsyncIterator[Terminal]:
    screen = Screen(keep=True)
    with create_pipe_input() as keys, create_app_session(input=keys, output=DummyOutput()):
        task = asyncio.create_task(
            chat(
                nick,
                lambda nick: make_client(nick, identity, endpoint, config, pins),
                screen=screen,
                hint_after=hint_after,
            )
        )
        term = Terminal(keys, screen, task)
        try:
            yield term
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


@contextlib.asynccontextmanager
async def alice_at_a_terminal_with_bob(
    alice: Identity, bob: Identity
) -> AsyncIterator[tuple[Terminal, Client]]:
    """bob (a script) in the room, then alice at a terminal once she is in."""
    with broker() as endpoint:
        b = await joined("bob", bob, endpoint)
        async with terminal(endpoint, alice) as term:
            await term.shows(r"you are alice; here: bob")
            yield term, b
        await b.close()


async def next_of(client: Client, *kinds: type, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        event = await asyncio.wait_for(client.events.get(), deadline - time.monotonic())
        if isinstance(event, kinds):
            return event


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


# --- chatting -----------------------------------------------------------------------


def test_a_typed_line_reaches_the_room_and_shows_once_acknowledged(
    alice: Identity, bob: Identity
) -> None:
    async def scenario() -> None:
        async with alice_at_a_terminal_with_bob(alice, bob) as (term, b):
            term.type("hello bob\r")
            got = await next_of(b, ev.MessageReceived)
            assert (got.sender, got.text, got.direct) == ("alice", "hello bob", False)
            await term.shows(r"^\d\d:\d\d <alice> hello bob  \(to 1\)$")
            term.type("/quit\r")
            assert await term.exit_status() == EXIT_OK
            assert (await next_of(b, ev.Left)).nick == "alice"

    run(scenario)


def test_arrivals_show_time_and_nickname_above_the_prompt(alice: Identity, bob: Identity) -> None:
    async def scenario() -> None:
        with broker() as endpoint:
            async with terminal(endpoint, alice) as term:
                await term.shows("you are alice")
                b = await joined("bob", bob, endpoint)
                await term.shows(
                    r"\* bob joined \(first time seen: key \w{4} \w{4} \w{4} … pinned\)"
                )
                b.send_text("hi alice")
                await term.shows(r"^\d\d:\d\d <bob> hi alice$")
                b.send_text("just you", ["alice"])
                await term.shows(r"^\d\d:\d\d <bob> \[direct to you\] just you$")
                await b.close()
                await term.shows(r"\* bob left$")
                term.type(CTRL_D)
                assert await term.exit_status() == EXIT_OK

    run(scenario)


def test_who_lists_everyone_with_fingerprints_and_who_admitted_them(
    alice: Identity, bob: Identity
) -> None:
    async def scenario() -> None:
        with broker() as endpoint:
            b = await joined("bob", bob, endpoint)
            async with terminal(endpoint, alice, config=PeerConfig()) as term:
                await term.shows("you are alice; here: bob")
                term.type("/who\r")
                await term.shows(r"\* 2 here:")
                me = await term.shows("alice")
                assert format_fingerprint(alice.fingerprint) in me
                assert me.endswith("you")
                other = await term.shows("bob")
                assert format_fingerprint(bob.fingerprint) in other
                assert other.endswith("not admitted")
                term.type("/fingerprint bob\r")
                await term.shows(f"bob's fingerprint: {format_fingerprint(bob.fingerprint)}")
                term.type("/fingerprint\r")
                await term.shows(f"your fingerprint: {format_fingerprint(alice.fingerprint)}")
                term.type(f"/admit bob {format_fingerprint(bob.fingerprint)[:19].lower()}\r")
                await term.shows(r"admitted bob \(key .* compared\)")
                term.type("/who\r")
                assert (await term.shows(r"^  bob ")).endswith("admitted by you")
                term.type("exit\r")
                assert await term.exit_status() == EXIT_OK
            await b.close()

    run(scenario)


def test_msg_sends_a_direct_message_to_that_nickname_only(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    async def scenario() -> None:
        with broker() as endpoint:
            b = await joined("bob", bob, endpoint)
            c = await joined("carol", carol, endpoint)
            async with terminal(endpoint, alice) as term:
                await term.shows("you are alice")
                term.type("/msg bob psst\r")
                got = await next_of(b, ev.MessageReceived)
                assert (got.text, got.direct) == ("psst", True)
                await term.shows(r"<alice> \[direct to bob\] psst  \(delivered\)")
                term.type("everyone\r")
                # carol's first message is the room one: the direct one never reached her
                assert (await next_of(c, ev.MessageReceived)).text == "everyone"
                term.type("/msg nobody hi\r")
                await term.shows("nobody is not in the room: message not sent")
                term.type("/quit\r")
                assert await term.exit_status() == EXIT_OK
            await b.close()
            await c.close()

    run(scenario)


def test_unknown_commands_get_a_hint_and_are_never_sent(alice: Identity, bob: Identity) -> None:
    async def scenario() -> None:
        async with alice_at_a_terminal_with_bob(alice, bob) as (term, b):
            term.type("/frobnicate now\r")
            await term.shows(r"unknown command /frobnicate; /help lists the commands")
            term.type("/msg\r")
            await term.shows(r"usage: /msg NICK TEXT")
            term.type("/help\r")
            await term.shows(r"/trust NICK")
            term.type("//slash\r")
            # bob's first message is this one: nothing typed before it was sent
            assert (await next_of(b, ev.MessageReceived)).text == "/slash"
            term.type("/quit\r")
            assert await term.exit_status() == EXIT_OK

    run(scenario)


def test_up_recalls_the_previous_line(alice: Identity, bob: Identity) -> None:
    async def scenario() -> None:
        async with alice_at_a_terminal_with_bob(alice, bob) as (term, b):
            term.type("same again\r")
            assert (await next_of(b, ev.MessageReceived)).text == "same again"
            term.type(UP + "\r")
            assert (await next_of(b, ev.MessageReceived)).text == "same again"
            term.type(CTRL_C)
            assert await term.exit_status() == EXIT_OK

    run(scenario)


def test_a_message_over_the_limit_is_refused_with_a_clear_message(
    alice: Identity, bob: Identity
) -> None:
    async def scenario() -> None:
        async with alice_at_a_terminal_with_bob(alice, bob) as (term, b):
            term.type(PASTE_START + "x" * 17_000 + PASTE_END + "\r")  # a paste
            await term.shows(r"message is 17,000 bytes; the limit is 16,384: not sent")
            term.type("/quit\r")
            assert await term.exit_status() == EXIT_OK
            # and bob got nothing from alice before she left
            assert isinstance(await next_of(b, ev.MessageReceived, ev.Left), ev.Left)

    run(scenario)


# --- nicknames ----------------------------------------------------------------------


def test_without_a_nick_it_asks_and_asks_again_when_taken_or_invalid(
    alice: Identity, bob: Identity
) -> None:
    async def scenario() -> None:
        with broker() as endpoint:
            b = await joined("bob", bob, endpoint)
            async with terminal(endpoint, alice, nick=None) as term:
                term.type("not a nick!\r")
                await term.shows(r"a nickname is 1-32 characters")
                term.type("BOB\r")
                await term.shows(r"^! BOB is taken in this room; choose another$")
                term.type("alice\r")
                await term.shows(r"you are alice; here: bob")
                term.type("hi\r")
                assert (await next_of(b, ev.MessageReceived)).sender == "alice"
                term.type("/quit\r")
                assert await term.exit_status() == EXIT_OK
            await b.close()

    run(scenario)


def test_leaving_at_the_nickname_prompt_is_clean(alice: Identity) -> None:
    async def scenario() -> None:
        with broker() as endpoint:
            async with terminal(endpoint, alice, nick=None) as term:
                term.type(CTRL_D)
                assert await term.exit_status() == EXIT_OK

    run(scenario)


# --- connection ---------------------------------------------------------------------


@pytest.mark.slow
def test_it_waits_for_the_broker_then_shows_reconnecting_and_back(
    alice: Identity, bob: Identity
) -> None:
    async def scenario() -> None:
        with broker() as endpoint:
            pass  # a port that was free a moment ago: nobody listens there now
        async with terminal(endpoint, alice, hint_after=0.2) as term:
            await term.shows(r"no answer yet from tcp://127\.0\.0\.1:\d+; is the broker running")
            with broker(endpoint):
                await term.shows("you are alice")
                b = await joined("bob", bob, endpoint)
                await term.shows("bob joined")
            await term.shows(r"connection lost \(the broker stopped answering\); reconnecting…")
            with broker(endpoint):
                await term.shows(r"back in the room: (2 members|nobody else here)$", timeout=10)
                term.type("/quit\r")
                assert await term.exit_status() == EXIT_OK
                await b.close()

    run(scenario)


def test_a_reconnect_is_one_line_however_many_are_back(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    async def scenario() -> None:
        with contextlib.ExitStack() as first:
            endpoint = first.enter_context(broker())
            b = await joined("bob", bob, endpoint)
            c = await joined("carol", carol, endpoint)
            async with terminal(endpoint, alice) as term:
                await term.shows(r"you are alice; here: (bob, carol|carol, bob)")
                first.close()  # the broker goes away: everyone is away, then back
                lost = await term.shows(r"connection lost .*; reconnecting…")
                with broker(endpoint):
                    # (however many were back before us: the others come back quietly)
                    back = await term.shows(r"back in the room: (\d members|nobody else here)$")
                    await until(
                        lambda: all(
                            x.core.phase is Phase.READY and len(x.core.members) == 2 for x in (b, c)
                        )
                    )
                    b.send_text("marker")  # news shows whatever notice was held before it
                    await term.shows(r"<bob> marker$")
                    after = term.lines[term.lines.index(lost) + 1 :]
                    assert after[:-1] == [back], after  # and nothing per member
                    term.type("/quit\r")
                    assert await term.exit_status() == EXIT_OK
                    await b.close()
                    await c.close()

    run(scenario)


def test_a_member_who_drops_out_and_comes_back_is_one_line_not_a_new_warning(
    alice: Identity, bob: Identity
) -> None:
    """Before: "bob left (timed out)", "bob joined", and the three lines of the NOT
    ADMITTED warning again, at every drop of bob's connection."""

    async def scenario() -> None:
        with broker_thread(FAST) as server:
            endpoint = server.bound[0]
            b = await joined("bob", bob, endpoint)
            async with terminal(endpoint, alice, config=PeerConfig()) as term:  # closed
                await term.shows("you are alice; here: bob")
                await term.shows(r"bob is here, NOT ADMITTED")
                term.lines.clear()
                term._seen = 0
                assert b._ticker is not None
                b._ticker.cancel()  # bob's connection dies: no BYE...
                b._close_socket()
                await until(lambda: "bob" not in server.core.nicks)  # ...he times out
                again = await joined("bob", bob, endpoint)
                again.send_text("marker")  # news: shows what was held before it
                await term.shows(r"<bob> \[not admitted\] marker$")
                fp = format_fingerprint(bob.fingerprint)[:19]
                assert term.lines == [
                    f"! bob reconnected, still NOT ADMITTED: compare fingerprints, then "
                    f"/admit bob {fp}",
                    term.lines[-1],
                ]
                term.type("/quit\r")
                assert await term.exit_status() == EXIT_OK
                await again.close()

    run(scenario)


class HoldsAliceAtTheDoor(Broker):
    """A broker that lets no HELLO from alice in until `open` is set: she stays in the
    connecting state for as long as the test wants."""

    def __init__(self) -> None:
        super().__init__(FAST, random=os.urandom)
        self.open = threading.Event()

    def handle(self, conn: bytes, frames: list[bytes], now: float, *rest: Any) -> Any:
        if not self.open.is_set():
            with contextlib.suppress(ProtocolError):
                hello = p.parse_from_peer(frames)
                if isinstance(hello, p.Hello) and hello.nick == b"alice":
                    return []
        return super().handle(conn, frames, now, *rest)


#: alice says hello again soon after a HELLO that got no answer.
IMPATIENT = PeerConfig(admit_all=True, heartbeat_timeout=0.3)


def test_a_return_refused_for_good_says_so_names_what_waited_and_asks_for_no_nickname(
    alice: Identity, bob: Identity
) -> None:
    async def scenario() -> None:
        with lying_broker() as (server, core):
            endpoint = server.bound[0]
            b = await joined("bob", bob, endpoint)
            # Patience enough for the line typed meanwhile to be read under load (0.5 s
            # was not, once, with the whole suite on two cores); the test waits it out.
            patient = PeerConfig(admit_all=True, rejoin_patience=3)
            async with terminal(endpoint, alice, config=patient) as term:
                await term.shows(r"you are alice; here: bob")

                def taken(o: Outgoing) -> list[Outgoing]:
                    if o.frames[1] == bytes([p.Command.CHALLENGE]):
                        refusal = p.Refuse(p.RefuseCode.NICK_TAKEN, "alice is taken")
                        return [Outgoing(o.conn, p.encode(refusal))]
                    return [o]

                core.lie = taken
                core.inject("alice", p.encode(p.Error(p.ErrorCode.HELLO_FIRST, "who?")))
                await term.shows(r"^! the broker refused us on coming back into the room \(nick")
                term.type("still there?\r")
                await term.shows(r"^! not in the room right now .*: your message waits")
                await term.shows(r"^! the broker still refuses us, giving up: alice is taken$")
                await term.shows(r"^! not delivered \(the broker never acknowledged it\): .still")
                assert await term.exit_status() == EXIT_NICK_TAKEN
                assert not [line for line in term.lines if "choose another" in line]
            await b.close()

    run(scenario)


def test_lines_typed_while_connecting_wait_and_go_once_in_the_room(
    alice: Identity, bob: Identity
) -> None:
    async def scenario() -> None:
        door = HoldsAliceAtTheDoor()
        with broker_thread(FAST, core=door) as server:
            endpoint = server.bound[0]
            async with terminal(endpoint, alice, config=IMPATIENT) as term:
                await term.shows("connecting to")
                term.type("early bird\r")
                await term.shows(r"not in the room yet: “early bird” goes once you are")
                term.type("/who\r")
                term.type("second\r")
                b = await joined("bob", bob, endpoint)
                door.open.set()
                await term.shows(r"you are alice; here: bob", timeout=10)
                assert (await next_of(b, ev.MessageReceived)).text == "early bird"
                await term.shows(r"\* 2 here:")
                assert (await next_of(b, ev.MessageReceived)).text == "second"
                term.type("/quit\r")
                assert await term.exit_status() == EXIT_OK
                await b.close()

    run(scenario)


def test_leaving_while_connecting_names_the_lines_that_were_never_sent(alice: Identity) -> None:
    async def scenario() -> None:
        door = HoldsAliceAtTheDoor()
        with broker_thread(FAST, core=door) as server:
            async with terminal(server.bound[0], alice, config=IMPATIENT) as term:
                await term.shows("connecting to")
                term.type("into the void\r")
                await term.shows("not in the room yet")
                term.type(CTRL_D)
                await term.shows(
                    r"not sent \(you left before you were in the room\): “into the void”"
                )
                assert await term.exit_status() == EXIT_UNDELIVERED

    run(scenario)


@pytest.mark.slow
def test_messages_the_broker_never_acknowledged_are_named_on_leaving(
    alice: Identity, bob: Identity
) -> None:
    async def scenario() -> None:
        with contextlib.ExitStack() as stack:
            endpoint = stack.enter_context(broker())
            b = await joined("bob", bob, endpoint)
            async with terminal(endpoint, alice) as term:
                await term.shows("you are alice; here: bob")
                stack.close()  # the broker stops: nothing acknowledges what follows
                term.type("into the void\r")
                term.type("/quit\r")
                await term.shows(
                    r"not delivered \(the broker never acknowledged it\): “into the void”"
                )
                assert await term.exit_status() == EXIT_UNDELIVERED
            await b.close(max_idle=0)

    run(scenario)


# --- key pinning, as the user sees it ------------------------------------------------


def test_a_changed_key_is_a_prominent_warning_and_trust_releases_held_messages(
    tmp_path: Path, alice: Identity, bob: Identity, carol: Identity
) -> None:
    async def scenario() -> None:
        # we met "bob" before, with another key
        admitted = Admission(How.YOU, "alice", 1)
        pins = PinFile(tmp_path / PINS_FILE, (Pin("bob", carol.fingerprint, admitted),))
        new = format_fingerprint(bob.fingerprint)
        with broker() as endpoint:
            b = await joined("bob", bob, endpoint)
            async with terminal(endpoint, alice, pins=pins, config=PeerConfig()) as term:
                await term.shows(r"WARNING: bob's KEY HAS CHANGED")
                await term.shows(f"pinned: {format_fingerprint(carol.fingerprint)}")
                await term.shows(f"now:    {new}")
                await term.shows(f"/trust bob {new[:19]}")
                term.type("/msg bob hi\r")
                await term.shows(r"bob's key changed; check it and /trust bob first")
                b.send_text("it is really me")
                await term.shows(r"a message signed by bob's UNTRUSTED new key .* held back")
                assert not any("it is really me" in line for line in term.lines)
                # Without the fingerprint, or with the stale one: refused, and the refusal
                # shows no part of the key there is now (a screen to copy it from).
                term.type("/trust bob\r")
                await term.shows(r"no fingerprint given for bob: .* run /fingerprint bob")
                term.type(f"/trust bob {format_fingerprint(carol.fingerprint)[:19]}\r")  # stale
                await term.shows(r"what you typed is not the start of the key bob has here")
                refusals = [line for line in term.lines if "nothing changed" in line]
                assert len(refusals) == 2
                assert not any(new[:9] in line for line in refusals)
                assert not any("it is really me" in line for line in term.lines)
                term.type(f"/trust bob {new[:24]}\r")
                await term.shows(r"you now trust bob's key .*; the message held back follows")
                await term.shows(r"<bob> it is really me")
                (saved,) = PinFile.open(tmp_path).pins  # and /trust is kept
                assert (saved.nick, saved.fingerprint) == ("bob", fingerprint(bob.public_der))
                assert saved.admission is not None
                assert saved.admission.how is How.YOU
                term.type("/quit\r")
                assert await term.exit_status() == EXIT_OK
            await b.close()

    run(scenario)


# --- the real program in a pseudo-terminal ------------------------------------------

#: Styles and cursor moves that prompt_toolkit puts between words.
ESC = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def zchat(*args: str) -> list[str]:
    return [sys.executable, "-m", "zchat", *args]


def _env(home: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZCHAT_")}
    env.update(
        ZCHAT_HOME=str(home),
        ZCHAT_CONNECT=endpoint,
        TERM="xterm",
        # No terminal answers prompt_toolkit's cursor position request here.
        PROMPT_TOOLKIT_NO_CPR="1",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.mark.slow
def test_a_person_at_a_terminal_picks_a_free_nickname_chats_and_leaves(tmp_path: Path) -> None:
    broker_proc = pexpect.spawn(
        zchat("broker", "--bind", "tcp://127.0.0.1:*")[0],
        zchat("broker", "--bind", "tcp://127.0.0.1:*")[1:],
        env=_env(tmp_path / "broker", ""),
        encoding="utf-8",
        timeout=15,
    )
    carol = person = None
    try:
        broker_proc.expect(r"listening on (tcp://127\.0\.0\.1:\d+)")
        endpoint = broker_proc.match.group(1)
        # carol is a script holding the nickname the person will try first
        carol = PopenSpawn(
            zchat("peer", "--nick", "carol", "--json"),
            env=_env(tmp_path / "carol", endpoint),
            encoding="utf-8",
            timeout=15,
        )
        carol.expect(r'"event": "ready"')

        person = pexpect.spawn(
            sys.executable,
            ["-m", "zchat", "peer"],
            env=_env(tmp_path / "dave", endpoint),
            encoding="utf-8",
            timeout=15,
            dimensions=(40, 120),
        )
        person.expect("nickname:")
        person.sendline("carol")
        person.expect(r"carol is taken in this room; choose another")
        person.expect("nickname:")
        person.sendline("dave")
        person.expect(rf"you are {ESC}dave{ESC}; here: {ESC}carol")
        # Neither has admitted the other: each is told, with the whole fingerprint and
        # the command to type once it matches what the other reads out.
        person.expect(
            rf"{ESC}carol{ESC} is here, NOT ADMITTED: carol receives nothing from you"
            " until you admit them"
        )
        person.expect(rf"fingerprint: {ESC}((?:\w{{4}} ){{12}}\w{{4}})")
        carols = load_identity(tmp_path / "carol" / "carol").fingerprint
        assert person.match.group(1) == format_fingerprint(carols)
        person.expect(rf"(?s)if it matches, type:.*?/admit carol {format_fingerprint(carols)[:19]}")
        person.expect(rf"dave{ESC}>")
        person.sendline("anyone?")
        person.expect(r"nobody here is admitted yet \(carol\): message not sent")

        carol.expect(r'"event": "admit-needed", "nick": "dave", "fingerprint": "([A-Z2-7 ]+)"')
        daves = load_identity(tmp_path / "dave" / "dave").fingerprint
        # carol, the nickname dave tried first and did not get, left nothing behind
        assert sorted(p.name for p in (tmp_path / "dave").iterdir()) == ["dave"]
        assert carol.match.group(1) == format_fingerprint(daves)
        carol.sendline(f"/admit dave {format_fingerprint(daves)[:19]}")
        carol.expect(r'"event": "admitted", "nick": "dave", .*"how": "you"')
        # Spaces and case do not matter; sixteen characters are enough.
        person.sendline(f"/admit carol {format_fingerprint(carols).replace(' ', '')[:16].lower()}")
        person.expect(rf"admitted {ESC}carol{ESC} \(key \w{{4}} \w{{4}} \w{{4}} … compared\)")

        carol.sendline("hello whoever you are")
        person.expect(rf"<{ESC}carol{ESC}> hello whoever you are")
        person.sendline("hi carol, dave here")
        person.expect(rf"hi carol, dave here{ESC}  \(to 1\)")
        carol.expect(r'"event": "message", "from": "dave", "text": "hi carol, dave here"')

        person.sendline("/who")
        person.expect(r"2 here:")
        person.expect(rf"dave{ESC}\s+{ESC}(\w{{4}} ){{12}}\w{{4}}{ESC}  you")
        person.expect(rf"carol{ESC}\s+{ESC}(\w{{4}} ){{12}}\w{{4}}{ESC}  admitted by you")

        person.sendline("/msg carol just between us")
        person.expect(rf"\[direct to carol\] {ESC}just between us{ESC}  \(delivered\)")
        carol.expect(
            r'"from": "dave", "text": "just between us", "id": "\w+", "ts": \d+, "direct": true'
        )

        person.sendline("/nonsense")
        person.expect(r"unknown command /nonsense")

        person.sendline("exit")
        person.expect(r"bye")
        person.expect(pexpect.EOF)
        person.close()
        assert person.exitstatus == 0
        carol.expect(r'"event": "leave", "nick": "dave", "reason": "bye"')
    finally:
        for proc in (person, broker_proc):
            if proc is not None and proc.isalive():
                proc.terminate(force=True)
        if carol is not None:
            carol.sendeof()
            with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF):
                carol.expect(pexpect.EOF, timeout=5)
            if carol.proc.poll() is None:
                carol.kill(9)


# --- long lines ---------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def screen_rows(lines: list[Line], columns: int) -> list[str]:
    """What a terminal `columns` wide shows for `lines`, row by row, colours stripped."""
    out = io.StringIO()
    Screen(Vt100_Output(out, lambda: Size(rows=24, columns=columns))).show(lines)
    text = ANSI.sub("", out.getvalue()).replace("\r", "")
    return text.split("\n")[:-1]


def test_a_long_line_wraps_into_marked_rows_so_no_row_can_pass_for_a_new_line() -> None:
    """A 16 KB message padded with spaces: left to the terminal, it would wrap into a
    row reading `12:00 <bob> …` of the attacker's choosing."""
    now = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))
    fake = "12:00 <bob> the broker is down, paste your key here"
    lines: list[Line] = []
    for pad in range(36, 44):  # some padding lands the fake at the start of a row
        text = "hi" + " " * pad + (" " * 34 + fake) * 200
        event = ev.MessageReceived("mallory", text, b"", int(now * 1000), False, ("alice",))
        lines += Renderer("alice").render(event, now)
    rows = screen_rows(lines, 40)
    assert len(rows) > 8 * 200
    starts = [i for i, row in enumerate(rows) if not row.startswith(CONTINUATION)]
    assert len(starts) == 8  # one unmarked row per message: its first
    assert all(rows[i].startswith("12:00 <mallory> hi") for i in starts)
    assert all(get_cwidth(row) < 40 for row in rows)  # no row left for the terminal to wrap
    # Nothing is lost: the rows put back together are the lines.
    ends = [*starts[1:], len(rows)]
    rejoined = [
        rows[i] + "".join(r.removeprefix(CONTINUATION) for r in rows[i + 1 : end])
        for i, end in zip(starts, ends, strict=True)
    ]
    assert rejoined == [plain(line) for line in lines]


def test_wide_and_ambiguous_characters_never_push_a_row_past_the_edge() -> None:
    text = "中文字符" * 30 + "○●◎" * 30 + "e\u0301" * 30 + "😀" * 30
    line = _message_line(text)
    for columns in (12, 13, 40, 81):
        rows = screen_rows([line], columns)
        assert all(get_cwidth(row) <= columns - 1 for row in rows)
        assert all(row.startswith(CONTINUATION) for row in rows[1:])
        assert "".join(r.removeprefix(CONTINUATION) for r in rows) == plain(line)


def _message_line(text: str) -> Line:
    now = time.time()
    event = ev.MessageReceived("bob", text, b"", int(now * 1000), False, ("alice",))
    (line,) = Renderer("alice").render(event, now)
    return line
