"""Write outbox_v3.json: the ACK and outbox rules (PROTOCOL.md §4.3) as a script.

Run through `python -m tests.vectors.make_vectors outbox`. Nothing here runs the
outbox: every expectation below is written by hand from the rules in §4.3, and
tests/test_outbox_vectors.py drives a real peer core through the script and checks it
meets each one. The broker's messages are written as frames (hex), as they come off the
wire, so that a second implementation can feed them to its own peer unchanged.

The peer is alice in the open room 'general' (every member reads at once), welcomed
with the broker's members of broker_messages_v3.json's SNAPSHOT (bob, carol, dave),
the broker's timers 1 s and 600 s, and these settings of her own: absent grace 30 s,
correction window 30 s, rotation 60 s and key grace 10 s, so that a message's
plaintext lives at most 70 s. Time is alice's monotonic clock, in seconds; the date
at 0 is a minute after the members' certificates were made.
"""

from __future__ import annotations

from typing import Any

from tests.vectors.make_vectors import BROKER_KEY, CREATED_MS, ROOM, _write
from zchat.wire import protocol as p

M = {name: bytes([0x11 * i]) * 16 for i, name in enumerate(("m1", "m2", "m3", "m4", "m5", "m6"), 1)}
ROOM_MESSAGE = ["bob", "carol", "dave"]


def _state(
    state: str,
    pending: tuple[str, ...] = (),
    absent: tuple[str, ...] = (),
    delivered: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "state": state,
        "pending": sorted(pending),
        "absent": sorted(absent),
        "delivered": sorted(delivered),
    }


UNACKED = "unacknowledged"
WAITING = "waiting"
IN_WINDOW = "delivered"
SETTLED = "settled"
GONE = "gone"


def _ack(msg: str, delivered: tuple[str, ...], absent: tuple[str, ...]) -> list[str]:
    return [f.hex() for f in p.encode(p.Ack(M[msg], delivered, absent))]


def _error(code: int, reason: str, msg: str) -> list[str]:
    frames = [p.PROTOCOL_TAG, bytes([p.Command.ERROR]), bytes([code]), reason.encode(), M[msg]]
    return [f.hex() for f in frames]


def _ack_event(delivered: tuple[str, ...], absent: tuple[str, ...]) -> dict[str, Any]:
    return {"event": "ack", "delivered": list(delivered), "absent": list(absent)}


def _bad_ack(nicks: tuple[str, ...], *, settled: bool) -> dict[str, Any]:
    return {"event": "problem", "code": "bad-ack", "nicks": list(nicks), "settled": settled}


def _undelivered(*nicks: str) -> dict[str, Any]:
    return {"event": "undelivered", "nicks": list(nicks)}


def _problem(code: str) -> dict[str, Any]:
    return {"event": "problem", "code": code}


def _step(
    at: float,
    do: str,
    msg: str,
    desc: str,
    *,
    events: list[dict[str, Any]] | None = None,
    state: dict[str, Any],
    **what: Any,
) -> dict[str, Any]:
    return {
        "at": at,
        "do": do,
        "msg": msg,
        "desc": desc,
        **what,
        "events": events or [],
        "expect": state,
    }


def _send(at: float, msg: str, to: list[str] | None, desc: str) -> dict[str, Any]:
    recipients = ROOM_MESSAGE if to is None else to
    return _step(
        at,
        "send",
        msg,
        desc,
        to=to,
        recipients=recipients,
        text=f"message {msg}",
        state=_state(UNACKED, pending=tuple(recipients)),
    )


def _frames(at: float, msg: str, frames: list[str], desc: str, **rest: Any) -> dict[str, Any]:
    return _step(at, "receive", msg, desc, frames=frames, **rest)


def _tick(at: float, msg: str, desc: str, **rest: Any) -> dict[str, Any]:
    return _step(at, "tick", msg, desc, **rest)


def write_outbox_vector() -> None:
    everyone = ("bob", "carol", "dave")
    steps = [
        _send(0, "m1", None, "a room message to bob, carol and dave: pending for all three"),
        _frames(
            1,
            "m1",
            _ack("m1", ("bob", "carol"), ("dave",)),
            "the first answer: bob and carol have it, dave is absent (waited for)",
            events=[_ack_event(("bob", "carol"), ("dave",))],
            state=_state(WAITING, ("dave",), ("dave",), ("bob", "carol")),
        ),
        _frames(
            2,
            "m1",
            _ack("m1", (), ("carol",)),
            "a correction: no one delivered, exactly one name absent, and that name was "
            "acknowledged delivered: carol is pending again",
            events=[_ack_event((), ("carol",))],
            state=_state(WAITING, ("carol", "dave"), ("carol", "dave"), ("bob",)),
        ),
        _frames(
            3,
            "m1",
            _ack("m1", ("eve",), ()),
            "an ACK naming someone the message was not sealed to: a lie, ignored whole",
            events=[_bad_ack(("eve",), settled=False)],
            state=_state(WAITING, ("carol", "dave"), ("carol", "dave"), ("bob",)),
        ),
        _frames(
            4,
            "m1",
            _ack("m1", ("carol", "dave"), ()),
            "the answer to a resend to carol and dave (bob's key blanked, so not named): "
            "delivered to everyone, the correction window begins",
            events=[_ack_event(("carol", "dave"), ())],
            state=_state(IN_WINDOW, delivered=everyone),
        ),
        _frames(
            5,
            "m1",
            _ack("m1", ("bob",), ()),
            "a repeat that says nothing new: ignored, not reported",
            state=_state(IN_WINDOW, delivered=everyone),
        ),
        _frames(
            20,
            "m1",
            _ack("m1", (), ("dave",)),
            "a correction within the correction window (16 s after 4): taken back into the "
            "outbox, dave pending again",
            events=[_ack_event((), ("dave",))],
            state=_state(WAITING, ("dave",), ("dave",), ("bob", "carol")),
        ),
        _frames(
            21,
            "m1",
            _ack("m1", ("dave",), ()),
            "delivered to everyone again: a new correction window, from 21",
            events=[_ack_event(("dave",), ())],
            state=_state(IN_WINDOW, delivered=everyone),
        ),
        _tick(
            51,
            "m1",
            "30 s after 21: the window is not over yet",
            state=_state(IN_WINDOW, delivered=everyone),
        ),
        _tick(
            51.5,
            "m1",
            "more than 30 s after 21: settled, its plaintext erased, its id kept",
            state=_state(SETTLED),
        ),
        _frames(
            52,
            "m1",
            _ack("m1", (), ("bob",)),
            "a correction of a settled message: refused and reported; settled stays settled",
            events=[_bad_ack(("bob",), settled=True)],
            state=_state(SETTLED),
        ),
        _frames(
            53,
            "m1",
            _ack("m1", ("bob",), ()),
            "any other ACK of a settled message: ignored, not reported",
            state=_state(SETTLED),
        ),
        _send(60, "m2", ["bob", "carol"], "a direct message to bob and carol"),
        _frames(
            61,
            "m2",
            _ack("m2", ("bob",), ()),
            "the first answer leaves carol out: she is waited for as if absent",
            events=[_ack_event(("bob",), ("carol",))],
            state=_state(WAITING, ("carol",), ("carol",), ("bob",)),
        ),
        _tick(
            91,
            "m2",
            "30 s after carol was first absent: not past the absent grace yet",
            state=_state(WAITING, ("carol",), ("carol",), ("bob",)),
        ),
        _tick(
            91.5,
            "m2",
            "past the grace: undelivered to carol; bob has it, so its correction window runs",
            events=[_undelivered("carol")],
            state=_state(IN_WINDOW, delivered=("bob",)),
        ),
        _tick(122, "m2", "more than 30 s after 91.5: settled", state=_state(SETTLED)),
        _send(130, "m3", ["dave"], "a direct message to dave"),
        _frames(
            131,
            "m3",
            _error(p.ErrorCode.MALFORMED, "refused", "m3"),
            "ERROR MALFORMED naming it: the broker will never route it as it is; dropped, "
            "undelivered to everyone still pending",
            events=[_undelivered("dave"), _problem("malformed")],
            state=_state(GONE),
        ),
        _send(140, "m4", ["bob"], "a direct message to bob"),
        _frames(
            141,
            "m4",
            _error(p.ErrorCode.BAD_CERTIFICATE, "not now", "m4"),
            "an ERROR of another code carrying its msg_id: reported, the msg_id ignored",
            events=[_problem("bad-certificate")],
            state=_state(UNACKED, ("bob",)),
        ),
        _frames(
            142,
            "m4",
            _error(99, "a later version's error", "m4"),
            "an ERROR code this version does not know, with its msg_id: reported, ignored",
            events=[_problem("unexpected")],
            state=_state(UNACKED, ("bob",)),
        ),
        _frames(
            143,
            "m4",
            _error(p.ErrorCode.FORGED_SENDER, "sender is not you", "m4"),
            "ERROR FORGED_SENDER naming it: dropped, undelivered",
            events=[_undelivered("bob"), _problem("forged-sender")],
            state=_state(GONE),
        ),
        _send(150, "m5", ["carol"], "a direct message to carol, never answered"),
        _tick(
            220,
            "m5",
            "70 s after it was sealed: its plaintext may live that long, not longer",
            state=_state(UNACKED, ("carol",)),
        ),
        _tick(
            220.5,
            "m5",
            "past the message lifetime (rotation + key grace): erased, undelivered to whoever "
            "had not got it, and settled",
            events=[_undelivered("carol")],
            state=_state(SETTLED),
        ),
        _frames(
            221,
            "m5",
            _ack("m5", (), ("carol",)),
            "an ACK naming an absent recipient of a message given up on for its age: refused",
            events=[_bad_ack(("carol",), settled=True)],
            state=_state(SETTLED),
        ),
        _send(230, "m6", ["bob"], "a direct message to bob"),
        _frames(
            271,
            "m6",
            _ack("m6", ("bob",), ()),
            "delivered 41 s after sealing: a correction window would end past the 70 s "
            "lifetime, so none is given; settled at once",
            events=[_ack_event(("bob",), ())],
            state=_state(SETTLED),
        ),
        _frames(
            272,
            "m6",
            _ack("m6", (), ("bob",)),
            "so its correction is refused",
            events=[_bad_ack(("bob",), settled=True)],
            state=_state(SETTLED),
        ),
    ]
    _write(
        "outbox_v3.json",
        {
            "desc": (
                "the sender's outbox under a scripted broker (PROTOCOL.md §4.3). Each step "
                "happens `at` seconds on the peer's clock: `send` (the user sends `text` to "
                "`to`, null for the room; `msg_id` is the id it gets), `receive` (the broker's "
                "`frames`, hex) or `tick` (time passes). `events` are the reports it makes, in "
                "order (ack: the news an ACK brings; undelivered; problem), `expect` the state "
                "of message `msg` after it: unacknowledged (no answer yet), waiting (answered, "
                "someone pending), delivered (to everyone, in its correction window), settled "
                "(plaintext erased, id kept to refuse a reopening ACK), gone (let go, not "
                "remembered)"
            ),
            "setup": {
                "peer": "alice",
                "room": ROOM,
                "broker_key": BROKER_KEY.decode(),
                "members": "broker_messages_v3.json SNAPSHOT: bob, carol, dave",
                "open_room": True,
                "welcome_heartbeat_ms": 1000,
                "welcome_timeout_ms": 600_000,
                "absent_grace": 30.0,
                "correction_window": 30.0,
                "rotate_every": 60.0,
                "key_grace": 10.0,
                "date_at_zero_ms": CREATED_MS + 60_000,
            },
            "msg_ids": {name: msg_id.hex() for name, msg_id in M.items()},
            "steps": steps,
        },
    )
