"""Hostile input over real sockets: floods of frames, absurd headers, bad nicknames.

The claim under test is *cheapness*: hostile input is refused by a count or length
check before any work proportional to its size. Counting wrappers show it, not
clocks: the parsers are handed sequences that count how often they are touched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import overload

import pytest
import zmq

from tests.net import broker_thread, joined, make_client, sees, texts, wait_for
from tests.support.room import ROOM_ID, hello
from tests.support.waits import until
from zchat.broker.config import BrokerConfig
from zchat.broker.core import Broker
from zchat.envelope import (
    Delivery,
    Envelope,
    Header,
    Identity,
    MalformedEnvelope,
    MessageKind,
    Recipient,
    seal,
)
from zchat.envelope import _codec as codec_module
from zchat.envelope.limits import MAX_NAMED, MAX_RECIPIENTS
from zchat.envelope.proof import sign_proof
from zchat.peer import events as ev
from zchat.wire import protocol as p
from zchat.wire.errors import ProtocolError


class CountingFrames(Sequence[bytes]):
    """A frame list that counts every element a parser reads."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = frames
        self.touched = 0

    def __len__(self) -> int:
        return len(self._frames)

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(i, slice):
            part = self._frames[i]
            self.touched += len(part)
            return part
        self.touched += 1
        return self._frames[i]

    def __iter__(self) -> Iterator[bytes]:
        for frame in self._frames:
            self.touched += 1
            yield frame


def sealed(alice: Identity, bob: Identity) -> Envelope:
    return seal(
        b"hi",
        sender=alice,
        sender_nick="alice",
        room_id=ROOM_ID,
        recipients=[Recipient("bob", bob.public_key)],
        seq=1,
    )


# --- cheap rejection, at parse time ------------------------------------------------------


@pytest.mark.parametrize(
    "parse",
    [Envelope.parse, Delivery.parse, p.parse_from_peer, p.parse_from_broker],
    ids=["envelope", "delivery", "from-peer", "from-broker"],
)
def test_200000_frames_are_refused_reading_at_most_the_tag(parse: object) -> None:
    """The protocol parsers look at frame 0 first: a message of another version is
    answered whatever its frame count (PROTOCOL.md §1.5). Nothing else is read."""
    frames = CountingFrames([b"x"] * 200_000)
    with pytest.raises((MalformedEnvelope, ProtocolError)):
        parse(frames)  # type: ignore[operator]
    assert frames.touched <= 1


def test_a_send_naming_100000_recipients_is_refused_by_its_frame_count(
    alice: Identity, bob: Identity
) -> None:
    env = sealed(alice, bob)
    frames = CountingFrames(
        [
            p.PROTOCOL_TAG,
            bytes([p.Command.SEND]),
            *env.frames()[:4],
            *[env.wrapped_keys[0]] * 100_000,
        ]
    )
    with pytest.raises(ProtocolError, match="too many frames"):
        p.parse_from_peer(frames)
    assert frames.touched == 1  # the tag: another version's is answered whatever its size


class ReaderCount:
    """Counts the bounds-checked reads `Header.parse` makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = 0
        original = codec_module.Reader.take

        def take(reader: codec_module.Reader, n: int) -> bytes:
            self.reads += 1
            return original(reader, n)

        monkeypatch.setattr(codec_module.Reader, "take", take)


def full_header(count: int, kind: MessageKind = MessageKind.ROOM) -> bytes:
    named = tuple(f"r{i:03d}" for i in range(count)) if kind is MessageKind.DIRECT else ()
    return Header(
        kind=kind,
        msg_id=b"\x07" * 16,
        timestamp_ms=1,
        seq=1,
        sender="alice",
        sender_fingerprint=b"\x02" * 32,
        room_id=ROOM_ID,
        count=count,
        root=b"\x04" * 32,
        named=named,
    ).encode()


#: Where `count` is in a header from "alice" (§2.2), and what reading a ROOM header costs:
#: the sender's length and name, the count, the tree head, the names' count.
COUNT_AT = 99 + len("alice")
HEADER_READS = 5


def test_a_header_claiming_65535_recipients_costs_no_more_than_one_of_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The header no longer lists the recipients: whatever it claims, it is read in the
    same few bounded steps, and a count over the limit is refused."""
    counter = ReaderCount(monkeypatch)
    Header.parse(full_header(1))
    one, counter.reads = counter.reads, 0
    Header.parse(full_header(MAX_RECIPIENTS))
    most, counter.reads = counter.reads, 0
    valid = full_header(1)
    claim = valid[:COUNT_AT] + (65_535).to_bytes(2, "big") + valid[COUNT_AT + 2 :]
    with pytest.raises(MalformedEnvelope, match="recipients"):
        Header.parse(claim)
    assert counter.reads == one == most == HEADER_READS


def test_a_header_claiming_255_names_is_refused_before_reading_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter = ReaderCount(monkeypatch)
    Header.parse(full_header(MAX_NAMED, MessageKind.DIRECT))
    assert counter.reads == HEADER_READS + 2 * MAX_NAMED  # length and name, each
    counter.reads = 0
    valid = full_header(1, MessageKind.DIRECT)
    names_at = COUNT_AT + 2 + 32
    claim = valid[:names_at] + bytes([255]) + valid[names_at + 1 :]
    with pytest.raises(MalformedEnvelope, match="too many names"):
        Header.parse(claim)
    assert counter.reads == HEADER_READS


@pytest.mark.parametrize(
    "junk",
    [
        b'{"version": 1, "sender": "alice", "sender": "mallory"}',  # duplicate keys
        b'{"timestamp": NaN, "seq": Infinity, "sender": "alice"}',
        b'{"a":' * 2000 + b"1" + b"}" * 2000,  # deeply nested, over the size limit
        b"[" * 500 + b"]" * 500,  # deeply nested, within it
        b"\x01\x01" + b'{"sender": "alice", "sender": "bob", "to": [[[["bob"]]]]}' * 2,
        b"\x01\x01" + b"\x00" * 64 + b'\x05alice\x00\x01\x03bob{"x": NaN}',
    ],
    ids=["duplicate-keys", "nan", "nested-huge", "nested", "json-after-version", "json-trailer"],
)
def test_json_looking_headers_are_refused_at_parse_time(
    junk: bytes, alice: Identity, bob: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = ReaderCount(monkeypatch)
    with pytest.raises(MalformedEnvelope):
        Header.parse(junk)
    # A few bounded reads (sender, count, one name at most), never one per byte or level.
    assert counter.reads <= 5
    env = sealed(alice, bob)
    with pytest.raises(MalformedEnvelope):
        Envelope.parse([junk, *env.frames()[1:]])


# --- cheap rejection, over the wire ------------------------------------------------------


#: The flood costs the broker about 1-3 us per frame to read and throw away (libzmq has
#: no cap on frames per message), and this process also has to build and send it:
#: timers long enough that the honest peers are not evicted meanwhile.
PATIENT = BrokerConfig(
    heartbeat_interval=0.2, heartbeat_timeout=3.0, handshake_timeout=3.0, backlog_timeout=3.0
)


@pytest.mark.slow
@pytest.mark.parametrize("flood", ["tiny-frames", "recipients"])
def test_a_flood_of_frames_is_refused_and_honest_peers_are_served_meanwhile(
    flood: str, alice: Identity, bob: Identity
) -> None:
    env = sealed(alice, bob)
    frames = (
        [b"x"] * 200_000
        if flood == "tiny-frames"
        else [p.PROTOCOL_TAG, bytes([p.Command.SEND]), *env.frames()[:4]]
        + [env.wrapped_keys[0]] * 100_000
    )

    async def main() -> None:
        with broker_thread(PATIENT) as server:
            ep = server.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            seen: list[int] = []
            handle = server.core.handle

            def counting(conn: bytes, frames: list[bytes], *args: object) -> object:
                seen.append(len(frames))
                return handle(conn, frames, *args)  # type: ignore[arg-type]

            server.core.handle = counting  # type: ignore[method-assign,assignment]
            errors = server.core.counters.errors
            raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(ep)
            raw.send_multipart(frames)
            start = time.monotonic()
            a.send_text("served meanwhile", to=["bob"])
            assert await texts(b, 1, timeout=10) == ["served meanwhile"]
            waited = time.monotonic() - start
            await until(lambda: server.core.counters.errors != errors, 5, "the junk counted")
            assert server.core.counters.errors == errors + 1
            # The core never saw more than one frame over the most a message may have.
            assert max(seen) <= p.MAX_MESSAGE_FRAMES + 1
            assert not raw.poll(100)  # a stranger's junk gets no answer
            raw.close(linger=0)
            assert waited < 3.0
            assert server.core.counters.evicted == 0
            await a.close()
            await b.close()

    asyncio.run(main())


# --- nicknames, through real sockets -----------------------------------------------------

BAD_NICKS = [
    "x" * 33,
    "bob\x07",
    "\x1b[2Jbob",
    "bob\x00",
    "b\u043eb",  # Cyrillic o
    "\u0412ob",  # Cyrillic capital Ve for B
    "bob\u202e",  # right-to-left override
    "\u2066bob\u2069",  # isolates
    "b\u200bob",  # zero-width space
    "\uff42\uff4f\uff42",  # fullwidth
    "bob ",
    "",
    "a,b",
]
CASE_VARIANTS = ["BOB", "Bob", "bOB"]


def test_bad_nicknames_and_case_variants_are_refused_over_tcp(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    async def main() -> None:
        with broker_thread() as server:
            ep = server.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(ep)
            for nick in BAD_NICKS + CASE_VARIANTS:
                raw.send_multipart(p.encode(hello(nick.encode("utf-8"), carol, time.time())))
                assert raw.poll(2000), f"no answer to HELLO {nick!r}"
                reply = p.parse_from_broker(raw.recv_multipart())
                assert isinstance(reply, p.Refuse), (nick, reply)
                expected = (
                    p.RefuseCode.NICK_TAKEN if nick in CASE_VARIANTS else p.RefuseCode.NICK_INVALID
                )
                assert reply.code is expected, (nick, reply)
            raw.close(linger=0)
            # The real client says the same (it sends what it cannot encode as '?').
            for nick in ("b\u043eb", "bob\u202e", "Bob"):
                client = make_client(nick, carol, ep)
                client.start()
                events = await wait_for(client, lambda e: isinstance(e, ev.Refused | ev.Ready))
                assert isinstance(events[-1], ev.Refused), (nick, events)
                await client.close()
            assert sorted(server.core.nicks) == ["alice", "bob"]
            b.send_text("still bob", to=["alice"])
            # every event alice saw since she was ready: bob joined, no refused name did
            seen = await wait_for(a, lambda e: isinstance(e, ev.MessageReceived))
            assert [e.text for e in seen if isinstance(e, ev.MessageReceived)] == ["still bob"]
            assert [e.nick for e in seen if isinstance(e, ev.Joined)] == ["bob"]
            await a.close()
            await b.close()

    asyncio.run(main())


# --- keys that name an algorithm nobody knows ---------------------------------------------


def unknown_algorithm(ident: Identity) -> bytes:
    """The DER of `ident`'s key with its algorithm OID changed to 0.0.840.113549.1.1.1."""
    der = bytearray(ident.public_der)
    der[8] = 0
    return bytes(der)


def test_a_hello_with_a_key_of_unknown_algorithm_is_refused_and_the_broker_lives(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    # cryptography raises UnsupportedAlgorithm (not a ValueError) for this DER; it
    # used to escape Broker.handle and end the broker thread on one stranger's HELLO.
    async def main() -> None:
        with broker_thread() as server:
            ep = server.bound[0]
            raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(ep)
            raw.send_multipart(p.encode(p.Hello(b"eve", unknown_algorithm(carol), b"", b"zchat")))
            assert raw.poll(2000)
            reply = p.parse_from_broker(raw.recv_multipart())
            assert isinstance(reply, p.Refuse)
            assert reply.code is p.RefuseCode.BAD_KEY
            raw.close(linger=0)
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            a.send_text("alive", to=["bob"])
            assert await texts(b, 1) == ["alive"]
            await a.close()
            await b.close()

    asyncio.run(main())


# --- a session that abandons a second handshake --------------------------------------------


def test_a_member_who_says_hello_again_and_never_proves_it_stays_until_its_heartbeat_times_out(
    alice: Identity, bob: Identity
) -> None:
    """The second handshake expires on its own timer; the member it belongs to stays
    listed, with its own timers, and leaves by its heartbeat timeout: never a ghost."""
    config = BrokerConfig(heartbeat_interval=0.1, heartbeat_timeout=1.0, handshake_timeout=0.3)
    broker = Broker(config, random=lambda n: b"\x00" * n)
    for conn, nick, ident in ((b"c1", b"alice", alice), (b"c2", b"mallory", bob)):
        broker.handle(conn, p.encode(hello(nick, ident)), 0.0)
        proof = sign_proof(ident.private_key, b"\x00" * 32, nick, ident.public_der)
        broker.handle(conn, p.encode(p.Proof(proof)), 0.0)
    # mallory says hello again on its connection and then keeps quiet
    broker.handle(b"c2", p.encode(hello(b"mallory", bob)), 0.1)
    out = []
    listed_at: dict[int, list[str]] = {}
    pending_at: dict[int, bool] = {}  # white-box: is the second handshake still open?
    for i in range(1, 25):
        broker.handle(b"c1", p.encode(p.Heartbeat()), i * 0.1)
        out += broker.tick(i * 0.1)
        listed_at[i] = list(broker.nicks)
        pending_at[i] = b"c2" in broker._pending
    # the unfinished handshake expired (after 0.3 s) without taking the member with it
    assert (pending_at[3], pending_at[8]) == (True, False)
    assert listed_at[8] == ["alice", "mallory"]
    # the member's own heartbeat timeout (1.0 s after its last word, at 0.1 s) removes it
    assert listed_at[12] == ["alice"]  # not a ghost holding the name forever
    leaves = [m for o in out if isinstance(m := p.parse_from_broker(o.frames), p.Leave)]
    assert leaves == [p.Leave("mallory", p.LeaveReason.TIMEOUT)]
    assert broker.counters.peers == 1
