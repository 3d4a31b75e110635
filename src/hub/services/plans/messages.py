"""A plan's outbox entries as the messages the organisations' systems get, built at sending time:

- ``plan-version``: the version with only the sections the member's share holds, the sections withheld
  (with their data category and reason), the legal basis and the decision;
- ``plan-notice``: no content: that a plan exists, its version, and whom to ask (the author's
  organisation), with what the decision says would make a share lawful (its remedies);
- ``plan-review``: a member's answers to the five evaluation questions, for the version's author.

The child is identified in the first two (the receiver must know which child the plan is about; identity
is not a plan section). A version's content purged after retention travels as ``plan: null``."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.adapters.base import Message
from hub.db import plans as db
from hub.db import protected_identity as protected_db
from hub.db import referrals as outbox
from hub.db import teams as teams_db
from hub.db.uow import UnitOfWork
from hub.domain.plans import strip
from hub.domain.policy import swedish_day
from hub.runtime import Runtime
from hub.services.plans.recheck import recheck
from hub.services.protected_identity import marker_for


async def _organisation(session: AsyncSession, organisation_id: str) -> dict[str, Any]:
    names = await teams_db.organisations(session, [organisation_id])
    name, kind, hsa_id = names.get(organisation_id, (None, None, None))
    return {"organisation_id": organisation_id, "name": name, "type": kind, "hsa_id": hsa_id}


async def _remedies(session: AsyncSession, decision_id: uuid.UUID) -> list[Any]:
    explanation = await session.scalar(
        text("select explanation from sharing_decision where id = :id"), {"id": decision_id}
    )
    return list((explanation or {}).get("remedies", []))


async def _child(
    runtime: Runtime, facts: db.VersionFacts, recipient: str, child: dict[str, str], base: str
) -> dict[str, Any]:
    """The child's identity for the receiver, or for a child with protected identity the marker (what the
    protection withholds from this receiver, and how to reach the author through the hub) in place of
    what it withholds: as for a referral (``hub.services.protected_identity``)."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        mark = await protected_db.read_facts(
            uow.session, candidates=[facts.child_pseudonym], sender=facts.version.author, recipient=recipient
        )
    if not mark.protected or mark.recipient_type is None:
        return {"child": child}
    policy = runtime.policy.in_force(swedish_day(runtime.clock()))
    marker = marker_for(
        policy, recipient_id=recipient, recipient_type=mark.recipient_type, sender=mark.sender, reply_to=base
    )
    withheld = policy.protected_identity.withheld_from(recipient, mark.recipient_type)
    return {"protected_identity": marker} | ({} if "identity" in withheld else {"child": child})


def _message(
    runtime: Runtime, entry: outbox.OutboxRow, sender: str, body: dict[str, Any], kind: str | None = None
) -> Message:
    return Message(
        kind=kind or entry.kind,  # type: ignore[arg-type]  # one of the plan kinds: the entry was queued as one
        message_id=str(entry.id),
        idempotency_key=entry.idempotency_key,
        referral_id=None,
        sender_organisation=sender,
        recipient_organisation=entry.recipient_organisation,
        body=body,
        created_at=entry.created_at,
    )


async def share_message(runtime: Runtime, entry: outbox.OutboxRow) -> Message:
    assert entry.plan_share_id is not None
    async with UnitOfWork.of(runtime.sessions) as uow:
        session = uow.session
        share = await db.share(session, entry.plan_share_id)
        assert share is not None  # the entry's foreign key holds the share
        facts = await db.version_facts(session, share.version_id)
        assert facts is not None
        version = facts.version
        sealed = await db.content(session, version.id)
        author = await _organisation(session, version.author)
        remedies = await _remedies(session, share.decision_id) if share.kind == db.PLAN_NOTICE else []
    base = f"{runtime.settings.public_url}/v1/children/plan"
    body: dict[str, Any] = {
        "id": str(version.id),
        "team_id": str(facts.team_id),
        "version": version.number,
        "etag": version.etag,
        "schema_version": version.schema_version,
        "author": author,
        "created_at": version.created_at.isoformat(),
        "decision_id": str(share.decision_id),
    }
    content = None if sealed is None else runtime.cipher.decrypt(*sealed, bound_to=str(version.id))
    if content is not None:
        body |= await _child(runtime, facts, share.organisation, content["child"], base)
    if share.kind == db.PLAN_NOTICE:
        body |= {"ask": author, "remedies": remedies, "withheld": [w.as_json() for w in share.withheld]}
        return _message(runtime, entry, version.author, {"plan_notice": body})
    sections, withheld, remedies = share.sections, share.withheld, []
    if content is not None:
        now = await recheck(runtime, share, version.author, content["child"])
        sections, withheld, remedies = now.sections, now.withheld, now.remedies
    if not sections:  # the basis went before the version did: a notice, as the decision now says
        body |= {"ask": author, "remedies": remedies, "withheld": [w.as_json() for w in withheld]}
        return _message(runtime, entry, version.author, {"plan_notice": body}, kind=db.PLAN_NOTICE)
    document = None if content is None else content["plan"]
    body |= {
        "legal_basis": share.legal_basis,
        "sections": list(sections),
        "withheld": [w.as_json() for w in withheld],
        "plan": None if document is None else strip(document, sections),
        "read": f"{base}/versions/{version.number}",
        "review": f"{base}/versions/{version.number}/reviews",
    }
    return _message(runtime, entry, version.author, {"plan_version": body})


async def review_message(runtime: Runtime, entry: outbox.OutboxRow) -> Message:
    assert entry.plan_review_id is not None
    async with UnitOfWork.of(runtime.sessions) as uow:
        review = await db.review(uow.session, entry.plan_review_id)
        assert review is not None
        facts = await db.version_facts(uow.session, review.version_id)
        assert facts is not None
        reviewer = await _organisation(uow.session, review.organisation)
    answers = None if review.answers is None else runtime.cipher.decrypt(*review.answers, bound_to=str(review.id))
    body = {
        "id": str(review.id),
        "plan_id": str(facts.version.id),
        "team_id": str(facts.team_id),
        "version": facts.version.number,
        "reviewer": reviewer,
        "answers": answers,
        "created_at": review.created_at.isoformat(),
    }
    return _message(runtime, entry, review.organisation, {"plan_review": body})
