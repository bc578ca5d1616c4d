"""The pins file: written owner-only, and by the client's loop once per batch of input.

The core hands out its pins as a value (`take_pins`); these tests follow that value
to the disk. The loop's tests play the broker by hand on an inproc ROUTER socket, so
that they decide exactly what arrives in one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.net import run, sees, wait_for
from tests.support.room import certificate
from zchat.envelope import Identity
from zchat.peer import events as ev
from zchat.peer import pinfile
from zchat.peer.client import Client
from zchat.peer.config import PeerConfig
from zchat.peer.pinfile import PINS_FILE, PinFile
from zchat.peer.pins import Pin, PinsError
from zchat.peer.render import problem_text
from zchat.wire import protocol as p

FP_BOB = bytes(range(32))
FP_CAROL = bytes(range(32, 64))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the file -----------------------------------------------------------------------


def test_pins_read_back_as_they_were_saved(tmp_path: Path) -> None:
    PinFile.open(tmp_path).save([Pin("bob", FP_BOB), Pin("Carol", FP_CAROL)])
    assert PinFile.open(tmp_path).pins == (Pin("bob", FP_BOB), Pin("Carol", FP_CAROL))


def test_no_pins_file_yet_means_no_pins(tmp_path: Path) -> None:
    assert PinFile.open(tmp_path / "fresh").pins == ()


def test_a_pins_file_that_does_not_parse_is_an_error_that_names_it(tmp_path: Path) -> None:
    (tmp_path / PINS_FILE).write_text('{"pins": {"bob": "not hex"}}')
    with pytest.raises(PinsError, match=f"cannot read {tmp_path / PINS_FILE}"):
        PinFile.open(tmp_path)


def test_a_leftover_temporary_file_cannot_lend_the_pins_file_its_loose_mode(
    tmp_path: Path,
) -> None:
    """Issue 11, defect 9: a crash can leave pins.json.tmp behind; reused as it was
    (O_TRUNC without O_EXCL), its mode became the pins file's, world-writable. Each
    write now makes a temporary file of its own (mkstemp), and never touches another."""
    leftover = tmp_path / (PINS_FILE + ".tmp")
    leftover.write_text("half a file")
    leftover.chmod(0o666)
    PinFile.open(tmp_path).save([Pin("bob", FP_BOB)])
    assert mode(tmp_path / PINS_FILE) == 0o600
    assert leftover.read_text() == "half a file"
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        PINS_FILE,
        PINS_FILE + ".lock",
        PINS_FILE + ".tmp",
    ]


@pytest.mark.parametrize("loose", [0o666, 0o620, 0o602])
def test_a_pins_file_others_can_write_is_refused_with_the_chmod_that_fixes_it(
    tmp_path: Path, loose: int
) -> None:
    """Whoever can write the pins decides whom we admit: as ssh refuses a writable
    authorized_keys, zchat refuses such a pins file, naming it and the fix."""
    PinFile.open(tmp_path).save([Pin("bob", FP_BOB)])
    (tmp_path / PINS_FILE).chmod(loose)
    fix = (
        f"is writable by others (mode {loose:04o}); fix it with: chmod go-w {tmp_path / PINS_FILE}"
    )
    with pytest.raises(PinsError, match=re.escape(fix)):
        PinFile.open(tmp_path)
    (tmp_path / PINS_FILE).chmod(0o644)  # readable by others is no trouble: pins are public
    assert PinFile.open(tmp_path).pins == (Pin("bob", FP_BOB),)


def test_an_identity_directory_others_can_write_is_refused_and_so_is_another_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    PinFile.open(tmp_path).save([Pin("bob", FP_BOB)])
    tmp_path.chmod(0o777)
    with pytest.raises(PinsError, match=re.escape(f"fix it with: chmod go-w {tmp_path}")):
        PinFile.open(tmp_path)
    tmp_path.chmod(0o700)
    owner = (tmp_path / PINS_FILE).stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)  # as if another user ran zchat
    with pytest.raises(PinsError, match=f"belongs to another user \\(uid {owner}"):
        PinFile.open(tmp_path)


def test_a_pins_file_behind_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text('{"pins": {}}')
    (tmp_path / PINS_FILE).symlink_to(elsewhere)
    with pytest.raises(PinsError, match="symbolic link"):
        PinFile.open(tmp_path)


def test_forget_removes_one_pin_from_the_file(tmp_path: Path) -> None:
    PinFile.open(tmp_path).save([Pin("bob", FP_BOB), Pin("carol", FP_CAROL)])
    assert PinFile.open(tmp_path).forget("BOB")  # nicknames fold case
    assert not PinFile.open(tmp_path).forget("bob")
    assert PinFile.open(tmp_path).pins == (Pin("carol", FP_CAROL),)


# --- the loop writes ----------------------------------------------------------------


class HandBroker:
    """Just enough broker, answered by hand, to let one peer in and then flood it."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.conn = b""

    async def expect(self, kind: type, timeout: float = 5.0) -> None:
        """Wait (yielding to the client's loop) for the peer's next message of `kind`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sock.poll(0):
                self.conn, *frames = self.sock.recv_multipart()
                if isinstance(p.parse_from_peer(frames), kind):
                    return
            else:
                await asyncio.sleep(0.005)
        raise AssertionError(f"no {kind.__name__} from the peer within {timeout} s")

    def send(self, *msgs: p.BrokerMessage) -> None:
        """Send at once, without yielding: the client reads them all in one batch."""
        for msg in msgs:
            self.sock.send_multipart([self.conn, *p.encode(msg)])

    async def admit(self, nick: str, members: tuple[p.Member, ...] = ()) -> None:
        await self.expect(p.Hello)
        self.send(p.Challenge(bytes(p.CHALLENGE_BYTES)))
        await self.expect(p.Proof)  # not checked: this broker lets anyone in
        self.send(p.Welcome(nick, 1000, 5000), p.Snapshot(members))


@contextlib.contextmanager
def counted_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Every write of a pins file, as it happens."""
    writes: list[Path] = []
    real = pinfile.write_secret_file

    def counting(path: Path, data: bytes) -> None:
        writes.append(path)
        real(path, data)

    monkeypatch.setattr(pinfile, "write_secret_file", counting)
    yield writes


FLOOD = 50


@pytest.mark.parametrize("via", ["snapshot", "joins"])
def test_a_room_of_many_newcomers_is_written_to_the_pins_file_once(
    via: str, tmp_path: Path, alice: Identity, bob: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = tuple(p.Member(f"m{i:02}", bob.public_der) for i in range(FLOOD))
    last = members[-1].nick

    async def scenario() -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        broker = HandBroker(ctx, "inproc://pins-flood")
        client = Client.create(
            "alice", alice, "inproc://pins-flood", pin_file=PinFile.open(tmp_path), context=ctx
        )
        try:
            with counted_writes(monkeypatch) as writes:
                client.start()
                await broker.admit("alice", members if via == "snapshot" else ())
                await wait_for(client, lambda e: isinstance(e, ev.Ready))
                if via == "joins":
                    broker.send(*(p.Join(m) for m in members))
                await sees(client, last)
                assert writes == [tmp_path / PINS_FILE]  # one write, not FLOOD
            assert len(PinFile.open(tmp_path).pins) == FLOOD
        finally:
            await client.close(max_idle=0)
            broker.sock.close()
            ctx.term()

    run(scenario())


def test_a_pins_file_that_cannot_be_written_is_reported_and_the_session_goes_on(
    tmp_path: Path, alice: Identity, bob: Identity
) -> None:
    # A directory where the lock file must go: no write can succeed, not even as root
    # (a read-only mode would not stop root).
    (tmp_path / (PINS_FILE + ".lock")).mkdir()

    async def scenario() -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        broker = HandBroker(ctx, "inproc://pins-unwritable")
        client = Client.create(
            "alice",
            alice,
            "inproc://pins-unwritable",
            pin_file=PinFile.open(tmp_path),
            context=ctx,
            config=PeerConfig(admit_all=True),  # an open room: bob reads at first sight
        )
        try:
            client.start()
            bob_cert = certificate(bob, "bob", time.time())
            await broker.admit("alice", (p.Member("bob", bob.public_der, bob_cert),))
            seen = await wait_for(client, lambda e: isinstance(e, ev.Problem))
            assert [e.nick for e in seen if isinstance(e, ev.Joined)] == ["bob"]
            assert isinstance(seen[-1], ev.Problem)
            assert seen[-1].code == "pins"
            assert "the pins hold until you leave" in problem_text(seen[-1])
            assert client.core.pins.get("bob") == bob.fingerprint  # held for the session
            client.send_text("still here", to=["bob"])  # and the session goes on
            await broker.expect(p.Send)
        finally:
            await client.close(max_idle=0)
            broker.sock.close()
            ctx.term()

    run(scenario())
