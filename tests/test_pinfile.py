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
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import zmq

from tests.net import run, sees, wait_for
from tests.support.keys import KeyPool
from tests.support.room import WALL_AT_ZERO, certificate, ready_core
from zchat.envelope import Identity
from zchat.peer import events as ev
from zchat.peer import pinfile
from zchat.peer.client import Client
from zchat.peer.config import PeerConfig
from zchat.peer.pinfile import PINS_FILE, PinFile
from zchat.peer.pins import Admission, Change, ChangeKind, How, Pin, Pins, PinsError
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


# --- several writers ------------------------------------------------------------------

ROOT = Path(__file__).parent.parent
PER_WRITER = 150


def test_two_peer_processes_sharing_a_home_add_pins_at_once_and_lose_none(tmp_path: Path) -> None:
    """Each writes only what it changed, under the lock, over what is on disk then: a
    whole-store write from a stale view (what each did before) lost the other's pins."""
    home = tmp_path / "alice"
    PinFile.open(home).save([Pin("carol", FP_CAROL)])  # there before either started
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.pin_writer",
                str(home),
                tag,
                str(PER_WRITER),
                str(go),
            ],
            cwd=ROOT,
        )
        for tag in ("a", "b")
    ]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready-{tag}").exists() for tag in ("a", "b")):
            assert time.monotonic() < deadline, "the writers never got ready"
            assert all(w.poll() is None for w in writers), "a writer died"
            time.sleep(0.01)
        go.touch()  # both loaded the file (one pin) and now write at once
        assert [w.wait(timeout=60) for w in writers] == [0, 0]
    finally:
        for w in writers:
            w.kill()
            w.wait()
    nicks = {pin.nick for pin in PinFile.open(home).pins}
    assert nicks == {"carol"} | {f"{tag}{i:03}" for tag in "ab" for i in range(PER_WRITER)}


def test_forget_and_revoke_stick_whatever_a_stale_writer_writes_next(tmp_path: Path) -> None:
    """A peer that still believes bob admitted writes its next changes about bob (it saw
    him again, a vouch for him came): the tombstone keeps him out. Only a comparison made
    since the forget admits him again."""
    vouched = Admission(How.VOUCH, "carol", 10)
    compared = Admission(How.YOU, "alice", 10)
    PinFile.open(tmp_path).save([Pin("bob", FP_BOB, compared, 10), Pin("carol", FP_CAROL)])
    stale = PinFile.open(tmp_path)  # a running peer's view, from before the forget
    assert PinFile.open(tmp_path).forget("bob", at_ms=1000)
    stale.merge(
        [
            Change(ChangeKind.SEEN, "bob", FP_BOB, date_ms=90_000_000),
            Change(ChangeKind.ADMIT, "bob", FP_BOB, vouched, 2000),  # a vouch, after
            Change(ChangeKind.ADMIT, "bob", FP_BOB, compared, 2000),  # compared, before
            Change(ChangeKind.PIN, "dave", FP_CAROL[::-1], date_ms=2000),
        ]
    )
    on_disk = PinFile.open(tmp_path)
    (bob,) = [pin for pin in on_disk.pins if pin.nick == "bob"]
    assert not bob.admitted  # announced again, so pinned, but admitted by nobody
    assert [t.nick for t in on_disk.tombstones] == ["bob"]
    assert {pin.nick for pin in on_disk.pins} == {"bob", "carol", "dave"}  # dave kept
    stale.merge([Change(ChangeKind.ADMIT, "bob", FP_BOB, Admission(How.YOU, "alice", 3000))])
    assert [pin.admitted for pin in PinFile.open(tmp_path).pins if pin.nick == "bob"] == [True]


def test_an_open_room_bot_sharing_the_home_never_writes_over_a_key_the_user_admitted(
    tmp_path: Path, keys: KeyPool
) -> None:
    """Found attacking: alice runs a bot with `--admit-all` (alice-bot) from her identity
    directory. The broker announced bob to the bot with a key of its own; the bot, which
    accepts a changed key, pinned it, and its merge wrote that key over the pin of bob
    that alice had admitted after comparing: in her next run the real bob was the
    changed key, and her comparison was gone. The bot still accepts the key, for its
    own session; the file keeps what the user decided."""
    alice, bob, mallory = keys.get(0), keys.get(1), keys.get(3)
    compared = Admission(How.YOU, "alice", 10)
    PinFile.open(tmp_path).save([Pin("bob", bob.fingerprint, compared, 10)])
    home = PinFile.open(tmp_path)
    bot = ready_core(
        "alice-bot", alice, [], pins=Pins(home.pins), config=PeerConfig(admit_all=True)
    )
    swapped = p.Member("bob", mallory.public_der, certificate(mallory, "bob", WALL_AT_ZERO))
    bot.receive(p.encode(p.Join(swapped)), 1.0)
    assert bot.members["bob"].may_read  # an open room reads on
    changed = bot.take_pins()
    if changed is not None:
        home.merge(changed.changes)
    (pin,) = PinFile.open(tmp_path).pins
    assert (pin.fingerprint, pin.admission) == (bob.fingerprint, compared)


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


@contextlib.asynccontextmanager
async def alice_on_a_hand_broker(
    home: Path, alice: Identity, endpoint: str
) -> AsyncIterator[tuple[HandBroker, Client]]:
    """alice's client, with the pins in `home`, started on a broker the test drives."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    broker = HandBroker(ctx, endpoint)
    client = Client.create("alice", alice, endpoint, pin_file=PinFile.open(home), context=ctx)
    try:
        client.start()
        yield broker, client
    finally:
        await client.close(max_idle=0)
        broker.sock.close()
        ctx.term()


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


async def on_disk(path: Path, match: Callable[[PinFile], bool], timeout: float = 5.0) -> PinFile:
    """The pins file once `match` holds for it (the client writes from its loop)."""
    deadline = time.monotonic() + timeout
    while True:
        pins = PinFile.open(path)
        if match(pins):
            return pins
        assert time.monotonic() < deadline, f"the pins file never matched: {pins.pins}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("how", ["zchat keys forget", "/revoke"])
def test_forget_and_revoke_stick_across_a_running_peers_next_write(
    how: str, tmp_path: Path, alice: Identity, bob: Identity, carol: Identity
) -> None:
    """Issue 18.5: a running peer rewrote the whole pins file at its next change (a JOIN
    of anyone, which the broker can send at will), and a forgotten member was back."""
    PinFile.open(tmp_path).save([Pin("bob", bob.fingerprint, Admission(How.YOU, "alice", 1))])
    endpoint = f"inproc://pins-stick-{how[0]}"

    async def scenario() -> None:
        async with alice_on_a_hand_broker(tmp_path, alice, endpoint) as (broker, client):
            bob_here = p.Member("bob", bob.public_der, certificate(bob, "bob", time.time()))
            await broker.admit("alice", (bob_here,))
            await wait_for(client, lambda e: isinstance(e, ev.Ready))
            assert client.core.members["bob"].may_read  # admitted in an earlier run
            if how == "/revoke":
                client.revoke("bob")
            else:  # what the command does, from another process's point of view
                assert PinFile.open(tmp_path).forget("bob", at_ms=int(time.time() * 1000))
            seen = await wait_for(client, lambda e: isinstance(e, ev.Revoked))
            assert (seen[-1].nick, seen[-1].by, seen[-1].dropped) == ("bob", "alice", True)
            assert not client.core.members["bob"].may_read
            # The broker makes alice write: carol joins, and bob comes back.
            broker.send(
                p.Join(p.Member("carol", carol.public_der)),
                p.Leave("bob", p.LeaveReason.BYE),
                p.Join(bob_here),
            )
            await sees(client, "bob")
            saved = await on_disk(tmp_path, lambda f: len(f.pins) == 2)
            assert [(pin.nick, pin.admitted) for pin in saved.pins] == [
                ("bob", False),  # pinned again as announced, admitted by nobody
                ("carol", False),
            ]
            assert [t.nick for t in saved.tombstones] == ["bob"]
            assert not client.core.members["bob"].may_read

    run(scenario())


def test_a_tombstone_from_an_earlier_run_is_no_news_to_the_next(
    tmp_path: Path, alice: Identity, bob: Identity, carol: Identity
) -> None:
    """The tombstones on disk at start are known from the start: the first merge, which
    reads them back, revokes nothing and says nothing."""
    home = PinFile.open(tmp_path)
    home.save([Pin("bob", bob.fingerprint, Admission(How.YOU, "alice", 1))])
    assert home.forget("bob", at_ms=5)

    async def scenario() -> None:
        endpoint = "inproc://pins-earlier-run"
        async with alice_on_a_hand_broker(tmp_path, alice, endpoint) as (broker, client):
            await broker.admit("alice", (p.Member("bob", bob.public_der),))
            seen = await wait_for(client, lambda e: isinstance(e, ev.Ready))
            broker.send(p.Join(p.Member("carol", carol.public_der)))  # a write, a merge
            seen += await wait_for(
                client, lambda e: isinstance(e, ev.AdmitNeeded) and e.nick == "carol"
            )
            await on_disk(tmp_path, lambda f: len(f.pins) == 2)
            later = [client.events.get_nowait() for _ in range(client.events.qsize())]
            assert [e for e in [*seen, *later] if isinstance(e, ev.Revoked)] == []

    run(scenario())
