"""Events as text lines or JSON objects, with every network string made safe.

Plain lines go through `sanitize.for_terminal`; JSON relies on `json.dumps`, which
escapes every control character (``\\u001b``), so neither can carry a raw escape.
"""

from __future__ import annotations

import json
import time
from typing import Any

from zchat.envelope import format_fingerprint
from zchat.peer import events as ev
from zchat.peer.sanitize import for_terminal as safe


def short(fp: bytes) -> str:
    """The first three groups of a fingerprint, for lists; /fingerprint shows it all."""
    return " ".join(format_fingerprint(fp).split(" ")[:3]) + " …"


def clock(timestamp_ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp_ms / 1000))


def key_changed(nick: str, old: bytes, new: bytes) -> tuple[str, list[str]]:
    """The key-change warning, in one wording for every front end: (headline, rows)."""
    name = safe(nick)
    return f"WARNING: {name}'s KEY HAS CHANGED", [
        f"  pinned: {format_fingerprint(old)}",
        f"  now:    {format_fingerprint(new)}",
        f"  Either {name} has a new device or key, or someone (the broker?) is pretending",
        f"  to be {name} to read the room. Nothing is sent to {name} and their messages",
        "  are held back. Compare the new fingerprint with them in person or by phone;",
        f"  if it matches, type /trust {name}.",
    ]


def to_json(event: ev.Event) -> dict[str, Any]:
    """The scripted `--json` contract: one object per event, with an "event" field."""
    match event:
        case ev.Ready(nick, peers, reconnected):
            return {
                "event": "ready",
                "nick": nick,
                "peers": list(peers),
                "reconnected": reconnected,
            }
        case ev.Joined(nick, fp, trust, already_here):
            return {
                "event": "join",
                "nick": nick,
                "fingerprint": format_fingerprint(fp),
                "trust": trust.value,
                "already_here": already_here,
            }
        case ev.KeyChanged(nick, old, new):
            return {
                "event": "key-changed",
                "nick": nick,
                "old": format_fingerprint(old),
                "new": format_fingerprint(new),
            }
        case ev.Trusted(nick, fp, released):
            return {
                "event": "trusted",
                "nick": nick,
                "fingerprint": format_fingerprint(fp),
                "released": released,
            }
        case ev.Left(nick, reason):
            return {"event": "leave", "nick": nick, "reason": reason}
        case ev.MessageReceived(sender, text, msg_id, ts, direct, recipients):
            return {
                "event": "message",
                "from": sender,
                "text": text,
                "id": msg_id.hex(),
                "ts": ts,
                "direct": direct,
                "to": list(recipients),
            }
        case ev.Untrusted(sender, fp, msg_id):
            return {
                "event": "untrusted",
                "from": sender,
                "fingerprint": format_fingerprint(fp),
                "id": msg_id.hex(),
            }
        case ev.Sent(msg_id, text, recipients, direct):
            return {
                "event": "sent",
                "id": msg_id.hex(),
                "text": text,
                "to": list(recipients),
                "direct": direct,
            }
        case ev.Acked(msg_id, delivered, absent):
            return {
                "event": "ack",
                "id": msg_id.hex(),
                "delivered": list(delivered),
                "absent": list(absent),
            }
        case ev.Undelivered(msg_id, nicks):
            return {"event": "undelivered", "id": msg_id.hex(), "nicks": list(nicks)}
        case ev.Refused(code, reason):
            return {"event": "error", "code": code, "message": reason}
        case ev.Problem(code, message):
            return {"event": "error", "code": code, "message": message}
        case ev.Disconnected(reason):
            return {"event": "disconnected", "reason": reason}
        case ev.TransportFailed(reason, hint):
            return {"event": "error", "code": "transport-failed", "message": reason, "hint": hint}
        case ev.Who(me, members):
            return {"event": "who", "me": _who(me), "peers": [_who(m) for m in members]}
        case ev.FingerprintShown(nick, fp, mine):
            return {
                "event": "fingerprint",
                "nick": nick,
                "fingerprint": format_fingerprint(fp),
                "mine": mine,
            }
        case ev.Notice(text):
            return {"event": "notice", "text": text}


def _who(entry: ev.WhoEntry) -> dict[str, str]:
    return {
        "nick": entry.nick,
        "fingerprint": format_fingerprint(entry.fingerprint),
        "trust": entry.trust.value,
    }


def json_line(event: ev.Event) -> str:
    # ensure_ascii: every non-ASCII and control character leaves as a \\u escape.
    return json.dumps(to_json(event), ensure_ascii=True)


def to_text(event: ev.Event) -> str | None:
    """One readable line (or a few) for plain scripted output, safe for a terminal."""
    match event:
        case ev.Ready(nick, peers, reconnected):
            if reconnected:
                return "* back in the room"
            here = ", ".join(safe(p) for p in peers) or "nobody else yet"
            return f"* you are {safe(nick)}; here: {here}"
        case ev.Joined(nick, fp, trust, already_here):
            verb = "is here" if already_here else "joined"
            note = {
                ev.Trust.NEW: f" (new key pinned: {short(fp)})",
                ev.Trust.PINNED: "",
                ev.Trust.CHANGED: " (KEY CHANGED: not trusted)",
            }[trust]
            return f"* {safe(nick)} {verb}{note}"
        case ev.KeyChanged(nick, old, new):
            headline, rows = key_changed(nick, old, new)
            return "\n".join([f"! {headline}", *(f"!{row}" for row in rows)])
        case ev.Trusted(nick, fp, released):
            return f"* trusted {safe(nick)}'s key {short(fp)}; {released} held message(s) shown"
        case ev.Left(nick, reason):
            return f"* {safe(nick)} left ({safe(reason)})"
        case ev.MessageReceived(sender, text, _, ts, direct, _):
            mark = " (direct)" if direct else ""
            return f"[{clock(ts)}] <{safe(sender)}>{mark} {safe(text)}"
        case ev.Untrusted(sender, fp, _):
            return (
                f"! a message signed by {safe(sender)}'s NEW key {short(fp)} is held back; "
                f"/trust {safe(sender)} to read it"
            )
        case ev.Acked(_, delivered, absent):
            line = f"* delivered to {len(delivered)}"
            if absent:
                line += f"; absent: {', '.join(safe(n) for n in absent)}"
            return line
        case ev.Undelivered(_, nicks):
            return f"! not delivered to {', '.join(safe(n) for n in nicks)}"
        case ev.Refused(code, reason) | ev.Problem(code, reason):
            return f"! {safe(code)}: {safe(reason)}"
        case ev.Disconnected(reason):
            return f"* disconnected: {safe(reason)}; reconnecting…"
        case ev.TransportFailed(reason, hint):
            line = f"! cannot connect: {safe(reason)}"
            return f"{line}\n! {safe(hint)}" if hint else line
        case ev.Who(me, members):
            rows = [f"  {safe(me.nick)} (you)  {format_fingerprint(me.fingerprint)}"]
            rows += [
                f"  {safe(m.nick)}  {format_fingerprint(m.fingerprint)}  [{m.trust.value}]"
                for m in members
            ]
            return f"* {len(members) + 1} here:\n" + "\n".join(rows)
        case ev.FingerprintShown(nick, fp, mine):
            whose = "your" if mine else f"{safe(nick)}'s"
            return f"* {whose} fingerprint: {format_fingerprint(fp)}"
        case ev.Notice(text):
            return text
    return None
