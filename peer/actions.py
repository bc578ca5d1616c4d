"""Carry out a parsed command against a client; the answers come back as events.

Both front ends use this, so `/msg` or `/trust` behave the same in a terminal and in
a script; each front end only renders the events.
"""

from __future__ import annotations

from zchat.envelope import nick_key
from zchat.peer import events as ev
from zchat.peer import slash as c
from zchat.peer.client import Client
from zchat.peer.contact import Contact
from zchat.peer.errors import FingerprintMismatch, PeerError


def execute(cmd: c.Command, client: Client) -> list[ev.Event]:
    """Run `cmd`. Quit is the caller's business; everything else is handled here."""
    core = client.core
    try:
        match cmd:
            case c.Say(text):
                client.send_text(text)
            case c.DirectMessage(nick, text):
                client.send_text(text, [nick])
            case c.WhoCommand():
                me = ev.WhoEntry(core.nick, core.identity.fingerprint, ev.Trust.PINNED)
                members = tuple(
                    _who_entry(m)
                    for m in sorted(core.members.values(), key=lambda m: nick_key(m.nick))
                )
                return [ev.Who(me, members)]
            case c.FingerprintCommand(None):
                return [ev.FingerprintShown(core.nick, core.identity.fingerprint, mine=True)]
            case c.FingerprintCommand(str() as nick):
                member = core.members.get(nick_key(nick))
                if member is None:
                    return [ev.Problem(ev.ProblemCode.UNKNOWN_NICK, nick=nick)]
                return [ev.FingerprintShown(member.nick, member.fingerprint, mine=False)]
            case c.TrustCommand(nick, fingerprint):
                client.trust(nick, fingerprint)
            case c.AdmitCommand(nick, fingerprint):
                client.admit(nick, fingerprint)
            case c.RevokeCommand(nick):
                client.revoke(nick)
            case c.Help():
                return [ev.Notice(c.HELP)]
            case c.Invalid(hint):
                return [ev.Problem(ev.ProblemCode.USAGE, detail=hint)]
            case c.Empty() | c.Quit():
                pass
    except FingerprintMismatch as exc:
        return [ev.Problem(ev.ProblemCode.FINGERPRINT_MISMATCH, detail=str(exc))]
    except PeerError as exc:
        return [ev.Problem(ev.ProblemCode.NOT_SENT, detail=str(exc))]
    return []


def _who_entry(member: Contact) -> ev.WhoEntry:
    admission = member.admission if member.may_read else None
    return ev.WhoEntry(
        member.nick,
        member.fingerprint,
        member.trust,
        "" if admission is None else admission.how.value,
        "" if admission is None else admission.by,
    )
