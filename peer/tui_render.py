"""Events as coloured lines for the interactive chat: prompt_toolkit fragments, no I/O.

Lines are lists of ``(style, text)`` fragments, never HTML or ANSI markup, so no
network string can smuggle markup in; and every network string still goes through
`sanitize.for_terminal` (through `_safe`), because prompt_toolkit only removes ESC
and lets ``\\r``, backspace, C1 controls and bidi overrides through to the terminal.

`ChatView` keeps the little state display needs: our own messages wait, unseen,
until the broker acknowledges them, and are then shown once with how many got them.
"""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from collections.abc import Callable

from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.styles import Style

from zchat.envelope import format_fingerprint, nick_key
from zchat.peer import events as ev
from zchat.peer.render import key_changed, short
from zchat.peer.sanitize import for_terminal as _safe

#: Colours for nicknames: readable on dark and light backgrounds (no black, white
#: or grey), and ANSI names so the user's terminal theme decides the exact shade.
PALETTE = (
    "ansired",
    "ansigreen",
    "ansiyellow",
    "ansiblue",
    "ansimagenta",
    "ansicyan",
    "ansibrightred",
    "ansibrightgreen",
    "ansibrightyellow",
    "ansibrightblue",
    "ansibrightmagenta",
    "ansibrightcyan",
)

STYLE = Style.from_dict(
    {
        "time": "ansibrightblack",
        "info": "ansibrightblack",
        "meta": "ansibrightblack italic",
        "direct": "bold ansimagenta",
        "problem": "ansired",
        "warning": "bold ansiwhite bg:ansired",
        "warning-text": "bold ansired",
        "fingerprint": "bold",
        "help": "",
    }
)

#: Our own messages remembered for late acknowledgements and failure reports.
_REMEMBER = 1000
_QUOTE = 40


def nick_colour(nick: str) -> str:
    """The same colour for a nickname in every run and on every peer's screen.

    crc32, not hash(): Python randomises str hashes per process.
    """
    digest = zlib.crc32(nick_key(nick).encode("utf-8", "replace"))
    return PALETTE[digest % len(PALETTE)]


def nick_fragment(nick: str, *, bold: bool = True) -> tuple[str, str]:
    weight = " bold" if bold else ""
    return (f"fg:{nick_colour(nick)}{weight}", _safe(nick))


def plain(line: FormattedText) -> str:
    """The text of a line without its styles (tests, transcripts)."""
    return "".join(fragment[1] for fragment in line)


def _line(*fragments: tuple[str, str]) -> FormattedText:
    return FormattedText(list(fragments))


def info(text: str) -> FormattedText:
    """A line of our own (never from the network), in the quiet colour."""
    return FormattedText([("class:info", f"* {text}")])


def problem(text: str) -> FormattedText:
    return FormattedText([("class:problem", f"! {text}")])


class ChatView:
    """Turns peer events into screen lines for one user (`me`)."""

    def __init__(self, me: str, clock: Callable[[], float] = time.time) -> None:
        self.me = me
        self._clock = clock
        self._sent: OrderedDict[bytes, ev.Sent] = OrderedDict()
        self._shown: set[bytes] = set()

    def render(self, event: ev.Event) -> list[FormattedText]:
        match event:
            case ev.Ready(nick, peers, reconnected):
                self.me = nick
                if reconnected:
                    return [info("back in the room")]  # who else is back shows as they come
                here: list[tuple[str, str]] = [("class:info", "nobody else yet")]
                if peers:
                    here = _joined_list(peers)
                return [
                    _line(
                        ("class:info", "* you are "),
                        nick_fragment(nick),
                        ("class:info", "; here: "),
                        *here,
                    ),
                    info("type to chat; /help lists the commands; Ctrl-D or /quit leaves"),
                ]
            case ev.Joined(nick, fp, trust, already_here):
                return self._joined(nick, fp, trust, already_here)
            case ev.KeyChanged(nick, old, new):
                return _key_changed(nick, old, new)
            case ev.Trusted(nick, fp, released):
                held = f"; {released} held message(s) follow" if released else ""
                return [
                    _line(
                        ("class:info", "* you now trust "),
                        nick_fragment(nick),
                        ("class:info", f"'s key {short(fp)}{held}"),
                    )
                ]
            case ev.Left(nick, reason):
                why = {"bye": "", "timeout": " (timed out)"}.get(reason, f" ({_safe(reason)})")
                return [
                    _line(
                        ("class:info", "* "),
                        nick_fragment(nick, bold=False),
                        ("class:info", f" left{why}"),
                    )
                ]
            case ev.MessageReceived(sender, text, _, _, direct, _):
                return [self._message(sender, text, direct=direct)]
            case ev.Untrusted(sender, fp, _):
                return [
                    _line(
                        ("class:warning-text", "! a message signed by "),
                        nick_fragment(sender),
                        (
                            "class:warning-text",
                            f"'s UNTRUSTED new key {short(fp)} is held back; "
                            f"check the key, then /trust {_safe(sender)} to read it",
                        ),
                    )
                ]
            case ev.Sent() as sent:
                self._remember(sent)
                return []
            case ev.Acked(msg_id, delivered, absent):
                return self._acked(msg_id, delivered, absent)
            case ev.Undelivered(msg_id, nicks):
                mine = self._sent.get(msg_id)
                what = f"your message {_quote(mine.text)}" if mine else "a message of yours"
                return [problem(f"{what} never reached {_nicks(nicks)}")]
            case ev.Refused(_, reason):
                return [problem(f"the broker refused: {_safe(reason)}")]
            case ev.Problem(_, message):
                return [problem(_safe(message))]
            case ev.Disconnected(reason):
                return [info(f"connection lost ({_safe(reason)}); reconnecting…")]
            case ev.TransportFailed(reason, hint):
                lines = [problem(f"cannot connect: {_safe(reason)}")]
                return [*lines, problem(_safe(hint))] if hint else lines
            case ev.Who(me, members):
                return _who(me, members)
            case ev.FingerprintShown(nick, fp, mine):
                whose: list[tuple[str, str]] = (
                    [("class:info", "* your fingerprint: ")]
                    if mine
                    else [
                        ("class:info", "* "),
                        nick_fragment(nick),
                        ("class:info", "'s fingerprint: "),
                    ]
                )
                return [FormattedText([*whose, ("class:fingerprint", format_fingerprint(fp))])]
            case ev.Notice(text):
                return [FormattedText([("class:help", line)]) for line in text.splitlines()]

    # --- pieces ----------------------------------------------------------------------

    def _joined(
        self, nick: str, fp: bytes, trust: ev.Trust, already_here: bool
    ) -> list[FormattedText]:
        if trust is ev.Trust.PINNED and already_here:
            return []  # the Ready line listed them; a known key is not news
        who: list[tuple[str, str]] = [("class:info", "* "), nick_fragment(nick, bold=False)]
        verb = " is here" if already_here else " joined"
        note = {
            ev.Trust.NEW: f" (first time seen: key {short(fp)} pinned)",
            ev.Trust.PINNED: "",
            ev.Trust.CHANGED: " (with a CHANGED key: not trusted)",
        }[trust]
        return [FormattedText([*who, ("class:info", verb + note)])]

    def _message(
        self, sender: str, text: str, *, direct: bool, to: tuple[str, ...] = (), note: str = ""
    ) -> FormattedText:
        line: list[tuple[str, str]] = [
            ("class:time", time.strftime("%H:%M ", time.localtime(self._clock()))),
            ("", "<"),
            nick_fragment(sender),
            ("", "> "),
        ]
        if direct:
            target = f"to {_nicks(to)}" if to else "to you"
            line.append(("class:direct", f"[direct {target}] "))
        line.append(("", _safe(text)))
        if note:
            line.append(("class:meta", f"  ({note})"))
        return FormattedText(line)

    def _remember(self, sent: ev.Sent) -> None:
        self._sent[sent.msg_id] = sent
        while len(self._sent) > _REMEMBER:
            old, _ = self._sent.popitem(last=False)
            self._shown.discard(old)

    def _acked(
        self, msg_id: bytes, delivered: tuple[str, ...], absent: tuple[str, ...]
    ) -> list[FormattedText]:
        sent = self._sent.get(msg_id)
        if sent is None:
            return []
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
        return [
            self._message(self.me, sent.text, direct=sent.direct, to=sent.recipients, note=note)
        ]


def _key_changed(nick: str, old: bytes, new: bytes) -> list[FormattedText]:
    headline, rows = key_changed(nick, old, new)
    banner = FormattedText([("class:warning", f" {headline} ")])
    return [banner, *(FormattedText([("class:warning-text", row)]) for row in rows)]


def _who(me: ev.WhoEntry, members: tuple[ev.WhoEntry, ...]) -> list[FormattedText]:
    lines = [info(f"{len(members) + 1} here:")]
    width = max(len(_safe(e.nick)) for e in (me, *members))
    for entry, note in [(me, "you"), *((m, m.trust.value) for m in members)]:
        pad = " " * (width - len(_safe(entry.nick)))
        style = "class:warning-text" if entry.trust is ev.Trust.CHANGED and note != "you" else ""
        lines.append(
            FormattedText(
                [
                    ("", "  "),
                    nick_fragment(entry.nick),
                    ("", pad + "  "),
                    ("class:fingerprint", format_fingerprint(entry.fingerprint)),
                    (style or "class:meta", f"  {note}"),
                ]
            )
        )
    return lines


def _joined_list(nicks: tuple[str, ...]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i, nick in enumerate(nicks):
        if i:
            out.append(("class:info", ", "))
        out.append(nick_fragment(nick, bold=False))
    return out


def _nicks(nicks: tuple[str, ...]) -> str:
    return ", ".join(_safe(n) for n in nicks)


def _quote(text: str) -> str:
    cut = text if len(text) <= _QUOTE else text[: _QUOTE - 1] + "…"
    return f"“{_safe(cut)}”"
