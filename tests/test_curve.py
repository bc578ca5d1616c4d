"""CurveZMQ transport: the broker's key pair, sessions bound to their transport key,
strangers kept out, a wrong broker key refused fast, and what a wire capture shows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq

from tests.net import FAST, broker_thread, ready, sees, texts, wait_for, zmq_context
from tests.procs import FAST_TIMERS, ZCHAT, Proc, start_peer
from tests.support.room import hello, seeded
from zchat.broker.core import Broker
from zchat.broker.server import Server
from zchat.envelope import PRIVATE_KEY_FILE, Identity, InsecureKeyFile, load_identity, save_identity
from zchat.envelope.proof import sign_proof
from zchat.peer import events as ev
from zchat.peer.client import Client, CurveKeys
from zchat.peer.config import PeerConfig
from zchat.peer.json_events import to_json
from zchat.peer.render import Renderer, plain
from zchat.wire import curve as bc
from zchat.wire import protocol as p

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")

# Long nicknames: a short one could turn up in ciphertext by chance.
ALICE = "alice_wonderland"
BOB = "bob_the_builder"
SECRET_TEXT = "the eagle lands at noon"
#: Every Fernet token starts with version byte 0x80 and a timestamp whose high bytes
#: are zero, which base64 writes as this prefix.
FERNET_PREFIX = b"gAAAAA"


# --- helpers ------------------------------------------------------------------------


def curve_broker(secret: bytes | None) -> contextlib.AbstractContextManager[Server]:
    return broker_thread(FAST, curve_secret=secret)


def client(
    nick: str,
    identity: Identity,
    endpoint: str,
    ctx: zmq.Context[zmq.Socket[bytes]],
    server_public: bytes | None,
) -> Client:
    curve = None
    if server_public is not None:
        public, secret = zmq.curve_keypair()
        curve = CurveKeys(server_public, public, secret)
    config = PeerConfig(admit_all=True)  # an open room: these tests are about the transport
    return Client.create(nick, identity, endpoint, config=config, context=ctx, curve=curve)


async def transport_failure(c: Client, timeout: float = 3.0) -> ev.TransportFailed:
    c.start()
    events = await wait_for(c, lambda e: isinstance(e, ev.TransportFailed), timeout)
    failure = events[-1]
    assert isinstance(failure, ev.TransportFailed)
    assert not any(isinstance(e, ev.Ready) for e in events)
    return failure


@contextlib.asynccontextmanager
async def recording_relay(upstream_port: int) -> AsyncIterator[tuple[str, bytearray]]:
    """A loopback TCP relay to the broker that records every byte, both ways."""
    capture = bytearray()
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                capture.extend(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        for coro in (pipe(reader, up_writer), pipe(up_reader, writer)):
            task = asyncio.create_task(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    relay = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = relay.sockets[0].getsockname()[1]
    try:
        yield f"tcp://127.0.0.1:{port}", capture
    finally:
        relay.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


# --- the broker's key files -----------------------------------------------------------


def test_the_broker_key_pair_is_created_once_with_private_permissions(tmp_path: Path) -> None:
    home = tmp_path / "broker"
    pair, created = bc.load_or_create(home)
    assert created
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / bc.SECRET_FILE).stat().st_mode) == 0o600
    assert (home / bc.PUBLIC_FILE).read_bytes().strip() == pair.public
    assert zmq.curve_public(pair.secret) == pair.public
    again, created = bc.load_or_create(home)
    assert (again, created) == (pair, False)


def test_a_broker_secret_readable_by_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    bc.load_or_create(tmp_path)
    (tmp_path / bc.SECRET_FILE).chmod(0o640)
    with pytest.raises(bc.InsecureCurveKey, match="chmod 600"):
        bc.load_or_create(tmp_path)


def test_a_broker_secret_behind_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    bc.load_or_create(tmp_path / "real")
    home = tmp_path / "broker"
    home.mkdir(mode=0o700)
    (home / bc.SECRET_FILE).symlink_to(tmp_path / "real" / bc.SECRET_FILE)
    with pytest.raises(bc.InsecureCurveKey, match="symbolic link"):
        bc.load_or_create(home)


def test_a_huge_broker_secret_file_is_refused_unread(tmp_path: Path) -> None:
    bc.load_or_create(tmp_path)
    with (tmp_path / bc.SECRET_FILE).open("ab") as f:
        f.truncate(64 * 2**20)  # sparse: 64 MiB that cost no disk
    with pytest.raises(bc.CurveKeyError, match="larger than 1,024 bytes"):
        bc.load(tmp_path)


def _expose(how: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the secret file at `path` one that someone else could read or replace."""
    if how == "group-readable":
        path.chmod(0o640)
    elif how == "symbolic-link":
        real = path.with_name("elsewhere")
        path.rename(real)
        path.symlink_to(real)
    elif how == "fifo":
        path.unlink()
        os.mkfifo(path, 0o600)
    elif how == "another-owner":
        owner = path.stat().st_uid
        monkeypatch.setattr(os, "geteuid", lambda: owner + 1)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("how", ["group-readable", "symbolic-link", "fifo", "another-owner"])
def test_identity_keys_and_curve_secrets_are_refused_by_one_check_in_the_same_words(
    tmp_path: Path, alice: Identity, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_identity(alice, tmp_path / "id")
    bc.load_or_create(tmp_path / "broker")
    key, secret = tmp_path / "id" / PRIVATE_KEY_FILE, tmp_path / "broker" / bc.SECRET_FILE
    with monkeypatch.context() as m:
        _expose(how, key, m)
        with pytest.raises(InsecureKeyFile) as identity_error:
            load_identity(tmp_path / "id")
    _expose(how, secret, monkeypatch)
    with pytest.raises(bc.InsecureCurveKey) as curve_error:
        bc.load(tmp_path / "broker")
    said_of_key = str(identity_error.value).removeprefix(f"private key {key} ")
    said_of_secret = str(curve_error.value).removeprefix(f"CURVE secret key {secret} ")
    assert said_of_key.replace(str(key), "PATH") == said_of_secret.replace(str(secret), "PATH")


def test_the_public_key_file_is_rewritten_from_the_secret(tmp_path: Path) -> None:
    pair, _ = bc.load_or_create(tmp_path)
    (tmp_path / bc.PUBLIC_FILE).write_bytes(zmq.curve_keypair()[0] + b"\n")
    assert bc.load(tmp_path) == pair
    assert (tmp_path / bc.PUBLIC_FILE).read_bytes().strip() == pair.public


def test_a_broker_key_is_given_as_text_or_as_a_file(tmp_path: Path) -> None:
    public, _ = zmq.curve_keypair()
    (tmp_path / "broker.pub").write_bytes(public + b"\n")
    assert bc.read_public_key(public.decode()) == public
    assert bc.read_public_key(f"  {public.decode()}\n") == public
    assert bc.read_public_key(str(tmp_path / "broker.pub")) == public


@pytest.mark.parametrize(
    "value",
    ["", "short", "x" * 39 + "~", "#" * 40, "/no/such/file", "nested/dir"],
)
def test_anything_else_is_not_a_broker_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="CURVE public key"):
        bc.read_public_key(value)


# --- sessions are bound to their transport key (sans I/O) ------------------------------


def test_a_session_speaks_only_with_the_transport_key_that_opened_it(alice: Identity) -> None:
    broker = Broker(random=seeded(0))
    out = broker.handle(b"c1", p.encode(hello(b"alice", alice)), 0.0, b"K" * 40)
    challenge = p.parse_from_broker(out[-1].frames)
    assert isinstance(challenge, p.Challenge)
    signature = sign_proof(
        alice.private_key, challenge.nonce, b"alice", alice.public_der, transport_key=b"K" * 40
    )
    proof = p.encode(p.Proof(signature))
    # Same connection id, another key: dropped without an answer, and counted.
    assert broker.handle(b"c1", proof, 0.0, b"M" * 40) == []
    assert broker.handle(b"c1", proof, 0.0, None) == []
    assert broker.counters.foreign_key == 2
    assert broker.nicks == []
    out = broker.handle(b"c1", proof, 0.0, b"K" * 40)
    assert isinstance(p.parse_from_broker(out[0].frames), p.Welcome)
    # Once in the room, another key cannot say goodbye for it either.
    assert broker.handle(b"c1", p.encode(p.Bye()), 0.0, b"M" * 40) == []
    assert broker.nicks == ["alice"]
    assert broker.counters.foreign_key == 3


# --- over real sockets -----------------------------------------------------------------


def test_peers_chat_over_curve_and_the_broker_knows_their_transport_keys(
    alice: Identity, bob: Identity
) -> None:
    public, secret = zmq.curve_keypair()

    async def main() -> None:
        with curve_broker(secret) as server, zmq_context() as ctx:
            ep = server.bound[0]
            a = client(ALICE, alice, ep, ctx, public)
            b = client(BOB, bob, ep, ctx, public)
            await ready(a)
            await ready(b)
            await sees(a, BOB)
            a.send_text(SECRET_TEXT)
            assert await texts(b, 1) == [SECRET_TEXT]
            sessions = server.core._sessions.values()
            assert a.curve is not None
            assert b.curve is not None
            assert {s.transport_key for s in sessions} == {a.curve.public, b.curve.public}
            assert server.core.counters.foreign_key == 0
            for c in (a, b):
                assert await c.close() == []

    asyncio.run(main())


def test_with_curve_plain_zmtp_and_raw_tcp_never_reach_the_parser(alice: Identity) -> None:
    public, secret = zmq.curve_keypair()

    async def main() -> None:
        with curve_broker(secret) as server, zmq_context() as ctx:
            ep = server.bound[0]
            plain = ctx.socket(zmq.DEALER)
            plain.connect(ep)
            for junk in ([b"ZCHAT1", b"\x99"], [b"junk"], [b"ZCHAT1", b"\x01", b"x", b"y"]):
                plain.send_multipart(junk, zmq.NOBLOCK)
            with socket.create_connection(("127.0.0.1", port_of(ep)), timeout=2) as raw:
                raw.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + b"GET / HTTP/1.1\r\n\r\n" * 50)
            # An honest CURVE peer gets in afterwards: the broker went round its loop.
            honest = client(ALICE, alice, ep, ctx, public)
            await ready(honest)
            assert plain.poll(200) == 0  # nothing ever comes back
            plain.close(linger=0)
            counters = server.core.counters
            assert (counters.errors, counters.refused, counters.handshakes) == (0, 0, 1)
            await honest.close()

    asyncio.run(main())


@pytest.mark.parametrize("curve", [True, False], ids=["curve", "plain-control"])
def test_a_capture_of_the_curve_stream_shows_no_names_headers_or_tokens(
    alice: Identity, bob: Identity, curve: bool
) -> None:
    public, secret = zmq.curve_keypair()

    async def main() -> bytes:
        with curve_broker(secret if curve else None) as server, zmq_context() as ctx:
            async with recording_relay(port_of(server.bound[0])) as (relay, capture):
                key = public if curve else None
                a = client(ALICE, alice, relay, ctx, key)
                b = client(BOB, bob, relay, ctx, key)
                await ready(a)
                await ready(b)
                await sees(a, BOB)
                a.send_text(SECRET_TEXT)
                assert await texts(b, 1) == [SECRET_TEXT]
                await wait_for(a, lambda e: isinstance(e, ev.Acked))
                for c in (a, b):
                    await c.close()
                return bytes(capture)

    wire = asyncio.run(main())
    assert len(wire) > 2000  # hellos with keys, a snapshot, a join, a message, an ack
    assert SECRET_TEXT.encode() not in wire  # never, CURVE or not: end-to-end encryption
    visible = [s in wire for s in (ALICE.encode(), BOB.encode(), p.PROTOCOL_TAG, FERNET_PREFIX)]
    # The control proves the test can fail: without CURVE all of it is in the clear.
    assert visible == ([False] * 4 if curve else [True] * 4)


def test_a_wrong_broker_key_fails_fast_with_a_clear_reason(alice: Identity) -> None:
    _, secret = zmq.curve_keypair()
    wrong, _ = zmq.curve_keypair()

    async def main() -> None:
        with curve_broker(secret) as server, zmq_context() as ctx:
            c = client(ALICE, alice, server.bound[0], ctx, wrong)
            started = time.monotonic()
            failure = await transport_failure(c)
            assert time.monotonic() - started < 3
            assert "its key is not the --broker-key" in failure.reason
            assert await c.close() == []
            assert server.core.counters.handshakes == 0

    asyncio.run(main())


def test_a_curve_broker_tells_a_plain_peer_that_it_needs_the_key(alice: Identity) -> None:
    _, secret = zmq.curve_keypair()

    async def main() -> None:
        with curve_broker(secret) as server, zmq_context() as ctx:
            c = client(ALICE, alice, server.bound[0], ctx, None)
            failure = await transport_failure(c)
            assert "--broker-key" in failure.hint
            await c.close()

    asyncio.run(main())


def test_a_curve_peer_refuses_a_broker_without_curve(alice: Identity) -> None:
    public, _ = zmq.curve_keypair()

    async def main() -> None:
        with curve_broker(None) as server, zmq_context() as ctx:
            c = client(ALICE, alice, server.bound[0], ctx, public)
            failure = await transport_failure(c)
            # Said plainly when libzmq saw the mechanisms differ; when the broker
            # hung up first, the wrong-key message names this possibility too.
            assert "does not use CURVE" in failure.reason
            await c.close()

    asyncio.run(main())


def test_a_transport_failure_renders_as_an_error() -> None:
    failure = ev.TransportFailed("the broker's key differs", "check it")
    assert to_json(failure) == {
        "event": "error",
        "code": "transport-failed",
        "message": "the broker's key differs",
        "hint": "check it",
    }
    text = "\n".join(plain(line) for line in Renderer("alice").render(failure, 0.0))
    assert "the broker's key differs" in text
    assert "check it" in text


# --- real processes, as the README tells people to run them -----------------------------


def start_curve_broker(curve_dir: Path) -> tuple[Proc, str, str]:
    broker = Proc(
        [*ZCHAT, "broker", "--bind", "tcp://127.0.0.1:*", "--curve", "--curve-dir", str(curve_dir)],
        FAST_TIMERS,
    )
    listening = broker.line(broker.err, lambda s: "listening on" in s, timeout=15)
    keyline = broker.line(broker.err, lambda s: "public key:" in s, timeout=5)
    endpoint = re.search(r"listening on (\S+)", listening)
    key = re.search(r"public key: (\S{40})", keyline)
    assert endpoint is not None
    assert key is not None
    return broker, endpoint.group(1), key.group(1)


@pytest.mark.slow
def test_from_key_creation_to_peers_chatting_over_curve(tmp_path: Path) -> None:
    curve_dir = tmp_path / "broker"
    shown = subprocess.run(
        [sys.executable, "-m", "zchat", "broker", "--curve-dir", str(curve_dir), "--print-key"],
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    ).stdout.strip()
    assert bc.is_z85_key(shown.encode())
    broker, endpoint, logged = start_curve_broker(curve_dir)
    assert logged == shown  # created once: the key printed before is the key in use
    alice = start_peer(ALICE, endpoint, tmp_path / "a", "--broker-key", shown)
    bob = start_peer(BOB, endpoint, tmp_path / "b", "--broker-key", str(curve_dir / bc.PUBLIC_FILE))
    with contextlib.ExitStack() as stack:
        for proc in (broker, alice, bob):
            stack.callback(proc.stop)
        alice.wait_event("ready", timeout=15)
        bob.wait_event("ready", timeout=15)
        alice.wait_event("join", nick=BOB)
        alice.send(SECRET_TEXT)
        message = bob.event(lambda e: e["event"] == "message" and e["from"] == ALICE)
        assert message["text"] == SECRET_TEXT
        for peer in (alice, bob):
            peer.send("exit")
            assert peer.wait(timeout=10) == 0


@pytest.mark.slow
def test_a_peer_with_the_wrong_broker_key_exits_nonzero_within_seconds(tmp_path: Path) -> None:
    broker, endpoint, _ = start_curve_broker(tmp_path / "broker")
    wrong = zmq.curve_keypair()[0].decode()
    with contextlib.ExitStack() as stack:
        stack.callback(broker.stop)
        started = time.monotonic()
        peer = start_peer(ALICE, endpoint, tmp_path / "a", "--broker-key", wrong)
        stack.callback(peer.stop)
        event = peer.wait_event("error", timeout=10, code="transport-failed")
        assert "key is not the --broker-key" in event["message"]
        assert peer.wait(timeout=5) == 1
        assert time.monotonic() - started < 8  # process start and key generation included
        line = peer.line(peer.err, lambda s: s.startswith("zchat: error:"), timeout=2)
        assert "the broker hung up on our CURVE handshake" in line
