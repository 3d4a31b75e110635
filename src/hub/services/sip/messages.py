"""A SIP meeting's news as the message an organisation's system gets.

``sip-invitation`` (to an invited organisation): the meeting, the child's identity (the invitee's system
must know whom the meeting is about; the decision that sent the invitation allowed ``identity`` and
``child-plan``), the invited organisations and where to answer; ``state`` ``cancelled`` (without the
child's identity: the meeting's id says which) when the inviter cancelled it. ``sip-answer`` (to the
inviter): which organisation answered what. Never a withheld invitee, never any organisation's case
content.

An invitation is decided again when the hub comes to send it, as a referral is
(``hub.services.delivery.messages.recheck``: a decision recorded only when the outcome changed): a
consent withdrawn since the invitation was made withholds it after all, and nothing is sent."""

from __future__ import annotations

from typing import Any

from hub.adapters.base import Message
from hub.db import referrals as outbox
from hub.db import sip as db
from hub.db.uow import UnitOfWork
from hub.domain.principal import Principal, Role
from hub.domain.sharing import Decision
from hub.domain.sip import CATEGORIES, PURPOSE, Invitation, permits_invitation
from hub.runtime import Runtime
from hub.services.context import Actor
from hub.services.sharing import ShareQuestion, decide_share
from hub.services.sip.read import details

NO_LEGAL_BASIS = "no legal basis at send time"


async def sip_message(runtime: Runtime, claimed: outbox.Claimed) -> tuple[Message, outbox.Checked] | None:
    """The message to send and the re-check to remember on its entry; None when the invitation may not
    go any more (withheld, the entry abandoned here)."""
    entry = claimed.entry
    assert entry.sip_event_id is not None
    async with UnitOfWork.of(runtime.sessions) as uow:
        facts = await db.event_facts(uow.session, entry.sip_event_id)
    assert facts is not None  # the entry's foreign key holds the event
    event, meeting = facts.event, facts.stored.meeting
    invitation = next(i for i in meeting.invitations if i.id == event.invitation_id)
    checked = outbox.Checked()
    if event.type == "invited":
        rechecked = await _recheck(runtime, claimed, facts, invitation)
        if rechecked is None:
            return None
        checked = rechecked
    if event.type == "answered":
        body: dict[str, Any] = {
            "sip_answer": {
                "meeting_id": str(meeting.id),
                "invitation_id": str(invitation.id),
                "from": facts.organisations.get(invitation.organisation),
                "answer": event.answer,
                "reason": event.reason,
                "proposed_time": event.proposed_time.isoformat() if event.proposed_time else None,
                "answered_at": event.at.isoformat(),
            }
        }
    else:
        body = {"sip_invitation": _invitation(runtime, facts, facts.organisations)}
    message = Message(
        kind=entry.kind,  # type: ignore[arg-type]  # sip-invitation | sip-answer, by db.event_entry
        message_id=str(entry.id),
        idempotency_key=entry.idempotency_key,
        referral_id=None,
        sender_organisation=invitation.organisation if event.type == "answered" else meeting.inviter,
        recipient_organisation=entry.recipient_organisation,
        body=body,
        created_at=entry.created_at,
    )
    return message, checked


def _outcome(decision: Decision) -> str:
    return f"{'allowed' if permits_invitation(decision) else 'refused'}:{decision.legal_basis}"


async def _recheck(
    runtime: Runtime, claimed: outbox.Claimed, facts: db.EventFacts, invitation: Invitation
) -> outbox.Checked | None:
    """The invitation's basis now; None when it is gone: the invitation is withheld with the decision
    that found so, and the entry abandoned."""
    meeting = facts.stored.meeting
    hub = Actor(
        Principal(subject="hub:delivery", organisation_id=meeting.inviter, roles=frozenset({Role.SYSTEM})),
        now=runtime.clock(),  # the law and policy in force when the hub delivers
    )
    if invitation.outcome == "invited":
        child = details(runtime, facts.stored)["child"]
        question = ShareQuestion(invitation.organisation, child["personal_identity_number"], PURPOSE, list(CATEGORIES))
        recorded = await decide_share(
            actor=hub,
            question=question,
            runtime=runtime,
            dry_run=False,
            record_if=lambda d: _outcome(d) != claimed.checked_outcome,
        )
        if permits_invitation(recorded.decision):
            return outbox.Checked(_outcome(recorded.decision), recorded.id) if recorded.recorded else outbox.Checked()
    async with UnitOfWork.of(runtime.sessions) as uow:
        stored = await db.load(uow.session, meeting.id, lock=True)
        assert stored is not None
        if invitation.outcome == "invited":
            stored.meeting.withhold(invitation.organisation, recorded.id)
            await db.save(uow.session, stored.meeting)
        await outbox.finish(uow.session, claimed, state="abandoned", last_error=NO_LEGAL_BASIS, updated_at=hub.now)
        await uow.commit()
    return None


def _invitation(runtime: Runtime, facts: db.EventFacts, orgs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    event, stored = facts.event, facts.stored
    meeting, setting = stored.meeting, stored.setting
    opened = details(runtime, stored)
    base = f"{runtime.settings.public_url}/v1/sip-meetings/{meeting.id}"
    body: dict[str, Any] = {
        "meeting_id": str(meeting.id),
        "invitation_id": str(event.invitation_id),
        "state": "cancelled" if event.type == "cancelled" else "open",
        "inviter": orgs.get(meeting.inviter),
        "times": [t.isoformat() for t in meeting.times],
        "duration_minutes": setting.duration_minutes,
        "format": setting.format,
        "language": setting.language,
        "purpose": opened.get("purpose"),
        "place": opened.get("place"),
        "invited": [orgs.get(i.organisation) for i in meeting.invited()],
        "sent_at": event.at.isoformat(),
    }
    if event.type == "cancelled":
        body["cancel_reason"] = event.reason
    else:
        body["child"] = opened["child"]
        body["answer"] = f"{base}/answers"
    return body
