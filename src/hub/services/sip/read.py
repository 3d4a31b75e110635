"""Reading a SIP meeting: the inviter and the invited organisations, each its view; everyone else 404."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import sip as db
from hub.db.teams import organisations
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import NotFound
from hub.domain.sip import NOT_FOUND
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.context import Actor
from hub.services.sip.views import Explained, MeetingView, explained, meeting_view, organisations_named

INVITER = "sip-inviter"  # the basis of the inviter's reads and changes: it made the meeting
INVITEE = "sip-invitee"  # an invited organisation's: its invitation, whose decision (decision_id) cites the law


def meeting_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(NOT_FOUND) from None


def details(runtime: Runtime, stored: db.StoredMeeting) -> dict[str, Any]:
    """The meeting's sealed details, opened (the child's identity, the purpose, the place)."""
    opened: dict[str, Any] = runtime.cipher.decrypt(
        stored.setting.details, stored.setting.details_key_id, bound_to=f"sip:{stored.meeting.id}"
    )
    return opened


async def view_of(session: AsyncSession, runtime: Runtime, stored: db.StoredMeeting, viewer: str) -> MeetingView:
    """The meeting as ``viewer`` sees it; ``NotFound`` for an organisation that may not know of it."""
    meeting = stored.meeting
    meeting.visible_to(viewer)
    names = await organisations(session, organisations_named(meeting))
    decisions: dict[str, Explained] = {}
    if viewer == meeting.inviter:
        kept = await db.decisions(session, [i.decision_id for i in meeting.invitations])
        decisions = {did: explained(did, basis, ex) for did, (basis, ex) in kept.items()}
    return meeting_view(stored, details(runtime, stored), viewer=viewer, names=names, decisions=decisions)


async def audit_access(
    session: AsyncSession, actor: Actor, stored: db.StoredMeeting, action: AuditAction, details: dict[str, Any]
) -> None:
    """A read or change of the meeting, citing the caller's standing: the inviter, or an invitee with the
    decision that let its invitation be sent."""
    meeting = stored.meeting
    own = next((i for i in meeting.invitations if i.organisation == actor.organisation_id), None)
    await audit(
        session,
        actor,
        action,
        child_pseudonym=stored.setting.child_pseudonym,
        legal_basis=INVITER if own is None else INVITEE,
        decision_id=None if own is None else str(own.decision_id),
        entity_type="SipMeeting",
        entity_id=str(meeting.id),
        details=details,
    )


async def read_meeting(runtime: Runtime, actor: Actor, meeting: str) -> MeetingView:
    """One meeting, for the inviter or an invited organisation (audited); 404 for everyone else alike."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        stored = await db.load(uow.session, meeting_id(meeting))
        if stored is None:
            raise NotFound(NOT_FOUND)
        view = await view_of(uow.session, runtime, stored, actor.organisation_id)
        await audit_access(uow.session, actor, stored, AuditAction.SIP_READ, {})
        await uow.commit()
    return view


async def audit_fetch(session: AsyncSession, actor: Actor, message_id: str, body: dict[str, Any]) -> None:
    """A SIP message fetched from the mailbox, audited as a read of its meeting (``hub.services.mailbox``)."""
    news = body.get("sip_invitation") or body["sip_answer"]
    stored = await db.load(session, uuid.UUID(str(news["meeting_id"])))
    if stored is not None:  # cannot be otherwise while the message's outbox entry holds its event
        details = {"via": "mailbox", "message_id": message_id}
        await audit_access(session, actor, stored, AuditAction.SIP_READ, details)
