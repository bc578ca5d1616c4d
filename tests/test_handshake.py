"""The handshake against a hostile broker (issue 12, "Harden the handshake").

Measured before: a hostile broker that alice also uses relays another broker's
CHALLENGE to her, logs in there as alice with her answer, and evicts her real
client. Now the proof names the broker's CURVE key alice expects and her own
transport key, and the real broker checks both; a peer signs one CHALLENGE per
HELLO; and a client that is replaced says so and ends, never sits silently closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.net import FAST, broker_thread, ready, texts, wait_for
from tests.procs import running, start_broker, start_peer
from tests.support.keys import KeyPool
from tests.support.lying_broker import lying_broker
from tests.support.room import WALL_AT_ZERO, hello, pooled_session_keys, seeded
from zchat.broker.core import Broker
from zchat.envelope import Identity
from zchat.peer import events as ev
from zchat.peer.client import Client, CurveKeys
from zchat.peer.config import PeerConfig
from zchat.peer.core import PeerCore, Phase
from zchat.peer.render import Renderer, plain
from zchat.wire import protocol as p

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")

#: CURVE public keys, as Z85 text: the real broker's, the hostile one's, and the
#: transport keys of alice's connection and of the hostile broker's own.
REAL, HOSTILE = zmq.curve_keypair()[0], zmq.curve_keypair()[0]
ALICE_T, RELAY_T = zmq.curve_keypair()[0], zmq.curve_keypair()[0]


SESSION_KEYS = pooled_session_keys()


def relay_once(
    alice: Identity,
    *,
    real_key: bytes,
    relay_transport: bytes | None,
    broker_key: bytes,
    transport_key: bytes,
) -> p.BrokerMessage:
    """The relay, sans I/O: the hostile broker says HELLO as alice to the real one, hands
    the CHALLENGE to alice (who believes she talks to `broker_key` from `transport_key`)
    and passes her PROOF on. Returns the real broker's answer."""
    real = Broker(random=seeded(0))
    real.curve_public = real_key
    # A certificate good for the real broker's room (one alice made when she used it,
    # kept by the relay): the room id alone does not stop this relay, the proof must.
    said = p.encode(hello(b"alice", alice, broker_key=real_key))
    (challenge,) = real.handle(b"relay", said, 0.0, relay_transport)
    victim = PeerCore(
        "alice",
        alice,
        seq=1,
        random=seeded(1),
        broker_key=broker_key,
        transport_key=transport_key,
    )
    victim.start(0.0)
    victim.add_session_key(SESSION_KEYS(), 0.0, wall=WALL_AT_ZERO)
    victim.take_outgoing()  # her own HELLO, to the hostile broker
    victim.receive(challenge.frames, 0.0)
    (proof,) = victim.take_outgoing()
    answer = real.handle(b"relay", proof, 0.0, relay_transport)
    assert real.nicks in ([], ["alice"])
    return p.parse_from_broker(answer[-1].frames)


@pytest.mark.parametrize(
    ("broker_key", "transport_key"),
    [
        (HOSTILE, ALICE_T),  # alice was given the hostile broker's key, and used it
        (REAL, ALICE_T),  # she expects the real broker: her transport key gives it away
        (b"", b""),  # she runs without CURVE; the real broker has it
    ],
    ids=["hostile-key", "real-key", "no-curve"],
)
def test_a_proof_relayed_to_another_broker_is_refused(
    alice: Identity, broker_key: bytes, transport_key: bytes
) -> None:
    answer = relay_once(
        alice,
        real_key=REAL,
        relay_transport=RELAY_T,
        broker_key=broker_key,
        transport_key=transport_key,
    )
    assert answer == p.Refuse(p.RefuseCode.BAD_PROOF, "proof of key does not verify")


def test_the_same_proof_made_on_the_connection_itself_is_welcomed(alice: Identity) -> None:
    """The control: a proof for the broker's key, from the connection's own key."""
    answer = relay_once(
        alice, real_key=REAL, relay_transport=ALICE_T, broker_key=REAL, transport_key=ALICE_T
    )
    assert isinstance(answer, p.Snapshot)


def test_without_curve_anywhere_a_relayed_proof_still_verifies_as_security_md_says(
    alice: Identity,
) -> None:
    answer = relay_once(
        alice, real_key=b"", relay_transport=None, broker_key=b"", transport_key=b""
    )
    assert isinstance(answer, p.Snapshot)  # docs/SECURITY.md: use --broker-key


def test_a_second_challenge_in_one_handshake_is_not_signed(alice: Identity) -> None:
    core = PeerCore("alice", alice, seq=1, random=seeded(1))
    core.start(0.0)
    core.add_session_key(SESSION_KEYS(), 0.0, wall=WALL_AT_ZERO)
    core.take_outgoing()
    for nonce in (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32):
        core.receive(p.encode(p.Challenge(nonce)), 0.0)
    proofs = [f for f in core.take_outgoing() if f[1] == bytes([p.Command.PROOF])]
    assert len(proofs) == 1
    problems = [e for e in core.take_events() if isinstance(e, ev.Problem)]
    assert [e.code for e in problems] == ["unexpected", "unexpected"]
    # A new HELLO (a reconnect, another nickname) gets its one answer.
    core.start(1.0)
    core.add_session_key(SESSION_KEYS(), 1.0, wall=WALL_AT_ZERO + 1)
    core.receive(p.encode(p.Challenge(b"\x04" * 32)), 1.0)
    assert [f[1] for f in core.take_outgoing()] == [
        bytes([p.Command.HELLO]),
        bytes([p.Command.PROOF]),
    ]


def test_a_broker_that_repeats_its_challenge_gets_one_signature(keys: KeyPool) -> None:
    alice = keys.get(0)

    async def main() -> None:
        with lying_broker() as (server, core):
            core.lie = lambda o: [o] * 5 if o.frames[1] == bytes([p.Command.CHALLENGE]) else [o]
            a = Client.create("alice", alice, server.bound[0], config=PeerConfig(admit_all=True))
            await ready(a)
            await a.close()  # the broker has everything alice sent, in order
            assert sum(sent.count(p.Command.PROOF) for sent in core.commands.values()) == 1

    asyncio.run(main())


# --- the attack over real sockets -------------------------------------------------------


@contextlib.contextmanager
def relaying(upstream: str, upstream_key: bytes) -> Iterator[tuple[str, bytes]]:
    """A hostile broker: a CURVE ROUTER of its own that passes every frame to the real
    broker over its own CURVE connection, and back. Yields (endpoint, public key)."""
    public, secret = zmq.curve_keypair()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    front.setsockopt(zmq.LINGER, 0)
    front.setsockopt(zmq.CURVE_SERVER, 1)
    front.setsockopt(zmq.CURVE_SECRETKEY, secret)
    front.bind("tcp://127.0.0.1:*")
    endpoint = front.getsockopt_string(zmq.LAST_ENDPOINT)
    back = ctx.socket(zmq.DEALER)
    back.setsockopt(zmq.LINGER, 0)
    own_public, own_secret = zmq.curve_keypair()
    back.setsockopt(zmq.CURVE_SERVERKEY, upstream_key)
    back.setsockopt(zmq.CURVE_PUBLICKEY, own_public)
    back.setsockopt(zmq.CURVE_SECRETKEY, own_secret)
    back.connect(upstream)
    stop = threading.Event()
    victim: list[bytes] = []

    def pump() -> None:
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        poller.register(back, zmq.POLLIN)
        while not stop.is_set():
            for sock, _ in poller.poll(20):
                if sock is front:
                    conn, *frames = front.recv_multipart()
                    victim[:] = [conn]
                    back.send_multipart(frames)
                elif victim:
                    front.send_multipart([victim[0], *back.recv_multipart()])
                else:
                    back.recv_multipart()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield endpoint, public
    finally:
        stop.set()
        thread.join(timeout=5)
        front.close()
        back.close()
        ctx.term()


def curve_client(nick: str, identity: Identity, endpoint: str, server_public: bytes) -> Client:
    public, secret = zmq.curve_keypair()
    return Client.create(
        nick,
        identity,
        endpoint,
        config=PeerConfig(admit_all=True),
        curve=CurveKeys(server_public, public, secret),
    )


def test_a_hostile_broker_relaying_another_brokers_challenge_gets_in_nowhere(
    alice: Identity, bob: Identity
) -> None:
    public, secret = zmq.curve_keypair()

    async def main() -> None:
        with broker_thread(FAST, curve_secret=secret) as server:
            real = server.bound[0]
            a = curve_client("alice", alice, real, public)  # alice's real session
            b = curve_client("bob", bob, real, public)
            await ready(a)
            await ready(b)
            with relaying(real, public) as (hostile, hostile_key):
                # alice, in another window, uses the hostile broker (and its key).
                fooled = curve_client("alice", alice, hostile, hostile_key)
                fooled.start()
                seen = await wait_for(fooled, lambda e: isinstance(e, ev.Refused | ev.Ready))
                # alice's certificate names the room on the broker whose key she was
                # given: the real broker refuses it at HELLO, before any proof. (A relay
                # with a certificate she made for the real broker fails at the proof:
                # test_a_proof_relayed_to_another_broker_is_refused.)
                refused = seen[-1]
                assert isinstance(refused, ev.Refused)
                assert refused.code == "bad-certificate"
                assert "another room" in refused.reason
                await fooled.close(max_idle=0)
            # alice's real session was never replaced: bob still writes to her there.
            assert a.core.phase is Phase.READY
            assert server.core.nicks == ["alice", "bob"]
            b.send_text("still you?", to=["alice"])
            assert await texts(a, 1) == ["still you?"]
            for c in (a, b):
                await c.close()

    asyncio.run(main())


# --- a replaced client ends, and says why ---------------------------------------------


@pytest.mark.slow
def test_a_replaced_client_never_says_it_reconnects_and_exits_with_an_error(
    tmp_path: Path,
) -> None:
    broker, ep = start_broker()
    first = start_peer("alice", ep, tmp_path / "alice")
    with running(broker, first):
        first.wait_event("ready")
        # The same key, elsewhere: a copy of alice's identity in another home (in the
        # same home, the second is refused before it connects: test_home.py).
        shutil.copytree(tmp_path / "alice", tmp_path / "elsewhere")
        second = start_peer("alice", ep, tmp_path / "elsewhere")
        with running(second):
            second.wait_event("ready")
            gone = first.wait_event("disconnected")
            assert gone == {
                "event": "disconnected",
                "reason": "this nickname logged in again elsewhere with our key",
                "final": True,
            }
            assert first.wait(timeout=10) == 1
            said = first.line(first.err, lambda s: s.startswith("zchat: error:"), timeout=5)
            assert said == "zchat: error: this nickname logged in again elsewhere with our key"
    (line,) = Renderer("alice").render(ev.Disconnected("logged in elsewhere", final=True), 0.0)
    assert plain(line) == "! the session ended: logged in elsewhere"
    assert "reconnecting" not in plain(line)
