"""Strict parsing: hostile bytes only ever raise the typed errors, and cheaply."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    seal,
)
from zchat.envelope.limits import MAX_HEADER_BYTES


def good_header(**change: object) -> bytes:
    fields: dict[str, object] = {
        "kind": MessageKind.ROOM,
        "msg_id": b"\x07" * 16,
        "timestamp_ms": 1,
        "seq": 1,
        "sender": "alice",
        "sender_fingerprint": b"\x02" * 32,
        "recipients": ("bob",),
        "key_ids": (b"\x03" * 8,),
    }
    fields.update(change)
    return Header(**fields).encode()  # type: ignore[arg-type]


def test_unknown_version_is_unsupported_not_malformed_garbage() -> None:
    data = bytearray(good_header())
    data[0] = 9
    with pytest.raises(UnsupportedVersion) as info:
        Header.parse(bytes(data))
    assert info.value.version == 9


def test_unknown_kind_is_malformed() -> None:
    data = bytearray(good_header())
    data[1] = 77
    with pytest.raises(MalformedEnvelope, match="kind"):
        Header.parse(bytes(data))


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
    prefix = data[: 1 + 1 + 16 + 8 + 8 + 32]
    forged = prefix + bytes([len(raw) % 256]) + raw + b"\x00\x01\x03bob" + b"\x03" * 8
    with pytest.raises(MalformedEnvelope):
        Header.parse(forged)


def test_duplicate_recipients_differing_in_case_are_refused() -> None:
    data = good_header(recipients=("bob", "carol"), key_ids=(b"\x03" * 8,) * 2)
    forged = data.replace(b"\x05carol", b"\x03BOB")
    with pytest.raises(MalformedEnvelope, match="duplicate"):
        Header.parse(forged)


def test_a_header_claiming_100000_recipients_is_refused_before_any_work() -> None:
    data = bytearray(good_header())
    count_at = len(data) - 4 - 8 - 2  # before "\x03bob" and its key id
    data[count_at : count_at + 2] = (65535).to_bytes(2, "big")
    start = time.perf_counter()
    with pytest.raises(MalformedEnvelope, match="count"):
        Header.parse(bytes(data))
    assert time.perf_counter() - start < 1.0  # sanity bound only; not a benchmark


def test_a_huge_header_is_refused_by_length_alone() -> None:
    with pytest.raises(MalformedEnvelope, match="length"):
        Header.parse(b"\x01" * (MAX_HEADER_BYTES + 1))


def test_an_envelope_of_200000_frames_is_refused_by_count() -> None:
    frames = [b"x"] * 200_000
    with pytest.raises(MalformedEnvelope, match="number of frames"):
        Envelope.parse(frames)


@pytest.mark.parametrize("count", [0, 1, 3, 5])
def test_a_delivery_with_the_wrong_frame_count_is_malformed(count: int) -> None:
    with pytest.raises(MalformedEnvelope):
        Delivery.parse([b"\x00" * 300] * count)


# --- property-based: only typed errors ever come out ----------------------------------

frame_lists = st.lists(st.binary(max_size=600), max_size=8)


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
            recipients=[Recipient("bob", bob.public_key)],
            seq=1,
        )
        _SEALED["d"] = env.delivery_for(0)
    return _SEALED["d"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    frame=st.integers(0, 3),
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
        open_delivery(Delivery.parse(frames), me="bob", keys=(bob,), sender_key=alice.public_key)
