"""A broker that speaks the protocol but lies, and honest peers that must not believe it.

The liar is `tests.support.lying_broker.LyingBroker`: the real sans-I/O broker core
with hooks that rewrite, drop, multiply or inject what it sends. Honest `Client`s talk
to it over TCP; at the end, the peer core alone meets arbitrary frames in memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.net import joined, make_client, ready, sees, texts, wait_for
from tests.support.keys import KeyPool
from tests.support.lying_broker import (
    Lie,
    LyingBroker,
    command,
    injected,
    lying_broker,
    record_deliveries,
    watch_crashes,
)
from tests.support.room import ROOM_ID, MemoryRoom, certificate
from tests.support.waits import WAIT, until
from zchat.broker.core import Outgoing
from zchat.envelope import (
    DecryptionFailed,
    Delivery,
    Envelope,
    Identity,
    MessageKind,
    Recipient,
    format_fingerprint,
    generate_session_key,
    public_der,
    seal,
)
from zchat.envelope import _primitives as prim
from zchat.envelope.limits import MAX_ROOM
from zchat.peer import events as ev
from zchat.peer.client import Client
from zchat.peer.config import PeerConfig
from zchat.peer.core import Phase
from zchat.peer.errors import NotAdmitted, UntrustedRecipient
from zchat.peer.pinfile import PinFile
from zchat.peer.pins import Admission, How, Pin
from zchat.wire import protocol as p


async def until_text(c: Client, text: str, timeout: float = WAIT) -> list[ev.Event]:
    """Every event up to the message `text` (a marker: what came before it is settled)."""
    return await wait_for(
        c, lambda e: isinstance(e, ev.MessageReceived) and e.text == text, timeout
    )


def received(events: list[ev.Event]) -> list[tuple[str, str]]:
    return [(e.sender, e.text) for e in events if isinstance(e, ev.MessageReceived)]


def problems(events: list[ev.Event]) -> list[str]:
    return [e.code for e in events if isinstance(e, ev.Problem)]


async def close_all(*clients: Client) -> None:
    for c in clients:
        await c.close(max_idle=0.5)


# --- (1) key substitution ----------------------------------------------------------------


def substitute(core: LyingBroker, victim: str, target: str, fake_der: bytes) -> Lie:
    """Tell `victim` that `target`'s key is `fake_der`, in JOIN and SNAPSHOT alike."""

    def lie(o: Outgoing) -> list[Outgoing]:
        if not core.to(victim, o) or command(o.frames) not in (p.Command.JOIN, p.Command.SNAPSHOT):
            return [o]
        match p.parse_from_broker(o.frames):
            case p.Join(member) if member.nick == target:
                return [Outgoing(o.conn, p.encode(p.Join(p.Member(target, fake_der))))]
            case p.Snapshot(members):
                swapped = tuple(
                    p.Member(m.nick, fake_der) if m.nick == target else m for m in members
                )
                return [Outgoing(o.conn, p.encode(p.Snapshot(swapped)))]
        return [o]

    return lie


@pytest.mark.slow
@pytest.mark.parametrize("via", ["join", "snapshot"])
def test_a_substituted_key_is_flagged_and_nothing_is_encrypted_to_it(
    via: str, keys: KeyPool, tmp_path: Path
) -> None:
    alice, bob, carol, evil = keys.many(4)
    homes = {n: tmp_path / n for n in ("alice", "bob", "carol")}

    async def main() -> None:
        crashes = watch_crashes()
        # First session: an honest broker, so everyone pins everyone's real key, and
        # alice, who runs a closed room, admits bob and carol by their fingerprints.
        with lying_broker() as (server, _core):
            ep = server.bound[0]
            first = [
                make_client(n, i, ep, pins=PinFile.open(homes[n]), config=config)
                for n, i, config in (
                    ("alice", alice, PeerConfig()),
                    ("bob", bob, None),
                    ("carol", carol, None),
                )
            ]
            for c in first:
                await ready(c)
            await sees(first[0], "carol")
            first[0].admit("bob", format_fingerprint(bob.fingerprint)[:19])
            first[0].admit("carol", format_fingerprint(carol.fingerprint)[:19])
            await close_all(*first)
        pins = {
            (pin.nick, pin.fingerprint, pin.admitted) for pin in PinFile.open(homes["alice"]).pins
        }
        assert ("bob", bob.fingerprint, True) in pins

        # Second session: the broker hands alice its own key as bob's.
        with lying_broker() as (server, core):
            ep = server.bound[0]
            core.lie = substitute(core, "alice", "bob", evil.public_der)
            a = make_client("alice", alice, ep, PeerConfig(), PinFile.open(homes["alice"]))
            b = make_client("bob", bob, ep, pins=PinFile.open(homes["bob"]))
            c = make_client("carol", carol, ep, pins=PinFile.open(homes["carol"]))
            order = (b, c, a) if via == "snapshot" else (a, c, b)
            for x in order:
                await ready(x)
            seen = await wait_for(a, lambda e: isinstance(e, ev.KeyChanged))
            assert seen[-1] == ev.KeyChanged("bob", bob.fingerprint, evil.fingerprint)
            joined = (await wait_for(a, lambda e: isinstance(e, ev.Joined) and e.nick == "bob"))[-1]
            assert isinstance(joined, ev.Joined)
            assert joined.trust is ev.Trust.CHANGED
            # carol is known by now: in the snapshot, or joined before bob did
            assert "carol" in a.core.members

            # Nothing goes to the substituted key: not in the room, not directly.
            a.send_text("for the room")
            assert await texts(c, 1) == ["for the room"]
            with pytest.raises(UntrustedRecipient):
                a.send_text("just for bob", to=["bob"])
            from_alice = [env for who, env in core.sends if who == "alice"]
            assert [env.recipients for env in from_alice] == [("carol",)]
            for env in from_alice:
                for nick, wrapped in zip(env.recipients, env.wrapped_keys, strict=True):
                    with pytest.raises(DecryptionFailed):
                        prim.unwrap(
                            evil.private_key,
                            wrapped,
                            env.header.msg_id,
                            env.header.sender_fingerprint,
                            nick,
                            evil.fingerprint,
                        )

            # What the broker signs with its key, as bob, is held back, never shown.
            forged = seal(
                b"send the money to mallory",
                sender=evil,
                sender_nick="bob",
                room_id=ROOM_ID,
                recipients=[Recipient("alice", alice.public_key)],
                seq=1,
            )
            core.inject("alice", p.encode(p.Deliver(forged.delivery_for(0))))
            await injected(core)
            # The real bob, signing with his real key, fails against the substitute.
            b.send_text("hello alice", to=["alice"])
            events = await wait_for(a, lambda e: isinstance(e, ev.Problem))
            c.send_text("marker", to=["alice"])
            events += await until_text(a, "marker")
            assert received(events) == [("carol", "marker")]
            assert [e for e in events if isinstance(e, ev.Untrusted)] == [
                ev.Untrusted("bob", evil.fingerprint, forged.header.msg_id)
            ]
            assert problems(events) == ["bad-signature"]
            await close_all(a, b, c)
        assert crashes == []

    asyncio.run(main())


# --- (1b) a member the broker makes up (issue 12) ------------------------------------------


def bob_(evil: Identity) -> p.Member:
    """The member a broker with a key of its own makes up, with a valid certificate."""
    return p.Member("bob_", evil.public_der, certificate(evil, "bob_", time.time(), EVIL_SESSION))


#: The session key the hostile broker certifies for the member it makes up.
EVIL_SESSION = generate_session_key()


def opens_for(identity: Identity, env: Envelope, nick: str) -> list[int]:
    """The wrapped keys of `env` that `identity`'s private key, or the session key the
    broker certified with it, unwraps, named `nick` or as the recipient the leaf says
    the slot is for: every way it could try."""
    opened = []
    header = env.header
    for i, (named, wrapped) in enumerate(zip(env.recipients, env.wrapped_keys, strict=True)):
        if not wrapped:
            continue  # blanked: a resend meant for someone else
        for as_nick in {named, nick}:
            for key in (identity, EVIL_SESSION):
                try:
                    prim.unwrap(
                        key.private_key,
                        wrapped,
                        header.msg_id,
                        header.sender_fingerprint,
                        as_nick,
                        key.fingerprint,
                    )
                except DecryptionFailed:
                    continue
                opened.append(i)
    return opened


def test_a_member_the_broker_announces_can_open_nothing_until_admitted(
    keys: KeyPool, tmp_path: Path
) -> None:
    """The attack of issue 12: the broker announces `bob_` with a key of its own. alice
    (a closed room) chats, writes to carol directly, admits dave (vouches go out), loses
    the broker and resends: not one wrapped key she sends opens with that key."""
    alice, carol, dave, evil = keys.get(0), keys.get(2), keys.get(3), keys.get(5)
    home = PinFile.open(tmp_path)
    home.save([Pin("carol", carol.fingerprint, Admission(How.YOU, "alice", 1))])

    async def main() -> None:
        crashes = watch_crashes()
        with lying_broker() as (server, core):
            ep = server.bound[0]
            c = await joined("carol", carol, ep)
            a = make_client("alice", alice, ep, PeerConfig(), PinFile.open(tmp_path))
            await ready(a)
            core.inject("alice", p.encode(p.Join(bob_(evil))))
            notice = await wait_for(a, lambda e: isinstance(e, ev.AdmitNeeded))
            assert notice[-1] == ev.AdmitNeeded(
                "bob_",
                evil.fingerprint,
                False,
                f"/admit bob_ {format_fingerprint(evil.fingerprint)[:19]}",
            )
            assert "bob_" in a.core.members
            for i in range(3):
                a.send_text(f"room message {i}")
            a.send_text("for carol only", to=["carol"])
            with pytest.raises(NotAdmitted):
                a.send_text("for the newcomer", to=["bob_"])
            d = await joined("dave", dave, ep)
            await wait_for(a, lambda e: isinstance(e, ev.AdmitNeeded) and e.nick == "dave")
            a.admit("dave", format_fingerprint(dave.fingerprint)[:19])  # vouches go out
            # The broker "restarts": alice says hello again and resends all it may have lost.
            core.inject("alice", p.encode(p.Error(p.ErrorCode.EVICTED, "go away")))
            # This reconnect, not an earlier one a slow machine's heartbeat caused.
            await wait_for(a, lambda e: e == ev.Disconnected("evicted by the broker"))
            await wait_for(a, lambda e: isinstance(e, ev.Ready) and e.reconnected)
            core.inject("alice", p.encode(p.Join(bob_(evil))))
            await until(lambda: "bob_" in a.core.members)  # back quietly: no event says so
            a.send_text("after the reconnect")
            assert "after the reconnect" in await texts(c, 5)
            await wait_for(a, lambda e: isinstance(e, ev.Acked))

            # The check can fail: once alice admits bob_, the key opens what she sends.
            before = [env for who, env in core.sends if who == "alice"]
            a.admit("bob_", format_fingerprint(evil.fingerprint)[:19])
            msg_id = a.send_text("now bob_ reads this")
            await wait_for(a, lambda e: isinstance(e, ev.Acked) and e.msg_id == msg_id)
            (last,) = [env for who, env in core.sends if env.header.msg_id == msg_id]
            assert opens_for(evil, last, "bob_") == [last.recipients.index("bob_")]
            await close_all(a, c, d)
        kinds = {env.header.kind for env in before}
        assert kinds == {MessageKind.ROOM, MessageKind.DIRECT, MessageKind.MEMBERSHIP}
        assert len(before) >= 7
        for env in before:  # every envelope alice sent until she admitted bob_
            assert "bob_" not in env.recipients
            assert opens_for(evil, env, "bob_") == []
        assert crashes == []

    asyncio.run(main())


# --- (2) forged senders ------------------------------------------------------------------


def resigned(delivery: Delivery, signer: Identity, **change: object) -> list[bytes]:
    header = dataclasses.replace(delivery.header, **change)  # type: ignore[arg-type]
    header_bytes = header.encode()
    signature = prim.sign(signer.private_key, header_bytes, delivery.token)
    return p.encode(
        p.Deliver(
            dataclasses.replace(
                delivery, header=header, header_bytes=header_bytes, signature=signature
            )
        )
    )


def test_forged_and_tampered_deliveries_are_bad_signatures_never_messages(keys: KeyPool) -> None:
    alice, bob = keys.many(2)
    evil = keys.get(3)

    async def main() -> None:
        crashes = watch_crashes()
        with lying_broker() as (server, core):
            captured: list[list[bytes]] = []

            def sniff(o: Outgoing) -> list[Outgoing]:
                if core.to("alice", o) and command(o.frames) == p.Command.DELIVER:
                    captured.append(o.frames)
                return [o]

            core.lie = sniff
            ep = server.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            b.send_text("genuine", to=["alice"])
            assert await texts(a, 1) == ["genuine"]
            real = p.parse_from_broker(captured[0])
            assert isinstance(real, p.Deliver)
            d = real.delivery

            # The broker's own key, its own token and wrapped key, bob's name.
            own = seal(
                b"forged",
                sender=evil,
                sender_nick="bob",
                room_id=ROOM_ID,
                recipients=[Recipient("alice", alice.public_key)],
                seq=d.header.seq + 1,
            )
            own_d = own.delivery_for(0)
            flipped = bytearray(d.token)
            flipped[40] ^= 1
            forgeries = [
                p.encode(p.Deliver(own_d)),  # names the broker's fingerprint
                resigned(own_d, evil, sender_fingerprint=bob.fingerprint),  # names bob's
                p.encode(p.Deliver(dataclasses.replace(d, token=bytes(flipped)))),
                resigned(d, evil, seq=d.header.seq + 1),  # a "new" message from bob
                p.encode(p.Deliver(dataclasses.replace(d, token=own_d.token))),  # swapped token
                p.encode(p.Deliver(dataclasses.replace(d, signature=own_d.signature))),
            ]
            for frames in forgeries:
                core.inject("alice", frames)
            await injected(core)
            b.send_text("marker", to=["alice"])
            events = await until_text(a, "marker")
            assert received(events) == [("bob", "marker")]
            assert problems(events) == ["bad-signature"] * len(forgeries)
            await close_all(a, b)
        assert crashes == []

    asyncio.run(main())


# --- (3) dropped and (4) duplicated deliveries, and replays --------------------------------


def test_a_broker_that_drops_deliveries_and_acks_is_survived_without_duplicates(
    keys: KeyPool,
) -> None:
    alice, bob = keys.many(2)

    async def main() -> None:
        crashes = watch_crashes()
        with lying_broker() as (server, core):
            ep = server.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            # It swallows the delivery but tells alice bob got it.
            core.lie = lambda o: (
                [] if core.to("bob", o) and command(o.frames) == p.Command.DELIVER else [o]
            )
            lost = a.send_text("swallowed", to=["bob"])
            acked = await wait_for(a, lambda e: isinstance(e, ev.Acked))
            assert acked[-1] == ev.Acked(lost, ("bob",), ())
            # It delivers but swallows the ack, then pretends it restarted: alice
            # handshakes again and resends what was never acknowledged.
            core.lie = lambda o: (
                [] if core.to("alice", o) and command(o.frames) == p.Command.ACK else [o]
            )
            a.send_text("ack lost", to=["bob"])
            assert await texts(b, 1) == ["ack lost"]
            core.lie = None
            core.inject("alice", p.encode(p.Error(p.ErrorCode.HELLO_FIRST, "say hello first")))
            await wait_for(a, lambda e: isinstance(e, ev.Ready))
            await wait_for(a, lambda e: isinstance(e, ev.Acked))
            a.send_text("marker", to=["bob"])
            later = [text for _, text in received(await until_text(b, "marker"))]
            # "ack lost" is not shown twice. "swallowed" may come now: after a broker
            # restart a peer resends what was acknowledged just before it.
            assert later in (["marker"], ["swallowed", "marker"])
            assert await a.close() == []
            await b.close()
        assert crashes == []

    asyncio.run(main())


def test_duplicated_deliveries_and_acks_are_shown_once(keys: KeyPool) -> None:
    alice, bob = keys.many(2)

    async def main() -> None:
        crashes = watch_crashes()
        with lying_broker() as (server, core):
            ep = server.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            core.lie = lambda o: (
                [o] * 3 if command(o.frames) in (p.Command.DELIVER, p.Command.ACK) else [o]
            )
            for i in range(5):
                a.send_text(f"m{i}", to=["bob"])
            core.lie = None
            marker = a.send_text("marker", to=["bob"])
            events = await until_text(b, "marker")
            assert received(events) == [("alice", f"m{i}") for i in range(5)] + [
                ("alice", "marker")
            ]
            mine = await wait_for(a, lambda e: isinstance(e, ev.Acked) and e.msg_id == marker)
            acks = [e for e in mine if isinstance(e, ev.Acked)]
            assert len({e.msg_id for e in acks}) == len(acks) == 6
            await close_all(a, b)
        assert crashes == []

    asyncio.run(main())


def test_a_replayed_delivery_is_dropped_even_after_the_recipient_reconnects(
    keys: KeyPool,
) -> None:
    alice, bob = keys.many(2)

    async def main() -> None:
        crashes = watch_crashes()
        with lying_broker() as (server, core):
            captured = record_deliveries(core, "bob")
            ep = server.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            a.send_text("once", to=["bob"])
            assert await texts(b, 1) == ["once"]
            old_conn = core.conns["bob"]
            core.inject("bob", captured[0])
            await injected(core)
            a.send_text("marker 1", to=["bob"])
            assert received(await until_text(b, "marker 1")) == [("alice", "marker 1")]

            # bob is told to go away, comes back on a new connection: still a replay.
            core.inject("bob", p.encode(p.Error(p.ErrorCode.EVICTED, "go away")))
            await wait_for(b, lambda e: isinstance(e, ev.Ready) and e.reconnected)
            assert core.conns["bob"] != old_conn
            core.inject("bob", captured[0])
            core.inject("bob", captured[1])
            await injected(core)
            a.send_text("marker 2", to=["bob"])
            assert received(await until_text(b, "marker 2")) == [("alice", "marker 2")]
            await close_all(a, b)
        assert crashes == []

    asyncio.run(main())


# --- (5) oversized and malformed announcements ----------------------------------------------


def junk_announcements(bob: Identity, carol: Identity) -> list[tuple[str, list[bytes]]]:
    """(expected Problem code, frames) for each lie."""
    tag = p.PROTOCOL_TAG
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    members = [p.Member(f"m{i:04d}", carol.public_der) for i in range(MAX_ROOM + 1)]
    unknown_oid = bytearray(carol.public_der)
    unknown_oid[8] = 0  # an algorithm OID nobody knows: UnsupportedAlgorithm, not ValueError
    cert = certificate(carol, "dave", time.time())  # a genuine one, for the frame layouts
    return [
        ("bad-key", p.encode(p.Join(p.Member("dave", b"\x30\x82\x01\x22" + b"\x00" * 290)))),
        ("bad-key", p.encode(p.Join(p.Member("dave", public_der(small_rsa))))),
        (
            "bad-key",
            p.encode(
                p.Join(
                    p.Member(
                        "dave", ec_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
                    )
                )
            ),
        ),
        ("bad-key", p.encode(p.Join(p.Member("bob", b"junk key for a present member")))),
        ("bad-key", p.encode(p.Join(p.Member("dave", bytes(unknown_oid))))),
        ("malformed", p.encode(p.Join(p.Member("dave", b"\x30" * 5000)))),  # oversized key
        (
            "malformed",
            [
                tag,
                bytes([p.Command.SNAPSHOT]),
                *(x for m in members for x in (m.nick.encode(), m.public_der, cert)),
            ],
        ),
        ("unexpected", p.encode(p.Snapshot((p.Member("dave", carol.public_der),)))),
        ("malformed", [tag, bytes([p.Command.JOIN]), b"a" * 1000, carol.public_der, cert]),
        ("malformed", [tag, bytes([p.Command.JOIN]), "b\u043eb".encode(), carol.public_der, cert]),
        ("malformed", [tag, bytes([p.Command.JOIN]), b"\x1b[2Jevil", carol.public_der, cert]),
        ("malformed", [tag, bytes([p.Command.JOIN]), "bob\u202e".encode(), carol.public_der, cert]),
        ("malformed", [tag, bytes([p.Command.JOIN]), b"dave", carol.public_der, cert, b"extra"]),
        ("malformed", [tag, bytes([p.Command.JOIN]), b"dave", carol.public_der]),  # version 1's
        ("malformed", [tag, bytes([p.Command.LEAVE]), b"bob"]),
        ("malformed", [tag, bytes([p.Command.LEAVE]), b"bob", b"\x63\x63"]),
        ("malformed", [tag, bytes([p.Command.DELIVER]), b"h", b"s", b"t"]),
        (
            "malformed",
            [tag, bytes([p.Command.DELIVER]), b"\x01" * 200, b"s" * 256, b"t", b"k" * 256],
        ),
        ("malformed", [tag, bytes([p.Command.ACK]), b"\x00" * 16, b"bob"]),
        # A later version's code or command: reported, never fatal (PROTOCOL.md §5.9).
        ("unexpected", [tag, bytes([p.Command.ERROR]), b"\x77", b"why"]),
        ("unexpected", [tag, b"\x7f", b"what"]),
        ("malformed", [tag, b"\x15\x15", b"bob", bob.public_der]),
        ("malformed", [b"ZCHAT1", bytes([p.Command.JOIN]), b"dave", carol.public_der]),
        ("malformed", [b"\xff" * 100]),
        ("unexpected", p.encode(p.Challenge(b"\x00" * 32))),  # must not be signed now
        ("unexpected", p.encode(p.Welcome("alice", 1, 1))),
        ("unexpected", p.encode(p.Refuse(p.RefuseCode.NICK_TAKEN, "\x1b[31mgo away"))),
        # Session keys: junk, another's, or for someone absent; bob keeps the one he has.
        ("bad-certificate", p.encode(p.Rekeyed("bob", b"junk certificate"))),
        ("bad-certificate", p.encode(p.Rekeyed("bob", b""))),
        ("bad-certificate", p.encode(p.Rekeyed("bob", certificate(carol, "bob", time.time())))),
        ("bad-certificate", p.encode(p.Rekeyed("bob", certificate(bob, "carol", time.time())))),
        ("unexpected", p.encode(p.Rekeyed("dave", cert))),
        ("malformed", [tag, bytes([p.Command.REKEYED]), b"bob", b"c" * 5000]),
    ]


def test_malformed_announcements_are_reported_and_the_chat_goes_on(keys: KeyPool) -> None:
    alice, bob, carol = keys.many(3)
    lies = junk_announcements(bob, carol)

    async def main() -> None:
        crashes = watch_crashes()
        with lying_broker() as (server, core):
            ep = server.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            bobs_session_key = a.core.members["bob"].session
            assert bobs_session_key is not None
            for _, frames in lies:
                core.inject("alice", frames)
            await injected(core)
            b.send_text("marker", to=["alice"])
            events = await until_text(a, "marker")
            assert problems(events) == [code for code, _ in lies]
            assert [e for e in events if isinstance(e, ev.Joined | ev.KeyChanged | ev.Left)] == []
            assert p.Command.PROOF not in core.commands.get("alice", [])
            assert a.core.phase is Phase.READY
            # bob keeps his real key at alice's: she can still write to him, and he to her.
            assert a.core.members["bob"].session == bobs_session_key
            a.send_text("still works", to=["bob"])
            assert await texts(b, 1) == ["still works"]
            await close_all(a, b)
        assert crashes == []

    asyncio.run(main())


@pytest.mark.slow
def test_a_junk_snapshot_in_the_handshake_is_reported_and_the_peer_tries_again(
    keys: KeyPool,
) -> None:
    alice, bob, carol = keys.many(3)
    members = [p.Member(f"m{i:03d}", carol.public_der) for i in range(300)]
    junk = [p.PROTOCOL_TAG, bytes([p.Command.SNAPSHOT])]
    junk += [x for m in members for x in (m.nick.encode(), m.public_der)]

    async def main() -> None:
        crashes = watch_crashes()
        with lying_broker() as (server, core):
            ep = server.bound[0]
            b = await joined("bob", bob, ep)
            lied: list[bool] = []

            def once(o: Outgoing) -> list[Outgoing]:
                if not lied and core.to("alice", o) and command(o.frames) == p.Command.SNAPSHOT:
                    lied.append(True)
                    return [Outgoing(o.conn, junk)]
                return [o]

            core.lie = once
            a = make_client("alice", alice, ep)
            a.start()
            events = await wait_for(a, lambda e: isinstance(e, ev.Ready), timeout=10)
            assert "malformed" in problems(events)
            # Bob hears of alice at the end of the broker's batch, after her welcome. Her
            # first session, stuck on the junk, may have been evicted before she came
            # back (bob heard her join, leave, and join again): she must be in his room now.
            await sees(b, "alice")
            await until(lambda: "alice" in b.core.members, what="bob lists alice")
            b.send_text("welcome back", to=["alice"])
            assert await texts(a, 1) == ["welcome back"]
            await close_all(a, b)
        assert crashes == []

    asyncio.run(main())


# --- the peer core against arbitrary broker frames, in memory -------------------------------

_ROOM: dict[str, tuple[MemoryRoom, bytes, list[list[bytes]]]] = {}


def genuine_room(keys: KeyPool) -> tuple[MemoryRoom, bytes, list[list[bytes]]]:
    """A room where alice already got bob's messages; every frame she got is a seed."""
    if "r" not in _ROOM:
        room = MemoryRoom()
        a = room.join("alice", keys.get(0))
        b = room.join("bob", keys.get(1))
        room.join("carol", keys.get(2))
        for i in range(3):
            room.send(b, f"genuine {i}", to=["alice"])
        room.pump()
        assert len(room.of_type(a, ev.MessageReceived)) == 3
        room.take(a)
        _ROOM["r"] = (room, a, list(room.wire[a]))
    return _ROOM["r"]


@pytest.mark.slow
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(0, 63),
    edits=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 600), st.integers(0, 255), st.booleans()),
        max_size=3,
    ),
)
def test_the_peer_core_survives_any_broker_frames_and_shows_nothing_twice(
    keys: KeyPool, which: int, edits: list[tuple[int, int, int, bool]]
) -> None:
    room, a, seeds = genuine_room(keys)
    core = room.peers[a]
    frames = list(seeds[which % len(seeds)])
    for frame, position, value, cut in edits:
        i = frame % len(frames)
        raw = bytearray(frames[i])
        if cut:
            del raw[position % (len(raw) + 1) :]
        elif raw:
            raw[position % len(raw)] = value
        frames[i] = bytes(raw)
    core.receive(frames, room.now)  # never raises
    core.tick(room.now)
    # Every genuine message was shown before: whatever comes now is a replay or a fake.
    events = core.take_events()
    assert [e for e in events if isinstance(e, ev.MessageReceived)] == []
    # A challenge outside a handshake is never answered: the peer signs nothing.
    assert all(command(f) != p.Command.PROOF for f in core.take_outgoing())
    if core.phase is not Phase.READY:  # the "broker" said to hello again: let it
        core.start(room.now)
        room.pump()
        assert [e for e in room.take(a) if isinstance(e, ev.MessageReceived)] == []
