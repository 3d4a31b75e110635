"""The message an outbox entry sends, built at the moment of sending: for a referral, only what the legal
basis permits now (the send-time re-check), stripped to it (the golden rule); for an event, the event.

The re-check runs on every attempt, but it records a decision (with its audit entry) only when its
outcome differs from the one last recorded for the entry (``outbox.checked_outcome``): the first attempt,
and any attempt after which the basis changed. A refusal always ends the delivery, and is recorded. So a
receiver down for K attempts adds one decision, not K."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.adapters.base import Message
from hub.db import referrals as db
from hub.db.sip import SIP_ANSWER, SIP_INVITATION
from hub.db.teams import TEAM_OFFER
from hub.db.uow import UnitOfWork
from hub.domain.concern import CONCERN_ANSWER
from hub.domain.policy import swedish_day
from hub.domain.principal import Principal, Role
from hub.domain.referrals import strip_to
from hub.domain.sharing import Decision
from hub.runtime import Runtime
from hub.services import plans, sip, teams
from hub.services import referrals as ref
from hub.services.context import Actor, utcnow
from hub.services.protected_identity import marker_for
from hub.services.sharing import ShareQuestion, decide_share

NO_LEGAL_BASIS = "no-legal-basis"


@dataclass(frozen=True)
class Built:
    """A message to send, and the re-check to remember on its entry once the outcome is recorded."""

    message: Message
    checked: db.Checked = field(default_factory=db.Checked)


def outcome_key(decision: Decision, permitted: list[str]) -> str:
    """What makes two re-checks the same outcome: allowed or not, on which basis, which categories."""
    return f"{'allowed' if decision.allowed else 'refused'}:{decision.legal_basis}:{','.join(permitted)}"[:300]


async def build(runtime: Runtime, claimed: db.Claimed, batch: db.BatchFacts) -> Built | None:
    """The message to send, built now; None when nothing may be sent any more (the entry is closed here)."""
    entry = claimed.entry
    if entry.kind == TEAM_OFFER:
        return Built(await teams.offer_message(runtime, entry))
    if entry.plan_share_id is not None:
        return Built(await plans.share_message(runtime, entry))
    if entry.plan_review_id is not None:
        return Built(await plans.review_message(runtime, entry))
    if entry.kind in (SIP_INVITATION, SIP_ANSWER):
        built = await sip.sip_message(runtime, claimed)
        return None if built is None else Built(*built)
    assert entry.referral_id is not None
    row = batch.referrals.get(entry.referral_id)
    assert row is not None
    if entry.kind == "status-event":
        assert entry.event_id is not None
        event = batch.events.get(entry.event_id)
        assert event is not None
        return Built(
            Message(
                kind="status-event",
                message_id=str(entry.id),
                idempotency_key=entry.idempotency_key,
                referral_id=str(row.id),
                sender_organisation=event.by_organisation or "hub",
                recipient_organisation=entry.recipient_organisation,
                body={"event": event_body(event, ref.event_texts(event, runtime.cipher))},
                created_at=entry.created_at,
            )
        )
    if not ref.aggregate(row, runtime.vocabulary).deliverable:
        async with UnitOfWork.of(runtime.sessions) as uow:
            await db.finish(
                uow.session, claimed, state="abandoned", last_error=f"referral is {row.status}", updated_at=utcnow()
            )
            await uow.commit()
        return None
    document = ref.document_for(row, "sender", runtime.cipher)
    assert document is not None
    checked = await recheck(runtime, claimed, row, document)
    if checked is None:
        return None
    permitted, remember, protected = checked
    body = strip_to(document, permitted)
    if protected:  # the marker, whatever was asked for: the recipient must not try to find the child
        recipient = batch.organisations[row.recipient_organisation]
        body["protected_identity"] = marker_for(
            runtime.policy.in_force(swedish_day(runtime.clock())),
            recipient_id=row.recipient_organisation,
            recipient_type=recipient["type"],
            sender=batch.organisations[row.sender_organisation],
            reply_to=_reply_to(runtime, row),
        )
    return Built(_referral_message(runtime, entry, row, batch, body, permitted), remember)


def _reply_to(runtime: Runtime, row: db.ReferralRow) -> str:
    return f"{runtime.settings.public_url}/v1/referrals/{row.id}/events"


def _referral_message(
    runtime: Runtime,
    entry: db.OutboxRow,
    row: db.ReferralRow,
    batch: db.BatchFacts,
    body: dict[str, Any],
    permitted: list[str],
) -> Message:
    service = batch.services.get(row.service_id) if row.service_id else None
    return Message(
        kind="referral",
        message_id=str(entry.id),
        idempotency_key=entry.idempotency_key,
        referral_id=str(row.id),
        sender_organisation=row.sender_organisation,
        recipient_organisation=row.recipient_organisation,
        body={
            "referral": {
                "id": str(row.id),
                "kind": row.kind,
                "status": row.status,
                "created_at": row.created_at.isoformat(),
                "sender": batch.organisations[row.sender_organisation],
                "recipient": batch.organisations[row.recipient_organisation],
                "service": service,
                **body,
                "legal_basis": {
                    "basis": row.legal_basis,
                    "reference": row.basis_reference,
                    "decision_id": str(row.decision_id),
                },
                "permitted_categories": permitted,
                "reply_to": _reply_to(runtime, row),
            }
        },
        created_at=entry.created_at,
    )


async def recheck(
    runtime: Runtime, claimed: db.Claimed, row: db.ReferralRow, document: dict[str, Any]
) -> tuple[list[str], db.Checked, bool] | None:
    """The legal basis at send time: the categories that may go, what to remember of the check and whether
    the child's identity is protected now (a mark set after the referral was sent applies too); None when
    nothing may (withdrawn or expired: the referral fails and the sender is told).

    A decision is recorded with its audit entry by a statement that commits by itself (``decide_share``'s
    one commit), so the sender's audit chain is locked only while that statement runs, and only when the
    outcome changed (module docstring)."""
    hub_actor = Actor(
        Principal(subject="hub:delivery", organisation_id=row.sender_organisation, roles=frozenset({Role.SYSTEM})),
        now=runtime.clock(),  # the law and policy in force when the hub delivers
    )

    def changed(decision: Decision) -> bool:
        permitted = sorted(set(row.permitted_categories) & set(decision.permitted_categories))
        return not (decision.allowed and permitted) or outcome_key(decision, permitted) != claimed.checked_outcome

    recorded = await decide_share(
        actor=hub_actor,
        question=ShareQuestion(
            to_organisation=row.recipient_organisation,
            personal_identity_number=document["child"]["personal_identity_number"],
            purpose=row.kind,
            data_categories=row.permitted_categories,
            legal_basis=row.legal_basis,
            basis_reference=row.basis_reference,
        ),
        runtime=runtime,
        dry_run=False,
        record_if=changed,
    )
    decision = recorded.decision
    permitted = sorted(set(row.permitted_categories) & set(decision.permitted_categories))
    if decision.allowed and permitted:
        remember = db.Checked(outcome_key(decision, permitted), recorded.id) if recorded.recorded else db.Checked()
        return permitted, remember, recorded.child_protected
    async with UnitOfWork.of(runtime.sessions) as uow:
        locked = await db.referral(uow.session, row.id, lock=True)
        assert locked is not None
        reasons = "; ".join(r.en for r in decision.reasons)
        failed = ref.aggregate(locked, runtime.vocabulary).delivery_failed(
            NO_LEGAL_BASIS, f"Not delivered: no legal basis at send time. {reasons}", final=True
        )
        if failed is not None:
            await ref.hub_transition(uow.session, locked, failed, now=hub_actor.now, cipher=runtime.cipher)
        await uow.commit()
    return None


def event_body(event: db.EventRow, texts: dict[str, str] | Any) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "referral_id": str(event.referral_id),
        "seq": event.seq,  # order of events per referral: deliveries may arrive out of order
        "type": event.type,
        "status": event.to_status,
        "previous_status": event.from_status,
        "by_organisation": event.by_organisation,
        "occurred_at": event.occurred_at.isoformat(),
        "reason_code": event.reason_code,
        "reason_text": texts.get("reason_text"),
        "suggested_organisation": event.suggested_organisation,
        "suggested_service": event.suggested_service,
        "feedback": texts.get("feedback"),
        # A report of concern's answer (type concern-answer) is its code alone: no text travels back.
        **({"answer": event.reason_code} if event.type == CONCERN_ANSWER else {}),
    }
