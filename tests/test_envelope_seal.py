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
    Recipient,
    UnknownSessionKey,
    generate_session_key,
    open_delivery,
    seal,
)
from zchat.envelope.limits import MAX_TEXT_BYTES


def room(keys: KeyPool, n: int) -> list[tuple[str, Identity]]:
    return [(f"peer{i}", keys.get(i + 1)) for i in range(n)]


def seal_for(alice: Identity, members: list[tuple[str, Identity]], text: bytes = b"hi") -> Envelope:
    recipients = [Recipient(nick, ident.public_key) for nick, ident in members]
    return seal(text, sender=alice, sender_nick="alice", recipients=recipients, seq=7)


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2, 50])
def test_every_recipient_opens_its_own_delivery(keys: KeyPool, alice: Identity, n: int) -> None:
    members = room(keys, n)
    env = seal_for(alice, members, b"the plan is on")
    for i, (nick, ident) in enumerate(members):
        opened = open_delivery(
            env.delivery_for(i), me=nick, keys=(ident,), sender_key=alice.public_key
        )
        assert opened.plaintext == b"the plan is on"
        assert opened.header.sender == "alice"
        assert opened.header.seq == 7


def test_a_non_recipient_cannot_open_any_delivery(
    keys: KeyPool, alice: Identity, carol: Identity
) -> None:
    members = room(keys, 2)  # keys 1 and 2; carol is key 2, so use a fresh outsider
    outsider = keys.get(10)
    env = seal_for(alice, members)
    for i in range(2):
        with pytest.raises(NotForMe):
            open_delivery(
                env.delivery_for(i), me="mallory", keys=(outsider,), sender_key=alice.public_key
            )


def test_a_recipient_cannot_open_another_recipients_wrapped_key(
    keys: KeyPool, alice: Identity
) -> None:
    (nick0, id0), (nick1, id1) = room(keys, 2)
    env = seal_for(alice, [(nick0, id0), (nick1, id1)])
    stolen = dataclasses.replace(env.delivery_for(1))  # peer1's wrapped key
    with pytest.raises(DecryptionFailed):
        open_delivery(stolen, me=nick0, keys=(id0,), sender_key=alice.public_key)


def test_a_delivery_carries_exactly_one_wrapped_key(keys: KeyPool, alice: Identity) -> None:
    env = seal_for(alice, room(keys, 10))
    delivery = env.delivery_for(3)
    assert len(delivery.frames()) == 4
    assert delivery.wrapped_key == env.wrapped_keys[3]


def test_direct_kind_survives_the_round_trip(alice: Identity, bob: Identity) -> None:
    env = seal(
        b"psst",
        sender=alice,
        sender_nick="alice",
        recipients=[Recipient("bob", bob.public_key)],
        seq=1,
        kind=MessageKind.DIRECT,
    )
    opened = open_delivery(env.delivery_for(0), me="bob", keys=(bob,), sender_key=alice.public_key)
    assert opened.header.kind is MessageKind.DIRECT


def test_recipient_names_match_case_insensitively(alice: Identity, bob: Identity) -> None:
    env = seal_for(alice, [("Bob", bob)])
    opened = open_delivery(env.delivery_for(0), me="bob", keys=(bob,), sender_key=alice.public_key)
    assert opened.plaintext == b"hi"


def test_text_over_the_limit_is_refused_by_the_sender(alice: Identity, bob: Identity) -> None:
    with pytest.raises(ValueError, match="limit"):
        seal_for(alice, [("bob", bob)], b"x" * (MAX_TEXT_BYTES + 1))


def test_text_at_the_limit_seals_and_parses(alice: Identity, bob: Identity) -> None:
    env = seal_for(alice, [("bob", bob)], b"x" * MAX_TEXT_BYTES)
    parsed = Envelope.parse(env.frames())
    opened = open_delivery(
        parsed.delivery_for(0), me="bob", keys=(bob,), sender_key=alice.public_key
    )
    assert len(opened.plaintext) == MAX_TEXT_BYTES


def test_a_message_signed_by_another_key_is_a_bad_signature(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    env = seal_for(alice, [("bob", bob)])
    with pytest.raises(BadSignature):
        open_delivery(env.delivery_for(0), me="bob", keys=(bob,), sender_key=carol.public_key)


# --- tampering: every single frame and header field ---------------------------------


def flip(data: bytes, at: int = -1) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def test_tampered_signature_is_caught(alice: Identity, bob: Identity) -> None:
    frames = seal_for(alice, [("bob", bob)]).delivery_for(0).frames()
    frames[1] = flip(frames[1])
    with pytest.raises(BadSignature):
        open_delivery(Delivery.parse(frames), me="bob", keys=(bob,), sender_key=alice.public_key)


def test_tampered_token_is_caught_by_the_signature(alice: Identity, bob: Identity) -> None:
    frames = seal_for(alice, [("bob", bob)]).delivery_for(0).frames()
    frames[2] = flip(frames[2], 20)
    with pytest.raises(BadSignature):
        open_delivery(Delivery.parse(frames), me="bob", keys=(bob,), sender_key=alice.public_key)


def test_tampered_wrapped_key_fails_opaquely(alice: Identity, bob: Identity) -> None:
    frames = seal_for(alice, [("bob", bob)]).delivery_for(0).frames()
    frames[3] = flip(frames[3])
    with pytest.raises(DecryptionFailed) as info:
        open_delivery(Delivery.parse(frames), me="bob", keys=(bob,), sender_key=alice.public_key)
    assert str(info.value) == "cannot decrypt"


@pytest.mark.parametrize(
    "change",
    [
        {"kind": MessageKind.DIRECT},
        {"msg_id": b"\x00" * 16},
        {"timestamp_ms": 1},
        {"seq": 8},
        {"sender": "mallory"},
        {"recipients": ("bob", "mallory"), "key_ids": (b"\x03" * 8,) * 2},
        {"key_ids": (b"\x03" * 8,)},
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
        open_delivery(Delivery.parse(frames), me="bob", keys=(bob,), sender_key=alice.public_key)


def test_a_forged_sender_fingerprint_is_caught(alice: Identity, bob: Identity) -> None:
    delivery = seal_for(alice, [("bob", bob)]).delivery_for(0)
    forged = dataclasses.replace(delivery.header, sender_fingerprint=b"\x01" * 32)
    frames = delivery.frames()
    frames[0] = forged.encode()
    with pytest.raises(BadSignature):
        open_delivery(Delivery.parse(frames), me="bob", keys=(bob,), sender_key=alice.public_key)


def test_a_direct_message_forwarded_to_someone_else_is_not_for_them(
    keys: KeyPool, alice: Identity, bob: Identity
) -> None:
    mallory, carol = keys.get(11), keys.get(12)
    env = seal_for(alice, [("bob", bob), ("mallory", mallory)])
    # mallory opens her copy legitimately, then re-wraps the message key for carol:
    # the signature still verifies, but carol is not in the signed recipient list.
    forwarded = env.delivery_for(1)
    with pytest.raises(NotForMe):
        open_delivery(forwarded, me="carol", keys=(carol,), sender_key=alice.public_key)


def test_swapping_wrapped_keys_between_messages_fails(alice: Identity, bob: Identity) -> None:
    one = seal_for(alice, [("bob", bob)], b"one").delivery_for(0)
    two = seal_for(alice, [("bob", bob)], b"two").delivery_for(0)
    mixed = dataclasses.replace(one, wrapped_key=two.wrapped_key)
    with pytest.raises(DecryptionFailed):
        open_delivery(mixed, me="bob", keys=(bob,), sender_key=alice.public_key)


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


def test_header_encoding_is_canonical(alice: Identity) -> None:
    header = Header(
        MessageKind.ROOM, b"\x07" * 16, 1234, 5, "alice", b"\x02" * 32, ("bob",), (b"\x03" * 8,)
    )
    assert Header.parse(header.encode()) == header
    assert Header.parse(header.encode()).encode() == header.encode()


def test_a_message_re_signed_under_another_name_does_not_open(
    keys: KeyPool, alice: Identity, bob: Identity
) -> None:
    """A broker in league with a member re-signs alice's header and token as mallory's
    and forwards alice's wrapped key: the signature verifies, but the wrapped key is
    bound to alice as the sender, so it does not open as mallory's message."""
    from zchat.envelope import _primitives as prim

    mallory = keys.get(13)
    env = seal_for(alice, [("bob", bob)], b"alice wrote this")
    claimed = dataclasses.replace(
        env.header, sender="mallory", sender_fingerprint=mallory.fingerprint
    )
    header_bytes = claimed.encode()
    signature = prim.sign(mallory.private_key, header_bytes, env.token)
    stolen = Delivery(claimed, header_bytes, signature, env.token, env.wrapped_keys[0])
    with pytest.raises(DecryptionFailed):
        open_delivery(stolen, me="bob", keys=(bob,), sender_key=mallory.public_key)


def test_a_message_wrapped_to_a_session_key_opens_only_with_that_key(
    alice: Identity, bob: Identity
) -> None:
    current, retired = generate_session_key(), generate_session_key()
    recipient = Recipient("bob", current.private_key.public_key(), current.fingerprint)
    env = seal(b"for the session", sender=alice, sender_nick="alice", recipients=[recipient], seq=1)
    delivery = env.delivery_for(0)
    assert delivery.header.key_ids == (current.fingerprint[:8],)
    opened = open_delivery(delivery, me="bob", keys=(retired, current), sender_key=alice.public_key)
    assert opened.plaintext == b"for the session"
    # Bob's identity key, or any key he no longer holds, names nothing in the header.
    with pytest.raises(UnknownSessionKey):
        open_delivery(delivery, me="bob", keys=(bob, retired), sender_key=alice.public_key)


def test_a_wrap_is_bound_to_the_whole_fingerprint_of_its_session_key(
    alice: Identity,
) -> None:
    # A key that shares the 8-byte id but not the fingerprint cannot unwrap: the OAEP
    # label carries the full fingerprint, so a short id is never a collision target.
    session = generate_session_key()
    recipient = Recipient("bob", session.private_key.public_key(), session.fingerprint)
    env = seal(b"x", sender=alice, sender_nick="alice", recipients=[recipient], seq=1)

    class Impostor:
        private_key = session.private_key
        fingerprint = session.fingerprint[:8] + b"\x00" * 24

    with pytest.raises(DecryptionFailed):
        open_delivery(
            env.delivery_for(0), me="bob", keys=(Impostor(),), sender_key=alice.public_key
        )
