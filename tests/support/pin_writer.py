"""A peer process that pins members, for tests of two processes sharing one pins file.

``python -m tests.support.pin_writer DIR TAG COUNT GO``: load the pins in DIR (as a
peer does at start, and then never again: a stale view, as a long-running peer's is),
say so with the file ready-TAG beside DIR, wait for the file GO to exist, then take
COUNT members named TAG000, TAG001, ... as joining, one at a time, and after each
merge what the core changed into the pins file, exactly as the client's loop does after
each batch of input (`Client._save_pins`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.room import ready_core
from zchat.envelope import Identity
from zchat.peer.pinfile import PinFile
from zchat.peer.pins import Pins
from zchat.wire import protocol as p

VECTORS = Path(__file__).parent.parent / "vectors"


def identity(name: str) -> Identity:
    key = serialization.load_pem_private_key((VECTORS / f"{name}.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return Identity(key)


def main(directory: Path, tag: str, count: int, go: Path) -> None:
    pin_file = PinFile.open(directory)
    core = ready_core("alice", identity("alice"), pins=Pins(pin_file.pins, pin_file.tombstones))
    member_der = identity("bob").public_der
    (directory.parent / f"ready-{tag}").touch()
    deadline = time.monotonic() + 30
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go")
        time.sleep(0.001)
    for i in range(count):
        core.receive(p.encode(p.Join(p.Member(f"{tag}{i:03}", member_der))), 0.0)
        changed = core.take_pins()
        assert changed is not None
        pin_file.merge(changed.changes)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
