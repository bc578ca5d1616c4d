"""End to end, as a user runs it: `zchat broker` and `zchat peer` processes."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.procs import ZCHAT, running, start_broker, start_peer
from zchat.broker.config import BrokerConfig
from zchat.commands.broker import broker as broker_command


def test_version_prints_the_version() -> None:
    out = subprocess.run(
        [*ZCHAT, "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.startswith("zchat ")


@pytest.mark.parametrize("command", [[], ["broker"], ["peer"], ["keys"], ["keys", "pins"]])
def test_every_command_has_help(command: list[str]) -> None:
    out = subprocess.run(
        [*ZCHAT, *command, "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    assert "Usage" in out.stdout


def test_the_broker_command_runs_with_the_cores_own_timers_when_not_told() -> None:
    """`zchat broker`'s defaults are BrokerConfig's, which PROTOCOL.md §3.8 justifies: the
    interval once stayed 2 s in the command after the core's became 2.5 s."""
    params = inspect.signature(broker_command).parameters
    core = BrokerConfig()
    assert params["heartbeat_interval"].default == core.heartbeat_interval
    assert params["heartbeat_timeout"].default == core.heartbeat_timeout
    help_text = subprocess.run(
        [*ZCHAT, "broker", "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert f"default: {core.heartbeat_interval:g}" in help_text


@pytest.mark.slow
def test_three_peers_converse_through_a_broker_process(tmp_path: Path) -> None:
    broker, ep = start_broker()
    alice = start_peer("alice", ep, tmp_path / "alice")
    bob = start_peer("bob", ep, tmp_path / "bob")
    carol = start_peer("carol", ep, tmp_path / "carol")
    with running(broker, alice, bob, carol):
        alice.wait_event("ready")
        bob.wait_event("ready")
        carol.wait_event("ready")
        alice.wait_event("join", nick="carol")
        bob.wait_event("join", nick="carol")
        alice.send("hello, everyone")
        for peer in (bob, carol):
            got = peer.wait_event("message", **{"from": "alice"})
            assert got["text"] == "hello, everyone"
            assert got["direct"] is False
        ack = alice.wait_event("ack")
        assert sorted(ack["delivered"]) == ["bob", "carol"]
        assert ack["absent"] == []
        bob.send("/msg carol just you")
        dm = carol.wait_event("message", **{"from": "bob"})
        assert (dm["text"], dm["direct"]) == ("just you", True)
        carol.send("//slash is literal")
        assert alice.wait_event("message", **{"from": "carol"})["text"] == "/slash is literal"
        bob.send("exit")
        assert bob.wait(timeout=10) == 0
        assert alice.wait_event("leave", nick="bob")["reason"] == "bye"
        # alice must not have seen bob's direct message to carol
        alice.close_stdin()
        assert alice.wait(timeout=10) == 0
        # what alice's earlier waits read, and what she printed after them
        assert "just you" not in alice.texts()
        assert not any('"just you"' in line for line in _drain(alice.out))


def _drain(q: object) -> list[str]:
    import queue

    assert isinstance(q, queue.Queue)
    lines = []
    while True:
        try:
            line = q.get_nowait()
        except queue.Empty:
            return lines
        if line is not None:
            lines.append(line)


@pytest.mark.slow
def test_a_taken_nickname_is_refused_fast_with_exit_status_3(tmp_path: Path) -> None:
    broker, ep = start_broker()
    carol = start_peer("carol", ep, tmp_path / "carol")
    with running(broker, carol):
        carol.wait_event("ready")
        start = time.monotonic()
        rival = start_peer("Carol", ep, tmp_path / "rival")
        with running(rival):
            assert rival.wait(timeout=10) == 3
            assert time.monotonic() - start < 2.0 + _startup_allowance()
            err = rival.line(rival.err, lambda s: s.startswith("zchat: error:"), timeout=5)
            assert "taken" in err


def _startup_allowance() -> float:
    # Interpreter start, imports and key generation happen before the hello; the
    # refusal itself comes back in one round trip.
    return 3.0


@pytest.mark.slow
def test_exit_waits_until_the_broker_acknowledged_everything(tmp_path: Path) -> None:
    broker, ep = start_broker()
    alice = start_peer("alice", ep, tmp_path / "alice")
    bob = start_peer("bob", ep, tmp_path / "bob")
    with running(broker, alice, bob):
        alice.wait_event("ready")
        bob.wait_event("ready")
        alice.wait_event("join", nick="bob")
        for i in range(50):
            alice.send(f"line {i}")
        alice.send("exit")
        assert alice.wait(timeout=20) == 0
        for i in range(50):
            assert bob.wait_event("message")["text"] == f"line {i}"


@pytest.mark.slow
def test_without_a_broker_a_scripted_peer_says_so_and_exits(tmp_path: Path) -> None:
    peer = start_peer(
        "alice", "tcp://127.0.0.1:9", tmp_path / "a", env={"ZCHAT_CONNECT_TIMEOUT": "1"}
    )
    with running(peer):
        assert peer.wait(timeout=20) == 1
        err = peer.line(peer.err, lambda s: s.startswith("zchat: error:"), timeout=5)
        assert "no answer from a broker" in err


def test_an_invalid_nickname_is_a_usage_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [*ZCHAT, "peer", "--nick", "bad nick", "--json"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"ZCHAT_HOME": str(tmp_path), "PATH": "/usr/bin"},
        timeout=30,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("zchat: error: invalid nickname")
    assert "zchat: hint:" in out.stderr


@pytest.mark.slow
def test_keys_show_prints_the_fingerprint_and_pins_lists_pins(tmp_path: Path) -> None:
    env = {"ZCHAT_HOME": str(tmp_path), "PATH": "/usr/bin"}
    made = subprocess.run(
        [*ZCHAT, "keys", "init", "--nick", "carol"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    assert (tmp_path / "carol" / "private_key.pem").stat().st_mode & 0o777 == 0o600
    for whose in ([], ["--nick", "carol"], ["--nick", "Carol"]):  # the only one, or named
        shown = subprocess.run(
            [*ZCHAT, "keys", "show", *whose],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=True,
        )
        assert len(shown.stdout.split()) == 13
        assert shown.stdout == made.stdout
    pins = subprocess.run(
        [*ZCHAT, "keys", "pins"], capture_output=True, text=True, env=env, timeout=30, check=True
    )
    assert pins.stdout == ""
    forget = subprocess.run(
        [*ZCHAT, "keys", "forget", "nobody"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert forget.returncode == 1
    assert "no pin for nobody" in forget.stderr


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("process tests assume Linux")


def test_a_heartbeat_timeout_not_longer_than_the_interval_is_refused() -> None:
    out = subprocess.run(
        [*ZCHAT, "broker", "--heartbeat-interval", "2", "--heartbeat-timeout", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("zchat: error: --heartbeat-timeout")


@pytest.mark.slow
def test_a_line_that_is_not_utf8_is_refused_and_the_next_one_is_sent(tmp_path: Path) -> None:
    broker, ep = start_broker()
    alice = start_peer("alice", ep, tmp_path / "alice")
    bob = start_peer("bob", ep, tmp_path / "bob")
    with running(broker, alice, bob):
        alice.wait_event("ready")
        alice.wait_event("join", nick="bob")
        assert alice.popen.stdin is not None
        alice.popen.stdin.buffer.write(b"caf\xe9\nstill here\n")  # Latin-1, not UTF-8
        alice.popen.stdin.flush()
        assert bob.wait_event("message")["text"] == "still here"
        refused = alice.wait_event("error")
        assert refused["code"] == "not-sent"


@pytest.mark.slow
def test_a_reader_that_goes_away_ends_the_session_cleanly(tmp_path: Path) -> None:
    broker, ep = start_broker()
    with running(broker):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the first line, as `| head -0`
        peer = subprocess.Popen(
            [*ZCHAT, "peer", "--nick", "alice", "--connect", ep, "--json"],
            stdin=subprocess.PIPE,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "ZCHAT_HOME": str(tmp_path)},
        )
        os.close(write_end)
        try:
            _, err = peer.communicate("hello?\n", timeout=20)
        finally:
            peer.kill()
        assert peer.returncode == 0
        assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["peer", "--nick"], "zchat: error: option '--nick' requires an argument"),
        (["no-such-command"], "zchat: error: no such command 'no-such-command'"),
    ],
)
def test_usage_errors_read_like_every_other_error(args: list[str], message: str) -> None:
    out = subprocess.run([*ZCHAT, *args], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 2
    first, hint = out.stderr.splitlines()[:2]
    assert first == message
    assert hint.startswith("zchat: hint: see '")
