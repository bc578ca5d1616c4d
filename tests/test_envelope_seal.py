"""Sealing and opening: round trips, tailored deliveries, and every tampering caught."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.keys import KeyPool
from zchat.envelope import (
    BadSignature,
    DecryptionFailed,
    Delivery,
    Envelope,
    Header,
    Identity,
    MalformedEnvelope,
    MessageKind,
    NotForMe,
    Opened,
    Recipient,
    UnknownSessionKey,
    WrongRoom,
    generate_session_key,
    open_delivery,
    reseal,
    room_id,
    seal,
)
from zchat.envelope import _primitives as prim
from zchat.envelope.limits import MAX_NAMED, MAX_TEXT_BYTES
from zchat.envelope.sealing import UnwrapKey

ROOM = room_id("zchat")


def room(keys: KeyPool, n: int) -> list[tuple[str, Identity]]:
    return [(f"peer{i}", keys.get(i + 1)) for i in range(n)]


def seal_for(
    alice: Identity,
    members: list[tuple[str, Identity]],
    text: bytes = b"hi",
    *,
    kind: MessageKind = MessageKind.ROOM,
    room: bytes = ROOM,
) -> Envelope:
    recipients = [Recipient(nick, ident.public_key) for nick, ident in members]
    return seal(
        text,
        sender=alice,
        sender_nick="alice",
        room_id=room,
        recipients=recipients,
        seq=7,
        kind=kind,
    )


def open_as(
    delivery: Delivery, me: str, key: UnwrapKey, alice: Identity, *, room: bytes = ROOM
) -> Opened:
    return open_delivery(delivery, me=me, room_id=room, keys=(key,), sender_key=alice.public_key)


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2, 3, 50])
def test_every_recipient_opens_its_own_delivery(keys: KeyPool, alice: Identity, n: int) -> None:
    members = room(keys, n)
    env = seal_for(alice, members, b"the plan is on")
    for i, (nick, ident) in enumerate(members):
        opened = open_as(env.delivery_for(i), nick, ident, alice)
        assert opened.plaintext == b"the plan is on"
        assert opened.header.sender == "alice"
        assert opened.header.seq == 7
        assert opened.header.count == n


def test_a_non_recipient_cannot_open_any_delivery(keys: KeyPool, alice: Identity) -> None:
    members = room(keys, 2)
    outsider = keys.get(10)
    env = seal_for(alice, members)
    for i in range(2):
        with pytest.raises(NotForMe):
            open_as(env.delivery_for(i), "mallory", outsider, alice)


def test_a_recipient_cannot_open_another_recipients_delivery(
    keys: KeyPool, alice: Identity
) -> None:
    (nick0, id0), (nick1, _) = room(keys, 2)
    env = seal_for(alice, room(keys, 2))
    # peer1's leaf names peer1: peer0 is not its recipient, whatever key it tries.
    with pytest.raises(NotForMe):
        open_as(env.delivery_for(1), nick0, id0, alice)
    # peer1's wrapped key moved under peer0's own leaf: bound to peer1, it does not open.
    stolen = dataclasses.replace(env.delivery_for(0), wrapped_key=env.wrapped_keys[1])
    with pytest.raises(DecryptionFailed):
        open_as(stolen, nick0, id0, alice)
    assert nick1 == "peer1"


def test_a_delivery_carries_one_leaf_its_path_and_one_wrapped_key(
    keys: KeyPool, alice: Identity
) -> None:
    env = seal_for(alice, room(keys, 10))
    delivery = env.delivery_for(3)
    assert len(delivery.frames()) == 6
    assert delivery.index == 3
    assert delivery.leaf == env.leaves[3]
    assert len(delivery.path) == 4 * 32  # ceil(log2 10) hashes
    assert delivery.wrapped_key == env.wrapped_keys[3]
    assert Delivery.parse(delivery.frames()) == delivery


def test_direct_kind_survives_the_round_trip_and_names_every_recipient(
    keys: KeyPool, alice: Identity
) -> None:
    members = room(keys, 3)
    env = seal_for(alice, members, b"psst", kind=MessageKind.DIRECT)
    for i, (nick, ident) in enumerate(members):
        opened = open_as(env.delivery_for(i), nick, ident, alice)
        assert opened.header.kind is MessageKind.DIRECT
        assert opened.header.named == ("peer0", "peer1", "peer2")


def test_a_room_message_names_nobody_in_its_header(keys: KeyPool, alice: Identity) -> None:
    env = seal_for(alice, room(keys, 3))
    assert env.header.named == ()
    assert env.recipients == ("peer0", "peer1", "peer2")


def test_a_direct_message_to_more_than_max_named_is_refused_by_the_sender(
    keys: KeyPool, alice: Identity
) -> None:
    members = [(f"peer{i}", keys.get(1)) for i in range(MAX_NAMED + 1)]
    with pytest.raises(ValueError, match=f"at most {MAX_NAMED}"):
        seal_for(alice, members, kind=MessageKind.DIRECT)
    assert seal_for(alice, members[:MAX_NAMED], kind=MessageKind.DIRECT).header.count == MAX_NAMED


def test_recipient_names_match_case_insensitively(alice: Identity, bob: Identity) -> None:
    env = seal_for(alice, [("Bob", bob)])
    assert open_as(env.delivery_for(0), "bob", bob, alice).plaintext == b"hi"


def test_the_sender_cannot_be_a_recipient(alice: Identity, bob: Identity) -> None:
    with pytest.raises(ValueError, match="sender"):
        seal_for(alice, [("bob", bob), ("Alice", alice)])


def test_duplicate_recipients_are_refused_by_the_sender(alice: Identity, bob: Identity) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        seal_for(alice, [("bob", bob), ("BOB", bob)])


def test_text_over_the_limit_is_refused_by_the_sender(alice: Identity, bob: Identity) -> None:
    with pytest.raises(ValueError, match="limit"):
        seal_for(alice, [("bob", bob)], b"x" * (MAX_TEXT_BYTES + 1))


def test_text_at_the_limit_seals_and_parses(alice: Identity, bob: Identity) -> None:
    env = seal_for(alice, [("bob", bob)], b"x" * MAX_TEXT_BYTES)
    parsed = Envelope.parse(env.frames())
    assert len(open_as(parsed.delivery_for(0), "bob", bob, alice).plaintext) == MAX_TEXT_BYTES


def test_a_message_signed_by_another_key_is_a_bad_signature(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    env = seal_for(alice, [("bob", bob)])
    with pytest.raises(BadSignature):
        open_delivery(
            env.delivery_for(0), me="bob", room_id=ROOM, keys=(bob,), sender_key=carol.public_key
        )


# --- rooms ----------------------------------------------------------------------------


def test_a_message_for_another_room_is_refused_though_genuine(
    alice: Identity, bob: Identity
) -> None:
    env = seal_for(alice, [("bob", bob)], room=room_id("exec"))
    with pytest.raises(WrongRoom):
        open_as(env.delivery_for(0), "bob", bob, alice)
    assert open_as(env.delivery_for(0), "bob", bob, alice, room=room_id("exec")).plaintext


def test_a_room_of_one_name_on_two_brokers_is_two_rooms() -> None:
    one, two = b"A" * 40, b"B" * 40
    assert room_id("general", one) != room_id("general", two)
    assert room_id("general", one) != room_id("general")
    assert room_id("general") != room_id("General")


# --- tampering: every single frame and header field ---------------------------------


def flip(data: bytes, at: int = -1) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def test_tampered_signature_is_caught(alice: Identity, bob: Identity) -> None:
    frames = seal_for(alice, [("bob", bob)]).delivery_for(0).frames()
    frames[1] = flip(frames[1])
    with pytest.raises(BadSignature):
        open_as(Delivery.parse(frames), "bob", bob, alice)


def test_tampered_token_is_caught_by_the_signature(alice: Identity, bob: Identity) -> None:
    frames = seal_for(alice, [("bob", bob)]).delivery_for(0).frames()
    frames[2] = flip(frames[2], 20)
    with pytest.raises(BadSignature):
        open_as(Delivery.parse(frames), "bob", bob, alice)


def test_tampered_wrapped_key_fails_opaquely(alice: Identity, bob: Identity) -> None:
    frames = seal_for(alice, [("bob", bob)]).delivery_for(0).frames()
    frames[5] = flip(frames[5])
    with pytest.raises(DecryptionFailed) as info:
        open_as(Delivery.parse(frames), "bob", bob, alice)
    assert str(info.value) == "cannot decrypt"


@pytest.mark.parametrize(
    "change",
    [
        {"kind": MessageKind.MEMBERSHIP},
        {"msg_id": b"\x00" * 16},
        {"timestamp_ms": 1},
        {"seq": 8},
        {"sender": "mallory"},
        {"room_id": b"\x05" * 32},
    ],
    ids=lambda c: next(iter(c)),
)
def test_every_header_field_is_covered_by_the_signature(
    alice: Identity, bob: Identity, change: dict[str, object]
) -> None:
    delivery = seal_for(alice, [("bob", bob)]).delivery_for(0)
    forged = dataclasses.replace(delivery.header, **change)  # type: ignore[arg-type]
    frames = delivery.frames()
    frames[0] = forged.encode()
    with pytest.raises(BadSignature):
        open_as(Delivery.parse(frames), "bob", bob, alice)


def test_the_recipients_and_their_key_ids_are_covered_by_the_signature(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    """Another tree head, one that admits other leaves (bob's leaf naming another key,
    or one recipient more), is another header: alice's signature does not cover it."""
    delivery = seal_for(alice, [("bob", bob)]).delivery_for(0)
    for others in ([("bob", carol)], [("bob", bob), ("mallory", carol)]):
        other = seal_for(alice, others).delivery_for(0)
        frames = delivery.frames()
        frames[0] = dataclasses.replace(
            delivery.header, count=other.header.count, root=other.header.root
        ).encode()
        frames[3], frames[4] = other.leaf_bytes, other.path
        with pytest.raises(BadSignature):
            open_as(Delivery.parse(frames), "bob", bob, alice)


def test_a_forged_sender_fingerprint_is_caught(alice: Identity, bob: Identity) -> None:
    delivery = seal_for(alice, [("bob", bob)]).delivery_for(0)
    forged = dataclasses.replace(delivery.header, sender_fingerprint=b"\x01" * 32)
    frames = delivery.frames()
    frames[0] = forged.encode()
    with pytest.raises(BadSignature):
        open_as(Delivery.parse(frames), "bob", bob, alice)


def test_a_message_forwarded_to_someone_else_is_not_for_them(
    keys: KeyPool, alice: Identity, bob: Identity
) -> None:
    mallory, carol = keys.get(11), keys.get(12)
    env = seal_for(alice, [("bob", bob), ("mallory", mallory)])
    # mallory hands her delivery on to carol: the signature and the path still check
    # out, but the leaf names mallory, not carol.
    with pytest.raises(NotForMe):
        open_as(env.delivery_for(1), "carol", carol, alice)


def test_swapping_wrapped_keys_between_messages_fails(alice: Identity, bob: Identity) -> None:
    one = seal_for(alice, [("bob", bob)], b"one").delivery_for(0)
    two = seal_for(alice, [("bob", bob)], b"two").delivery_for(0)
    mixed = dataclasses.replace(one, wrapped_key=two.wrapped_key)
    with pytest.raises(DecryptionFailed):
        open_as(mixed, "bob", bob, alice)


def test_envelope_frames_parse_back_to_the_same_envelope(keys: KeyPool, alice: Identity) -> None:
    env = seal_for(alice, room(keys, 3))
    assert Envelope.parse(env.frames()) == env


def test_only_for_blanks_the_other_recipients(keys: KeyPool, alice: Identity) -> None:
    env = seal_for(alice, room(keys, 3))
    retarget = env.only_for({"peer1"})
    assert retarget.wrapped_keys[0] == b""
    assert retarget.wrapped_keys[1] == env.wrapped_keys[1]
    assert Envelope.parse(retarget.frames()) == retarget


def test_an_envelope_with_too_few_wrapped_keys_is_malformed(keys: KeyPool, alice: Identity) -> None:
    frames = seal_for(alice, room(keys, 3)).frames()
    with pytest.raises(MalformedEnvelope):
        Envelope.parse(frames[:-1])


def test_header_encoding_is_canonical() -> None:
    header = Header(
        MessageKind.DIRECT,
        b"\x07" * 16,
        1234,
        5,
        "alice",
        b"\x02" * 32,
        ROOM,
        2,
        b"\x04" * 32,
        ("bob", "carol"),
    )
    assert Header.parse(header.encode()) == header
    assert Header.parse(header.encode()).encode() == header.encode()


def test_a_message_re_signed_under_another_name_does_not_open(
    keys: KeyPool, alice: Identity, bob: Identity
) -> None:
    """A broker in league with a member re-signs alice's header and token as mallory's
    and forwards alice's wrapped key: the signature verifies, but the wrapped key is
    bound to alice as the sender, so it does not open as mallory's message."""
    mallory = keys.get(13)
    env = seal_for(alice, [("bob", bob)], b"alice wrote this")
    claimed = dataclasses.replace(
        env.header, sender="mallory", sender_fingerprint=mallory.fingerprint
    )
    header_bytes = claimed.encode()
    frames = env.delivery_for(0).frames()
    frames[0] = header_bytes
    frames[1] = prim.sign(mallory.private_key, header_bytes, env.token)
    with pytest.raises(DecryptionFailed):
        open_delivery(
            Delivery.parse(frames),
            me="bob",
            room_id=ROOM,
            keys=(bob,),
            sender_key=mallory.public_key,
        )


def test_a_message_wrapped_to_a_session_key_opens_only_with_that_key(
    alice: Identity, bob: Identity
) -> None:
    current, retired = generate_session_key(), generate_session_key()
    recipient = Recipient("bob", current.private_key.public_key(), current.fingerprint)
    env = seal(
        b"for the session",
        sender=alice,
        sender_nick="alice",
        room_id=ROOM,
        recipients=[recipient],
        seq=1,
    )
    delivery = env.delivery_for(0)
    assert delivery.leaf.key_id == current.fingerprint[:8]
    opened = open_delivery(
        delivery, me="bob", room_id=ROOM, keys=(retired, current), sender_key=alice.public_key
    )
    assert opened.plaintext == b"for the session"
    # Bob's identity key, or any key he no longer holds, names nothing in his leaf.
    with pytest.raises(UnknownSessionKey):
        open_delivery(
            delivery, me="bob", room_id=ROOM, keys=(bob, retired), sender_key=alice.public_key
        )


def test_a_wrap_is_bound_to_the_whole_fingerprint_of_its_session_key(
    alice: Identity,
) -> None:
    # A key that shares the 8-byte id but not the fingerprint cannot unwrap: the OAEP
    # label carries the full fingerprint, so a short id is never a collision target.
    session = generate_session_key()
    recipient = Recipient("bob", session.private_key.public_key(), session.fingerprint)
    env = seal(b"x", sender=alice, sender_nick="alice", room_id=ROOM, recipients=[recipient], seq=1)

    class Impostor:
        private_key = session.private_key
        fingerprint = session.fingerprint[:8] + b"\x00" * 24

    with pytest.raises(DecryptionFailed):
        open_as(env.delivery_for(0), "bob", Impostor(), alice)


def test_a_reseal_makes_new_leaves_a_new_root_and_a_new_signature_for_the_same_message(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    old, new = generate_session_key(), generate_session_key()
    first = seal(
        b"again",
        sender=alice,
        sender_nick="alice",
        room_id=ROOM,
        recipients=[
            Recipient("bob", old.private_key.public_key(), old.fingerprint),
            Recipient("carol", carol.public_key),
        ],
        seq=3,
    )
    again = reseal(
        first,
        b"again",
        sender=alice,
        recipients=[Recipient("bob", new.private_key.public_key(), new.fingerprint)],
    )
    kept = ("kind", "msg_id", "timestamp_ms", "seq", "sender", "room_id", "count", "named")
    assert all(getattr(again.header, f) == getattr(first.header, f) for f in kept)
    assert again.header.root != first.header.root
    assert again.key_ids == (new.fingerprint[:8], first.key_ids[1])
    assert again.wrapped_keys[1] == b""  # carol keeps her key id, and is not sent to
    assert open_as(again.delivery_for(0), "bob", new, alice).plaintext == b"again"
    with pytest.raises(UnknownSessionKey):
        open_as(again.delivery_for(0), "bob", old, alice)


# --- the leaf and its path ------------------------------------------------------------


def test_a_delivery_with_another_leafs_path_is_refused(keys: KeyPool, alice: Identity) -> None:
    env = seal_for(alice, room(keys, 5))
    frames = env.delivery_for(0).frames()
    for other in (1, 2, 4):
        frames[4] = env.delivery_for(other).path
        with pytest.raises(MalformedEnvelope, match="not in the tree"):
            Delivery.parse(frames)


@pytest.mark.parametrize("damage", ["flip", "cut", "extra", "none", "odd"])
def test_a_delivery_with_a_damaged_path_is_refused(
    keys: KeyPool, alice: Identity, damage: str
) -> None:
    env = seal_for(alice, room(keys, 5))
    frames = env.delivery_for(2).frames()
    path = frames[4]
    frames[4] = {
        "flip": flip(path, 5),
        "cut": path[:-32],
        "extra": path + env.header.root,
        "none": b"",
        "odd": path[:-1],
    }[damage]
    with pytest.raises(MalformedEnvelope):
        Delivery.parse(frames)


def test_a_leaf_moved_to_another_index_is_refused(keys: KeyPool, alice: Identity) -> None:
    env = seal_for(alice, room(keys, 5))
    frames = env.delivery_for(2).frames()
    frames[3] = (3).to_bytes(2, "big") + frames[3][2:]
    with pytest.raises(MalformedEnvelope, match="not in the tree"):
        Delivery.parse(frames)


def test_a_leaf_the_broker_made_up_is_refused(keys: KeyPool, alice: Identity) -> None:
    """A broker swaps bob's key id for that of a key it holds, or renames the leaf to
    a member of its own: the leaf is no longer one the signed tree head covers."""
    env = seal_for(alice, room(keys, 5))
    frames = env.delivery_for(2).frames()
    for leaf in (frames[3][:-8] + b"\xee" * 8, frames[3].replace(b"peer2", b"peer9")):
        with pytest.raises(MalformedEnvelope, match="not in the tree"):
            Delivery.parse([*frames[:3], leaf, *frames[4:]])


def test_a_direct_message_leaf_must_be_the_recipient_the_header_names(
    keys: KeyPool, alice: Identity
) -> None:
    """The names of a direct message are signed, and so are the leaves: a sender's own
    mismatch between the two (a header naming carol over a leaf for dave) is refused."""
    members = room(keys, 2)
    env = seal_for(alice, members, kind=MessageKind.DIRECT)
    liar = dataclasses.replace(env.header, named=("peer0", "other"))
    frames = env.delivery_for(1).frames()
    frames[0] = liar.encode()
    with pytest.raises(MalformedEnvelope, match="names"):
        Delivery.parse(frames)


def test_a_delivery_costs_about_the_same_bytes_in_a_room_of_1000_as_in_a_room_of_10(
    alice: Identity, bob: Identity
) -> None:
    """The header no longer lists the recipients: a delivery grows by one 32-byte hash
    each time the room doubles. Counted in bytes on the wire, DELIVER's frames."""
    key = generate_session_key()

    def delivery_bytes(recipients: int) -> int:
        env = seal(
            b"x" * 64,
            sender=alice,
            sender_nick="alice",
            room_id=ROOM,
            recipients=[
                Recipient(f"member{i:03d}", key.private_key.public_key(), key.fingerprint)
                for i in range(recipients)
            ],
            seq=1,
        )
        return max(sum(len(f) for f in env.delivery_frames(i)) for i in range(recipients))

    small, large = delivery_bytes(9), delivery_bytes(999)
    assert large <= 2 * small
    assert large - small == (10 - 4) * 32  # ceil(log2 999) - ceil(log2 9) hashes more
