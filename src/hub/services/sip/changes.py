"""Answering a SIP invitation and cancelling a meeting: lock the meeting, let the aggregate decide, persist
what it changed with its news queued for the organisations' systems and the audit entry, commit once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from hub.db import referrals as outbox
from hub.db import sip as db
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import NotFound
from hub.domain.sip import NOT_FOUND, Answer, Meeting
from hub.runtime import Runtime
from hub.services.context import Actor
from hub.services.sip.read import audit_access, meeting_id, view_of
from hub.services.sip.views import MeetingView


async def _change(
    runtime: Runtime, actor: Actor, meeting: str, what: str, decide: Callable[[Meeting], object]
) -> MeetingView:
    async with UnitOfWork.of(runtime.sessions) as uow:
        stored = await db.load(uow.session, meeting_id(meeting), lock=True)
        if stored is None:
            raise NotFound(NOT_FOUND)
        decide(stored.meeting)
        await db.save(uow.session, stored.meeting)
        for event in stored.meeting.events:
            await outbox.enqueue(uow.session, db.event_entry(event))
        told = [e.to_organisation for e in stored.meeting.events]
        await audit_access(uow.session, actor, stored, AuditAction.SIP_CHANGED, {"change": what, "notices": told})
        view = await view_of(uow.session, runtime, stored, actor.organisation_id)
        await uow.commit()
    return view


async def answer(
    runtime: Runtime,
    actor: Actor,
    meeting: str,
    given: Answer,
    *,
    reason: str | None = None,
    proposed_time: datetime | None = None,
) -> MeetingView:
    """An invited organisation answers; the answer travels to the inviter's system. The latest answer
    stands; repeating the one that stands sends nothing."""

    def decide(m: Meeting) -> None:
        m.answer(actor.organisation_id, given, actor.now, reason=reason, proposed_time=proposed_time)

    return await _change(runtime, actor, meeting, f"answer-{given}", decide)


async def cancel(runtime: Runtime, actor: Actor, meeting: str, *, reason: str | None = None) -> MeetingView:
    """The inviter cancels; each invited organisation's system is told."""

    def decide(m: Meeting) -> None:
        m.cancel(actor.organisation_id, actor.now, reason)

    return await _change(runtime, actor, meeting, "cancel", decide)
