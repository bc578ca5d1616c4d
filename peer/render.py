"""Events as lines of role-tagged spans: the one wording of every front end.

A `Line` is a tuple of `Span`s, and each span says what its text *is* (a time, a
nickname, a warning...), never how it looks. The plain output joins the texts
(`plain`); the terminal UI maps each role to a style (`peer.tui_style`). JSON has a
module of its own (`peer.json_events`): it carries the fields, and for a problem the
words `problem_text` gives it.

The core and its parts say what happened as codes and fields (`events.Problem`,
`events.ProblemCode`), and the words are made here. The exceptions are texts an event
carries whole, which this module shows as they are: a refused request's reason
(`peer.errors`, worded where it is raised, and shown as a `not-sent` or
`fingerprint-mismatch` problem), a vouch's rejection reason, why the connection was
lost, and the client's transport diagnosis.

Every string from the network goes through `sanitize.for_terminal` as its span is
made, so no front end can forget to: escape sequences are shown, never executed. A
message of several lines (a paste) becomes several lines here, each after the first
starting with `CONTINUATION`: no line of ours starts that way, so no line of a message
can pass for a line of its own (someone else's message, a notice).

Times follow one rule: a message shows its sender's time, and is marked with the
time it arrived here when the two differ by more than `CLOCK_TOLERANCE` (a sender's
clock that is wrong, or a message held back or delivered late). The arrival time is
the caller's `now`: rendering reads no clock.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Final

from zchat.envelope import format_fingerprint, nick_key
from zchat.envelope.limits import MAX_ROOM
from zchat.peer import events as ev
from zchat.peer.events import ProblemCode as P
from zchat.peer.fingerprints import admit_command
from zchat.peer.sanitize import for_terminal as safe
from zchat.peer.withheld import MAX_WITHHELD, MAX_WITHHELD_BYTES


class Role(Enum):
    """What a span of text is; each front end decides how that looks."""

    TEXT = "text"  # what people wrote, and punctuation: unstyled
    TIME = "time"
    NICK = "nick"
    INFO = "info"  # our own quiet remarks: joins, acknowledgements, hints
    WARNING = "warning"  # about trust: a changed key, a message held back
    PROBLEM = "problem"  # something failed or was refused
    FINGERPRINT = "fingerprint"
    CONTINUATION = "continuation"  # starts a row that continues the line above


@dataclass(frozen=True, slots=True)
class Span:
    role: Role
    text: str  # already safe for a terminal


Line = tuple[Span, ...]

#: A message's time is shown alone while it agrees with its arrival to this many seconds.
CLOCK_TOLERANCE = 60.0
#: Our own messages remembered for late acknowledgements and failure reports.
REMEMBER = 1000
#: Characters of our own message quoted when reporting on it.
QUOTE = 40
MIB = 1024 * 1024
#: Starts every further line of a message of several lines, and every row the
#: terminal UI wraps a long line onto (`peer.tui_style`).
CONTINUATION: Final = "  ┆ "
#: Where a message's text breaks into lines: LF, or CR LF as some systems send it.
_NEWLINE = re.compile(r"\r?\n")


#: Why someone left, as the `Left` event's reason says it; anything else is shown as it is.
_LEFT = {
    "bye": "",
    "timeout": " (timed out)",
    "backlog": " (too far behind: the broker let them go)",
    "room-full": " (gone since the broker restarted; the room filled up)",
}


def left(reason: str) -> str:
    """What follows the nickname of someone who left for `reason`: "left" and why."""
    return " left" + _LEFT.get(reason, f" ({safe(reason)})")


def plain(line: Line) -> str:
    """The text of a line, without its roles."""
    return "".join(span.text for span in line)


def info(text: str) -> Line:
    """A line of our own (never from the network), in the quiet voice."""
    return (Span(Role.INFO, f"* {text}"),)


def problem(text: str) -> Line:
    return (Span(Role.PROBLEM, f"! {text}"),)


def nick(name: str) -> Span:
    return Span(Role.NICK, safe(name))


def short(fp: bytes) -> str:
    """The first three groups of a fingerprint, for lists; /fingerprint shows it all."""
    return " ".join(format_fingerprint(fp).split(" ")[:3]) + " …"


def problem_text(trouble: ev.Problem) -> str:
    """What went wrong, in words: the one wording of a `Problem`, which the terminal
    shows (made safe) and ``--json`` carries as its ``message``. Network strings in it
    are as they came: each front end escapes them for its medium."""
    nick, detail, context = trouble.nick, trouble.detail, trouble.context
    if context == "Error":  # the broker's own ERROR, in its words
        return f"the broker said: {detail}"
    match trouble.code:
        case P.MALFORMED:
            return f"malformed message from the broker: {detail}"
        case P.UNEXPECTED if context == "Welcome":
            return "the broker welcomed us under another nickname"
        case P.UNEXPECTED if context == "Welcome room":
            return "the broker welcomed us into another room"
        case P.UNEXPECTED if context == "Rekeyed":
            return f"a new session key for {nick}, who is not here"
        case P.UNEXPECTED if context == "Rekeyed us":
            return "the broker announced a session key of ours that we did not send"
        case P.UNEXPECTED:
            return f"unexpected {context} from the broker"
        case P.BAD_KEY:
            return f"{nick} announced an unusable key: {detail}"
        case P.BAD_CERTIFICATE:
            return (
                f"{nick}'s session key is refused ({detail}): nothing is sealed to "
                f"{nick} until a valid one comes"
            )
        case P.ROOM_FULL:
            what = (
                f"the broker announced {trouble.count} member(s) more than"
                if trouble.count
                else f"{nick} joined, but that is one more than"
            )
            return (
                f"{what} a room holds ({MAX_ROOM}, us included): ignored, "
                "and so is anyone else announced until someone leaves"
            )
        case P.UNKNOWN_SENDER:
            return f"message from {nick}, who is not here"
        case P.NOT_FOR_ME:
            return f"a message from {nick} not addressed to us"
        case P.WRONG_ROOM:
            return f"a message from {nick} for another room"
        case P.BAD_SIGNATURE:
            return f"message claiming to be from {nick}: {detail}"
        case P.UNKNOWN_KIND:
            return f"a message of a kind this zchat does not know ({detail}) from {nick}: dropped"
        case P.HELD_BACK_DROPPED:
            return (
                f"the oldest message held back from {nick} was dropped: at most "
                f"{MAX_WITHHELD} a sender and {MAX_WITHHELD_BYTES // MIB} MiB in all are held"
            )
        case P.STALE:
            return f"an old message from {nick} was dropped (a replay?)"
        case P.CANNOT_DECRYPT:
            return f"a message from {nick} did not decrypt"
        case P.BAD_ACK if context == "settled":
            return (
                f"the broker said a message of ours settled long ago never reached "
                f"{', '.join(trouble.nicks)}: ignored (it is never sent again)"
            )
        case P.REJOIN_REFUSED if context == "Sent":
            return (
                "not in the room right now (the broker refused us on coming back): "
                "your message waits, and goes once we are back in"
            )
        case P.REJOIN_REFUSED:
            why = f"{context}: {detail}" if context else detail
            return (
                f"the broker refused us on coming back into the room ({why}): trying again "
                f"for up to {trouble.count} s; what you type meanwhile waits"
            )
        case P.BAD_ACK:
            return (
                f"the broker acknowledged a message of ours to {', '.join(trouble.nicks)}, "
                "whom it was not for: ignored"
            )
        case P.PINS if detail:  # the pins file could not be written
            return f"{detail}; the pins hold until you leave"
        case P.PINS:
            return (
                "the pins file is full of admitted keys: new ones hold for this session only"
                " ('zchat keys forget NICK' makes room)"
            )
        case P.INTERNAL if context == "session key":
            return f"cannot make a session key: {detail}"
        case P.INTERNAL:
            return f"internal error: {detail}"
        case P.UNKNOWN_NICK:
            return f"{nick} is not in the room"
    # A usage hint, or a refused request (peer.errors): its own words, said at the raise.
    return detail


def stamp(sent_at: float, arrived: float) -> tuple[Span, ...]:
    """The time of a message sent at `sent_at` (the sender's clock) and shown at `arrived`."""
    shown = Span(Role.TIME, f"{_clock(sent_at, arrived)} ")
    if abs(arrived - sent_at) <= CLOCK_TOLERANCE:
        return (shown,)
    return (shown, Span(Role.INFO, f"(arrived {_clock(arrived, arrived)}) "))


class Renderer:
    """Turns one user's (`me`) events into lines.

    It remembers our own messages: they are shown once the broker acknowledges them,
    with how many got them, at the time they were sent.
    """

    def __init__(self, me: str) -> None:
        self.me = me
        self._sent: OrderedDict[bytes, tuple[ev.Sent, float]] = OrderedDict()
        self._shown: set[bytes] = set()

    def render(self, event: ev.Event, now: float) -> list[Line]:
        """The lines for `event`, which reached us at `now` (seconds since the epoch)."""
        match event:
            case ev.Ready(name, peers, reconnected):
                self.me = name
                if reconnected:
                    # One line however many are back: who changed shows as they come.
                    members = len(peers) + 1  # us too, as /who counts
                    return [
                        info(
                            f"back in the room: {members} members"
                            if peers
                            else "back in the room: nobody else here"
                        )
                    ]
                here = _nick_list(peers) if peers else (Span(Role.INFO, "nobody else yet"),)
                return [
                    (
                        Span(Role.INFO, "* you are "),
                        nick(name),
                        Span(Role.INFO, "; here: "),
                        *here,
                    )
                ]
            case ev.Joined(name, fp, trust, already_here):
                return _joined(name, fp, trust, already_here)
            case ev.KeyChanged(name, old, new):
                return _key_changed(name, old, new)
            case ev.Trusted(name, fp, released):
                held = {0: "", 1: "; the message held back follows"}.get(
                    released, f"; the {released} messages held back follow"
                )
                return [
                    (
                        Span(Role.INFO, "* you now trust "),
                        nick(name),
                        Span(Role.INFO, f"'s key {short(fp)}{held}"),
                    )
                ]
            case ev.Left(name, reason):
                return [(Span(Role.INFO, "* "), nick(name), Span(Role.INFO, left(reason)))]
            case ev.MessageReceived(sender, text, _, timestamp_ms, direct, recipients, admitted):
                to = self._direct_to(recipients) if direct else ""
                return _message(sender, text, timestamp_ms / 1000, now, to, admitted=admitted)
            case ev.Untrusted(sender, fp, _):
                return [
                    (
                        Span(Role.WARNING, "! a message signed by "),
                        nick(sender),
                        Span(
                            Role.WARNING,
                            f"'s UNTRUSTED new key {short(fp)} is held back; "
                            f"check the key, then {safe(admit_command('trust', sender, fp))}"
                            " to read it",
                        ),
                    )
                ]
            case ev.Sent() as sent:
                self._remember(sent, now)
                return []
            case ev.Acked(msg_id, delivered, absent):
                return self._acked(msg_id, delivered, absent, now)
            case ev.Undelivered(msg_id, nicks):
                mine = self._sent.get(msg_id)
                what = f"your message {_quote(mine[0].text)}" if mine else "a message of yours"
                return [problem(f"{what} never reached {_nicks(nicks)}")]
            case ev.Refused(reason=reason, rejoining=rejoining):
                if rejoining:
                    return [problem(f"the broker still refuses us, giving up: {safe(reason)}")]
                return [problem(f"the broker refused us: {safe(reason)}")]
            case ev.Problem() as trouble:
                return [problem(safe(problem_text(trouble)))]
            case ev.Disconnected(reason, final):
                if final:  # the session is over: never say "reconnecting" then
                    return [problem(f"the session ended: {safe(reason)}")]
                return [info(f"connection lost ({safe(reason)}); reconnecting…")]
            case ev.TransportFailed(reason, hint):
                lines = [problem(f"cannot connect: {safe(reason)}")]
                return [*lines, problem(safe(hint))] if hint else lines
            case ev.Who(me, members):
                return _who(me, members)
            case ev.FingerprintShown(name, fp, mine):
                whose = (
                    (Span(Role.INFO, "* your fingerprint: "),)
                    if mine
                    else (Span(Role.INFO, "* "), nick(name), Span(Role.INFO, "'s fingerprint: "))
                )
                return [(*whose, Span(Role.FINGERPRINT, format_fingerprint(fp)))]
            case ev.Notice(text):
                return [(Span(Role.TEXT, safe(row)),) for row in text.splitlines()]
            case ev.AdmitNeeded(name, fp, already_here, command):
                return _admit_needed(name, fp, already_here, command)
            case ev.Admitted(name, fp, how, by):
                return [_admitted(name, fp, how, by, self.me)]
            case ev.VouchRejected(voucher, nicks, reason, held):
                return [_vouch_rejected(voucher, nicks, reason, held)]
            case ev.Revoked(name, _, by, dropped, via):
                return [_revoked(name, by, dropped, via, self.me)]
            # --- issue 13: forward secrecy (session keys) ---
            case ev.Expired(sender, _):
                return [
                    (
                        Span(Role.PROBLEM, "! a message from "),
                        nick(sender),
                        Span(
                            Role.PROBLEM,
                            " came too late to be opened (held up for long, or a replay "
                            "of an old one): not shown",
                        ),
                    )
                ]
            case ev.Unsealed(msg_id, nicks):
                mine = self._sent.get(msg_id)
                what = f"your message {_quote(mine[0].text)}" if mine else "a message of yours"
                return [
                    problem(
                        f"{what} was not sent to {_nicks(nicks)}: their zchat has not "
                        "shown a valid key for this session (yet)"
                    )
                ]

    def _direct_to(self, recipients: tuple[str, ...]) -> str:
        """Whom a direct message went to, from its signed recipient list."""
        me = nick_key(self.me)
        others = [safe(n) for n in recipients if nick_key(n) != me]
        mine = len(others) < len(recipients)
        return ", ".join((["you"] if mine else []) + others)

    def _remember(self, sent: ev.Sent, now: float) -> None:
        self._sent[sent.msg_id] = (sent, now)
        while len(self._sent) > REMEMBER:
            old, _ = self._sent.popitem(last=False)
            self._shown.discard(old)

    def _acked(
        self, msg_id: bytes, delivered: tuple[str, ...], absent: tuple[str, ...], now: float
    ) -> list[Line]:
        remembered = self._sent.get(msg_id)
        if remembered is None:
            return []
        sent, sent_at = remembered
        # Count only whom it was sealed to: a broker's acknowledgement is its word.
        sealed = {nick_key(n) for n in sent.recipients}
        delivered = tuple(n for n in delivered if nick_key(n) in sealed)
        if msg_id in self._shown:
            # A later acknowledgement: someone who was away got it after all.
            if not delivered:
                return []
            return [info(f"your message {_quote(sent.text)} reached {_nicks(delivered)}")]
        self._shown.add(msg_id)
        if sent.direct:
            note = "delivered" if delivered else "not here yet: will be delivered on return"
        else:
            note = f"to {len(delivered)}"
            if absent:
                note += f"; waiting for {_nicks(absent)}"
        to = self._direct_to(sent.recipients) if sent.direct else ""
        return _message(self.me, sent.text, sent_at, now, to, note)


def _message(
    sender: str,
    text: str,
    sent_at: float,
    now: float,
    direct_to: str,
    note: str = "",
    *,
    admitted: bool = True,
) -> list[Line]:
    first, *more = _NEWLINE.split(text)
    line = [*stamp(sent_at, now), Span(Role.TEXT, "<"), nick(sender), Span(Role.TEXT, "> ")]
    if not admitted:
        # Signed by the key the broker announced for them, which nobody we admitted
        # vouched for: the words are theirs, but who they are is unchecked.
        line.append(Span(Role.WARNING, "[not admitted] "))
    if direct_to:
        line.append(Span(Role.INFO, f"[direct to {direct_to}] "))
    lines = [[*line, Span(Role.TEXT, safe(first))]]
    lines += [[Span(Role.CONTINUATION, CONTINUATION), Span(Role.TEXT, safe(row))] for row in more]
    if note:
        lines[-1].append(Span(Role.INFO, f"  ({note})"))
    return [tuple(spans) for spans in lines]


def _joined(name: str, fp: bytes, trust: ev.Trust, already_here: bool) -> list[Line]:
    if trust is ev.Trust.PINNED and already_here:
        return []  # the Ready line listed them; a known key is not news
    who = (Span(Role.INFO, "* "), nick(name))
    verb = Span(Role.INFO, " is here" if already_here else " joined")
    match trust:
        case ev.Trust.NEW:
            return [(*who, verb, Span(Role.INFO, f" (first time seen: key {short(fp)} pinned)"))]
        case ev.Trust.CHANGED:
            return [(*who, verb, Span(Role.WARNING, " (with a CHANGED key: not trusted)"))]
    return [(*who, verb)]


def _key_changed(name: str, old: bytes, new: bytes) -> list[Line]:
    shown = safe(name)
    rows = [
        f"  Either {shown} has a new device or key, or someone (the broker?) is pretending",
        f"  to be {shown} to read the room. Nothing is sent to {shown} and their messages",
        "  are held back. Compare the new fingerprint with them in person or by phone;",
        f"  if it matches, type {safe(admit_command('trust', name, new))}",
    ]
    return [
        (Span(Role.WARNING, f"! WARNING: {shown}'s KEY HAS CHANGED"),),
        (Span(Role.WARNING, "!   pinned: "), Span(Role.FINGERPRINT, format_fingerprint(old))),
        (Span(Role.WARNING, "!   now:    "), Span(Role.FINGERPRINT, format_fingerprint(new))),
        *((Span(Role.WARNING, f"!{row}"),) for row in rows),
    ]


def _who(me: ev.WhoEntry, members: tuple[ev.WhoEntry, ...]) -> list[Line]:
    lines = [info(f"{len(members) + 1} here:")]
    width = max(len(safe(e.nick)) for e in (me, *members))
    for entry, note in [(me, "you"), *((m, _admission(m)) for m in members)]:
        changed = entry is not me and (entry.trust is ev.Trust.CHANGED or not entry.admission)
        lines.append(
            (
                Span(Role.TEXT, "  "),
                nick(entry.nick),
                Span(Role.TEXT, " " * (width - len(safe(entry.nick))) + "  "),
                Span(Role.FINGERPRINT, format_fingerprint(entry.fingerprint)),
                Span(Role.WARNING if changed else Role.INFO, f"  {note}"),
            )
        )
    return lines


def _admission(entry: ev.WhoEntry) -> str:
    """What /who says of a member: admitted by you, vouched by NICK, not admitted, changed."""
    if entry.trust is ev.Trust.CHANGED:
        return "changed"
    match entry.admission:
        case "you":
            return "admitted by you"
        case "vouch":
            return f"vouched by {safe(entry.by)}"
        case "open":
            return "open room"
    return "not admitted"


# --- issue 12: admission -------------------------------------------------------------


def _admit_needed(name: str, fp: bytes, already_here: bool, command: str) -> list[Line]:
    shown = safe(name)
    verb = "is here" if already_here else "joined"
    return [
        (
            Span(Role.WARNING, "! "),
            nick(name),
            Span(
                Role.WARNING,
                f" {verb}, NOT ADMITTED: {shown} receives nothing from you until you admit them",
            ),
        ),
        (Span(Role.WARNING, "!   fingerprint: "), Span(Role.FINGERPRINT, format_fingerprint(fp))),
        (
            Span(
                Role.WARNING,
                f"!   compare it with {shown} (in person, by phone); if it matches, type:",
            ),
        ),
        # On a line of its own: four groups and a long nickname would wrap otherwise.
        (Span(Role.WARNING, f"!     {safe(command)}"),),
    ]


def _admitted(name: str, fp: bytes, how: str, by: str, me: str) -> Line:
    if how == "vouch" and nick_key(by) != nick_key(me):
        why = Span(Role.INFO, f" on {safe(by)}'s word (a vouch)")
    else:
        why = Span(Role.INFO, f" (key {short(fp)} compared)")
    return (
        Span(Role.INFO, "* admitted "),
        nick(name),
        why,
        Span(Role.INFO, ": they read what you send from now on"),
    )


def _vouch_rejected(voucher: str, nicks: tuple[str, ...], reason: str, held: bool) -> Line:
    named = _nicks(nicks) or "someone"
    if held:
        return (
            Span(Role.INFO, "* "),
            nick(voucher),
            Span(
                Role.INFO,
                f" vouches for {named}, but you have not admitted {safe(voucher)}: "
                "once you do, that vouch counts",
            ),
        )
    return (
        Span(Role.PROBLEM, "! a vouch from "),
        nick(voucher),
        Span(Role.PROBLEM, f" for {named} was rejected, nobody admitted: {safe(reason)}"),
    )


def _revoked(name: str, by: str, dropped: bool, via: str, me: str) -> Line:
    if nick_key(by) == nick_key(me):
        if not dropped:
            return info(
                f"{safe(name)} was not admitted; from now on no vouch admits this key of"
                f" {safe(name)}'s: only your own comparison"
            )
        return (
            Span(Role.WARNING, "! you took back the admission of "),
            nick(name),
            Span(
                Role.WARNING,
                ": nothing more is sealed to them, and those who admitted them on your word"
                " are told (only a new comparison admits that key again)",
            ),
        )
    if not dropped:
        return (
            Span(Role.WARNING, "! "),
            nick(by),
            Span(Role.WARNING, " took back their admission of "),
            nick(name),
            Span(
                Role.WARNING,
                f"; you admitted {safe(name)} yourself (or on another's word), so they still"
                f" read what you send (/revoke {safe(name)} to stop that)",
            ),
        )
    because = f" (admitted on {safe(via)}'s word, and {safe(via)} goes)" if via else ""
    return (
        Span(Role.WARNING, "! "),
        nick(by),
        Span(Role.WARNING, " took back the admission of "),
        nick(name),
        Span(Role.WARNING, f"{because}: {safe(name)} reads nothing more from you"),
    )


def _clock(moment: float, today: float) -> str:
    """`moment` as local hours and minutes, with the date when it is not `today`'s."""
    try:
        local, ref = time.localtime(moment), time.localtime(today)
        same_day = local[:3] == ref[:3]
        return time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", local)
    except (OverflowError, OSError, ValueError):  # a timestamp no calendar can show
        return "??:??"


def _nick_list(nicks: tuple[str, ...]) -> tuple[Span, ...]:
    spans: list[Span] = []
    for i, name in enumerate(nicks):
        if i:
            spans.append(Span(Role.INFO, ", "))
        spans.append(nick(name))
    return tuple(spans)


def _nicks(nicks: tuple[str, ...]) -> str:
    return ", ".join(safe(n) for n in nicks)


def _quote(text: str) -> str:
    text = " ↵ ".join(_NEWLINE.split(text))  # a reminder of which message: one line
    cut = text if len(text) <= QUOTE else text[: QUOTE - 1] + "…"
    return f"“{safe(cut)}”"
