"""What a typed line means: the same in the terminal UI and in scripts."""

from __future__ import annotations

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from zchat.peer import slash as c
from zchat.peer.prompt import RoomCompleter


@pytest.mark.parametrize(
    ("line", "meaning"),
    [
        ("hello", c.Say("hello")),
        ("  indented stays  ", c.Say("  indented stays  ")),
        ("//literal", c.Say("/literal")),
        ("exit", c.Quit()),
        ("/quit", c.Quit()),
        ("/msg bob hi there", c.DirectMessage("bob", "hi there")),
        ("/msg bob   spaced  out", c.DirectMessage("bob", "spaced  out")),
        ("/msg\tbob\thi", c.DirectMessage("bob", "hi")),
        ("/who", c.WhoCommand()),
        ("/fingerprint", c.FingerprintCommand(None)),
        ("/fingerprint carol", c.FingerprintCommand("carol")),
        ("/trust  carol ", c.TrustCommand("carol")),  # the core refuses it, with the command
        ("/trust carol 7CM5 TFYE", c.TrustCommand("carol", "7CM5 TFYE")),
        ("/admit carol 7CM5 TFYE", c.AdmitCommand("carol", "7CM5 TFYE")),
        ("/admit carol 7cm5tfye", c.AdmitCommand("carol", "7cm5tfye")),
        ("/ADMIT\tcarol  7CM5\tTFYE XK4P", c.AdmitCommand("carol", "7CM5 TFYE XK4P")),
        ("/help", c.Help()),
        ("   ", c.Empty()),
    ],
)
def test_a_line_means_what_it_says(line: str, meaning: c.Command) -> None:
    assert c.parse_line(line) == meaning


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("/msg", "usage: /msg NICK TEXT"),
        ("/msg bob", "usage: /msg NICK TEXT"),
        ("/trust", "usage: /trust NICK FINGERPRINT"),
        ("/admit", "usage: /admit NICK FINGERPRINT"),
        ("/admit carol", "usage: /admit NICK FINGERPRINT"),
        ("/fingerprint a b", "usage: /fingerprint [NICK]"),
        ("/", "unknown command /"),
        ("/shrug", "unknown command /shrug"),
    ],
)
def test_a_bad_command_gets_a_hint_and_is_never_chat(line: str, hint: str) -> None:
    meaning = c.parse_line(line)
    assert isinstance(meaning, c.Invalid)
    assert meaning.hint.startswith(hint)


def test_tab_completes_nicknames_after_every_command_that_takes_one() -> None:
    completer = RoomCompleter(lambda: ["bob", "carol"])
    for command in ("/msg", "/fingerprint", "/admit", "/trust", "/revoke"):
        text = f"{command} ca"
        found = [c.text for c in completer.get_completions(Document(text), CompleteEvent())]
        assert found == ["carol"], command
    # A fingerprint is compared and typed, never completed.
    text = "/admit carol ca"
    assert not list(
        RoomCompleter(lambda: ["carol"]).get_completions(Document(text), CompleteEvent())
    )
