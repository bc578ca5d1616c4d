"""Strict parsing: hostile bytes only ever raise the typed errors, and cheaply."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.room import unsigned_envelope
from zchat.envelope import (
    Delivery,
    Envelope,
    EnvelopeError,
    Header,
    Identity,
    MalformedEnvelope,
    MessageKind,
    Recipient,
    UnsupportedVersion,
    open_delivery,
    room_id,
    seal,
)
from zchat.envelope.limits import MAX_HEADER_BYTES, MAX_NAMED, MAX_RECIPIENTS

ROOM = room_id("zchat")
#: Where the sender's nickname starts: version, kind, id, time, seq, fingerprint, room.
SENDER_AT = 1 + 1 + 16 + 8 + 8 + 32 + 32


def good_header(**change: object) -> bytes:
    fields: dict[str, object] = {
        "kind": MessageKind.ROOM,
        "msg_id": b"\x07" * 16,
        "timestamp_ms": 1,
        "seq": 1,
        "sender": "alice",
        "sender_fingerprint": b"\x02" * 32,
        "room_id": ROOM,
        "count": 1,
        "root": b"\x04" * 32,
    }
    fields.update(change)
    return Header(**fields).encode()  # type: ignore[arg-type]


def test_unknown_version_is_unsupported_not_malformed_garbage() -> None:
    data = bytearray(good_header())
    data[0] = 2  # a version-2 header: told apart, not taken for junk
    with pytest.raises(UnsupportedVersion) as info:
        Header.parse(bytes(data))
    assert info.value.version == 2
    assert info.value.what == "envelope"


def test_an_unknown_kind_parses_as_its_number_for_the_receiver_to_report() -> None:
    data = bytearray(good_header())
    data[1] = 77
    header = Header.parse(bytes(data))
    assert header.kind == 77
    assert not isinstance(header.kind, MessageKind)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(MalformedEnvelope, match="trailing"):
        Header.parse(good_header() + b"\x00")


def test_truncated_header_is_refused() -> None:
    with pytest.raises(MalformedEnvelope):
        Header.parse(good_header()[:-1])


@pytest.mark.parametrize(
    "nick",
    ["", "a" * 33, "bob\x1b[31m", "b\u043eb", "bob\u202e", "bo b", "bob\n", "a:b"],
)
def test_bad_nicknames_in_a_header_are_refused(nick: str) -> None:
    data = good_header()
    # splice the nickname in by hand: Header() itself would refuse to build it
    raw = nick.encode("utf-8")
    rest = data[SENDER_AT + 1 + len("alice") :]
    forged = data[:SENDER_AT] + bytes([len(raw) % 256]) + raw + rest
    with pytest.raises(MalformedEnvelope):
        Header.parse(forged)


def test_duplicate_names_differing_in_case_are_refused() -> None:
    data = good_header(kind=MessageKind.DIRECT, count=2, named=("bob", "carol"))
    forged = data.replace(b"\x05carol", b"\x03BOB")
    with pytest.raises(MalformedEnvelope, match="duplicate"):
        Header.parse(forged)


def test_a_room_message_that_names_its_recipients_is_refused() -> None:
    direct = good_header(kind=MessageKind.DIRECT, count=1, named=("bob",))
    forged = bytes([direct[0], MessageKind.ROOM]) + direct[2:]
    with pytest.raises(MalformedEnvelope, match="only a direct message"):
        Header.parse(forged)


def test_a_direct_message_names_every_recipient() -> None:
    with pytest.raises(ValueError, match="every recipient"):
        good_header(kind=MessageKind.DIRECT, count=2, named=("bob",))


def test_a_header_naming_more_than_max_named_is_refused_before_reading_a_name() -> None:
    data = bytearray(good_header(kind=MessageKind.DIRECT, count=1, named=("bob",)))
    data[-5] = MAX_NAMED + 1  # the names' count, before "\x03bob"
    with pytest.raises(MalformedEnvelope, match="too many names"):
        Header.parse(bytes(data))


def test_a_header_claiming_more_than_max_recipients_is_refused() -> None:
    data = bytearray(good_header())
    count_at = SENDER_AT + 1 + len("alice")
    for count in (0, MAX_RECIPIENTS + 1, 65535):
        data[count_at : count_at + 2] = count.to_bytes(2, "big")
        with pytest.raises(MalformedEnvelope, match="recipients"):
            Header.parse(bytes(data))


def test_a_huge_header_is_refused_by_length_alone() -> None:
    with pytest.raises(MalformedEnvelope, match="length"):
        Header.parse(b"\x03" * (MAX_HEADER_BYTES + 1))


def test_an_envelope_of_200000_frames_is_refused_by_count() -> None:
    frames = [b"x"] * 200_000
    with pytest.raises(MalformedEnvelope, match="number of frames"):
        Envelope.parse(frames)


@pytest.mark.parametrize("count", [0, 1, 4, 5, 7])
def test_a_delivery_with_the_wrong_frame_count_is_malformed(count: int) -> None:
    with pytest.raises(MalformedEnvelope, match="frames"):
        Delivery.parse([b"\x00" * 300] * count)


# --- the recipients frame and the tree ----------------------------------------------


def envelope_frames(recipients: list[str]) -> list[bytes]:
    env = unsigned_envelope("alice", b"\x02" * 32, [(n, b"\x03" * 8) for n in recipients])
    return env.frames()


def test_an_unsigned_but_well_formed_envelope_parses() -> None:
    env = Envelope.parse(envelope_frames(["bob", "carol"]))
    assert env.recipients == ("bob", "carol")


def test_recipients_that_are_not_those_the_header_signs_are_refused() -> None:
    frames = envelope_frames(["bob", "carol"])
    frames[3] = frames[3].replace(b"carol", b"dave_")
    with pytest.raises(MalformedEnvelope, match="not those the header signs"):
        Envelope.parse(frames)


def test_reordered_recipients_are_refused() -> None:
    frames = envelope_frames(["bob", "eve"])
    bob, eve = frames[3][:12], frames[3][12:]
    frames[3] = eve + bob
    with pytest.raises(MalformedEnvelope, match="not those the header signs"):
        Envelope.parse(frames)


@pytest.mark.parametrize("cut", [1, 8, 12])
def test_a_recipients_frame_cut_short_or_too_long_is_refused(cut: int) -> None:
    frames = envelope_frames(["bob", "carol"])
    with pytest.raises(MalformedEnvelope):
        Envelope.parse([*frames[:3], frames[3][:-cut], *frames[4:]])
    with pytest.raises(MalformedEnvelope, match="trailing"):
        Envelope.parse([*frames[:3], frames[3] + b"\x00" * cut, *frames[4:]])


def test_a_wrapped_key_count_unlike_the_headers_is_refused() -> None:
    frames = envelope_frames(["bob", "carol"])
    with pytest.raises(MalformedEnvelope, match="one wrapped key per recipient"):
        Envelope.parse([*frames, frames[-1]])


@pytest.mark.parametrize("recipients", [["bob", "BOB"], ["bob", "Alice"]])
def test_duplicate_recipients_or_the_sender_among_them_are_refused(
    recipients: list[str],
) -> None:
    with pytest.raises(MalformedEnvelope, match=r"duplicate|sender"):
        Envelope.parse(envelope_frames(recipients))


def test_a_direct_message_whose_names_are_not_its_leaves_is_refused() -> None:
    env = unsigned_envelope("alice", b"\x02" * 32, [("bob", b"\x03" * 8)], kind=MessageKind.DIRECT)
    header = dataclasses.replace(env.header, named=("carl",))
    frames = env.frames()
    frames[0] = header.encode()
    with pytest.raises(MalformedEnvelope, match="names its recipients"):
        Envelope.parse(frames)


# --- property-based: only typed errors ever come out ----------------------------------

frame_lists = st.lists(st.binary(max_size=600), max_size=9)


@settings(max_examples=400, deadline=None)
@given(frames=frame_lists)
def test_arbitrary_frames_only_raise_typed_errors(frames: list[bytes]) -> None:
    for parse in (Envelope.parse, Delivery.parse):
        with contextlib.suppress(EnvelopeError):
            parse(frames)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_header_bytes_only_raise_typed_errors(data: bytes) -> None:
    try:
        header = Header.parse(data)
    except EnvelopeError:
        return
    assert header.encode() == data  # anything accepted is canonical


_SEALED: dict[str, Delivery] = {}


@pytest.fixture
def sealed_delivery(alice: Identity, bob: Identity) -> Delivery:
    if "d" not in _SEALED:
        env = seal(
            b"hello",
            sender=alice,
            sender_nick="alice",
            room_id=ROOM,
            recipients=[Recipient(n, bob.public_key) for n in ("bob", "carol", "dave")],
            seq=1,
        )
        _SEALED["d"] = env.delivery_for(2)
    return _SEALED["d"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    frame=st.integers(0, 5),
    position=st.integers(0, 10_000),
    value=st.integers(0, 255),
    cut=st.booleans(),
)
def test_mutated_deliveries_never_open_and_only_raise_typed_errors(
    sealed_delivery: Delivery,
    alice: Identity,
    bob: Identity,
    frame: int,
    position: int,
    value: int,
    cut: bool,
) -> None:
    frames = sealed_delivery.frames()
    target = bytearray(frames[frame])
    i = position % len(target)
    if cut:
        del target[i:]
    elif target[i] == value:
        return  # not a mutation
    else:
        target[i] = value
    frames[frame] = bytes(target)
    with pytest.raises(EnvelopeError):
        open_delivery(
            Delivery.parse(frames),
            me="dave",
            room_id=ROOM,
            keys=(bob,),
            sender_key=alice.public_key,
        )
