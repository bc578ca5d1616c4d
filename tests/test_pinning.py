"""Key pinning, trust on first use (as ssh's known_hosts): cores back to back in memory.

The broker is the attacker here: it could hand out its own key under a nickname we
know, to read the room. A pinned key that changes must never be encrypted to, nor
believed, until the user says so (`/trust NICK FINGERPRINT`).

alice runs a closed room here (`CLOSED`): the members she knows are admitted in her
pins, as `/admit` would have left them. The others run open rooms (the default of
`MemoryRoom`), so that they write to her whatever she thinks of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.keys import KeyPool
from tests.support.room import CLOSED, MemoryRoom
from zchat.cli import app
from zchat.envelope import Identity, format_fingerprint
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.errors import FingerprintMismatch, NobodyHere, UntrustedRecipient
from zchat.peer.json_events import json_line
from zchat.peer.pinfile import PinFile
from zchat.peer.pins import Admission, How, Pin, Pins
from zchat.peer.render import Renderer, plain
from zchat.wire import protocol as p


def send_and_capture(
    room: MemoryRoom, conn: bytes, text: str, to: list[str] | None = None
) -> p.Send:
    """Send `text` from `conn` and return the SEND it put on the wire (then deliver it)."""
    frames, out = room.send_by_hand(conn, text, to)
    send = p.parse_from_peer(frames)
    assert isinstance(send, p.Send)
    room.deliver(out)
    room.pump()
    return send


def recipients_with_keys(send: p.Send) -> set[str]:
    envelope = send.envelope
    return {n for n, k in zip(envelope.recipients, envelope.wrapped_keys, strict=True) if k}


def texts(room: MemoryRoom, conn: bytes) -> list[str]:
    return [e.text for e in room.of_type(conn, ev.MessageReceived)]


def to_text(event: ev.Event) -> str:
    """What alice's plain output shows for `event`."""
    return "\n".join(plain(line) for line in Renderer("alice").render(event, 0.0))


def pinned_to(nick: str, identity: Identity, *also: tuple[str, Identity]) -> Pins:
    """Pins as alice's /admit left them: `nick` admitted with `identity`'s key, and `also`."""
    admitted = Admission(How.YOU, "alice", 1)
    return Pins(Pin(n, i.fingerprint, admitted) for n, i in [(nick, identity), *also])


def typed(identity: Identity) -> str:
    """What alice types after comparing: the first two groups of the fingerprint."""
    return format_fingerprint(identity.fingerprint)[:19]


def kept(saved: tuple[Pin, ...]) -> list[tuple[str, bytes, str | None]]:
    """The pins handed out to be saved: nickname, key, and how it was admitted."""
    return [(p.nick, p.fingerprint, p.admission.how.value if p.admitted else None) for p in saved]


def trusted(room: MemoryRoom, conn: bytes) -> list[ev.Trusted]:
    return room.of_type(conn, ev.Trusted)


# --- first use and the same key -----------------------------------------------------


def test_first_sight_pins_the_key_and_says_so_once(alice: Identity, bob: Identity) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    (joined,) = room.of_type(a, ev.Joined)
    assert (joined.nick, joined.trust) == ("bob", ev.Trust.NEW)
    assert [kept(s) for s in room.saved[a]] == [[("bob", bob.fingerprint, None)]]  # to be saved
    assert "first time seen: key" in to_text(joined)
    room.take(a)
    room.peers[b].leave()
    room.pump()
    room.join("bob", bob)  # back later with the same key
    (again,) = room.of_type(a, ev.Joined)
    assert again.trust is ev.Trust.PINNED
    assert to_text(again) == "* bob joined"  # nothing about keys: the key is known
    assert room.of_type(a, ev.KeyChanged) == []


def test_a_pinned_key_seen_again_is_silent_and_trusted(alice: Identity, bob: Identity) -> None:
    room = MemoryRoom()
    room.join("bob", bob)
    a = room.join("alice", alice, pins=pinned_to("BOB", bob), config=CLOSED)  # pins ignore case
    (joined,) = room.of_type(a, ev.Joined)
    assert joined.trust is ev.Trust.PINNED
    assert room.of_type(a, ev.KeyChanged) == []
    send = send_and_capture(room, a, "hi")
    assert recipients_with_keys(send) == {"bob"}


# --- a changed key ------------------------------------------------------------------


def test_a_changed_key_is_reported_with_both_fingerprints(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice, pins=pinned_to("bob", carol), config=CLOSED)
    room.join("bob", bob)  # "bob" now comes with another key
    (changed,) = room.of_type(a, ev.KeyChanged)
    assert changed == ev.KeyChanged("bob", carol.fingerprint, bob.fingerprint)
    assert room.of_type(a, ev.Joined)[0].trust is ev.Trust.CHANGED
    assert json.loads(json_line(changed)) == {
        "event": "key-changed",
        "nick": "bob",
        "old": format_fingerprint(carol.fingerprint),
        "new": format_fingerprint(bob.fingerprint),
    }
    warning = to_text(changed)
    assert format_fingerprint(carol.fingerprint) in warning
    assert format_fingerprint(bob.fingerprint) in warning
    assert f"/trust bob {typed(bob)}" in warning  # the new key's, to type once compared


def test_nothing_is_encrypted_to_a_changed_key(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    room.join("carol", carol)
    a = room.join("alice", alice, pins=pinned_to("bob", carol, ("carol", carol)), config=CLOSED)
    b = room.join("bob", bob)
    send = send_and_capture(room, a, "for the room")
    assert send.envelope.recipients == ("carol",)
    assert recipients_with_keys(send) == {"carol"}
    assert room.of_type(a, ev.Sent)[-1].recipients == ("carol",)
    assert texts(room, b) == []
    with pytest.raises(UntrustedRecipient, match=r"bob's key changed; check it and /trust bob"):
        room.send(a, "psst", ["bob"])


def test_a_room_of_only_changed_keys_gets_nothing(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice, pins=pinned_to("bob", carol), config=CLOSED)
    room.join("bob", bob)
    with pytest.raises(NobodyHere, match="nobody else is here"):
        room.send(a, "anyone?")
    assert room.peers[a].take_outgoing() == []


def test_messages_signed_by_a_changed_key_are_held_back_until_trust(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    pins = pinned_to("bob", carol)
    a = room.join("alice", alice, pins=pins, config=CLOSED)
    b = room.join("bob", bob)
    room.send(b, "it's me, new laptop")
    room.pump()
    assert texts(room, a) == []
    (held,) = room.of_type(a, ev.Untrusted)
    assert (held.sender, held.fingerprint) == ("bob", bob.fingerprint)
    assert f"/trust bob {typed(bob)}" in to_text(held)
    assert json.loads(json_line(held))["event"] == "untrusted"

    room.peers[a].trust("bob", typed(bob), room.now)
    room.pump()
    assert trusted(room, a) == [ev.Trusted("bob", bob.fingerprint, released=1)]
    assert texts(room, a) == ["it's me, new laptop"]
    assert pins.get("bob") == bob.fingerprint
    assert [kept(s) for s in room.saved[a]] == [[("bob", bob.fingerprint, "you")]]  # to keep
    # trusted now: included in what alice sends, and believed at once
    send = send_and_capture(room, a, "welcome back")
    assert recipients_with_keys(send) == {"bob"}
    assert texts(room, b) == ["welcome back"]
    room.send(b, "thanks")
    room.pump()
    assert texts(room, a)[-1] == "thanks"


def test_a_resent_held_message_is_reported_and_released_once(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice, pins=pinned_to("bob", carol), config=CLOSED)
    b = room.join("bob", bob)
    room.send(b, "once")
    room.pump()
    (deliver,) = [f for f in room.wire[a] if f[1] == bytes([p.Command.DELIVER])]
    room.peers[a].receive(deliver, room.now)  # the same message again (a resend)
    room.pump()
    assert len(room.of_type(a, ev.Untrusted)) == 1
    room.peers[a].trust("bob", typed(bob), room.now)
    room.pump()
    assert [t.released for t in trusted(room, a)] == [1]
    assert texts(room, a) == ["once"]


def test_a_vouch_signed_by_a_changed_key_is_held_silently_and_never_a_phantom_message(
    keys: KeyPool,
) -> None:
    """A vouch is no message: held like one until /trust (it counts then), but never
    announced as a message held back, nor counted among those /trust releases (it was,
    before: "1 held message(s) follow", and nothing followed)."""
    alice, bob_before, bob, carol = keys.many(4)
    room = MemoryRoom()
    a = room.join("alice", alice, pins=pinned_to("bob", bob_before), config=CLOSED)
    room.join("carol", carol, config=CLOSED)
    b = room.join("bob", bob, config=CLOSED)  # a new device: alice knew another key
    room.peers[b].admit("carol", format_fingerprint(carol.fingerprint)[:19], room.now)
    room.peers[b].admit("alice", typed(alice), room.now)  # vouches for carol to alice
    room.pump()
    assert room.of_type(a, ev.Untrusted) == []
    room.peers[a].trust("bob", typed(bob), room.now)
    room.pump()
    assert trusted(room, a) == [ev.Trusted("bob", bob.fingerprint, released=0)]
    admitted = room.of_type(a, ev.Admitted)
    assert [(e.nick, e.how, e.by) for e in admitted] == [
        ("bob", "you", "alice"),
        ("carol", "vouch", "bob"),  # the vouch held back counted, once trusted
    ]


def test_trust_releases_only_what_the_trusted_key_signed(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice, pins=pinned_to("bob", bob), config=CLOSED)
    impostor = room.join("bob", carol)  # the broker lets another key use bob's name
    room.send(impostor, "send me your password")
    room.pump()
    assert len(room.of_type(a, ev.Untrusted)) == 1
    # The broker now shows the real key again; the user, still alarmed, trusts bob.
    room.peers[a].receive(p.encode(p.Join(p.Member("bob", bob.public_der))), room.now)
    room.peers[a].trust("bob", typed(bob), room.now)
    room.pump()
    assert [t.released for t in trusted(room, a)] in ([], [0])
    assert texts(room, a) == []  # the impostor's words are never shown as bob's
    # Nor after trusting the impostor's key by a fingerprint that is not its own.
    with pytest.raises(FingerprintMismatch):
        room.peers[a].trust("bob", typed(carol), room.now)
    room.pump()
    assert texts(room, a) == []


def test_an_open_room_accepts_a_changed_key_but_still_reports_it(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    config = PeerConfig(admit_all=True)  # --admit-all, and --trust-new-keys, its old name
    pins = pinned_to("bob", carol)
    a = room.join("alice", alice, pins=pins, config=config)
    b = room.join("bob", bob)
    assert room.of_type(a, ev.KeyChanged) == [
        ev.KeyChanged("bob", carol.fingerprint, bob.fingerprint)
    ]
    assert room.of_type(a, ev.Trusted)[0].nick == "bob"
    assert pins.get("bob") == bob.fingerprint
    room.send(b, "hello bot")
    room.pump()
    assert texts(room, a) == ["hello bot"]


# --- pins on disk -------------------------------------------------------------------


def test_pins_survive_a_restart(
    tmp_path: Path, alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice, config=CLOSED)
    room.join("bob", bob)
    PinFile.open(tmp_path).save(room.saved[a][-1])  # as alice's loop does

    restarted = PinFile.open(tmp_path)  # a new run of the program
    assert kept(restarted.pins) == [("bob", bob.fingerprint, None)]
    assert restarted.pins[0].seen_ms == int(room.wall * 1000)  # to expire by, unadmitted
    room = MemoryRoom()
    room.join("bob", carol)  # and now "bob" has another key
    a = room.join("alice", alice, pins=Pins(restarted.pins), config=CLOSED)
    assert room.of_type(a, ev.KeyChanged) == [
        ev.KeyChanged("bob", bob.fingerprint, carol.fingerprint)
    ]
    room.peers[a].trust("bob", typed(carol), room.now)
    room.pump()
    assert kept(room.saved[a][-1]) == [("bob", carol.fingerprint, "you")]  # /trust is kept too
    PinFile.open(tmp_path).save(room.saved[a][-1])
    assert PinFile.open(tmp_path).pins == room.saved[a][-1]  # admission and all


def test_keys_pins_lists_and_forget_removes_a_pin(tmp_path: Path, bob: Identity) -> None:
    PinFile.open(tmp_path).save([Pin("bob", bob.fingerprint)])
    runner = CliRunner()
    listed = runner.invoke(app, ["keys", "pins", "--home", str(tmp_path)])
    assert listed.exit_code == 0
    assert "bob" in listed.output
    assert format_fingerprint(bob.fingerprint) in listed.output
    forgot = runner.invoke(app, ["keys", "forget", "bob", "--home", str(tmp_path)])
    assert forgot.exit_code == 0
    assert PinFile.open(tmp_path).pins == ()
    again = runner.invoke(app, ["keys", "forget", "bob", "--home", str(tmp_path)])
    assert again.exit_code != 0


def test_a_changed_key_is_warned_about_once_not_at_every_reconnect(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    from tests.support.room import FAST_CORE, seeded
    from zchat.broker.core import Broker

    room = MemoryRoom(broker=Broker(FAST_CORE, random=seeded(1)))
    a = room.join("alice", alice, pins=pinned_to("bob", carol), config=CLOSED)  # another key
    room.join("bob", bob)
    assert len(room.of_type(a, ev.KeyChanged)) == 1
    room.broker = Broker(FAST_CORE, random=seeded(2))  # a broker restart: everyone says hello again
    room.advance(1.5)
    assert len(room.of_type(a, ev.KeyChanged)) == 1
    assert room.peers[a].members["bob"].trust is ev.Trust.CHANGED  # still untrusted


def test_a_snapshot_of_many_members_hands_out_the_pins_once(keys: KeyPool) -> None:
    room = MemoryRoom()
    for i in range(6):
        room.join(f"p{i}", keys.get(i))
    newcomer = room.join("newcomer", keys.get(7))
    assert len(room.of_type(newcomer, ev.Joined)) == 6  # six keys pinned...
    (saved,) = room.saved[newcomer]  # ...handed out for one write
    assert [pin.nick for pin in saved] == [f"p{i}" for i in range(6)]
