"""The interactive terminal chat, on prompt_toolkit.

The input line stays at the bottom: chat lines are printed with prompt_toolkit's
`print_formatted_text`, which, while a prompt is running, erases the prompt, prints
above it and draws it again with whatever the user had typed, so arrivals never
garble typing. We use that rather than a full-screen Application so that the chat
stays in the terminal's own scrollback, where people can scroll, search and copy.

The session (`peer.session`) is the scripted mode's; what this front end adds::

    [nickname: ]  -> asked when --nick is missing, and again when the nickname cannot
                     be had (taken in the room, or in use by another zchat here);
                     each try is a new client, with that nickname's own identity
    connecting    -> the prompt is up at once (`peer.prompt`): lines typed now wait,
                     and are sent once we are in the room; after a few seconds
                     without an answer, a hint; Ctrl-D leaves
    chat          -> events print above the prompt; joins and leaves that come close
                     together are said once (`peer.notices`)
    leave         -> /quit, exit, Ctrl-D, or Ctrl-C on an empty line: the session
                     waits for the broker's acks; then we say which messages, if any,
                     were not delivered

What the terminal sends goes through `peer.tty_input` first: stray escape sequences
never reach prompt_toolkit's parser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app_or_none, get_app_session
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.output import Output
from prompt_toolkit.renderer import print_formatted_text as render
from prompt_toolkit.styles import default_ui_style, merge_styles
from prompt_toolkit.utils import is_dumb_terminal

from zchat.envelope import is_valid_nick
from zchat.envelope.nick import NICK_RULES
from zchat.peer import events as ev
from zchat.peer.client import Client
from zchat.peer.errors import NicknameUnavailable
from zchat.peer.notices import Quiet
from zchat.peer.prompt import Keyboard
from zchat.peer.render import Line, Renderer, info, plain, problem
from zchat.peer.sanitize import for_terminal
from zchat.peer.session import Closed, Left, Outcome, Refused, run_session
from zchat.peer.tty_input import guard
from zchat.peer.tui_style import STYLE, screenful

#: Refusals a person can fix by choosing another nickname, and how to say so.
_RETRY = {
    "nick-taken": "{nick} is taken in this room",
    "nick-invalid": "the broker does not take {nick} as a nickname",
}
#: Say that the broker is not answering after this long (we keep trying).
HINT_AFTER = 3.0
WELCOME = "type to chat; /help lists the commands and keys; Ctrl-D leaves"
_STYLE = merge_styles([default_ui_style(), STYLE])


class Screen:
    """Where chat lines go: above the prompt while one runs, straight out otherwise."""

    def __init__(self, output: Output | None = None, *, keep: bool = False) -> None:
        self._output = output  # None: the current prompt_toolkit session's output
        #: Plain text of every line shown, when `keep` (tests read it).
        self.transcript: list[str] | None = [] if keep else None

    def show(self, lines: Sequence[Line]) -> None:
        if not lines:
            return
        if self.transcript is not None:
            self.transcript += [plain(line) for line in lines]
        output = self._output or get_app_session().output
        if self._output is None and is_dumb_terminal():
            # A dumb terminal (an editor's shell buffer) moves no cursor and draws
            # no style: plain lines, which prompt_toolkit's simple prompt lets be,
            # from the start of the row (over the prompt, if one is there).
            output.write_raw("\r" + "".join(plain(line) + "\r\n" for line in lines))
            output.flush()
            return
        # Wrapped by us to the width, so that a wrapped row is marked (`tui_style.rows`).
        text = screenful(lines, output.get_size().columns)
        app = get_app_or_none()
        above = app is not None and app.is_running and app.output is output
        if app is not None and above:
            # What prompt_toolkit's print_formatted_text does while a prompt runs,
            # less one thing: it also puts the terminal back in cooked mode while it
            # prints, and the terminal then echoes whatever arrives meanwhile (keys
            # typed, mouse reports) into the chat. The input stays raw here: what
            # arrives waits, unechoed, for the prompt.
            app.renderer.erase()
        render(output, text, _STYLE, color_depth=output.get_default_color_depth())
        output.flush()
        if app is not None and above:
            app.renderer.reset()
            app.renderer.request_absolute_cursor_position()
            app.invalidate()


@dataclass(frozen=True)
class Parts:
    """What the tries of one chat share: the screen, what was typed, what is held."""

    screen: Screen
    lines: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    #: Lines typed before we were in the room, not sent yet.
    waiting: list[str] = field(default_factory=list)
    quiet: Quiet = field(default_factory=Quiet)
    #: In memory only: what people type is not written to disk.
    history: InMemoryHistory = field(default_factory=InMemoryHistory)


class Terminal:
    """The interactive front end of one session: a prompt below, events above."""

    def __init__(
        self,
        client: Client,
        parts: Parts,
        *,
        leave_early: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._screen = parts.screen
        self._clock = clock
        self._renderer = Renderer(client.core.nick)
        self._quiet = parts.quiet
        self._flush_later: asyncio.TimerHandle | None = None
        self._leave_early = leave_early
        #: Set at our first welcome: lines typed before it wait for it.
        self.in_room = False
        #: Lines typed before we were in the room, not sent yet (kept across tries).
        self.waiting = parts.waiting
        self.keyboard = Keyboard(
            client,
            parts.lines,
            history=parts.history,
            accepted=self._accepted,
            note=lambda text: self._screen.show([info(text)]),
        )

    def show(self, events: Sequence[ev.Event]) -> None:
        now = self._clock()
        lines: list[Line] = []
        for event in events:
            if isinstance(event, ev.Refused) and event.code in _RETRY and not event.rejoining:
                continue  # `chat` says it, and asks for another nickname
            if self._quiet.hold(event, now):
                continue
            lines += self._quiet.release()
            lines += self._renderer.render(event, now)
            if isinstance(event, ev.Ready) and not self.in_room:
                self.in_room = True
                self.waiting.clear()  # the session sends them now, in order
                lines.append(info(WELCOME))
        self._screen.show(lines)
        self._schedule_quiet()

    async def next_line(self) -> str | None:
        return await self.keyboard.lines.get()

    def still_waiting(self) -> bool:
        where = for_terminal(self._client.endpoint)
        self._screen.show(
            [
                problem(
                    f"no answer yet from {where}; is the broker running? ('make broker' "
                    "starts one) Still trying; Ctrl-D gives up"
                )
            ]
        )
        return True

    def leaving(self) -> None:
        self._screen.show([info("leaving once the broker has your last messages…")])

    def ended(self, outcome: Outcome) -> None:
        """Say how the session ended, where the session itself did not show it."""
        if self._flush_later is not None:
            self._flush_later.cancel()
        self._screen.show(self._quiet.release())
        match outcome:
            case Left(unacked) if unacked and not self.in_room:
                why = "not sent (you left before you were in the room)"
                self._screen.show([problem(f"{why}: {_quote(text)}") for text in unacked])
            case Left(unacked) if unacked:
                self._screen.show(_not_delivered(unacked))
            case Left():
                self._screen.show([info("bye")])
            case Closed(reason, unacked):
                self._screen.show([problem(for_terminal(reason)), *_not_delivered(unacked)])
            case Refused(rejoining=True, unacked=unacked):
                self._screen.show(_not_delivered(unacked))
            case _:
                pass  # a refusal or a transport failure was shown as it came

    def _accepted(self, line: str | None) -> None:
        """A line entered (None: the user leaves), before the session takes it."""
        if self.in_room:
            return
        if line is None:
            self._leave_early()
            return
        self.waiting.append(line)
        self._screen.show([info(f"not in the room yet: {_quote(line)} goes once you are")])

    def _schedule_quiet(self) -> None:
        """Show what `Quiet` holds once its window is over (if nothing shows it first)."""
        since = self._quiet.waiting
        if since is None or self._flush_later is not None:
            return
        delay = max(since + self._quiet.window - self._clock(), 0.0)
        self._flush_later = asyncio.get_running_loop().call_later(delay, self._quiet_over)

    def _quiet_over(self) -> None:
        self._flush_later = None
        if self._quiet.due(self._clock()):
            self._screen.show(self._quiet.release())
        self._schedule_quiet()


async def chat(
    nick: str | None,
    connect: Callable[[str], Client],
    *,
    screen: Screen | None = None,
    hint_after: float = HINT_AFTER,
) -> Outcome:
    """The whole interactive session; `connect` makes the client for a nickname, and
    raises `NicknameUnavailable` when that nickname cannot be had from here.

    Input and output are prompt_toolkit's current ones (tests set them with
    `create_app_session`).
    """
    screen = screen or Screen()
    guard(get_app_session().input)
    # Nicknames are asked in a session of their own, so they stay out of chat history.
    asker: PromptSession[str] = PromptSession(style=STYLE)
    parts = Parts(screen)
    while True:
        if nick is None:
            nick = await ask_nick(asker, screen)
            if nick is None:
                return Left()
        try:
            client = connect(nick)
        except NicknameUnavailable as exc:
            screen.show([problem(f"{exc}; choose another")])
            nick = None
            continue
        outcome = await _attempt(client, parts, hint_after)
        if isinstance(outcome, Refused) and outcome.code in _RETRY and not outcome.rejoining:
            why = _RETRY[outcome.code].format(nick=for_terminal(nick))
            screen.show([problem(f"{why}; choose another")])
            nick = None
            continue
        return outcome


async def _attempt(client: Client, parts: Parts, hint_after: float) -> Outcome:
    """One session, under one nickname, from connecting to its end."""
    client.start()
    session: asyncio.Task[Outcome] | None = None
    gave_up = False

    def leave_early() -> None:  # the user left before we were in the room
        nonlocal gave_up
        gave_up = True
        if session is not None:
            session.cancel()

    front = Terminal(client, parts, leave_early=leave_early)
    where = for_terminal(client.endpoint)
    parts.screen.show([info(f"connecting to {where} as {client.core.nick}…")])
    front.keyboard.start()
    session = asyncio.create_task(run_session(client, front, patience=hint_after))
    try:
        outcome = await session
    except asyncio.CancelledError:
        if not gave_up:
            raise  # we are being cancelled ourselves
        outcome = Left(tuple(front.waiting))
    finally:
        await front.keyboard.stop()
    front.ended(outcome)
    return outcome


async def ask_nick(asker: PromptSession[str], screen: Screen) -> str | None:
    """A valid nickname from the user, or None when they leave (Ctrl-C, Ctrl-D)."""
    while True:
        try:
            nick = (await asker.prompt_async("nickname: ", set_exception_handler=False)).strip()
        except (EOFError, KeyboardInterrupt):
            return None
        if is_valid_nick(nick):
            return nick
        screen.show([problem(NICK_RULES)])


def _not_delivered(unacked: tuple[str, ...]) -> list[Line]:
    why = "not delivered (the broker never acknowledged it)"
    return [problem(f"{why}: {_quote(text)}") for text in unacked]


def _quote(text: str) -> str:
    first, *more = text.split("\n")
    shown = for_terminal(first) + (f" (and {len(more)} more lines)" if more else "")
    return f"“{shown}”"
