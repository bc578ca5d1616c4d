"""`zchat bench --swarm`: the light sessions' framing is the protocol's, and a quick run
produces every figure.

The framing tests hold `bench.lightwire` to `wire.protocol`: when the protocol changes
(as it did for version 3), they fail until the light sessions follow. No timing
thresholds.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.room import certificate, seeded
from zchat.bench import lightwire as lw
from zchat.bench.keycache import ensure_keys, key_file, read_identity
from zchat.bench.swarm import ROOMS_PER_BROKER, broker_groups
from zchat.broker.config import BrokerConfig
from zchat.broker.core import Broker
from zchat.envelope import DEFAULT_ROOM, Identity, room_id
from zchat.wire import protocol as p


def test_a_light_hello_and_proof_are_what_the_broker_accepts(alice: Identity) -> None:
    cert = certificate(alice, "s0001", 1_700_000_000.0)  # for the default room
    broker = Broker(random=seeded(0))
    frames = lw.hello("s0001", alice.public_der, cert, DEFAULT_ROOM)
    assert p.parse_from_peer(frames) == p.Hello(
        b"s0001", alice.public_der, cert, DEFAULT_ROOM.encode()
    )
    (challenge,) = broker.handle(b"c1", frames, 0.0)
    assert lw.command(challenge.frames) == lw.CHALLENGE
    nonce = lw.challenge_nonce(challenge.frames)
    answer = broker.handle(b"c1", lw.proof(alice.private_key, nonce, "s0001", alice.public_der), 0)
    welcome, snapshot = (out.frames for out in answer)
    assert lw.command(welcome) == lw.WELCOME
    assert lw.welcome_interval_ms(welcome) == int(BrokerConfig().heartbeat_interval * 1000)
    assert (lw.command(snapshot), lw.snapshot_size(snapshot)) == (lw.SNAPSHOT, 0)
    assert broker.nicks == ["s0001"]


def test_a_light_room_message_is_a_send_and_its_deliveries_carry_the_due_time(
    alice: Identity,
) -> None:
    recipients = lw.Recipients.of(("s0002", "s0003"))
    room = room_id(DEFAULT_ROOM)
    frames = lw.room_message(
        "s0001", alice.fingerprint, room, recipients, number=7, due_ns=123_456, wall_ms=1
    )
    send = p.parse_from_peer(frames)
    assert isinstance(send, p.Send)
    assert [leaf.nick for leaf in send.envelope.leaves] == ["s0002", "s0003"]
    assert send.envelope.header.room_id == room
    assert len(send.envelope.token) == lw.TOKEN_BYTES
    deliver = p.deliver_frames(send.envelope, 1)
    assert lw.command(deliver) == lw.DELIVER
    assert lw.delivery_stamp(deliver) == (123_456, 7)


def test_light_sessions_read_joins_leaves_acks_and_errors_as_the_protocol_writes_them(
    alice: Identity,
) -> None:
    member = p.Member("s0002", alice.public_der, b"cert")
    assert lw.snapshot_size(p.encode(p.Snapshot((member, member)))) == 2
    assert lw.command(p.encode(p.Join(member))) == lw.JOIN
    leave = p.encode(p.Leave("s0002", p.LeaveReason.BACKLOG))
    assert lw.leave_nick_and_reason(leave) == (b"s0002", p.LeaveReason.BACKLOG)
    assert p.LeaveReason.BACKLOG in lw.EVICTION_REASONS
    assert lw.ack_absent(p.encode(p.Ack(bytes(16), ("a",), ("b", "c")))) == 2
    assert lw.ack_absent(p.encode(p.Ack(bytes(16), ("a",), ()))) == 0
    error = p.encode(p.Error(p.ErrorCode.EVICTED, "silent too long"))
    assert (lw.command(error), lw.error_code(error)) == (lw.ERROR, p.ErrorCode.EVICTED)
    refuse = p.encode(p.Refuse(p.RefuseCode.ROOM_FULL, "the room is full"))
    assert lw.refuse_code(refuse) == p.RefuseCode.ROOM_FULL


def test_keys_are_made_once_and_read_back(tmp_path: Path) -> None:
    assert ensure_keys(tmp_path, 2) == 2
    assert ensure_keys(tmp_path, 2) == 0
    assert key_file(tmp_path, 0).stat().st_mode & 0o077 == 0
    first, second = read_identity(tmp_path, 0), read_identity(tmp_path, 1)
    assert first.fingerprint != second.fingerprint


def test_rooms_go_to_brokers_by_the_rooms_per_broker_setting() -> None:
    groups = broker_groups([f"r{i}" for i in range(5)])
    assert [room for group in groups for room in group] == [f"r{i}" for i in range(5)]
    assert all(len(group) <= ROOMS_PER_BROKER for group in groups)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_quick_swarm_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "swarm.json"
    proc = subprocess.run(
        [sys.executable, "-m", "zchat", "bench", "--swarm", "12", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        env={"ZCHAT_SWARM_KEYS": str(tmp_path / "keys"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    storm = data["storm"]
    assert storm["members"] == storm["welcomed"] == storm["settled"] == 12
    assert storm["bytes"] > 0
    assert data["idle"]["broker_rss_mb"] > 0
    assert [(b["rooms"], b["room_size"]) for b in data["busy"]] == [(1, 12), (5, 6)]
    for busy in data["busy"]:
        assert busy["sent"] > 0
        assert busy["received"] > 0
        assert busy["lost"] == 0
        assert math.isfinite(busy["wire_bytes_per_delivery"])
        assert 0 < busy["latency_ms"]["p50"] <= busy["latency_ms"]["p99"]
    assert data["keys"]["made"] == 30  # the most seats at once: 5 rooms of 6
    assert "zchat bench --swarm" in proc.stdout
