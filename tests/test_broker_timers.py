"""The broker's time: deadlines in a heap, heartbeats over quiet links, joins in batches.

Work is *counted* here (deadlines looked at, messages made), never timed: a wake-up of
an idle broker must cost nothing that grows with the room.
"""

from __future__ import annotations

import pytest

from tests.support.keys import KeyPool
from tests.support.room import FAST_CORE, ROOM_ID, MemoryRoom, hello, seeded
from zchat.broker.config import BrokerConfig
from zchat.broker.core import Broker, Outgoing
from zchat.broker.liveness import Liveness
from zchat.broker.timers import Deadlines
from zchat.envelope import Identity, Recipient, seal
from zchat.envelope.proof import sign_proof
from zchat.wire import protocol as p

NONCE = b"\x00" * p.CHALLENGE_BYTES


def zeros(n: int) -> bytes:
    """The broker's randomness here: every challenge is NONCE, so proofs can be made ahead."""
    return b"\x00" * n


def joined(broker: Broker, conn: bytes, nick: str, ident: Identity, now: float) -> list[Outgoing]:
    """`nick` says HELLO and proves its key on `conn`; what the broker sent."""
    broker.handle(conn, p.encode(hello(nick.encode(), ident)), now)
    proof = sign_proof(ident.private_key, NONCE, nick.encode(), ident.public_der)
    return broker.handle(conn, p.encode(p.Proof(proof)), now)


def room_of(keys: KeyPool, members: int, config: BrokerConfig = FAST_CORE) -> Broker:
    broker = Broker(config, random=zeros)
    for i, ident in enumerate(keys.many(members)):
        joined(broker, b"c%d" % i, f"m{i}", ident, 0.0)
    broker.tick(0.0)
    return broker


def kinds(out: list[Outgoing], conn: bytes) -> list[p.BrokerMessage]:
    return [p.parse_from_broker(o.frames) for o in out if o.conn == conn]


# --- the heap ------------------------------------------------------------------------


def test_deadlines_fire_in_time_order_once_and_a_new_time_replaces_the_old() -> None:
    d: Deadlines[str] = Deadlines()
    d.set("b", 2.0)
    d.set("a", 1.0)
    d.set("c", 3.0)
    d.set("c", 5.0)  # moved later: the entry at 3.0 is stale
    d.cancel("b")
    assert d.due(0.5) == []
    assert d.due(4.0) == ["a"]
    assert d.next_at() == 5.0
    assert d.due(5.0) == ["c"]
    assert d.due(100.0) == []
    assert len(d) == 0
    assert d.examined == 4  # a, the stale b and c, and c: each entry popped once


# --- idle cost: counted, per wake-up --------------------------------------------------


@pytest.mark.parametrize("members", [2, 12])
def test_an_idle_wake_up_looks_at_no_member_whatever_the_room_size(
    keys: KeyPool, members: int
) -> None:
    broker = room_of(keys, members)
    interval = FAST_CORE.heartbeat_interval
    before = broker.timer_work
    # Wake-ups between deadlines, as the old loop had on every heartbeat's arrival:
    # each cost a look at every member; now they cost nothing.
    for k in range(1, 10):
        now = k * interval / 10
        for i in range(members):
            broker.handle(b"c%d" % i, p.encode(p.Heartbeat()), now)
        assert broker.tick(now) == []
    assert broker.timer_work == before


def test_over_time_a_member_costs_the_same_deadlines_in_a_room_of_any_size(
    keys: KeyPool,
) -> None:
    cfg = FAST_CORE
    intervals = 20

    def work_per_member(members: int) -> float:
        broker = room_of(keys, members)
        before = broker.timer_work
        for step in range(1, intervals * 10 + 1):  # ten wake-ups per interval
            now = step * cfg.heartbeat_interval / 10
            if step % 10 == 0:  # every member beats once an interval, as a peer does
                for i in range(members):
                    broker.handle(b"c%d" % i, p.encode(p.Heartbeat()), now)
            broker.tick(now)
        assert len(broker.nicks) == members
        return (broker.timer_work - before) / members

    small, large = work_per_member(2), work_per_member(12)
    assert small == large
    # About one heartbeat deadline per interval and one silence deadline per timeout.
    assert small <= 1.5 * (intervals + intervals * cfg.heartbeat_interval / cfg.heartbeat_timeout)


# --- the rules, alone ---------------------------------------------------------------------


def test_a_member_is_silent_past_the_timeout_or_twice_it_while_input_is_unread() -> None:
    live = Liveness(FAST_CORE)
    live.listed(b"a", 0.0)
    timeout = FAST_CORE.heartbeat_timeout
    assert not live.silent(b"a", 0.0, timeout, input_waiting=False)
    assert live.silent(b"a", 0.0, 1.5 * timeout, input_waiting=False)
    assert not live.silent(b"a", 0.0, 1.5 * timeout, input_waiting=True)
    assert live.silent(b"a", 0.0, 2.5 * timeout, input_waiting=True)


def test_a_link_gets_a_heartbeat_only_after_an_interval_with_nothing_sent() -> None:
    live = Liveness(FAST_CORE)
    interval = FAST_CORE.heartbeat_interval
    live.listed(b"a", 0.0)
    live.sent([b"a"], 0.5 * interval)
    assert not live.beat(b"a", interval)
    assert live.beat(b"a", 1.5 * interval)


# --- heartbeats over quiet links only --------------------------------------------------


def test_heartbeats_go_only_over_links_that_carried_nothing_for_an_interval(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom(broker=Broker(FAST_CORE, random=seeded(5)))
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    c = room.join("carol", carol)
    marks = {conn: len(room.wire[conn]) for conn in (a, b, c)}
    for i in range(20):  # alice writes to bob every half interval; carol hears nothing
        room.send(a, f"line {i}", to=["bob"])
        room.advance(FAST_CORE.heartbeat_interval / 2)

    def beats(conn: bytes) -> int:
        news = room.wire[conn][marks[conn] :]
        return sum(1 for f in news if f[1] == bytes([p.Command.HEARTBEAT]))

    assert beats(b) == 0  # every interval had a delivery for bob
    assert beats(a) == 0  # and an acknowledgement for alice
    # 1 s of silence towards carol: one beat per interval, give or take this room's
    # 50 ms ticks (a real loop wakes at the deadline itself).
    assert beats(c) >= 5
    assert sorted(room.broker.nicks) == ["alice", "bob", "carol"]


# --- silence judged on arrival ---------------------------------------------------------


def test_nobody_is_evicted_for_silence_while_unread_input_may_hold_their_heartbeat(
    alice: Identity, bob: Identity
) -> None:
    cfg = FAST_CORE
    broker = Broker(cfg, random=zeros)
    joined(broker, b"a", "alice", alice, 0.0)
    joined(broker, b"b", "bob", bob, 0.0)
    broker.tick(0.0)
    late = cfg.heartbeat_timeout * 1.5
    out = broker.tick(late, input_waiting=True)  # a storm: the queue is not read yet
    assert [o for o in out if o.frames[1] != bytes([p.Command.HEARTBEAT])] == []
    assert sorted(broker.nicks) == ["alice", "bob"]
    broker.handle(b"a", p.encode(p.Heartbeat()), late)  # alice's beat was in the queue
    out = broker.tick(late + 2 * cfg.heartbeat_interval)  # the queue is read: bob is silent
    assert (b"a", p.Leave("bob", p.LeaveReason.TIMEOUT)) in [
        (o.conn, p.parse_from_broker(o.frames)) for o in out
    ]
    assert broker.nicks == ["alice"]


def test_a_broker_that_never_catches_up_still_evicts_after_twice_the_timeout(
    alice: Identity,
) -> None:
    cfg = FAST_CORE
    broker = Broker(cfg, random=zeros)
    joined(broker, b"a", "alice", alice, 0.0)
    now = 0.0
    while now < 2 * cfg.heartbeat_timeout + cfg.heartbeat_interval:
        now += cfg.heartbeat_interval / 2
        broker.tick(now, input_waiting=True)
    assert broker.nicks == []


# --- joins in batches ------------------------------------------------------------------


def test_joins_of_one_batch_are_announced_once_each_at_the_tick(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    broker = Broker(FAST_CORE, random=zeros)
    joined(broker, b"a", "alice", alice, 0.0)
    broker.tick(0.0)
    to_bob = joined(broker, b"b", "bob", bob, 0.1)
    to_carol = joined(broker, b"c", "carol", carol, 0.1)
    # Before the tick, the newcomers hear only their own welcome and snapshot.
    assert {o.conn for o in [*to_bob, *to_carol]} == {b"b", b"c"}
    snapshot = kinds(to_carol, b"c")[-1]
    assert isinstance(snapshot, p.Snapshot)
    assert [m.nick for m in snapshot.members] == ["alice", "bob"]
    out = broker.tick(0.1)
    joins = [
        (o.conn, m.member.nick)
        for o in out
        if isinstance(m := p.parse_from_broker(o.frames), p.Join)
    ]
    # alice hears of both, bob of carol (who came after him), carol of nobody: her
    # snapshot had everyone.
    assert sorted(joins) == [(b"a", "bob"), (b"a", "carol"), (b"b", "carol")]
    assert broker.tick(0.1) == []


def test_a_join_is_encoded_once_for_the_whole_room(keys: KeyPool) -> None:
    broker = room_of(keys, 6)
    newcomer = keys.get(6)
    joined(broker, b"new", "m6", newcomer, 0.01)
    out = [o for o in broker.tick(0.01) if o.frames[1] == bytes([p.Command.JOIN])]
    assert len(out) == 6
    assert len({id(o.frames) for o in out}) == 1


def test_what_a_newcomer_says_reaches_the_others_after_they_heard_it_joined(
    alice: Identity, bob: Identity
) -> None:
    broker = Broker(FAST_CORE, random=zeros)
    joined(broker, b"a", "alice", alice, 0.0)
    broker.tick(0.0)
    joined(broker, b"b", "bob", bob, 0.1)
    # Bob's first message in the same batch as his join: no tick between them.
    to_alice = [Recipient("alice", alice.public_key)]
    env = seal(
        b"first words",
        sender=bob,
        sender_nick="bob",
        room_id=ROOM_ID,
        recipients=to_alice,
        seq=1,
    )
    out = broker.handle(b"b", p.encode(p.Send(env)), 0.1)
    heard = [p.Command(o.frames[1][0]) for o in out if o.conn == b"a"]
    assert heard == [p.Command.JOIN, p.Command.DELIVER]
    assert broker.tick(0.1) == []  # announced once
