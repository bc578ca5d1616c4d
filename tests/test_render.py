"""One wording for every front end: the renderer's lines, their times, the labels of
direct messages, and the JSON contract the README promises to scripts."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.room import MemoryRoom
from zchat.envelope import Identity, format_fingerprint
from zchat.peer import events as ev
from zchat.peer.json_events import to_json
from zchat.peer.render import Renderer, Role, plain

#: 2023-11-14 22:13:20 UTC: the moment every line below is shown, unless said otherwise.
NOW = 1_700_000_000.0
ID = b"\x01" * 16
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC here, so the expected clock readings can be written out."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def message(sent_at: float, *, direct: bool = False, to: tuple[str, ...] = ("alice",)) -> str:
    event = ev.MessageReceived("bob", "hi", ID, int(sent_at * 1000), direct, to)
    (line,) = Renderer("alice").render(event, NOW)
    return plain(line)


# --- times --------------------------------------------------------------------------


def test_a_message_shows_its_senders_time() -> None:
    assert message(NOW - 59) == "22:12 <bob> hi"


def test_a_message_more_than_a_minute_late_is_marked_with_its_arrival() -> None:
    assert message(NOW - 61) == "22:12 (arrived 22:13) <bob> hi"
    assert message(NOW - 3600) == "21:13 (arrived 22:13) <bob> hi"


def test_a_sender_whose_clock_runs_ahead_is_marked_too() -> None:
    assert message(NOW + 600) == "22:23 (arrived 22:13) <bob> hi"


def test_a_message_from_another_day_shows_its_date() -> None:
    assert message(NOW - 86_400) == "2023-11-13 22:13 (arrived 22:13) <bob> hi"


def test_a_timestamp_no_calendar_can_show_does_not_break_the_line() -> None:
    event = ev.MessageReceived("bob", "hi", ID, 2**64 - 1, False, ("alice",))
    (line,) = Renderer("alice").render(event, NOW)
    assert plain(line).endswith("<bob> hi")


def test_our_own_message_shows_when_acknowledged_at_the_time_it_was_sent() -> None:
    renderer = Renderer("alice")
    assert renderer.render(ev.Sent(ID, "hello", ("bob", "carol"), direct=False), NOW) == []
    (line,) = renderer.render(ev.Acked(ID, ("bob",), ("carol",)), NOW + 5)
    assert plain(line) == "22:13 <alice> hello  (to 1; waiting for carol)"
    (late,) = renderer.render(ev.Acked(ID, ("carol",), ()), NOW + 3600)
    assert plain(late) == "* your message “hello” reached carol"


def test_an_acknowledgement_long_after_sending_is_marked() -> None:
    renderer = Renderer("alice")
    renderer.render(ev.Sent(ID, "hello", ("bob",), direct=True), NOW - 120)
    (line,) = renderer.render(ev.Acked(ID, ("bob",), ()), NOW)
    assert plain(line) == "22:11 (arrived 22:13) <alice> [direct to bob] hello  (delivered)"


# --- direct messages ----------------------------------------------------------------


def test_a_direct_message_to_me_alone_says_so() -> None:
    assert message(NOW, direct=True, to=("alice",)) == "22:13 <bob> [direct to you] hi"


def test_a_direct_message_to_several_names_every_other_recipient() -> None:
    shown = message(NOW, direct=True, to=("carol", "Alice", "dave"))
    assert shown == "22:13 <bob> [direct to you, carol, dave] hi"


def test_the_label_comes_from_the_signed_recipient_list(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.join("carol", carol)
    room.send(b, "just us three", ["alice", "carol"])
    room.pump()
    (got,) = room.of_type(a, ev.MessageReceived)
    assert got.direct
    (line,) = Renderer("alice").render(got, got.timestamp_ms / 1000)
    assert plain(line).endswith("<bob> [direct to you, carol] just us three")


# --- roles --------------------------------------------------------------------------


def test_spans_say_what_they_are() -> None:
    fp = bytes(range(32))
    event = ev.MessageReceived("bob", "hi", ID, int(NOW * 1000), False, ("alice",))
    (line,) = Renderer("alice").render(event, NOW)
    assert [(s.role, s.text) for s in line] == [
        (Role.TIME, "22:13 "),
        (Role.TEXT, "<"),
        (Role.NICK, "bob"),
        (Role.TEXT, "> "),
        (Role.TEXT, "hi"),
    ]
    (shown,) = Renderer("alice").render(ev.FingerprintShown("bob", fp, mine=False), NOW)
    assert shown[-1].role is Role.FINGERPRINT
    assert shown[-1].text == format_fingerprint(fp)
    warning = Renderer("alice").render(ev.KeyChanged("bob", fp, fp[::-1]), NOW)
    assert {s.role for line in warning for s in line} == {Role.WARNING, Role.FINGERPRINT}
    (problem,) = Renderer("alice").render(
        ev.Problem(ev.ProblemCode.USAGE, detail="usage: /trust NICK"), NOW
    )
    assert [(s.role, s.text) for s in problem] == [(Role.PROBLEM, "! usage: /trust NICK")]


def test_a_known_key_already_in_the_room_is_not_news() -> None:
    renderer = Renderer("alice")
    known = ev.Joined("bob", bytes(32), ev.Trust.PINNED, already_here=True)
    assert renderer.render(known, NOW) == []
    (back,) = renderer.render(ev.Joined("bob", bytes(32), ev.Trust.PINNED), NOW)
    assert plain(back) == "* bob joined"


# --- the JSON contract of the README ------------------------------------------------


def every_event() -> list[ev.Event]:
    fp = bytes(32)
    me = ev.WhoEntry("alice", fp, ev.Trust.PINNED)
    return [
        ev.Ready("alice", ("bob",)),
        ev.Joined("bob", fp, ev.Trust.NEW),
        ev.KeyChanged("bob", fp, fp),
        ev.Trusted("bob", fp, 1),
        ev.Left("bob", "bye"),
        ev.MessageReceived("bob", "hi", ID, 0, False, ("alice",)),
        ev.Untrusted("bob", fp, ID),
        ev.Sent(ID, "hi", ("bob",), False),
        ev.Acked(ID, ("bob",), ()),
        ev.Undelivered(ID, ("bob",)),
        ev.Refused("nick-taken", "alice is taken"),
        ev.Problem(ev.ProblemCode.USAGE, detail="usage: /trust NICK"),
        ev.Disconnected("the broker stopped answering"),
        ev.TransportFailed("the broker's key differs", "check it"),
        ev.Who(me, (me,)),
        ev.FingerprintShown("alice", fp, mine=True),
        ev.Notice("commands: ..."),
        ev.AdmitNeeded("bob", fp, False, "/admit bob AAAA AAAA"),
        ev.Admitted("bob", fp, "vouch", "carol"),
        ev.VouchRejected("carol", ("bob",), "you have not admitted carol", held=True),
        ev.Revoked("bob", fp, "carol", dropped=True),
        ev.Expired("bob", ID),
        ev.Unsealed(ID, ("carol",)),
    ]


def readme_events() -> dict[str, set[str] | None]:
    """The README's table of JSON events: name -> fields (None: not listed there)."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| event | fields |") :].split("\n\n")[0]
    events: dict[str, set[str] | None] = {}
    for row in table.splitlines()[2:]:
        names, fields = row.strip().strip("|").split("|")
        listed = None
        if not fields.strip().startswith("answers"):
            listed = set(re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", fields)))
        for name in re.findall(r"`([^`]+)`", names):
            events[name] = listed
    return events


def test_every_json_event_has_the_fields_the_readme_promises() -> None:
    promised = readme_events()
    seen = set()
    for event in every_event():
        obj = to_json(event)
        name = obj.pop("event")
        assert name in promised, name
        seen.add(name)
        fields = promised[name]
        if fields is not None:
            extra = {"hint"} if isinstance(event, ev.TransportFailed) else set()
            assert set(obj) == fields | extra, name
    assert seen == set(promised)


# --- session keys (forward secrecy) ------------------------------------------------


def test_an_expired_message_is_named_with_its_sender_and_never_shown() -> None:
    (line,) = Renderer("alice").render(ev.Expired("bob\x1b[2J", ID), NOW)
    text = plain(line)
    assert text.startswith("! a message from bob^[[2J came too late to be opened")
    assert "not shown" in text
    assert {span.role for span in line} == {Role.PROBLEM, Role.NICK}


def test_members_left_out_for_want_of_a_session_key_are_named_with_the_message() -> None:
    renderer = Renderer("alice")
    renderer.render(ev.Sent(ID, "the plan", ("bob",), False), NOW)
    (line,) = renderer.render(ev.Unsealed(ID, ("carol", "dave")), NOW)
    assert plain(line) == (
        "! your message \u201cthe plan\u201d was not sent to carol, dave: their zchat "
        "has not shown a valid key for this session (yet)"
    )


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        ("bye", "* bob left"),
        ("timeout", "* bob left (timed out)"),
        ("backlog", "* bob left (too far behind: the broker let them go)"),
        ("room-full", "* bob left (gone since the broker restarted; the room filled up)"),
        ("other", "* bob left (other)"),
    ],
)
def test_a_leave_says_why_in_words_not_codes(reason: str, shown: str) -> None:
    (line,) = Renderer("alice").render(ev.Left("bob", reason), NOW)
    assert plain(line) == shown


def test_a_message_of_several_lines_is_shown_as_lines_marked_as_its_own() -> None:
    event = ev.MessageReceived("bob", "one\ntwo\r\nthree", ID, int(NOW * 1000), False, ("alice",))
    lines = [plain(line) for line in Renderer("alice").render(event, NOW)]
    assert lines == ["22:13 <bob> one", "  \u2506 two", "  \u2506 three"]
    renderer = Renderer("alice")
    renderer.render(ev.Sent(ID, "a\nb", ("bob",), direct=False), NOW)
    acked = [plain(line) for line in renderer.render(ev.Acked(ID, ("bob",), ()), NOW)]
    assert acked == ["22:13 <alice> a", "  \u2506 b  (to 1)"]
