"""Joins and leaves that come close together, said in one line.

On a flaky network a member drops out and comes back within seconds ("bob left (timed
out)", "bob joined"), and a broker's restart brings many back at once: one line each
would bury the conversation. The terminal UI holds such notices for `WINDOW` seconds
and then says what happened in the end, once: "bob reconnected", "carol, dave joined".

Only what is not news is held: a join of a key we know, a leave, and the reminder
that a member we already warned about is still not admitted. A newcomer's first join,
a changed key and every other line are shown at once, and showing any of them first
shows what was held, so the order of things on the screen stays true.

Sans I/O: the caller passes the time and asks (`due`) when to show what is held.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from zchat.envelope import nick_key
from zchat.peer import events as ev
from zchat.peer.render import Line, Role, Span, left, nick
from zchat.peer.sanitize import for_terminal

#: Seconds a join or leave waits for a change of mind before it is shown.
WINDOW: Final = 3.0


@dataclass
class _Story:
    """What one member did within the window, in order."""

    name: str
    moves: list[str] = field(default_factory=list)  # "join" or "leave"
    reason: str = ""  # of the last leave
    #: What to type to admit them, when they are here and still not admitted.
    admit: str = ""


@dataclass
class Quiet:
    """Holds the join and leave notices that come close together (module docstring)."""

    window: float = WINDOW
    _stories: dict[str, _Story] = field(default_factory=dict)
    _since: float | None = None
    #: (nickname, fingerprint) of every member we said was not admitted, once.
    _warned: set[tuple[str, bytes]] = field(default_factory=set)

    def hold(self, event: ev.Event, now: float) -> bool:
        """Take `event` if it is one to hold; False to show it now (after `release`)."""
        match event:
            case ev.Joined(name, _, ev.Trust.PINNED, False):
                self._story(name, now).moves.append("join")
            case ev.Left(name, reason):
                story = self._story(name, now)
                story.moves.append("leave")
                story.reason, story.admit = reason, ""
            case ev.AdmitNeeded(name, fp, False, command) if (nick_key(name), fp) in self._warned:
                self._story(name, now).admit = command
            case ev.AdmitNeeded(name, fp):
                self._warned.add((nick_key(name), fp))
                return False
            case _:
                return False
        return True

    def due(self, now: float) -> bool:
        """Whether what is held has waited its window."""
        return self._since is not None and now - self._since >= self.window

    @property
    def waiting(self) -> float | None:
        """When the first notice held came in, or None when nothing is held."""
        return self._since

    def release(self) -> list[Line]:
        """What is held, said once per outcome, and nothing held any more."""
        stories, self._stories, self._since = list(self._stories.values()), {}, None
        lines: list[Line] = []
        grouped: dict[str, list[str]] = {}
        for story in stories:
            outcome = _outcome(story)
            if story.admit and story.moves[-1] == "join":
                lines.append(_not_admitted(story, outcome))
            elif outcome:
                grouped.setdefault(outcome, []).append(story.name)
        together = [_together(names, outcome) for outcome, names in grouped.items()]
        return [*together, *lines]

    def _story(self, name: str, now: float) -> _Story:
        if self._since is None:
            self._since = now
        return self._stories.setdefault(nick_key(name), _Story(name))


def _outcome(story: _Story) -> str:
    """What a member's moves came to: "joined", "left ...", "reconnected", ..."""
    if not story.moves:
        return "is here"  # only the reminder that they are not admitted
    first, last = story.moves[0], story.moves[-1]
    gone = left(story.reason).lstrip()
    if first == "join":
        return "joined" if last == "join" else f"joined and {gone}"
    return "reconnected" if last == "join" else gone


def _together(names: Sequence[str], outcome: str) -> Line:
    spans: list[Span] = [Span(Role.INFO, "* ")]
    for i, name in enumerate(names):
        if i:
            spans.append(Span(Role.INFO, ", "))
        spans.append(nick(name))
    return (*spans, Span(Role.INFO, f" {outcome}"))


def _not_admitted(story: _Story, outcome: str) -> Line:
    return (
        Span(Role.WARNING, "! "),
        nick(story.name),
        Span(
            Role.WARNING,
            f" {outcome}, still NOT ADMITTED: compare fingerprints, then "
            f"{for_terminal(story.admit)}",
        ),
    )
