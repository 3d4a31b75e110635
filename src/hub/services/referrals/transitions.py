"""Moving a referral through its lifecycle: the parties' events and the hub's own changes. The domain
(``hub.domain.referrals.Referral``) decides; this persists what it decided."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import referrals as db
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import FieldError, InvalidInput
from hub.domain.identity import parse_personal_identity_number
from hub.domain.referrals import Change, Decided, EventToRecord, Referral
from hub.domain.vocabulary import Vocabulary
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.context import Actor, utcnow
from hub.services.referrals.derived import lifecycle
from hub.services.referrals.read import document_for, event_texts, visible_referral
from hub.services.referrals.views import EventView, event_view
from hub.services.teams.referrals import follow_referral


@dataclass(frozen=True)
class EventDraft:
    type: str  # "status" | "cancellation-requested"
    status: str | None = None
    reason_code: str | None = None
    reason_text: str | None = None
    suggested_organisation: str | None = None
    suggested_service: str | None = None
    feedback: str | None = None


def aggregate(row: db.ReferralRow, vocabulary: Vocabulary) -> Referral:
    """The stored referral as the domain's write model."""
    return Referral(
        sender=row.sender_organisation,
        recipient=row.recipient_organisation,
        status=row.status,
        delivered=row.delivered_at is not None,
        cancellation_requested=row.cancellation_requested_at is not None,
        lifecycle=lifecycle(vocabulary),
    )


async def record_event(
    *,
    actor: Actor,
    referral_id: str,
    draft: EventDraft,
    idempotency_key: str | None,
    runtime: Runtime,
) -> EventView:
    """A party moves the referral (or asks for its cancellation): the domain decides, the stores persist,
    the audit records it, one commit."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        event = await _record_event(
            uow.session,
            actor=actor,
            referral_id=referral_id,
            draft=draft,
            idempotency_key=idempotency_key,
            runtime=runtime,
        )
        await uow.commit()
        return event_view(event, event_texts(event, runtime.cipher))


async def _record_event(
    session: AsyncSession,
    *,
    actor: Actor,
    referral_id: str,
    draft: EventDraft,
    idempotency_key: str | None,
    runtime: Runtime,
) -> db.EventRow:
    row, side = await visible_referral(session, referral_id, actor.organisation_id, lock=True)
    if idempotency_key:
        seen = await db.event_by_key(session, row.id, actor.organisation_id, idempotency_key)
        if seen is not None:
            return seen
    _check_codes(draft, runtime.vocabulary)
    referral = aggregate(row, runtime.vocabulary)
    if draft.type == "cancellation-requested":
        if side != "sender":
            raise InvalidInput(
                "Only the sender requests a cancellation.", errors=[FieldError("/type", "sender only", "wrong-party")]
            )
        decided = referral.request_cancellation(draft.reason_code, draft.reason_text)
    else:
        if draft.status is None:
            raise InvalidInput("A status event names the new status.", errors=[FieldError("/status", "required")])
        decided = referral.change(
            Change(draft.status, side, draft.reason_code, draft.reason_text, draft.feedback),
            suggested=(draft.suggested_organisation, draft.suggested_service),
        )
    event = await persist(session, row, decided, actor=actor, idempotency_key=idempotency_key, cipher=runtime.cipher)
    if decided.team is not None:  # accepted: the receiver joins the child's team; ended: it leaves
        await follow_referral(
            session,
            decided.team,
            child_pseudonyms=_pseudonyms(row, runtime),
            referral_id=row.id,
            now=actor.now,
            vocabulary=runtime.vocabulary,
        )
    await audit(
        session,
        actor,
        AuditAction.REFERRAL_STATUS_CHANGED,
        child_pseudonym=row.child_pseudonym,
        legal_basis=row.legal_basis,
        decision_id=str(row.decision_id),
        counterpart_organisation=referral.counterpart(side),
        entity_type="Referral",
        entity_id=str(row.id),
        purpose=row.kind,
        details={"type": draft.type, "from": row.status, "to": event.to_status, "reason_code": draft.reason_code},
    )
    return event


def _pseudonyms(row: db.ReferralRow, runtime: Runtime) -> list[str]:
    """The child's pseudonyms under every key (the team may be stored under a newer key than the referral),
    from the number the referral's document holds; only its stored one once the document is purged."""
    document = document_for(row, "sender", runtime.cipher)
    if document is None:
        return [row.child_pseudonym]
    pin = parse_personal_identity_number(document["child"]["personal_identity_number"], today=utcnow().date())
    return [*runtime.pseudonymizer.candidates(pin), row.child_pseudonym]  # the current key's first


def _check_codes(draft: EventDraft, vocabulary: Vocabulary) -> None:
    if draft.reason_code is not None and draft.status == "rejected":
        if draft.reason_code not in vocabulary.codes("rejection-reasons"):
            raise InvalidInput(
                "Unknown rejection reason.",
                errors=[FieldError("/reason_code", "not a rejection-reasons code", "unknown-code")],
            )


def event_row(
    spec: EventToRecord,
    *,
    event_id: uuid.UUID,
    referral_id: uuid.UUID,
    seq: int,
    actor: Actor | None,
    at: datetime,
    sealed: tuple[bytes | None, str | None] = (None, None),
    idempotency_key: str | None = None,
) -> db.EventRow:
    """The stored form of an event the domain decided (``sealed``: its encrypted texts and their key)."""
    return db.EventRow(
        id=event_id,
        referral_id=referral_id,
        seq=seq,
        type=spec.type,
        from_status=spec.from_status,
        to_status=spec.to_status,
        by_organisation=None if spec.side == "hub" or actor is None else actor.organisation_id,
        by_subject=None if actor is None else actor.principal.subject,
        reason_code=spec.reason_code,
        suggested_organisation=spec.suggested_organisation,
        suggested_service=spec.suggested_service,
        details=sealed[0],
        details_key_id=sealed[1],
        idempotency_key=idempotency_key,
        occurred_at=at,
    )


async def persist(
    session: AsyncSession,
    row: db.ReferralRow,
    decided: Decided,
    *,
    actor: Actor | None,
    idempotency_key: str | None = None,
    cipher: Any = None,
    now: datetime | None = None,
) -> db.EventRow:
    """Store what the domain decided (``Decided``): the referral's new state, its event, the delivery it
    stops (``abandon_delivery``) and, when the event names a party to tell, its outbox entry (closed loop).
    The caller holds the row lock and commits."""
    at = now or (actor.now if actor else None)
    assert at is not None
    if decided.cancellation_requested:
        await db.update_referral(session, row.id, cancellation_requested_at=at, updated_at=at)
    elif decided.status != row.status:
        await db.update_referral(session, row.id, status=decided.status, updated_at=at)
    if decided.abandon_delivery is not None:
        await db.abandon_pending(session, row.id, at, decided.abandon_delivery)
    spec = decided.event
    event_id = uuid.uuid4()
    texts = {k: v for k, v in (("reason_text", spec.reason_text), ("feedback", spec.feedback)) if v}
    details, details_key = (None, None)
    if texts and cipher is not None:
        details, details_key = cipher.encrypt(texts, bound_to=str(event_id))
    event = event_row(
        spec,
        event_id=event_id,
        referral_id=row.id,
        seq=await db.next_event_seq(session, row.id),
        actor=actor,
        at=at,
        sealed=(details, details_key),
        idempotency_key=idempotency_key,
    )
    await db.insert_event(session, event)
    if spec.notify is not None:
        await db.enqueue(session, db.status_event_entry(row.id, event_id, spec.notify, at))
    return event


async def hub_transition(
    session: AsyncSession,
    row: db.ReferralRow,
    decided: Decided,
    *,
    now: datetime,
    cipher: Any = None,
) -> db.EventRow:
    """Store a change the hub itself made (``Referral.hub_change``, ``receipt``, ``delivery_failed``): the
    domain has checked it against the lifecycle and names the sender to tell. The caller holds the
    referral row lock and commits."""
    return await persist(session, row, decided, actor=None, cipher=cipher, now=now)
