"""The interactive terminal chat, on prompt_toolkit.

The input line stays at the bottom: chat lines are printed with prompt_toolkit's
`print_formatted_text`, which, while a prompt is running, erases the prompt, prints
above it and draws it again with whatever the user had typed, so arrivals never
garble typing. We use that rather than a full-screen Application so that the chat
stays in the terminal's own scrollback, where people can scroll, search and copy.

The session, from start to end::

    [nickname: ]  -> asked when --nick is missing, and again after a refusal
    connecting    -> Ready: the room; Refused (taken, invalid): ask again
    chat          -> lines are messages or commands (peer.commands), shared with
                     the scripted mode; events print above the prompt
    leave         -> /quit, exit, Ctrl-C or Ctrl-D: wait for the broker's acks,
                     then say which messages, if any, were not delivered
"""

from __future__ import annotations

import asyncio
import contextlib

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.output import Output

from zchat.console import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NICK_TAKEN,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNDELIVERED,
)
from zchat.envelope import Identity, is_valid_nick
from zchat.peer import events as ev
from zchat.peer.actions import execute
from zchat.peer.client import Client, CurveKeys
from zchat.peer.commands import Quit, parse_line
from zchat.peer.core import PeerConfig, Phase
from zchat.peer.pinfile import PinFile
from zchat.peer.sanitize import for_terminal
from zchat.peer.tui_render import STYLE, ChatView, info, nick_fragment, plain, problem

NICK_RULES = "a nickname is 1-32 characters: ASCII letters, digits, '_', '-' or '.'"
#: Refusals a person can fix by choosing another nickname.
_RETRY = {
    "nick-taken": "that nickname is taken",
    "nick-invalid": "the broker does not accept that nickname",
}
#: Say that the broker is not answering after this long (we keep trying).
HINT_AFTER = 3.0


class Screen:
    """Where chat lines go: above the prompt while one runs, straight out otherwise."""

    def __init__(self, output: Output | None = None, *, keep: bool = False) -> None:
        self._output = output  # None: the current prompt_toolkit session's output
        #: Plain text of every line shown, when `keep` (tests read it).
        self.transcript: list[str] | None = [] if keep else None

    def show(self, lines: list[FormattedText]) -> None:
        if not lines:
            return
        if self.transcript is not None:
            self.transcript += [plain(line) for line in lines]
        fragments: list[tuple[str, str]] = []
        for line in lines:
            fragments += [*line, ("", "\n")]
        # One call per batch: each call redraws the prompt once.
        print_formatted_text(
            FormattedText(fragments),
            end="",
            style=STYLE,
            output=self._output,
            include_default_pygments_style=False,
        )


def run_interactive(
    nick: str | None,
    identity: Identity,
    pins: PinFile | None,
    config: PeerConfig,
    endpoint: str,
    curve: CurveKeys | None = None,
) -> int:
    try:
        return asyncio.run(chat(nick, identity, pins, config, endpoint, curve))
    except KeyboardInterrupt:  # Ctrl-C while no prompt was up (connecting, leaving)
        return EXIT_INTERRUPTED


async def chat(
    nick: str | None,
    identity: Identity,
    pins: PinFile | None,
    config: PeerConfig,
    endpoint: str,
    curve: CurveKeys | None = None,
    *,
    screen: Screen | None = None,
    hint_after: float = HINT_AFTER,
) -> int:
    """The whole interactive session; input and output are prompt_toolkit's current
    ones (tests set them with `create_app_session`). Returns the exit status."""
    screen = screen or Screen()
    # Nicknames are asked in a session of their own, so they stay out of chat history.
    asker: PromptSession[str] = PromptSession(style=STYLE)
    if nick is None:
        nick = await ask_nick(asker, screen)
        if nick is None:
            return EXIT_OK
    client = Client.create(nick, identity, endpoint, pin_file=pins, config=config, curve=curve)
    view = ChatView(nick)
    client.start()
    try:
        failed = await _join(client, view, asker, screen, hint_after)
        if failed is not None:
            return failed
        return await _converse(client, view, screen)
    finally:
        if client.core.phase is not Phase.CLOSED:
            await client.close(max_idle=0)


async def ask_nick(asker: PromptSession[str], screen: Screen) -> str | None:
    """A valid nickname from the user, or None when they leave (Ctrl-C, Ctrl-D)."""
    while True:
        try:
            nick = (await asker.prompt_async("nickname: ")).strip()
        except (EOFError, KeyboardInterrupt):
            return None
        if is_valid_nick(nick):
            return nick
        screen.show([problem(NICK_RULES)])


async def _join(
    client: Client, view: ChatView, asker: PromptSession[str], screen: Screen, hint_after: float
) -> int | None:
    """Handshake until welcomed (None) or given up (the exit status)."""
    screen.show([info(f"connecting to {for_terminal(client.endpoint)} as {client.core.nick}…")])
    hinted = False
    while True:
        try:
            event = await client.next_event(None if hinted else hint_after)
        except asyncio.TimeoutError:
            hinted = True
            screen.show(
                [
                    problem(
                        f"no answer yet from {for_terminal(client.endpoint)}; is the broker "
                        "running ('make broker')? still trying; Ctrl-C gives up"
                    )
                ]
            )
            continue
        match event:
            case ev.Ready():
                screen.show(view.render(event))
                return None
            case ev.Refused(code, reason) if code in _RETRY:
                screen.show([problem(f"{_RETRY[code]}: {for_terminal(reason)}; choose another")])
                nick = await ask_nick(asker, screen)
                if nick is None:
                    return EXIT_NICK_TAKEN if code == "nick-taken" else EXIT_REFUSED
                client.retry_handshake(nick)
            case ev.Refused(_, reason):
                screen.show([problem(f"the broker refused us: {for_terminal(reason)}")])
                return EXIT_REFUSED
            case ev.TransportFailed():  # e.g. a broker with another CURVE key: final
                screen.show(view.render(event))
                return EXIT_ERROR
            case _:
                screen.show(view.render(event))


async def _converse(client: Client, view: ChatView, screen: Screen) -> int:
    # History in memory only: what people typed is not written to disk.
    session: PromptSession[str] = PromptSession(history=InMemoryHistory(), style=STYLE)
    # The session ended by itself: logged in elsewhere, or the transport failed.
    closed = asyncio.Event()
    printer = asyncio.create_task(_print_events(client, view, screen, closed))
    try:
        while True:
            line = await _prompt(session, client, closed)
            if line is None:
                break
            command = parse_line(line)
            if isinstance(command, Quit):
                break
            screen.show([out for event in execute(command, client) for out in view.render(event)])
        if client.core.pending_acks():
            screen.show([info("leaving once the broker has your last messages…")])
        unacked = await client.close()
    finally:
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
    # Acknowledgements that came in while leaving.
    late: list[ev.Event] = []
    while not client.events.empty():
        late.append(client.events.get_nowait())
    screen.show([out for event in late for out in view.render(event)])
    if client.failed:
        return EXIT_ERROR  # the printer showed why
    if client.core.closed_reason:
        screen.show([problem(client.core.closed_reason)])
        return EXIT_ERROR
    if unacked:
        screen.show(
            [
                problem(
                    f"not delivered (the broker never acknowledged it): “{for_terminal(e.text)}”"
                )
                for e in unacked
            ]
        )
        return EXIT_UNDELIVERED
    screen.show([info("bye")])
    return EXIT_OK


async def _prompt(session: PromptSession[str], client: Client, closed: asyncio.Event) -> str | None:
    """The next line typed, or None to leave (Ctrl-C, Ctrl-D, or the session ended)."""
    message = FormattedText([nick_fragment(client.core.nick), ("", "> ")])
    ask = asyncio.ensure_future(_read_line(session, message))
    ended = asyncio.ensure_future(closed.wait())
    try:
        await asyncio.wait({ask, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
        if not ask.done():
            ask.cancel()
    try:
        return await ask
    except asyncio.CancelledError:
        if ask.cancelled() and not closed.is_set():
            raise  # we are being cancelled ourselves, not ending the prompt
        return None


async def _read_line(session: PromptSession[str], message: FormattedText) -> str | None:
    # Caught inside the task: a task that raises KeyboardInterrupt (a BaseException)
    # would stop the whole event loop instead of ending the chat cleanly.
    try:
        return await session.prompt_async(message)
    except (EOFError, KeyboardInterrupt):
        return None


async def _print_events(
    client: Client, view: ChatView, screen: Screen, closed: asyncio.Event
) -> None:
    while True:
        batch = [await client.events.get()]
        while not client.events.empty():  # a burst prints in one go
            batch.append(client.events.get_nowait())
        screen.show([line for event in batch for line in view.render(event)])
        if client.core.closed_reason or client.failed:
            closed.set()
