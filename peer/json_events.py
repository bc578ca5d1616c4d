"""Events as JSON objects, one per line: the scripted ``--json`` contract (see README).

Strings go out exactly as they came; `json.dumps` with ``ensure_ascii`` escapes every
control and non-ASCII character (``\\u001b``), so a line can carry no raw escape.
"""

from __future__ import annotations

import json
from typing import Any

from zchat.envelope import format_fingerprint
from zchat.peer import events as ev
from zchat.peer.render import problem_text


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
        case ev.MessageReceived(sender, text, msg_id, ts, direct, recipients, admitted):
            return {
                "event": "message",
                "from": sender,
                "text": text,
                "id": msg_id.hex(),
                "ts": ts,
                "direct": direct,
                "to": list(recipients),
                "admitted": admitted,
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
        case ev.Refused(code, reason, rejoining=rejoining):
            refused: dict[str, object] = {"event": "error", "code": code, "message": reason}
            if rejoining:  # refused on coming back into the room, after trying again
                refused["rejoining"] = True
            return refused
        case ev.Problem() as trouble:
            return {"event": "error", "code": trouble.code.value, "message": problem_text(trouble)}
        case ev.Disconnected(reason, final):
            return {"event": "disconnected", "reason": reason, "final": final}
        case ev.TransportFailed(reason, hint):
            code = ev.ProblemCode.TRANSPORT_FAILED.value
            return {"event": "error", "code": code, "message": reason, "hint": hint}
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
        case ev.AdmitNeeded(nick, fp, already_here, command):
            return {
                "event": "admit-needed",
                "nick": nick,
                "fingerprint": format_fingerprint(fp),
                "already_here": already_here,
                "command": command,
            }
        case ev.Admitted(nick, fp, how, by):
            return {
                "event": "admitted",
                "nick": nick,
                "fingerprint": format_fingerprint(fp),
                "how": how,
                "by": by,
            }
        case ev.VouchRejected(voucher, nicks, reason, held):
            return {
                "event": "vouch-rejected",
                "from": voucher,
                "nicks": list(nicks),
                "reason": reason,
                "held": held,
            }
        case ev.Revoked(nick, fp, by, dropped, via):
            return {
                "event": "revoked",
                "nick": nick,
                "fingerprint": format_fingerprint(fp),
                "by": by,
                "dropped": dropped,
                "via": via,
            }
        # --- issue 13: forward secrecy (session keys) ---
        case ev.Expired(sender, msg_id):
            return {"event": "expired", "from": sender, "id": msg_id.hex()}
        case ev.Unsealed(msg_id, nicks):
            return {"event": "unsealed", "id": msg_id.hex(), "nicks": list(nicks)}


def _who(entry: ev.WhoEntry) -> dict[str, str]:
    return {
        "nick": entry.nick,
        "fingerprint": format_fingerprint(entry.fingerprint),
        "trust": entry.trust.value,
        "admission": entry.admission or "none",
        "by": entry.by,
    }


def json_line(event: ev.Event) -> str:
    # ensure_ascii: every non-ASCII and control character leaves as a \\u escape.
    return json.dumps(to_json(event), ensure_ascii=True)
