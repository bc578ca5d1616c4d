"""Problems are codes and fields inside, words at the edge: one list of codes for the
``--json`` contract (`ProblemCode`), one wording (`peer.render.problem_text`), and the
README's table of codes kept whole."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zchat.envelope.limits import MAX_ROOM
from zchat.peer import events as ev
from zchat.peer.events import ProblemCode
from zchat.peer.json_events import to_json
from zchat.peer.render import Renderer, plain, problem_text
from zchat.wire import protocol as p

README = Path(__file__).resolve().parent.parent / "README.md"

#: What the broker refuses a handshake with, and the errors the core turns into
#: problems (the others end or restart the session: `PeerCore._error`).
REFUSALS = {code.name.lower().replace("_", "-") for code in p.RefuseCode}
BROKER_ERRORS = {
    code.name.lower().replace("_", "-")
    for code in p.ErrorCode
    if code not in (p.ErrorCode.HELLO_FIRST, p.ErrorCode.REPLACED, p.ErrorCode.EVICTED)
}
#: Codes that come only in a refusal or from the transport, never in a `Problem`.
NOT_PROBLEMS = (REFUSALS - {"bad-key", "room-full", "bad-certificate"}) | {"transport-failed"}
PROBLEMS = [code for code in ProblemCode if code.value not in NOT_PROBLEMS]


def codes_in_readme() -> set[str]:
    """The codes the README's table of `error` codes lists, from its first column."""
    text = README.read_text(encoding="utf-8")
    after = text[text.index("The `code` of an `error` event is one of these") :]
    table = after[after.index("| code |") :].split("\n\n")[0]
    first_column = [row.split("|")[1] for row in table.splitlines()[2:]]
    return {code for cell in first_column for code in re.findall(r"`([a-z-]+)`", cell)}


def test_the_readme_lists_every_problem_code_and_no_other() -> None:
    assert codes_in_readme() == {code.value for code in ProblemCode}


def test_every_refusal_and_every_broker_error_shown_as_a_problem_has_a_code() -> None:
    # The core makes the code from the wire's name: a name missing here would crash it.
    assert {code.value for code in ProblemCode} >= REFUSALS | BROKER_ERRORS


def test_a_code_compares_equal_to_its_text_as_scripts_and_old_callers_read_it() -> None:
    assert ProblemCode.ROOM_FULL == "room-full"
    assert to_json(ev.Problem(ProblemCode.ROOM_FULL, count=2))["code"] == "room-full"


@pytest.mark.parametrize("code", PROBLEMS, ids=lambda c: c.value)
def test_every_problem_is_worded_and_json_carries_those_very_words(code: ProblemCode) -> None:
    trouble = ev.Problem(code, "bob", "it broke", "", ("eve",), 3)
    words = problem_text(trouble)
    assert words
    assert to_json(trouble) == {"event": "error", "code": code.value, "message": words}
    (line,) = Renderer("alice").render(trouble, 0.0)
    assert plain(line) == f"! {words}"


@pytest.mark.parametrize(
    ("trouble", "words"),
    [
        (
            ev.Problem(ProblemCode.UNEXPECTED, context="Join"),
            "unexpected Join from the broker",
        ),
        (
            ev.Problem(ProblemCode.UNEXPECTED, "al", context="Welcome"),
            "the broker welcomed us under another nickname",
        ),
        (
            ev.Problem(ProblemCode.UNEXPECTED, detail="ops", context="Welcome room"),
            "the broker welcomed us into another room",
        ),
        (
            ev.Problem(ProblemCode.UNKNOWN_KIND, "bob", detail="9"),
            "a message of a kind this zchat does not know (9) from bob: dropped",
        ),
        (
            ev.Problem(ProblemCode.UNEXPECTED, "bob", context="Rekeyed"),
            "a new session key for bob, who is not here",
        ),
        (
            ev.Problem(ProblemCode.MALFORMED, detail="no frames", context="Error"),
            "the broker said: no frames",
        ),
        (
            ev.Problem(ProblemCode.MALFORMED, detail="too many frames"),
            "malformed message from the broker: too many frames",
        ),
        (
            ev.Problem(ProblemCode.ROOM_FULL, count=3),
            f"the broker announced 3 member(s) more than a room holds ({MAX_ROOM}, us included): "
            "ignored, and so is anyone else announced until someone leaves",
        ),
        (
            ev.Problem(ProblemCode.ROOM_FULL, "zed"),
            f"zed joined, but that is one more than a room holds ({MAX_ROOM}, us included): "
            "ignored, and so is anyone else announced until someone leaves",
        ),
        (
            ev.Problem(ProblemCode.PINS, detail="cannot write pins.json"),
            "cannot write pins.json; the pins hold until you leave",
        ),
        (
            ev.Problem(ProblemCode.INTERNAL, detail="OSError()", context="session key"),
            "cannot make a session key: OSError()",
        ),
        (
            ev.Problem(ProblemCode.NOT_SENT, detail="no recipient given"),
            "no recipient given",
        ),
    ],
)
def test_the_fields_choose_the_words_where_one_code_has_several(
    trouble: ev.Problem, words: str
) -> None:
    assert problem_text(trouble) == words
