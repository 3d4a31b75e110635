"""The mailbox as use cases: an organisation fetches what was left for it and acknowledges each message.

A fetch hands out referrals' content (a referral, or a status event with its texts), so it is audited as
a read of each referral it concerns, with its legal basis, in the fetch's own transaction: nothing is
handed out that the audit trail does not show."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import referrals as db
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import NotFound
from hub.domain.referrals import Side
from hub.runtime import Runtime
from hub.services import referrals as ref
from hub.services.auditing import audit
from hub.services.context import Actor
from hub.services.protected_identity import protect_mailbox_copy
from hub.services.referrals.read import audit_read
from hub.services.sip.read import audit_fetch as audit_sip_fetch


@dataclass(frozen=True)
class MailboxMessage:
    id: str
    kind: str
    body: dict[str, Any]
    fetch_count: int
    created_at: datetime


async def fetch(*, actor: Actor, runtime: Runtime, limit: int) -> list[MailboxMessage]:
    """The messages handed out and their audit entries, one commit."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        messages = await _fetch(uow.session, actor=actor, runtime=runtime, limit=limit)
        await uow.commit()
        return messages


async def _fetch(session: AsyncSession, *, actor: Actor, runtime: Runtime, limit: int) -> list[MailboxMessage]:
    rows = await db.mailbox_fetch(
        session,
        organisation_id=actor.organisation_id,
        now=actor.now,
        visibility_seconds=runtime.settings.mailbox_visibility_seconds,
        limit=limit,
    )
    messages = [
        MailboxMessage(
            id=str(r.id),
            kind=r.kind,
            body=runtime.cipher.decrypt(r.body, r.body_key_id, bound_to=f"mailbox:{r.outbox_id}"),
            fetch_count=r.fetch_count,
            created_at=r.created_at,
        )
        for r in rows
    ]
    for message in messages:
        await _audit_read(session, actor, message, runtime)
    return messages


def _referral_id(message: MailboxMessage) -> uuid.UUID:
    body = message.body
    return uuid.UUID(str(body["referral"]["id"] if message.kind == "referral" else body["event"]["referral_id"]))


# The plan's message kinds and the key of their body (``hub.services.plans.messages``).
PLAN_BODIES = {"plan-version": "plan_version", "plan-notice": "plan_notice", "plan-review": "plan_review"}


async def _audit_read(session: AsyncSession, actor: Actor, message: MailboxMessage, runtime: Runtime) -> None:
    """The fetch as a read of the referral, as ``read_referral`` records one, naming the message; a team
    offer's news as a read of the team by a party to the offer; a SIP meeting's as a read of the meeting."""
    if message.kind in PLAN_BODIES:
        plan = message.body[PLAN_BODIES[message.kind]]
        await audit(
            session,
            actor,
            AuditAction.PLAN_READ,
            legal_basis=plan.get("legal_basis") if message.kind == "plan-version" else "team-membership",
            decision_id=plan.get("decision_id"),
            entity_type="CarePlan",
            entity_id=str(plan.get("plan_id", plan["id"])),
            details={"via": "mailbox", "message_id": message.id, "kind": message.kind},
        )
        return
    if message.kind == "team-offer":
        offer = message.body["team_offer"]
        await audit(
            session,
            actor,
            AuditAction.TEAM_READ,
            legal_basis="team-offer-party",
            entity_type="CareTeam",
            entity_id=str(offer["team_id"]),
            details={"offer": offer["id"], "via": "mailbox", "message_id": message.id},
        )
        return
    if message.kind in ("sip-invitation", "sip-answer"):
        await audit_sip_fetch(session, actor, message.id, message.body)
        return
    row = await db.referral(session, _referral_id(message))
    if row is None:  # cannot happen while the referral's outbox entry holds the message (foreign key)
        return
    side: Side = "sender" if row.sender_organisation == actor.organisation_id else "receiver"
    categories = None
    if side == "receiver" and message.kind == "referral":
        categories = await protect_mailbox_copy(session, row, message.body["referral"], runtime=runtime, actor=actor)
    details = {"via": "mailbox", "message_id": message.id, "message_kind": message.kind}
    await audit_read(session, actor, row, side, categories, **details)


async def acknowledge(*, actor: Actor, runtime: Runtime, message_id: str) -> None:
    """Idempotent. Acknowledging a referral is the receiver's system saying it has it: the domain decides
    whether that makes it *received* (``Referral.receipt``, as for every adapter). One commit."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        await _acknowledge(uow.session, actor=actor, runtime=runtime, message_id=message_id)
        await uow.commit()


async def _acknowledge(session: AsyncSession, *, actor: Actor, runtime: Runtime, message_id: str) -> None:
    try:
        mid = uuid.UUID(message_id)
    except ValueError:
        raise NotFound("No such message in your mailbox.") from None
    acked = await db.mailbox_ack(session, organisation_id=actor.organisation_id, message_id=mid, now=actor.now)
    if acked is None:
        raise NotFound("No such message in your mailbox.")
    outbox_id, first = acked
    if first:
        entry = await db.outbox_entries_by_id(session, outbox_id)
        if entry is not None and entry.kind == "referral" and entry.referral_id is not None:
            row = await db.referral(session, entry.referral_id, lock=True)
            received = None if row is None else ref.aggregate(row, runtime.vocabulary).receipt()
            if row is not None and received is not None:
                await ref.hub_transition(session, row, received, now=actor.now, cipher=runtime.cipher)
