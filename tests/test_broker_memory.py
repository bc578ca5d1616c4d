"""The broker's memory under a flood to members that stopped reading, measured in the
broker's own process (VmRSS in /proc) while the attack runs and after it.

The attack (issue 11, defect 5): two sessions finish their handshake, keep sending
heartbeats so they are not evicted for silence, and never read again. A third session
sends them 10,000 envelopes with a token of ~22 KB each: 440 MB of deliveries, which
the broker must bound by bytes, not by a count of messages. The attacking sockets are
raw ZeroMQ in this process; the broker is a real `zchat broker` process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.net import FAST, broker_thread, zmq_context
from tests.procs import running, start_broker
from tests.support.room import hello, unsigned_envelope
from zchat.envelope import Identity
from zchat.envelope.limits import MSG_ID_BYTES
from zchat.envelope.proof import sign_proof
from zchat.wire import protocol as p
from zchat.wire.transport import configure

pytestmark = pytest.mark.chaos

ENVELOPES = 10_000
TOKEN_BYTES = 22_000
#: What the broker may use through the attack, as the issue asks.
CEILING_KIB = 200 * 1024
#: How close to its starting RSS the broker must come back once the stalled two are
#: gone. A freshly started broker has not yet touched every page it will keep (libzmq's
#: buffers, allocator arenas, caches): it comes back within about 10 MB here. Without
#: the byte budget it stayed 160 to 310 MB above its start.
GIVEN_BACK_SLACK_KIB = 32 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class PeakRss:
    """Samples a process's RSS every few milliseconds in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def recv(sock: zmq.Socket[bytes], timeout: float = 10.0) -> p.BrokerMessage:
    assert sock.poll(int(timeout * 1000)), "the broker did not answer"
    return p.parse_from_broker(sock.recv_multipart())


def session(
    ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, nick: str, identity: Identity
) -> zmq.Socket[bytes]:
    """A DEALER that completes the handshake and reads up to its SNAPSHOT."""
    sock = ctx.socket(zmq.DEALER)
    configure(sock)
    # A session that stops reading lets at most one message into its own memory, and
    # a small kernel buffer: everything else stays queued at the broker.
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 64 * 1024)
    sock.connect(endpoint)
    nick_bytes = nick.encode()
    sock.send_multipart(p.encode(hello(nick_bytes, identity, time.time())))
    challenge = recv(sock)
    assert isinstance(challenge, p.Challenge), challenge
    proof = sign_proof(identity.private_key, challenge.nonce, nick_bytes, identity.public_der)
    sock.send_multipart(p.encode(p.Proof(proof)))
    while not isinstance(recv(sock), p.Snapshot):
        pass
    return sock


def flood_frames(sender: str, identity: Identity, targets: tuple[str, ...]) -> list[bytes]:
    """One SEND to `targets`, with a junk signature: the broker reads only the header."""
    token = b"gAAAAA" + os.urandom(TOKEN_BYTES // 4 * 3)[: TOKEN_BYTES - 6]
    env = unsigned_envelope(
        sender,
        identity.fingerprint,
        [(t, os.urandom(8)) for t in targets],
        msg_id=bytes(MSG_ID_BYTES),
        timestamp_ms=int(time.time() * 1000),
        signature=os.urandom(256),
        token=token,
        wrapped=os.urandom(256),
    )
    return p.encode(p.Send(env))


def with_msg_id(frames: list[bytes], i: int) -> list[bytes]:
    """`frames` with a fresh msg_id spliced into the header (bytes 2 to 18)."""
    header = frames[2]
    msg_id = i.to_bytes(MSG_ID_BYTES, "big")
    return [frames[0], frames[1], header[:2] + msg_id + header[2 + MSG_ID_BYTES :], *frames[3:]]


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    with zmq_context() as ctx:
        yield ctx


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_members_that_stop_reading_cost_the_broker_bounded_bytes_given_back_after(
    context: zmq.Context[zmq.Socket[bytes]], alice: Identity, bob: Identity, carol: Identity
) -> None:
    broker, ep = start_broker()
    with running(broker):
        pid = broker.popen.pid
        stalled = [session(context, ep, "stalled1", alice), session(context, ep, "stalled2", bob)]
        sender = session(context, ep, "mallory", carol)
        start = rss_kib(pid)
        template = flood_frames("mallory", carol, ("stalled1", "stalled2"))
        beat = p.encode(p.Heartbeat())
        acked: set[bytes] = set()
        left: list[p.Leave] = []

        def read_sender() -> None:
            while sender.poll(0):
                msg = p.parse_from_broker(sender.recv_multipart())
                if isinstance(msg, p.Ack):
                    acked.add(msg.msg_id)
                elif isinstance(msg, p.Leave):
                    left.append(msg)

        t0 = time.monotonic()
        next_beat = 0.0
        with PeakRss(pid) as rss:
            i = 0
            deadline = time.monotonic() + 60
            while i < ENVELOPES or len(acked) < ENVELOPES:
                assert time.monotonic() < deadline, f"{len(acked)} of {i} sent acknowledged"
                now = time.monotonic()
                if now >= next_beat:  # the stalled keep talking, so silence never evicts them
                    next_beat = now + 0.05
                    for sock in stalled:
                        sock.send_multipart(beat, zmq.NOBLOCK)
                    with contextlib.suppress(zmq.Again):  # its SENDs are signs of life too
                        sender.send_multipart(beat, zmq.NOBLOCK)
                if i < ENVELOPES:
                    try:
                        sender.send_multipart(with_msg_id(template, i), zmq.NOBLOCK)
                        i += 1
                    except zmq.Again:
                        sender.poll(1)
                else:
                    sender.poll(5)
                read_sender()
            took = time.monotonic() - t0
            during = rss.peak
        for sock in stalled:
            sock.close(linger=0)
        # The stalled two are gone; the broker gives their memory back.
        after = rss_kib(pid)
        give_back_deadline = time.monotonic() + 10
        while after > start + GIVEN_BACK_SLACK_KIB and time.monotonic() < give_back_deadline:
            time.sleep(0.1)
            after = rss_kib(pid)
        print(
            f"{ENVELOPES} envelopes of {TOKEN_BYTES} B to two stalled members in {took:.1f} s: "
            f"broker RSS {start // 1024} MB at the start, peak {during // 1024} MB, "
            f"{after // 1024} MB after they left; leaves seen: {[x.nick for x in left]}"
        )
        assert during < CEILING_KIB
        assert after <= start + GIVEN_BACK_SLACK_KIB
        # The broker evicted them for not reading (not for silence: they kept beating).
        assert sorted((x.nick, x.reason) for x in left) == [
            ("stalled1", p.LeaveReason.BACKLOG),
            ("stalled2", p.LeaveReason.BACKLOG),
        ]
        assert broker.popen.poll() is None


def test_a_reader_that_pauses_then_catches_up_gets_every_held_message_in_order(
    context: zmq.Context[zmq.Socket[bytes]], alice: Identity, bob: Identity
) -> None:
    """The honest side of the byte budget: a pause shorter than the backlog timeout,
    with less than the budget held, costs nothing: no eviction, no loss, no reordering."""
    # 22 MB: more than libzmq's queue (ROUTER_SEND_HWM messages, 5.8 MB) and the
    # kernel's buffers (4 MB at most, as Linux sets them by default) take; the rest is
    # held, within a budget raised for the test.
    count = 1000
    config = dataclasses.replace(FAST, backlog_timeout=10.0, max_held_bytes=48 * 2**20)
    with broker_thread(config) as server:
        ep = server.bound[0]
        reader = session(context, ep, "reader", alice)
        sender = session(context, ep, "sender", bob)
        template = flood_frames("sender", bob, ("reader",))
        beat = p.encode(p.Heartbeat())
        counters = server.core.counters
        corrections: list[p.Ack] = []

        def keep_alive() -> None:
            for sock in (reader, sender):
                sock.send_multipart(beat, zmq.NOBLOCK)
            while sender.poll(0):
                msg = p.parse_from_broker(sender.recv_multipart())
                if isinstance(msg, p.Ack) and not msg.delivered:
                    corrections.append(msg)

        for i in range(count):
            sender.send_multipart(with_msg_id(template, i))
        deadline = time.monotonic() + 20
        while counters.messages < count:  # the reader reads nothing meanwhile
            assert time.monotonic() < deadline, f"{counters.messages} of {count} routed"
            keep_alive()
            time.sleep(0.05)
        assert counters.held > 0, "nothing was held: the test did not fill the socket"
        got: list[int] = []
        next_beat = 0.0
        while len(got) < count:
            assert time.monotonic() < deadline, f"{len(got)} of {count} read"
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + 0.05
                keep_alive()
            if reader.poll(10):
                msg = p.parse_from_broker(reader.recv_multipart())
                if isinstance(msg, p.Deliver):
                    got.append(int.from_bytes(msg.delivery.header.msg_id, "big"))
        print(f"{counters.held} messages (deliveries, acks, heartbeats) waited, held")
        assert got == list(range(count))
        assert counters.evicted == counters.dropped == 0
        assert corrections == []
        assert server.core.held.total == 0
