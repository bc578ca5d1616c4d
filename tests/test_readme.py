"""The README's quick start, run as written: its commands are read out of README.md, so
the two cannot drift apart.

One HOME for everyone, as on a newcomer's machine: a broker, then `zchat peer --nick
carol` and `zchat peer --nick dave` in two terminals (pseudo-terminals here). Both get
into the room with fingerprints of their own, admit each other with the fingerprint and
the command they were shown, and exchange a line each way.

Two things are not literal, and both through variables the README documents: the
broker listens on a port of its choosing, and the peers connect to it (`ZCHAT_BIND`,
`ZCHAT_CONNECT`), rather than on 5555, which another program on this machine may hold;
and HOME is a fresh directory.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.test_terminal import Person

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def quick_start() -> list[list[str]]:
    """The commands of the README's quick start: its first code block, comments cut."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Quick start\n", 1)[1]
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the quick start has no code block"
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [command for command in commands if command]


def test_the_quick_start_is_a_broker_and_two_peers() -> None:
    broker, *peers = quick_start()
    assert broker == ["make", "broker"]
    assert [peer[-3:] for peer in peers] == [
        ["peer", "--nick", "carol"],
        ["peer", "--nick", "dave"],
    ]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminals as Linux has them")
def test_the_readme_quick_start_works_as_written(tmp_path: Path) -> None:
    (broker_command, carol_command, dave_command) = quick_start()
    # As in a fresh shell: nothing of ours, and nothing of a `make test ARGS=...` that may
    # be running this (make exports its command line's variables to what it runs).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ZCHAT_", "XDG_", "MAKE", "MFLAGS")) and k != "ARGS"
    }
    env.update(HOME=str(tmp_path), ZCHAT_BIND="tcp://127.0.0.1:*")  # a port of its choosing
    broker = subprocess.Popen(
        broker_command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # make and the broker it starts: one group to stop
    )
    people: list[Person] = []
    try:
        assert broker.stderr is not None
        said = []
        for line in broker.stderr:  # bounded by the test's timeout
            said.append(line)
            listening = re.search(r"listening on (\S+)", line)
            if listening:
                env["ZCHAT_CONNECT"] = listening.group(1)
                break
        assert "ZCHAT_CONNECT" in env, "".join(said)
        # Keep reading what it logs, so that a full pipe never stops it.
        threading.Thread(target=broker.stderr.read, daemon=True).start()
        carol = run(carol_command, env)
        people.append(carol)
        carol.shows(r"you are carol; here: nobody else yet")
        dave = run(dave_command, env)
        people.append(dave)
        dave.shows(r"you are dave; here: carol")

        # Each is shown the other's fingerprint, and the command to type if it matches.
        daves, admit_dave = shown(carol, "dave")
        carols, admit_carol = shown(dave, "carol")
        assert daves != carols
        assert own_fingerprint(dave) == daves  # what dave reads out: /fingerprint
        assert own_fingerprint(carol) == carols
        carol.type(admit_dave + "\r")
        carol.shows(r"admitted dave \(key .* compared\)")
        dave.type(admit_carol + "\r")
        dave.shows(r"admitted carol \(key .* compared\)")

        carol.type("hello dave\r")
        dave.shows(r"<carol> hello dave")
        carol.shows(r"<carol> hello dave  \(to 1\)")  # her own, once the broker has it
        dave.type("hi carol, dave here\r")
        carol.shows(r"<dave> hi carol, dave here")
        for person in (dave, carol):
            assert person.leaves() == 0
        # Two people, two keys, in the one HOME the README's commands used.
        home = tmp_path / ".local" / "share" / "zchat"
        assert sorted(p.name for p in home.iterdir()) == ["carol", "dave"]
    finally:
        for person in people:
            person.stop()
        if broker.poll() is None:
            os.killpg(broker.pid, signal.SIGTERM)
        try:
            broker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(broker.pid, signal.SIGKILL)
            broker.wait(timeout=10)


def run(command: list[str], env: dict[str, str]) -> Person:
    """`command` in a terminal of its own, run by a shell from the repository's root,
    as someone who pasted it would."""
    return Person(["/bin/sh", "-c", shlex.join(command)], {**env, "TERM": "xterm-256color"}, ROOT)


def shown(person: Person, other: str) -> tuple[str, str]:
    """The fingerprint of `other` and the /admit command `person` was shown."""
    fingerprint = person.shows(
        rf"{other} (?:joined|is here), NOT ADMITTED.*\n.*fingerprint: ((\w{{4}} ){{12}}\w{{4}})"
    )
    command = person.shows(rf"if it matches, type:\s*\n!\s+(/admit {other}(?: \w{{4}}){{4}})")
    return (
        re.search(r"fingerprint: (.*)", fingerprint).group(1),  # type: ignore[union-attr]
        re.search(r"(/admit .*)", command).group(1),  # type: ignore[union-attr]
    )


def own_fingerprint(person: Person) -> str:
    person.type("/fingerprint\r")
    line = person.shows(r"your fingerprint: (\w{4} ){12}\w{4}")
    return line.split(": ", 1)[1]
