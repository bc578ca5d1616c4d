"""`zchat broker` as a service: Prometheus metrics scraped over HTTP, and log lines with levels."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import zmq

from tests.procs import ZCHAT, Proc, start_broker
from tests.support.room import hello
from tests.support.waits import WAIT
from zchat.bench.processes import free_port
from zchat.broker.metrics import MetricsAddress
from zchat.envelope import DEFAULT_ROOM, Identity
from zchat.envelope.proof import sign_proof
from zchat.wire import protocol as p


def scrape(url: str) -> dict[str, float]:
    """The samples of a Prometheus text page, by name and labels as written."""
    with urllib.request.urlopen(url, timeout=5) as page:
        text = page.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def scrape_until(url: str, name: str, value: float) -> dict[str, float]:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            samples = scrape(url)
        except OSError:  # not serving yet
            samples = {}
        if samples.get(name) == value or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def handshake(
    sock: zmq.Socket[bytes], nick: str, ident: Identity, room: str = DEFAULT_ROOM
) -> list[bytes]:
    """HELLO and PROOF over a raw DEALER; the broker's last answer."""
    sock.send_multipart(p.encode(hello(nick.encode(), ident, time.time(), room=room)))
    assert sock.poll(int(WAIT * 1000))
    challenge = p.parse_from_broker(sock.recv_multipart())
    if not isinstance(challenge, p.Challenge):
        return p.encode(challenge)
    proof = sign_proof(ident.private_key, challenge.nonce, nick.encode(), ident.public_der)
    sock.send_multipart(p.encode(p.Proof(proof)))
    assert sock.poll(int(WAIT * 1000))
    return sock.recv_multipart()


@pytest.mark.timeout(60)
def test_the_metrics_endpoint_counts_members_deliveries_and_refusals_by_code(
    alice: Identity,
) -> None:
    port = free_port()
    broker, endpoint = start_broker({"ZCHAT_METRICS": f"127.0.0.1:{port}"})
    url = f"http://127.0.0.1:{port}/metrics"
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    socks = [ctx.socket(zmq.DEALER) for _ in range(3)]
    try:
        for sock in socks:
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
        samples = scrape_until(url, "zchat_members", 0.0)
        assert samples["zchat_members"] == 0.0
        assert samples["zchat_rooms"] == 0.0
        welcome = handshake(socks[0], "alice", alice)
        assert p.parse_from_broker(welcome) == p.Welcome("alice", 100, 600)
        refused = p.parse_from_broker(handshake(socks[1], "b\u043eb", alice))
        assert isinstance(refused, p.Refuse)
        samples = scrape_until(url, "zchat_members", 1.0)
        assert samples["zchat_members"] == 1.0
        assert samples["zchat_rooms"] == 1.0
        assert samples['zchat_refusals_total{code="nick_invalid"}'] == 1.0
        welcome = handshake(socks[2], "alice", alice, "ops")  # one key, two rooms
        assert p.parse_from_broker(welcome) == p.Welcome("alice", 100, 600, "ops")
        samples = scrape_until(url, "zchat_rooms", 2.0)
        assert (samples["zchat_rooms"], samples["zchat_members"]) == (2.0, 2.0)
        for name in (
            "zchat_deliveries_total",
            "zchat_messages_total",
            "zchat_evictions_total",
            "zchat_held_bytes",
            "zchat_handshakes",
        ):
            assert samples[name] == 0.0, name
        line = broker.line(broker.err, lambda s: "alice joined" in s, timeout=WAIT)
        assert re.search(r"zchat-broker INFO alice joined", line), line
    finally:
        for sock in socks:
            sock.close(linger=0)
        ctx.term()
        broker.stop()


def test_log_level_warning_leaves_out_the_events_of_a_healthy_broker() -> None:
    port = free_port()
    broker = Proc(
        [*ZCHAT, "broker", "--bind", f"tcp://127.0.0.1:{port}", "--log-level", "warning"], {}
    )
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:  # until it listens: it has logged its start
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        broker.stop()
    lines = []
    while not broker.err.empty():
        line = broker.err.get_nowait()
        if line is not None:
            lines.append(line)
    assert not [line for line in lines if " INFO " in line], lines


def test_metrics_without_prometheus_client_says_what_to_install(tmp_path: Path) -> None:
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "sitecustomize.py").write_text("import sys\nsys.modules['prometheus_client'] = None\n")
    proc = subprocess.run(
        [sys.executable, "-m", "zchat", "broker", "--metrics", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PYTHONPATH": str(stub), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1
    assert "zchat: error: --metrics needs prometheus_client, which is not installed" in proc.stderr
    assert "zchat: hint: pip install 'zchat[metrics]'" in proc.stderr


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:9100", "127.0.0.1", 9100), ("9100", "0.0.0.0", 9100), ("[::1]:9", "::1", 9)],
)
def test_a_metrics_address_is_host_and_port_or_a_port(text: str, host: str, port: int) -> None:
    assert MetricsAddress.parse(text) == MetricsAddress(host, port)


@pytest.mark.parametrize("text", ["", "host:", ":9100x", "127.0.0.1:70000", "localhost"])
def test_a_bad_metrics_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        MetricsAddress.parse(text)
