"""The chat's input line: a prompt that reads lines into a queue, with the keys,
completion and status line a chat user expects.

- **Enter** sends the line. A bracketed paste of several lines is one message; one of
  more than `QUIET_PASTE_LINES` lines is sent only once the user says yes.
- **Ctrl-C** on a line being typed clears it into history (Up brings it back); on an
  empty line, like **Ctrl-D**, it leaves.
- **Tab** completes commands, and nicknames of the people in the room (never a
  fingerprint: that is what the user must compare).
- The **bottom toolbar** shows the room, our nickname, how many of those present we
  admitted, and the connection's state.

The prompt starts as soon as we connect, so nothing typed before the room is reached
is lost: lines wait in `Keyboard.lines` until the session takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.shortcuts import create_confirm_session

from zchat.envelope import nick_key
from zchat.peer.client import Client
from zchat.peer.core import Phase
from zchat.peer.render import Line, Role, Span, nick
from zchat.peer.slash import COMMANDS
from zchat.peer.tui_style import STYLE, fragments

#: Lines a paste may have before we ask whether to send it.
QUIET_PASTE_LINES = 5
#: Commands whose first argument is a nickname; those whose second is a fingerprint.
_NICK_FIRST = frozenset({"/msg", "/fingerprint", "/admit", "/trust", "/revoke"})
_FINGERPRINT_NEXT = frozenset({"/admit", "/trust"})


def chat_keys() -> KeyBindings:
    """Ctrl-C clears a line being typed into history, and leaves on an empty one."""
    keys = KeyBindings()

    @keys.add("c-c")
    def _interrupt(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if buffer.text:
            buffer.reset(append_to_history=True)
        else:
            event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

    return keys


class RoomCompleter(Completer):
    """Tab completion: command names, then nicknames of those present (`names`)."""

    def __init__(self, names: Callable[[], Iterable[str]]) -> None:
        self._names = names

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        before = document.text_before_cursor
        words = before.split(" ")
        word = words[-1]
        if len(words) == 1 and word.startswith("/"):
            for command in COMMANDS:
                if command.startswith(word.lower()):
                    yield Completion(command + " ", -len(word), display=command)
            return
        command = words[0].lower()
        if command in _FINGERPRINT_NEXT and len(words) > 2:
            return  # a fingerprint is compared and typed, never completed
        if not word or (command.startswith("/") and command not in _NICK_FIRST):
            return
        for name in sorted(self._names(), key=nick_key):
            if nick_key(name).startswith(nick_key(word)):
                yield Completion(name, -len(word))


def status(client: Client) -> Line:
    """The bottom toolbar: room, nickname, admitted of present, connection state."""
    core = client.core
    present = len(core.members)
    admitted = sum(1 for m in core.members.values() if m.may_read)
    if client.failed or core.phase is Phase.CLOSED:
        state = "disconnected"
    elif core.phase is Phase.READY:
        state = "connected"
    elif core.phase is Phase.REFUSED:
        state = "refused"
    elif core.phase is Phase.WAITING:
        state = "refused, trying again…"
    else:
        state = "connecting…"
    return (
        Span(Role.INFO, f" room {core.room}  "),
        nick(core.nick),
        Span(Role.INFO, f"  admitted {admitted} of {present} here  {state} "),
    )


class Keyboard:
    """The prompt, reading lines into `lines` until `stop` (None in `lines`: leave)."""

    def __init__(
        self,
        client: Client,
        lines: asyncio.Queue[str | None],
        *,
        history: History | None = None,
        accepted: Callable[[str | None], None] = lambda line: None,
        note: Callable[[str], None] = lambda text: None,
    ) -> None:
        self._client = client
        self.lines = lines
        self._accepted = accepted  # told of every line as it is entered
        self._note = note  # shows a remark of ours above the prompt
        self._history = history or InMemoryHistory()
        self._session: PromptSession[str] = PromptSession(
            history=self._history,
            style=STYLE,
            key_bindings=chat_keys(),
            completer=RoomCompleter(lambda: (m.nick for m in client.core.members.values())),
            complete_while_typing=False,
            bottom_toolbar=lambda: fragments(status(client)),
            # The line goes once entered: it shows again as a message once the broker
            # has it, or a line of ours says why not.
            erase_when_done=True,
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._read(), name="keyboard")
            self._task.add_done_callback(_raise_failure)

    async def stop(self) -> None:
        """Stop reading (the prompt goes from the screen); lines read stay in `lines`."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _read(self) -> None:
        while True:
            message = FormattedText([*fragments((nick(self._client.core.nick),)), ("", "> ")])
            try:
                text = await self._session.prompt_async(message, set_exception_handler=False)
            except (EOFError, KeyboardInterrupt):
                self._accepted(None)
                self.lines.put_nowait(None)
                return
            text = text.strip("\n")
            if await self._sendable(text):
                self._accepted(text)
                self.lines.put_nowait(text)

    async def _sendable(self, text: str) -> bool:
        """Whether to send `text`: yes, unless it is a long paste the user declines."""
        count = text.count("\n") + 1
        if count <= QUIET_PASTE_LINES:
            return True
        ask = create_confirm_session(f"send these {count} lines as one message?")
        try:
            yes = await ask.prompt_async(set_exception_handler=False)
        except (EOFError, KeyboardInterrupt):
            yes = False
        if not yes:
            self._history.append_string(text)
            self._note("not sent; Up brings it back")
        return yes


def _raise_failure(task: asyncio.Task[None]) -> None:
    """A keyboard that failed (a bug) must not leave the chat waiting for lines that
    can no longer come: its error goes to the event loop's handler, which ends the run
    (`zchat.crash`). Kept here, it would be reported only once the task is forgotten."""
    if not task.cancelled() and task.exception() is not None:
        task.get_loop().call_exception_handler(
            {"message": "the chat's input line failed", "exception": task.exception(), "task": task}
        )
