"""The interactive terminal chat, on prompt_toolkit: input stays at the bottom while
messages print above it."""

from __future__ import annotations

import asyncio

from prompt_toolkit import PromptSession
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

from envelope import Identity, is_valid_nick
from peer import events as ev
from peer.actions import execute
from peer.client import Client, CurveKeys
from peer.commands import Quit, parse_line
from peer.core import PeerConfig, PeerCore
from peer.pins import PinStore
from peer.render import to_text
from zchat.console import EXIT_UNDELIVERED


def run_interactive(
    nick: str | None,
    identity: Identity,
    pins: PinStore,
    config: PeerConfig,
    endpoint: str,
    curve: CurveKeys | None = None,
) -> int:
    return asyncio.run(_main(nick, identity, pins, config, endpoint, curve))


async def _ask_nick(session: PromptSession[str]) -> str:
    while True:
        nick = (await session.prompt_async("nickname: ")).strip()
        if is_valid_nick(nick):
            return nick
        print("a nickname is 1-32 characters: ASCII letters, digits, '_', '-', '.'")


async def _main(
    nick: str | None,
    identity: Identity,
    pins: PinStore,
    config: PeerConfig,
    endpoint: str,
    curve: CurveKeys | None,
) -> int:
    session: PromptSession[str] = PromptSession(history=InMemoryHistory())
    with patch_stdout():
        try:
            if nick is None:
                nick = await _ask_nick(session)
            client = Client(PeerCore(nick, identity, pins, config), endpoint, curve=curve)
            client.start()
            while True:
                event = await client.next_event()
                line = to_text(event)
                if line:
                    print(line)
                if isinstance(event, ev.Ready):
                    break
                if isinstance(event, ev.Refused):
                    client.core.rename(await _ask_nick(session))
                    client.core.start(asyncio.get_running_loop().time())
            printer = asyncio.create_task(_print_events(client))
            while True:
                line = await session.prompt_async(f"{client.core.nick}> ")
                command = parse_line(line)
                if isinstance(command, Quit):
                    break
                for event in execute(command, client):
                    print(to_text(event))
        except (EOFError, KeyboardInterrupt):
            pass
        unacked = await client.close()
        printer.cancel()
    return EXIT_UNDELIVERED if unacked else 0


async def _print_events(client: Client) -> None:
    while True:
        line = to_text(await client.next_event())
        if line:
            print(line)
