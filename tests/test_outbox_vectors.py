"""The ACK and outbox rules of docs/PROTOCOL.md §4.3, as a script a second implementation
can replay: tests/vectors/outbox_v3.json (its expectations written by hand, in
tests/vectors/vector_outbox.py).

A real peer core is welcomed into the room the vector sets up, then driven step by step:
the user sends, the broker's frames arrive as they are stored, time passes. After each
step, the reports it made and the state of the message the step is about must be the
ones the vector expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.vectors import identity, unhex, vector
from zchat.envelope import SessionKey, generate_session_key
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.core import PeerCore, Phase
from zchat.wire import protocol as p

OUTBOX = vector("outbox_v3.json")
SETUP = OUTBOX["setup"]
MSG_IDS = {name: bytes.fromhex(h) for name, h in OUTBOX["msg_ids"].items()}


def snapshot() -> p.Snapshot:
    broker = vector("broker_messages_v3.json")["messages"]
    (entry,) = [m for m in broker if m["name"] == "SNAPSHOT"]
    parsed = p.parse_from_broker(unhex(entry["frames"]))
    assert isinstance(parsed, p.Snapshot)
    return parsed


def ids_in_order() -> Callable[[int], bytes]:
    """The core's randomness: the vector's message ids, one per message sent."""
    sent = iter([MSG_IDS[step["msg"]] for step in OUTBOX["steps"] if step["do"] == "send"])

    def next_id(n: int) -> bytes:
        msg_id = next(sent)
        assert len(msg_id) == n
        return msg_id

    return next_id


def date(at: float) -> float:
    """The date (seconds since the epoch) at `at` on the peer's clock."""
    return float(SETUP["date_at_zero_ms"]) / 1000 + at


@pytest.fixture(scope="module")
def session_key() -> SessionKey:
    return generate_session_key()


def welcomed(session_key: SessionKey) -> PeerCore:
    config = PeerConfig(
        room=SETUP["room"],
        admit_all=SETUP["open_room"],
        absent_grace=SETUP["absent_grace"],
        correction_window=SETUP["correction_window"],
        rotate_every=SETUP["rotate_every"],
        key_grace=SETUP["key_grace"],
    )
    core = PeerCore(
        SETUP["peer"],
        identity("alice"),
        config=config,
        seq=1,
        random=ids_in_order(),
        date=lambda: date(0),
        broker_key=SETUP["broker_key"].encode(),
    )
    core.start(0.0)
    core.add_session_key(session_key, 0.0, wall=date(0))
    core.receive(p.encode(p.Challenge(bytes(p.CHALLENGE_BYTES))), 0.0)
    timers = (SETUP["welcome_heartbeat_ms"], SETUP["welcome_timeout_ms"])
    core.receive(p.encode(p.Welcome(SETUP["peer"], *timers, SETUP["room"])), 0.0)
    core.receive(p.encode(snapshot()), 0.0)
    core.resend(0.0)
    assert core.phase is Phase.READY
    assert sorted(core.members) == ["bob", "carol", "dave"]
    core.take_outgoing()
    core.take_events()
    return core


def reports(events: list[ev.Event]) -> list[dict[str, Any]]:
    """The events the vector speaks of, in its words."""
    out: list[dict[str, Any]] = []
    for event in events:
        match event:
            case ev.Acked(_, delivered, absent):
                out.append({"event": "ack", "delivered": list(delivered), "absent": list(absent)})
            case ev.Undelivered(_, nicks):
                out.append({"event": "undelivered", "nicks": list(nicks)})
            case ev.Problem(code=ev.ProblemCode.BAD_ACK, nicks=nicks, context=context):
                settled = context == "settled"
                problem = {"event": "problem", "code": "bad-ack", "nicks": list(nicks)}
                out.append({**problem, "settled": settled})
            case ev.Problem(code=code):
                out.append({"event": "problem", "code": code.value})
    return out


def state_of(core: PeerCore, msg_id: bytes) -> dict[str, Any]:
    outbox = core.outbox
    live = outbox.get(msg_id)
    entry = live or outbox.find(msg_id)
    if entry is None:
        return {
            "state": "settled" if outbox.closed(msg_id) else "gone",
            "pending": [],
            "absent": [],
            "delivered": [],
        }
    state = "delivered" if live is None else "waiting" if entry.acked else "unacknowledged"
    return {
        "state": state,
        "pending": sorted(entry.pending.values()),
        "absent": sorted(entry.pending[k] for k in entry.absent_since),
        "delivered": sorted(entry.delivered),
    }


def steps() -> Iterator[tuple[int, dict[str, Any]]]:
    yield from enumerate(OUTBOX["steps"])


def test_the_outbox_follows_the_script_step_by_step(session_key: SessionKey) -> None:
    core = welcomed(session_key)
    for i, step in steps():
        at, msg_id = float(step["at"]), MSG_IDS[step["msg"]]
        match step["do"]:
            case "send":
                sent = core.send_text(step["text"], at, step["to"], wall=date(at))
                assert sent == msg_id
                (frames,) = core.take_outgoing()
                send = p.parse_from_peer(frames)
                assert isinstance(send, p.Send)
                assert list(send.envelope.recipients) == step["recipients"]
            case "receive":
                core.receive([bytes.fromhex(f) for f in step["frames"]], at)
            case "tick":
                core.tick(at)
        core.take_outgoing()  # heartbeats
        where = f"step {i} at {at}: {step['desc']}"
        assert reports(core.take_events()) == step["events"], where
        assert state_of(core, msg_id) == step["expect"], where
    assert core.phase is Phase.READY  # no step made it reconnect


def test_the_script_covers_every_state_and_report() -> None:
    states = {step["expect"]["state"] for step in OUTBOX["steps"]}
    assert states == {"unacknowledged", "waiting", "delivered", "settled", "gone"}
    kinds = {(e["event"], e.get("code")) for step in OUTBOX["steps"] for e in step["events"]}
    assert {("ack", None), ("undelivered", None), ("problem", "bad-ack")} <= kinds
