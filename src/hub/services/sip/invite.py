"""Inviting several organisations to a SIP meeting in one request: each invitee decided by the sharing
engine on its own (as a referral of kind ``sip-kallelse`` disclosing ``identity`` and ``child-plan``),
each decision recorded and audited on its own, an invitation queued only to the invitees it allows; the
meeting, its invitations, their deliveries and audit entries committed once."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import referrals as outbox
from hub.db import sip as db
from hub.db.lawful import sharing_facts
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import Conflict, FieldError, InvalidInput
from hub.domain.identity import parse_personal_identity_number
from hub.domain.sharing import Decision
from hub.domain.sip import CATEGORIES, PURPOSE, Meeting, check_invitees, check_times, permits_invitation
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.children import Child, identify_child
from hub.services.context import Actor
from hub.services.sharing import ShareQuestion, decide_and_record
from hub.services.sip.read import view_of
from hub.services.sip.views import MeetingView

PIN_POINTER = "/child/personal_identity_number"


@dataclass(frozen=True)
class MeetingDraft:
    personal_identity_number: str
    invitees: list[str]
    times: list[datetime]
    duration_minutes: int
    format: str
    language: str
    purpose: str | None = None
    place: str | None = None


@dataclass(frozen=True)
class Invited:
    meeting: MeetingView
    replayed: bool  # the same Idempotency-Key and body were seen before: this is that meeting


def _hash(draft: MeetingDraft, child: Child) -> str:
    # The number itself is left out (matched through its pseudonym), so the hash cannot be tested against
    # guessed numbers.
    body = {**asdict(draft), "personal_identity_number": None, "child": child.pseudonym}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


async def invite(*, actor: Actor, draft: MeetingDraft, idempotency_key: str, runtime: Runtime) -> Invited:
    """One request, one decision per invitee, one commit. A retry with the same key and body answers the
    meeting already made; the same key with another body is a 409."""
    child = identify_child(
        draft.personal_identity_number, pseudonymizer=runtime.pseudonymizer, today=actor.today, pointer=PIN_POINTER
    )
    check_invitees(actor.organisation_id, draft.invitees)
    check_times(draft.times, actor.now)
    request_hash = _hash(draft, child)
    async with UnitOfWork.of(runtime.sessions) as uow:
        replay = await _replay(uow.session, actor, idempotency_key, request_hash, runtime)
        if replay is not None:
            return replay
        await _known(uow.session, draft.invitees)
        decided = [await _decide(uow.session, actor, child, org, runtime) for org in draft.invitees]
        meeting = Meeting.invite(
            inviter=actor.organisation_id,
            times=draft.times,
            decided=[(org, permits_invitation(d), did) for org, (did, d) in zip(draft.invitees, decided, strict=True)],
            now=actor.now,
        )
        setting = _setting(actor, draft, child, meeting.id, runtime)
        inserted = await db.insert(
            uow.session, meeting, setting, idempotency_key=idempotency_key, request_hash=request_hash
        )
        if inserted:
            await _store(uow.session, actor, meeting, child, dict(zip(draft.invitees, decided, strict=True)))
            view = await view_of(uow.session, runtime, db.StoredMeeting(meeting, setting), actor.organisation_id)
            await uow.commit()
            return Invited(view, replayed=False)
    # A concurrent request with the same key won the race (nothing of ours was committed): its replay.
    async with UnitOfWork.of(runtime.sessions) as uow:
        replay = await _replay(uow.session, actor, idempotency_key, request_hash, runtime)
    if replay is None:
        raise RuntimeError("the Idempotency-Key was taken, yet no meeting holds it")
    return replay


async def _replay(session: AsyncSession, actor: Actor, key: str, request_hash: str, runtime: Runtime) -> Invited | None:
    found = await db.by_key(session, actor.organisation_id, key)
    if found is None:
        return None
    meeting_id, seen_hash = found
    if seen_hash != request_hash:
        raise Conflict("This Idempotency-Key was already used for another meeting. Use a new key for a new meeting.")
    stored = await db.load(session, meeting_id)
    assert stored is not None
    return Invited(await view_of(session, runtime, stored, actor.organisation_id), replayed=True)


async def _known(session: AsyncSession, invitees: list[str]) -> None:
    found = await db.active_organisations(session, invitees)
    errors = [
        FieldError(f"/invitees/{i}", "not an active organisation in the registry", "unknown-organisation")
        for i, org in enumerate(invitees)
        if org not in found
    ]
    if errors:
        raise InvalidInput("Unknown organisations among the invitees.", errors=errors)


async def _decide(
    session: AsyncSession, actor: Actor, child: Child, organisation: str, runtime: Runtime
) -> tuple[uuid.UUID, Decision]:
    """The invitation to ``organisation`` decided as any share is (``decide_on_facts``), recorded with its
    audit entry in the use case's transaction."""
    # The number is not read: ``child`` is the child it names (decide_on_facts).
    question = ShareQuestion(
        to_organisation=organisation, personal_identity_number="", purpose=PURPOSE, data_categories=list(CATEGORIES)
    )
    facts = await sharing_facts(
        session, sender=actor.organisation_id, recipient=organisation, candidates=child.candidates
    )
    return await decide_and_record(session, facts, question, actor=actor, child=child, runtime=runtime)


def _setting(actor: Actor, draft: MeetingDraft, child: Child, meeting_id: uuid.UUID, runtime: Runtime) -> db.Setting:
    """The meeting's sealed details: the child's identity (each invitee's system needs to know whom the
    meeting is about), the purpose and the place (free texts)."""
    pin = parse_personal_identity_number(draft.personal_identity_number, today=actor.today)
    details = {
        "child": {"personal_identity_number": pin.canonical, "birth_date": pin.birth_date.isoformat()},
        "purpose": draft.purpose,
        "place": draft.place,
    }
    sealed, key_id = runtime.cipher.encrypt(details, bound_to=f"sip:{meeting_id}")
    return db.Setting(draft.duration_minutes, draft.format, draft.language, sealed, key_id, child.pseudonym)


async def _store(
    session: AsyncSession,
    actor: Actor,
    meeting: Meeting,
    child: Child,
    decided: dict[str, tuple[uuid.UUID, Decision]],
) -> None:
    """The invitations, the deliveries of those allowed, and per invitation sent an audit entry citing
    its decision's basis (the refusals' entries are the decisions' own)."""
    await db.save(session, meeting)
    for event in meeting.events:
        await outbox.enqueue(session, db.event_entry(event))
    for invitation in meeting.invited():
        decision_id, decision = decided[invitation.organisation]
        await audit(
            session,
            actor,
            AuditAction.SIP_INVITATION_SENT,
            child_pseudonym=child.pseudonym,
            legal_basis=decision.legal_basis,
            decision_id=str(decision_id),
            counterpart_organisation=invitation.organisation,
            entity_type="SipMeeting",
            entity_id=str(meeting.id),
            purpose=PURPOSE,
            details={"invitation": str(invitation.id), "permitted": list(decision.permitted_categories)},
        )
