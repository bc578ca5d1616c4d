"""The zchat home: one identity per nickname, so two terminals on one machine are two
people; an older home's single identity taken over once; a nickname run twice from one
home refused; and key commands that only show never make anything."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pexpect
import pytest

from tests.procs import ZCHAT, running, start_broker, start_peer
from zchat.envelope import (
    PRIVATE_KEY_FILE,
    format_fingerprint,
    generate_identity,
    load_identity,
    save_identity,
)
from zchat.home import find, identities, identity_dir, take_over
from zchat.peer.pinfile import PINS_FILE, PinFile
from zchat.peer.pins import Pin

#: Nothing from the caller's environment: no ZCHAT_* variable, and HOME where we say.
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith(("ZCHAT_", "XDG_"))}


def zchat(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ZCHAT, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,  # no terminal: nothing may be asked
        env={**CLEAN, "ZCHAT_HOME": str(home), **(env or {})},
        timeout=30,
        check=False,
    )


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# --- key commands that only show ----------------------------------------------------


@pytest.mark.parametrize(
    "args", [["keys", "show"], ["keys", "show", "--nick", "carol"], ["keys", "pins"]]
)
def test_showing_a_key_on_an_empty_home_makes_nothing_and_says_how(
    tmp_path: Path, args: list[str]
) -> None:
    home = tmp_path / "home"
    out = zchat(*args, home=home)
    assert out.returncode == 3
    first, hint = out.stderr.splitlines()
    assert first.startswith("zchat: error: no identity ")
    assert f"in {home} yet" in first
    assert hint.startswith("zchat: hint: 'zchat keys init --nick ")
    assert tree(tmp_path) == []  # not even the home directory


def test_showing_a_key_of_the_default_home_makes_nothing_either(tmp_path: Path) -> None:
    out = subprocess.run(
        [*ZCHAT, "keys", "show"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**CLEAN, "HOME": str(tmp_path)},
        timeout=30,
        check=False,
    )
    assert out.returncode == 3
    assert tree(tmp_path) == []


@pytest.mark.slow
def test_a_home_of_several_identities_asks_whose(tmp_path: Path) -> None:
    for nick in ("carol", "dave"):
        assert zchat("keys", "init", "--nick", nick, home=tmp_path).returncode == 0
    out = zchat("keys", "show", home=tmp_path)
    assert out.returncode == 2
    assert "holds several identities (carol, dave)" in out.stderr
    assert "--nick" in out.stderr
    assert identities(tmp_path) == ["carol", "dave"]


# --- passphrases without a terminal -------------------------------------------------


@pytest.mark.slow
def test_an_encrypted_key_without_a_terminal_or_the_variable_fails_at_once(tmp_path: Path) -> None:
    save_identity(generate_identity(), tmp_path / "carol", b"correct horse")
    for args in (["keys", "show", "--nick", "carol"], ["peer", "--nick", "carol", "--json"]):
        start = time.monotonic()
        out = (
            zchat(*args, "--connect", "tcp://127.0.0.1:9", home=tmp_path)
            if args[0] == "peer"
            else zchat(*args, home=tmp_path)
        )
        assert time.monotonic() - start < 15  # no prompt waited for, no broker tried
        assert out.returncode == 1
        first, hint = out.stderr.splitlines()[-2:]
        assert first.startswith("zchat: error: ")
        assert "is protected by a passphrase, and there is no terminal to ask for it" in first
        assert hint == "zchat: hint: set ZCHAT_PASSPHRASE to the passphrase"
    shown = zchat("keys", "show", home=tmp_path, env={"ZCHAT_PASSPHRASE": "correct horse"})
    assert shown.returncode == 0
    wrong = zchat("keys", "show", home=tmp_path, env={"ZCHAT_PASSPHRASE": "wrong"})
    assert wrong.returncode == 1
    assert "zchat: hint: ZCHAT_PASSPHRASE holds another passphrase" in wrong.stderr


@pytest.mark.slow
def test_an_empty_passphrase_typed_at_a_terminal_is_said_as_such_not_as_no_terminal(
    tmp_path: Path,
) -> None:
    save_identity(generate_identity(), tmp_path / "carol", b"correct horse")
    child = pexpect.spawn(
        ZCHAT[0],
        [*ZCHAT[1:], "keys", "show", "--nick", "carol"],
        env={**CLEAN, "ZCHAT_HOME": str(tmp_path)},
        encoding="utf-8",
        timeout=15,
    )
    child.expect("passphrase for ")
    child.sendline("")  # Enter, nothing typed
    child.expect(pexpect.EOF)
    child.close()
    said = child.before or ""
    assert "is protected by a passphrase, and none was typed" in said
    assert "no terminal" not in said  # there was one: it was asked
    assert child.exitstatus == 1


@pytest.mark.slow
def test_init_with_a_passphrase_takes_it_from_the_variable_or_fails_without_a_terminal(
    tmp_path: Path,
) -> None:
    out = zchat("keys", "init", "--nick", "carol", "--passphrase", home=tmp_path)
    assert out.returncode == 1
    assert "ZCHAT_PASSPHRASE" in out.stderr
    assert not (tmp_path / "carol" / PRIVATE_KEY_FILE).exists()
    env = {"ZCHAT_PASSPHRASE": "correct horse"}
    made = zchat("keys", "init", "--nick", "carol", "--passphrase", home=tmp_path, env=env)
    assert made.returncode == 0
    identity = load_identity(tmp_path / "carol", b"correct horse")
    assert made.stdout.strip() == format_fingerprint(identity.fingerprint)


# --- an identity per nickname ---------------------------------------------------------


@pytest.mark.slow
def test_two_nicknames_from_one_home_are_two_people_in_the_room(tmp_path: Path) -> None:
    """The quick start's first failure: carol and dave from one home shared one key,
    and dave was refused ("this key is in the room under another nickname")."""
    broker, ep = start_broker()
    carol = start_peer("carol", ep, tmp_path)
    dave = start_peer("dave", ep, tmp_path)
    with running(broker, carol, dave):
        carol.wait_event("ready")
        dave.wait_event("ready")
        joined = carol.wait_event("join", nick="dave")
        daves = load_identity(identity_dir(tmp_path, "dave")).fingerprint
        carols = load_identity(identity_dir(tmp_path, "carol")).fingerprint
        assert joined["fingerprint"] == format_fingerprint(daves) != format_fingerprint(carols)
        assert identities(tmp_path) == ["carol", "dave"]


@pytest.mark.slow
def test_the_same_nickname_from_the_same_home_is_refused_before_it_connects(
    tmp_path: Path,
) -> None:
    broker, ep = start_broker()
    first = start_peer("carol", ep, tmp_path)
    with running(broker, first):
        first.wait_event("ready")
        second = start_peer("Carol", ep, tmp_path)
        with running(second):
            assert second.wait(timeout=15) == 3
            said = second.line(second.err, lambda s: s.startswith("zchat: error:"), timeout=5)
            assert said == (
                f"zchat: error: Carol is in use by another zchat on this machine "
                f"(process {first.popen.pid})"
            )
        first.send("still here")  # the first one never noticed
        assert first.wait_event("error", code="not-sent")["message"].startswith("nobody else")


# --- an older home, with one identity in the home itself -----------------------------


def older_home(home: Path) -> bytes:
    identity = generate_identity()
    save_identity(identity, home)
    PinFile.open(home).save([Pin("bob", bytes(32))])
    return identity.fingerprint


def test_the_first_nickname_to_run_takes_over_an_older_homes_identity(tmp_path: Path) -> None:
    fingerprint = older_home(tmp_path)
    assert find(tmp_path, "carol") == tmp_path  # `zchat keys` reads it where it is...
    assert take_over(tmp_path, "carol")  # ...a peer moves it
    assert load_identity(tmp_path / "carol").fingerprint == fingerprint
    assert [p.nick for p in PinFile.open(tmp_path / "carol").pins] == ["bob"]
    assert not (tmp_path / PRIVATE_KEY_FILE).exists()
    assert not (tmp_path / PINS_FILE).exists()
    assert not take_over(tmp_path, "dave")  # dave gets a key of his own
    assert find(tmp_path, "dave") is None


def test_a_nickname_with_its_own_identity_leaves_an_older_one_alone(tmp_path: Path) -> None:
    older_home(tmp_path)
    save_identity(generate_identity(), tmp_path / "carol")
    assert not take_over(tmp_path, "carol")
    assert (tmp_path / PRIVATE_KEY_FILE).exists()


@pytest.mark.slow
def test_two_peers_taking_over_at_once_do_not_split_the_identity(tmp_path: Path) -> None:
    for _ in range(20):
        home = tmp_path / str(len(list(tmp_path.iterdir())))
        older_home(home)
        won: dict[str, bool] = {}

        def run(nick: str, home: Path = home, won: dict[str, bool] = won) -> None:
            won[nick] = take_over(home, nick)

        threads = [threading.Thread(target=run, args=(n,)) for n in ("carol", "dave")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        (winner,) = [n for n, moved in won.items() if moved]
        assert sorted(os.listdir(home / winner)) == [
            "pins.json",
            "private_key.pem",
            "public_key.pem",
        ]


@pytest.mark.slow
def test_a_peer_says_once_that_it_took_over_an_older_homes_identity(tmp_path: Path) -> None:
    fingerprint = older_home(tmp_path)
    broker, ep = start_broker()
    carol = start_peer("carol", ep, tmp_path)
    with running(broker, carol):
        carol.wait_event("ready")
        said = carol.line(carol.err, lambda s: "moved the identity" in s, timeout=5)
        assert said == (
            f"zchat: moved the identity in {tmp_path} to {tmp_path / 'carol'}: each nickname "
            "has its own identity now (to use it under another nickname, rename that directory)"
        )
        assert load_identity(tmp_path / "carol").fingerprint == fingerprint


@pytest.mark.slow
def test_a_nickname_the_broker_refuses_leaves_no_identity_behind(tmp_path: Path) -> None:
    broker, ep = start_broker()
    carol = start_peer("carol", ep, tmp_path / "hers")
    with running(broker, carol):
        carol.wait_event("ready")
        rival = start_peer("carol", ep, tmp_path / "mine")
        with running(rival):
            assert rival.wait(timeout=15) == 3
            said = rival.line(rival.err, lambda s: s.startswith("zchat: error:"), timeout=5)
            assert said == "zchat: error: carol is taken in this room"
        assert tree(tmp_path / "mine") == []
