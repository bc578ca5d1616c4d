"""The replay window: each (nickname, key, seq) opens once, in bounded memory, and a
window outlives its sender's departure long enough that a leave and a rejoin announced
by the broker cannot bring old messages back."""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.room import ROOM_ID, ready_core
from zchat.envelope import Identity, MessageKind, Recipient, seal
from zchat.envelope.limits import MAX_ROOM
from zchat.peer import events as ev
from zchat.peer.core import PeerCore
from zchat.peer.replay import MAX_DEPARTED, WINDOW, ReplayGuard
from zchat.wire import protocol as p

ALICE_FP = b"\xaa" * 32
OTHER_FP = b"\xbb" * 32

# --- the window on its own ------------------------------------------------------------


class Model:
    """The rule in PROTOCOL.md §4.2 written the obvious way, with unbounded memory."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.highest: int | None = None
        self.seen: set[int] = set()

    def is_new(self, seq: int) -> bool:
        return self.highest is None or (seq > self.highest - self.window and seq not in self.seen)

    def is_stale(self, seq: int) -> bool:
        return self.highest is not None and seq <= self.highest - self.window

    def record(self, seq: int) -> None:
        self.seen.add(seq)
        self.highest = seq if self.highest is None else max(self.highest, seq)


steps = st.lists(
    st.one_of(
        st.integers(-80, 120),  # near the newest: repeats, reorders, small gaps
        st.sampled_from([-64, -63, 63, 64, 65, 1000, 10**9]),  # the edges, and leaps
    ),
    min_size=1,
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, 2**64 - 1), moves=steps)
def test_the_bitmap_window_decides_exactly_as_the_rule_says(start: int, moves: list[int]) -> None:
    """A small window (64 numbers, 8 bytes) wraps its ring often; every answer must match
    the unbounded model, whatever order numbers come in."""
    guard, model = ReplayGuard(window=64), Model(64)
    seq = start
    for move in moves:
        seq = max(0, seq + move)
        assert guard.is_new("alice", ALICE_FP, seq) == model.is_new(seq), seq
        assert guard.is_stale("alice", ALICE_FP, seq) == model.is_stale(seq), seq
        if model.is_new(seq):
            guard.record("alice", ALICE_FP, seq)
            model.record(seq)


def test_numbers_are_accepted_once_in_any_order_inside_the_window() -> None:
    guard = ReplayGuard()
    for seq in (1000, 998, 1003, 999):
        assert guard.is_new("alice", ALICE_FP, seq)
        guard.record("alice", ALICE_FP, seq)
        assert not guard.is_new("alice", ALICE_FP, seq)
    assert guard.is_new("alice", ALICE_FP, 1001)
    assert guard.is_stale("alice", ALICE_FP, 1003 - WINDOW)
    assert not guard.is_stale("alice", ALICE_FP, 1004 - WINDOW)


def test_a_window_holds_8_kib_however_many_numbers_it_has_seen() -> None:
    guard = ReplayGuard()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for seq in range(10**12, 10**12 + WINDOW + 1000):  # every bit used, and more
            guard.record("alice", ALICE_FP, seq)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert guard.bitmap_bytes() == WINDOW // 8 == 8192
    assert after - before < 4 * WINDOW // 8  # the bitmap and a little bookkeeping


def test_windows_of_members_who_left_are_evicted_beyond_a_bound() -> None:
    guard = ReplayGuard()
    for i in range(3 * MAX_DEPARTED):
        nick = f"visitor{i}"
        guard.record(nick, bytes([i % 256]) * 32, 1)
        guard.forget(nick)
    assert guard.bitmap_bytes() == MAX_DEPARTED * WINDOW // 8  # 8 MiB, not 24
    guard.record("alice", ALICE_FP, 1)
    assert guard.bitmap_bytes() == (MAX_DEPARTED + 1) * WINDOW // 8


def test_every_other_member_of_a_full_room_may_leave_and_none_can_be_replayed() -> None:
    # A broker can announce all 999 others gone at once, then one of them back with a
    # message already shown: every departed window is still there to refuse it.
    guard = ReplayGuard()
    for i in range(MAX_ROOM - 1):
        guard.record(f"m{i}", i.to_bytes(32, "big"), 7)
        guard.forget(f"m{i}")
    assert not guard.is_new("m0", (0).to_bytes(32, "big"), 7)
    assert guard.bitmap_bytes() == (MAX_ROOM - 1) * WINDOW // 8  # 8 MiB at most


def test_a_nickname_has_one_live_window_however_many_keys_the_broker_gives_it() -> None:
    guard = ReplayGuard()
    for i in range(3 * MAX_DEPARTED):
        guard.record("alice", i.to_bytes(32, "big"), 1)
    assert guard.bitmap_bytes() == (1 + MAX_DEPARTED) * WINDOW // 8


def test_senders_are_a_nickname_and_a_key_not_the_key_alone() -> None:
    guard = ReplayGuard()
    guard.record("alice-bot", ALICE_FP, 5_000_000)  # started later: a higher clock
    assert guard.is_new("alice", ALICE_FP, 1_000)
    assert not guard.is_stale("alice", ALICE_FP, 1_000)
    guard.record("alice", ALICE_FP, 1_000)
    assert not guard.is_new("ALICE", ALICE_FP, 1_000)  # nicknames compare as nick_key does
    assert guard.is_new("alice", OTHER_FP, 1_000)  # the same name with another key


def test_a_window_set_aside_comes_back_with_its_numbers() -> None:
    guard = ReplayGuard()
    guard.record("alice", ALICE_FP, 10)
    guard.forget("alice")
    assert not guard.is_new("alice", ALICE_FP, 10)  # still a replay after she left
    guard.record("alice", OTHER_FP, 3)  # her name with a new key: another window
    assert not guard.is_new("alice", ALICE_FP, 10)  # the old key's numbers still count
    guard.record("alice", ALICE_FP, 11)  # back with the old key
    assert not guard.is_new("alice", ALICE_FP, 10)
    assert guard.is_new("alice", ALICE_FP, 9)


# --- in the peer: one key under two nicknames, and departures -------------------------


def ready_peer(nick: str, identity: Identity, members: dict[str, Identity]) -> PeerCore:
    """A peer core welcomed by a broker (any broker) that lists `members`."""
    listed = [p.Member(n, i.public_der) for n, i in members.items()]
    return ready_core(nick, identity, listed, seed=len(nick))


def delivery(sender: Identity, nick: str, to: str, to_core: PeerCore, seq: int) -> list[bytes]:
    """A message from `sender` as `nick`, sealed to `to_core`'s current session key."""
    key = to_core.session_keys.held()[0]
    envelope = seal(
        f"{nick} #{seq}".encode(),
        sender=sender,
        sender_nick=nick,
        room_id=ROOM_ID,
        recipients=[Recipient(to, key.private_key.public_key(), key.fingerprint)],
        seq=seq,
        kind=MessageKind.ROOM,
    )
    return p.encode(p.Deliver(envelope.delivery_for(0)))


def shown(core: PeerCore) -> list[str]:
    return [e.text for e in core.take_events() if isinstance(e, ev.MessageReceived)]


def test_alice_and_alice_bot_sharing_a_key_do_not_drop_each_others_messages(
    alice: Identity, bob: Identity
) -> None:
    """The broker admits one key under two nicknames (it may be hostile, or lax): each
    numbers its messages from its own clock, and both are shown."""
    b = ready_peer("bob", bob, {"alice": alice, "alice-bot": alice})
    b.receive(delivery(alice, "alice-bot", "bob", b, 2_000_000_000), 0.0)
    b.receive(delivery(alice, "alice", "bob", b, 1_000_000_000), 0.0)
    b.receive(delivery(alice, "alice-bot", "bob", b, 2_000_000_001), 0.0)
    b.receive(delivery(alice, "alice", "bob", b, 1_000_000_001), 0.0)
    assert shown(b) == [
        "alice-bot #2000000000",
        "alice #1000000000",
        "alice-bot #2000000001",
        "alice #1000000001",
    ]


def test_a_replay_after_a_leave_and_a_rejoin_announced_by_the_broker_is_dropped(
    alice: Identity, bob: Identity
) -> None:
    b = ready_peer("bob", bob, {"alice": alice})
    old = delivery(alice, "alice", "bob", b, 7_000)
    b.receive(old, 0.0)
    assert shown(b) == ["alice #7000"]
    b.receive(p.encode(p.Leave("alice", p.LeaveReason.BYE)), 1.0)
    b.receive(p.encode(p.Join(p.Member("alice", alice.public_der))), 2.0)
    b.receive(old, 3.0)
    assert shown(b) == []
    b.receive(delivery(alice, "alice", "bob", b, 7_001), 4.0)
    assert shown(b) == ["alice #7001"]


def test_the_peer_lets_go_of_the_windows_of_members_who_leave(
    alice: Identity, bob: Identity
) -> None:
    b = ready_peer("bob", bob, {"alice": alice})
    for i in range(MAX_DEPARTED + 10):
        nick = f"guest{i}"
        b.receive(p.encode(p.Join(p.Member(nick, alice.public_der))), 0.0)
        b.receive(delivery(alice, nick, "bob", b, 1), 0.0)
        b.receive(p.encode(p.Leave(nick, p.LeaveReason.BYE)), 0.0)
    assert len(shown(b)) == MAX_DEPARTED + 10
    assert b.roster.inbox.replay.bitmap_bytes() == MAX_DEPARTED * WINDOW // 8
