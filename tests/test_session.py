"""One session for both front ends: how it ends, as an outcome, and the exit status
the shell makes of it. Scripted sessions run against a real broker on loopback TCP."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time

import pytest

from tests.net import broker_thread, joined, make_client, wait_for
from tests.support.lying_broker import injected, lying_broker
from zchat.broker.core import Outgoing
from zchat.commands.peer import exit_code, report
from zchat.envelope import Identity
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.scripted import run_scripted
from zchat.peer.session import Closed, Left, NoAnswer, Outcome, Refused, TransportFailed
from zchat.wire import protocol as p


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Left(), 0),
        (Left(unreadable="not UTF-8"), 0),
        (NoAnswer("tcp://127.0.0.1:9", 1.0), 1),
        (TransportFailed("the broker's key differs"), 1),
        (Closed("this nickname logged in again elsewhere with our key"), 1),
        (Refused("nick-taken", "carol is taken"), 3),
        (Refused("bad-proof", "proof of key does not verify"), 4),
        (Refused("nick-taken", "carol is taken", rejoining=True, unacked=("lost",)), 3),
        (Refused("room-full", "the room is full", rejoining=True), 4),
        (Refused("unsupported-version", "protocol 4", 4, rejoining=True), 4),
        (Closed("logged in again elsewhere", unacked=("lost",)), 1),
        (Left(unacked=("into the void",)), 5),
    ],
)
def test_each_outcome_has_the_exit_status_the_readme_documents(
    outcome: Outcome, status: int
) -> None:
    assert exit_code(outcome) == status


def run(coro: object) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


def test_plain_output_shows_our_message_once_acknowledged_as_the_terminal_does(
    alice: Identity, bob: Identity
) -> None:
    async def scenario() -> None:
        with broker_thread() as server:
            endpoint = server.bound[0]
            b = await joined("bob", bob, endpoint)
            out = io.StringIO()
            outcome = await run_scripted(
                make_client("alice", alice, endpoint),
                json_mode=False,
                connect_timeout=5,
                stdin=io.StringIO("hello bob\n/msg bob psst\n"),
                stdout=out,
            )
            assert outcome == Left()
            await b.close()
        lines = out.getvalue().splitlines()
        assert lines[0] == "* you are alice; here: bob"
        assert any(line.endswith(" <alice> hello bob  (to 1)") for line in lines), lines
        assert any(line.endswith(" <alice> [direct to bob] psst  (delivered)") for line in lines)

    run(scenario())


def test_a_taken_nickname_ends_a_scripted_session_not_admitted(
    alice: Identity, bob: Identity
) -> None:
    async def scenario() -> None:
        with broker_thread() as server:
            endpoint = server.bound[0]
            b = await joined("alice", bob, endpoint)
            out = io.StringIO()
            outcome = await run_scripted(
                make_client("Alice", alice, endpoint),
                json_mode=True,
                connect_timeout=5,
                stdin=io.StringIO("never sent\n"),
                stdout=out,
            )
            assert isinstance(outcome, Refused)
            assert outcome.code == "nick-taken"
            assert '"event": "error", "code": "nick-taken"' in out.getvalue()
            await b.close()

    run(scenario())


def test_with_no_broker_a_scripted_session_gives_up_after_its_patience(alice: Identity) -> None:
    async def scenario() -> None:
        with broker_thread() as server:
            endpoint = server.bound[0]
        # nobody listens there now
        start = time.monotonic()
        outcome = await run_scripted(
            make_client("alice", alice, endpoint),
            json_mode=True,
            connect_timeout=0.3,
            stdin=io.StringIO(""),
            stdout=io.StringIO(),
        )
        assert outcome == NoAnswer(endpoint, 0.3)
        assert time.monotonic() - start < 5

    run(scenario())


def test_a_session_that_ends_by_itself_stops_waiting_for_input(alice: Identity) -> None:
    """A bot may type nothing for hours: when the broker closes its session (the same
    nickname and key logged in elsewhere), it must end without another line."""

    async def scenario() -> None:
        read_end, write_end = os.pipe()  # input that stays open and silent
        stdin = os.fdopen(read_end, "r")
        try:
            with broker_thread() as server:
                endpoint = server.bound[0]
                out = io.StringIO()
                session = asyncio.ensure_future(
                    run_scripted(
                        make_client("alice", alice, endpoint),
                        json_mode=True,
                        connect_timeout=5,
                        stdin=stdin,
                        stdout=out,
                    )
                )
                while '"event": "ready"' not in out.getvalue():  # bounded by run()'s timeout
                    await asyncio.sleep(0.01)
                twin = make_client("alice", alice, endpoint)
                twin.start()
                await wait_for(twin, lambda e: isinstance(e, ev.Ready))
                outcome = await asyncio.wait_for(session, 5)
                assert outcome == Closed("this nickname logged in again elsewhere with our key")
                await twin.close()
        finally:
            os.close(write_end)  # the reader thread sees the end and stops
            stdin.close()

    run(scenario())


def test_a_return_refused_for_good_ends_in_words_that_name_what_was_not_delivered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report(Refused("nick-taken", "bob is taken", rejoining=True, unacked=("still here?",)), "bob")
    assert capsys.readouterr().err.splitlines() == [
        "zchat: error: the broker would not let us back into the room: bob is taken in this room",
        "zchat: error: the broker never acknowledged 1 message, which may not have been "
        "delivered: 'still here?'",
    ]


def test_a_return_refused_by_a_broker_of_another_version_says_which_and_what_was_lost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    refused = Refused("unsupported-version", "protocol 4", 4, rejoining=True, unacked=("hi",))
    report(refused, "bob")
    assert capsys.readouterr().err.splitlines() == [
        "zchat: error: the broker speaks zchat protocol 4; this zchat speaks 3",
        "zchat: hint: run the same zchat release on the broker and on every peer",
        "zchat: error: the broker never acknowledged 1 message, which may not have been "
        "delivered: 'hi'",
    ]


def test_a_scripted_session_refused_on_coming_back_retries_then_ends_naming_what_waited(
    alice: Identity, bob: Identity
) -> None:
    """After a HELLO_FIRST, bob says HELLO again and is refused, again and again (the
    broker says his nickname is taken): he says so, keeps the line typed meanwhile,
    tries for his patience, and ends with the refusal and that line."""

    async def scenario() -> None:
        read_end, write_end = os.pipe()
        stdin = os.fdopen(read_end, "r")
        try:
            with lying_broker() as (server, core):

                def taken(o: Outgoing) -> list[Outgoing]:
                    # Whatever connection bob says HELLO on (the broker may evict the
                    # old one meanwhile: a refused peer sends no heartbeats).
                    if o.frames[1] == bytes([p.Command.CHALLENGE]):
                        refusal = p.Refuse(p.RefuseCode.NICK_TAKEN, "bob is taken")
                        return [Outgoing(o.conn, p.encode(refusal))]
                    return [o]

                a = await joined("alice", alice, server.bound[0])  # someone to write to
                out = io.StringIO()
                config = PeerConfig(admit_all=True, rejoin_patience=1.0)
                client = make_client("bob", bob, server.bound[0], config=config)
                session = asyncio.ensure_future(
                    run_scripted(client, json_mode=True, connect_timeout=5, stdin=stdin, stdout=out)
                )
                while '"event": "ready"' not in out.getvalue():  # bounded by run()'s timeout
                    await asyncio.sleep(0.01)
                core.lie = taken
                core.inject("bob", p.encode(p.Error(p.ErrorCode.HELLO_FIRST, "who?")))
                await injected(core)
                while '"code": "rejoin-refused"' not in out.getvalue():
                    await asyncio.sleep(0.01)
                os.write(write_end, b"typed while refused\n")
                outcome = await asyncio.wait_for(session, 10)
                assert outcome == Refused(
                    "nick-taken", "bob is taken", rejoining=True, unacked=("typed while refused",)
                )
                events = [json.loads(line) for line in out.getvalue().splitlines()]
                codes = [e.get("code") for e in events if e["event"] == "error"]
                assert codes == ["rejoin-refused", "rejoin-refused", "nick-taken"]
                assert events[-1]["rejoining"] is True
                await a.close()
        finally:
            os.close(write_end)
            stdin.close()

    run(scenario())
