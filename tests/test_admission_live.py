"""Admission between real `zchat peer --json` processes and a real broker (issue 12):
one fingerprint comparison admits a newcomer everywhere, both ways."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.procs import ZCHAT, Peer, running, start_broker, start_peer
from zchat.envelope import format_fingerprint, load_identity

#: Real processes, a second or more each: not in `make check`.
pytestmark = pytest.mark.slow


def compared(home: Path, nick: str) -> str:
    """What someone reads out from `zchat keys show` and the other types: 4 groups."""
    return format_fingerprint(load_identity(home / nick).fingerprint)[:19]


def seen_or_next(peer: Peer, name: str, **fields: Any) -> dict[str, Any]:
    """The event read already, in any order among others, or the next one to come."""
    for event in peer.history:
        if event["event"] == name and all(event.get(k) == v for k, v in fields.items()):
            return event
    return peer.wait_event(name, **fields)


def admits(peer: Peer, nick: str, home: Path) -> None:
    peer.send(f"/admit {nick} {compared(home, nick)}")
    peer.wait_event("admitted", nick=nick, how="you")


def test_a_newcomer_admitted_with_one_comparison_is_admitted_by_everyone(tmp_path: Path) -> None:
    homes = {n: tmp_path / n for n in ("alice", "bob", "carol")}
    broker, ep = start_broker()
    alice = start_peer("alice", ep, homes["alice"], admit_all=False)
    bob = start_peer("bob", ep, homes["bob"], admit_all=False)
    with running(broker, alice, bob):
        alice.wait_event("ready")
        bob.wait_event("ready")
        alice.wait_event("admit-needed", nick="bob")
        # alice and bob met before: they compare once, each admits the other.
        admits(alice, "bob", homes["bob"])
        admits(bob, "alice", homes["alice"])

        carol = start_peer("carol", ep, homes["carol"], admit_all=False)
        with running(carol):
            carol.wait_event("ready")
            needed = [carol.wait_event("admit-needed") for _ in range(2)]  # in any order
            assert sorted((e["nick"], e["already_here"]) for e in needed) == [
                ("alice", True),
                ("bob", True),
            ]
            bob.wait_event("admit-needed", nick="carol")
            carol.send("anyone?")  # nobody admitted yet: refused, not sent to nobody
            refused = carol.wait_event("error", code="not-sent")
            assert refused["message"].startswith("nobody here is admitted yet (alice, bob)")

            # carol knows alice, and only alice: one comparison, both ways.
            admits(carol, "alice", homes["alice"])
            admits(alice, "carol", homes["carol"])
            by_vouch = bob.wait_event("admitted", nick="carol")
            assert (by_vouch["how"], by_vouch["by"]) == ("vouch", "alice")
            back = carol.wait_event("admitted", nick="bob")
            assert (back["how"], back["by"]) == ("vouch", "alice")

            carol.send("hello, room")
            for peer in (alice, bob):
                got = peer.wait_event("message", text="hello, room")
                assert (got["from"], got["admitted"]) == ("carol", True)
            ack = carol.wait_event("ack")
            assert sorted(ack["delivered"]) == ["alice", "bob"]
            bob.send("welcome, carol")
            assert carol.wait_event("message", text="welcome, carol")["from"] == "bob"
            # What each side saw of the vouches: nothing but the admissions.
            assert [
                e for e in carol.history if e["event"] == "vouch-rejected" and not e["held"]
            ] == []
            for peer in (alice, bob, carol):
                peer.close_stdin()
                assert peer.wait() == 0, peer.stderr_lines


def test_a_revocation_over_real_sockets_drops_a_member_admitted_on_the_revokers_word(
    tmp_path: Path,
) -> None:
    """alice admitted bob, carol and dave by comparison; they admitted each other on her
    word. alice's /revoke carol makes bob and dave drop carol; then `zchat keys forget
    bob`, run from the shell on alice's home while she chats, makes her (and so dave)
    drop bob."""
    names = ("alice", "bob", "carol", "dave")
    homes = {n: tmp_path / n for n in names}
    broker, ep = start_broker()
    peers = {n: start_peer(n, ep, homes[n], admit_all=False) for n in names}
    alice, bob, dave = (peers[n] for n in ("alice", "bob", "dave"))
    with running(broker, *peers.values()):
        needed = {alice.wait_event("admit-needed")["nick"] for _ in range(3)}  # any order
        assert needed == {"bob", "carol", "dave"}
        for other in ("bob", "carol", "dave"):
            admits(alice, other, homes[other])
            admits(peers[other], "alice", homes["alice"])
        for peer, other in ((bob, "carol"), (dave, "carol"), (dave, "bob")):
            assert seen_or_next(peer, "admitted", nick=other)["by"] == "alice"

        alice.send("/revoke carol")
        mine = alice.wait_event("revoked", nick="carol")
        assert (mine["by"], mine["dropped"]) == ("alice", True)
        for peer in (bob, dave):
            theirs = peer.wait_event("revoked", nick="carol")
            assert (theirs["by"], theirs["dropped"]) == ("alice", True)
        bob.send("carol is out")
        assert sorted(bob.wait_event("sent", text="carol is out")["to"]) == ["alice", "dave"]
        assert dave.wait_event("message", text="carol is out")["from"] == "bob"

        forgot = subprocess.run(
            [*ZCHAT, "keys", "forget", "bob", "--nick", "alice"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "ZCHAT_HOME": str(homes["alice"])},
        )
        assert forgot.returncode == 0, forgot.stderr
        # alice notices (her pins file changed under her) and does as for /revoke bob.
        mine = alice.wait_event("revoked", nick="bob")
        assert (mine["by"], mine["dropped"]) == ("alice", True)
        theirs = dave.wait_event("revoked", nick="bob")
        assert (theirs["by"], theirs["dropped"]) == ("alice", True)
        alice.send("/msg bob still there?")
        refused = alice.wait_event("error", code="not-sent")
        assert refused["message"].startswith("bob is not admitted")
        for peer in peers.values():
            peer.close_stdin()
            assert peer.wait() == 0, peer.stderr_lines
    pins = json.loads((homes["alice"] / "alice" / "pins.json").read_text())
    assert set(pins["pins"]) == {"dave"}  # the forgotten two stay forgotten
    assert sorted(t["nick"] for t in pins["forgotten"]) == ["bob", "carol"]


def test_an_open_room_needs_no_admission_and_trust_new_keys_is_its_hidden_old_name(
    tmp_path: Path,
) -> None:
    helped = subprocess.run(
        [*ZCHAT, "peer", "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    assert "--admit-all" in helped.stdout
    assert "--trust-new-keys" not in helped.stdout
    broker, ep = start_broker()
    bot = start_peer(
        "bot", ep, tmp_path / "bot", "--trust-new-keys", "--room", "bots only", admit_all=False
    )
    other = start_peer(
        "other",
        ep,
        tmp_path / "other",
        env={"ZCHAT_ADMIT_ALL": "1", "ZCHAT_ROOM": "bots only"},
        admit_all=False,
    )
    with running(broker, bot, other):
        bot.wait_event("ready")
        other.wait_event("ready")
        bot.wait_event("join", nick="other")
        bot.send("no comparison needed")
        assert other.wait_event("message")["text"] == "no comparison needed"
        other.send("nor here")  # ZCHAT_ADMIT_ALL: other admitted bot at first sight too
        got = bot.wait_event("message")
        assert (got["text"], got["admitted"]) == ("nor here", True)
        assert [e for e in bot.history if e["event"] in ("admit-needed", "admitted")] == []


def zchat(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`zchat ARGS` run to its end, with `home` as its identity directory."""
    return subprocess.run(
        [*ZCHAT, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "ZCHAT_HOME": str(home)},
    )


def test_a_room_name_that_is_not_one_is_a_usage_error(tmp_path: Path) -> None:
    out = zchat(tmp_path, "peer", "--room", "caf\u00e9", "--nick", "x")
    assert out.returncode == 2
    assert out.stderr.startswith("zchat: error: invalid room name")


def test_a_broker_names_no_room_and_says_so(tmp_path: Path) -> None:
    """`zchat broker --room` is gone (protocol 3: the peer names the room); given, it
    is a usage error that says where the room is named now."""
    out = zchat(tmp_path, "broker", "--room", "ops")
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "zchat: error: a broker no longer names a room: it serves every room its peers name",
        "zchat: hint: give --room to each 'zchat peer' instead",
    ]


def test_a_peer_naming_a_room_past_the_brokers_max_rooms_is_refused(tmp_path: Path) -> None:
    broker, ep = start_broker(env={"ZCHAT_MAX_ROOMS": "1", "ZCHAT_ROOM": "ignored by a broker"})
    first = start_peer("alice", ep, tmp_path / "alice", "--room", "ops")
    with running(broker, first):
        first.wait_event("ready")
        carol = start_peer("carol", ep, tmp_path / "carol", "--room", "general")
        with running(carol):
            refused = carol.wait_event("error", code="too-many-rooms")
            assert "ops" not in refused["message"]  # no room is named to a stranger
            assert "general" not in refused["message"]
            assert carol.wait() == 4, carol.stderr_lines  # refused, for another reason than a name
        bob = start_peer("bob", ep, tmp_path / "bob", "--room", "ops")  # the room there is fine
        with running(bob):
            bob.wait_event("ready")
            first.wait_event("join", nick="bob")
