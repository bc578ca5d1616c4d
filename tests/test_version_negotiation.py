"""Two versions meet: each side says which version it speaks, and the other understands.

The frames of version 2 come from version 2's own code (tests/vectors/hello_v2.json,
made by tests/vectors/make_v2_vectors.py at the last commit of protocol 2), so these
tests hold against what that version really sends and accepts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.net import broker_thread, zmq_context
from tests.procs import running, start_peer
from tests.support.room import MemoryRoom, seeded
from tests.support.waits import WAIT
from zchat.broker.core import Broker
from zchat.envelope import Identity
from zchat.exit_codes import EXIT_REFUSED
from zchat.wire import protocol as p

VECTORS = json.loads((Path(__file__).parent / "vectors" / "hello_v2.json").read_text())


def frames_of(entry: dict[str, object]) -> list[bytes]:
    hexes = entry["frames"]
    assert isinstance(hexes, list)
    return [bytes.fromhex(h) for h in hexes]


def accepted_by_v2(frames: list[bytes]) -> None:
    """Assert that version 2's parser reads `frames` as REFUSE UNSUPPORTED_VERSION:
    they are the frames it was shown to accept (the reason aside, which it reads as
    any text of at most 200 bytes)."""
    accepted = VECTORS["accepted_refusal"]
    assert accepted["parsed_code"] == p.RefuseCode.UNSUPPORTED_VERSION
    assert frames[:3] == frames_of(accepted)[:3]
    assert len(frames) == 4
    assert len(frames[3]) <= p.MAX_REASON_BYTES
    frames[3].decode("utf-8")


def test_a_version_2_hello_gets_a_refusal_in_version_2s_own_layout() -> None:
    hello = frames_of(VECTORS["hello"])
    assert hello[0] == b"ZCHAT2"
    (out,) = Broker(random=seeded(0)).handle(b"c1", hello, 0.0)
    accepted_by_v2(out.frames)
    assert out.frames == frames_of(VECTORS["accepted_refusal"])


def test_a_member_that_speaks_version_2_all_of_a_sudden_is_refused_as_a_stranger_is(
    alice: Identity,
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    (out,) = room.broker.handle(a, frames_of(VECTORS["hello"]), room.now)
    accepted_by_v2(out.frames)


def test_a_version_2_hello_to_a_real_broker_is_refused_in_version_2() -> None:
    hello = frames_of(VECTORS["hello"])
    with zmq_context() as ctx, broker_thread() as server:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(server.bound[0])
        sock.send_multipart(hello)
        assert sock.poll(int(WAIT * 1000)), "no answer to a version-2 HELLO"
        accepted_by_v2(sock.recv_multipart())
        sock.close()
        assert server.core.nicks == []


@pytest.fixture
def version_2_broker() -> Iterator[str]:
    """A broker as version 2 was, for a peer of version 3: a raw ROUTER that answers
    every message with what version 2's broker answered a version-3 HELLO with."""
    answer = frames_of(VECTORS["broker_answer_to_v3_hello"])
    assert answer[:3] == [b"ZCHAT2", b"\x13", b"\x03"]
    stop = threading.Event()
    with zmq_context() as ctx:
        router = ctx.socket(zmq.ROUTER)
        router.linger = 0
        port = router.bind_to_random_port("tcp://127.0.0.1")

        def serve() -> None:
            while not stop.is_set():
                if router.poll(50):
                    routing_id, *_ = router.recv_multipart()
                    router.send_multipart([routing_id, *answer])

        thread = threading.Thread(target=serve, name="v2-broker", daemon=True)
        thread.start()
        try:
            yield f"tcp://127.0.0.1:{port}"
        finally:
            stop.set()
            thread.join(timeout=5)
            router.close()


@pytest.mark.slow
def test_a_peer_told_by_a_version_2_broker_says_which_versions_met(
    version_2_broker: str, tmp_path: Path
) -> None:
    peer = start_peer("alice", version_2_broker, tmp_path / "alice")
    with running(peer):
        refused = peer.wait_event("error", code="unsupported-version")
        assert refused["message"] == "unsupported protocol b'ZCHAT3'"  # version 2's words
        assert peer.wait() == EXIT_REFUSED
        peer.line(peer.err, lambda line: line.startswith("zchat: hint:"), timeout=WAIT)
    assert peer.stderr_lines[-2:] == [
        "zchat: error: the broker speaks zchat protocol 2; this zchat speaks 3",
        "zchat: hint: run the same zchat release on the broker and on every peer",
    ]
