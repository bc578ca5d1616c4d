"""The interactive terminal chat, on prompt_toolkit.

The input line stays at the bottom: chat lines are printed with prompt_toolkit's
`print_formatted_text`, which, while a prompt is running, erases the prompt, prints
above it and draws it again with whatever the user had typed, so arrivals never
garble typing. We use that rather than a full-screen Application so that the chat
stays in the terminal's own scrollback, where people can scroll, search and copy.

The session (`peer.session`) is the scripted mode's; what this front end adds::

    [nickname: ]  -> asked when --nick is missing, and again after a refusal the
                     user can fix (taken, invalid)
    connecting    -> after a few seconds without an answer, a hint; we keep trying
    chat          -> a prompt with our nickname; events print above it
    leave         -> /quit, exit, Ctrl-C or Ctrl-D: the session waits for the
                     broker's acks; then we say which messages, if any, were not
                     delivered
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.application import get_app_session
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.output import Output

from zchat.envelope import is_valid_nick
from zchat.envelope.nick import NICK_RULES
from zchat.peer import events as ev
from zchat.peer.client import Client
from zchat.peer.render import Line, Renderer, info, nick, plain, problem
from zchat.peer.sanitize import for_terminal
from zchat.peer.session import Closed, Left, Outcome, run_session
from zchat.peer.tui_style import STYLE, fragments, screenful

#: Refusals a person can fix by choosing another nickname.
_RETRY = {
    "nick-taken": "that nickname is taken",
    "nick-invalid": "the broker does not accept that nickname",
}
#: Say that the broker is not answering after this long (we keep trying).
HINT_AFTER = 3.0
WELCOME = "type to chat; /help lists the commands; Ctrl-D or /quit leaves"


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
        # One call per batch: each call redraws the prompt once. Wrapped by us to the
        # width, so that a wrapped row is marked (`tui_style.rows`).
        print_formatted_text(
            screenful(lines, output.get_size().columns),
            end="",
            style=STYLE,
            output=output,
            include_default_pygments_style=False,
        )


class Terminal:
    """The interactive front end of a session: a prompt below, events above."""

    def __init__(
        self,
        client: Client,
        screen: Screen,
        asker: PromptSession[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._screen = screen
        self._asker = asker
        self._clock = clock
        self._renderer = Renderer(client.core.nick)
        # History in memory only: what people typed is not written to disk.
        self._prompt: PromptSession[str] = PromptSession(history=InMemoryHistory(), style=STYLE)

    def show(self, events: Sequence[ev.Event]) -> None:
        now = self._clock()
        lines: list[Line] = []
        for event in events:
            lines += self._renderer.render(event, now)
            if isinstance(event, ev.Ready) and not event.reconnected:
                lines.append(info(WELCOME))
        self._screen.show(lines)

    async def next_line(self) -> str | None:
        message = FormattedText([*fragments((nick(self._client.core.nick),)), ("", "> ")])
        try:
            return await self._prompt.prompt_async(message)
        except (EOFError, KeyboardInterrupt):
            return None

    async def refused(self, refusal: ev.Refused) -> str | None:
        if refusal.code not in _RETRY:
            self.show([refusal])
            return None
        why = f"{_RETRY[refusal.code]}: {for_terminal(refusal.reason)}; choose another"
        self._screen.show([problem(why)])
        return await ask_nick(self._asker, self._screen)

    def still_waiting(self) -> bool:
        where = for_terminal(self._client.endpoint)
        self._screen.show(
            [
                problem(
                    f"no answer yet from {where}; is the broker running ('make broker')? "
                    "still trying; Ctrl-C gives up"
                )
            ]
        )
        return True

    def leaving(self) -> None:
        self._screen.show([info("leaving once the broker has your last messages…")])

    def ended(self, outcome: Outcome) -> None:
        """Say how the session ended, where the session itself did not show it."""
        match outcome:
            case Left(unacked) if unacked:
                self._screen.show(
                    [
                        problem(
                            "not delivered (the broker never acknowledged it): "
                            f"“{for_terminal(text)}”"
                        )
                        for text in unacked
                    ]
                )
            case Left():
                self._screen.show([info("bye")])
            case Closed(reason):
                self._screen.show([problem(for_terminal(reason))])
            case _:
                pass  # a refusal or a transport failure was shown as it came


async def chat(
    nick: str | None,
    connect: Callable[[str], Client],
    *,
    screen: Screen | None = None,
    hint_after: float = HINT_AFTER,
) -> Outcome:
    """The whole interactive session; `connect` makes the client for a nickname.

    Input and output are prompt_toolkit's current ones (tests set them with
    `create_app_session`).
    """
    screen = screen or Screen()
    # Nicknames are asked in a session of their own, so they stay out of chat history.
    asker: PromptSession[str] = PromptSession(style=STYLE)
    if nick is None:
        nick = await ask_nick(asker, screen)
        if nick is None:
            return Left()
    client = connect(nick)
    client.start()
    front = Terminal(client, screen, asker)
    screen.show([info(f"connecting to {for_terminal(client.endpoint)} as {client.core.nick}…")])
    outcome = await run_session(client, front, patience=hint_after)
    front.ended(outcome)
    return outcome


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
