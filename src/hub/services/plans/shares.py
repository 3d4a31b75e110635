"""Each member's share of a plan version, decided with the same engine, facts and audit as a referral's
(``hub.services.sharing.decide_on_facts``) and recorded on its own: the decision row with its audit entry
(legal basis per member), the share (sections kept, sections withheld and why) and its outbox entry."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import plans as db
from hub.db import referrals as outbox
from hub.db.lawful import SharingFacts, sharing_facts
from hub.domain.plans import ChildPlan, PlanVersion, Share, categories_of
from hub.domain.vocabulary import ChildPlanSchemaDoc, Vocabulary
from hub.runtime import Runtime
from hub.services.children import Child
from hub.services.context import Actor
from hub.services.sharing import ShareQuestion, decide_and_record

# The purpose a plan is shared for, as the consents and assessments the engine weighs name purposes: the
# referral kind "request for collaboration" (samverkansförfrågan) is the work a shared plan coordinates.
PLAN_PURPOSE: Final = "samverkansforfragan"


def section_categories(vocabulary: Vocabulary) -> dict[str, str]:
    """Each plan section's data category, by the latest ``child-plan`` that maps it (1.1.0 onwards; section
    codes are stable across versions, so a 1.0.0 plan is mapped by the same table)."""
    mapped: dict[str, str] = {}
    for version in vocabulary.versions("child-plan"):
        doc = vocabulary.get("child-plan", version)
        if isinstance(doc, ChildPlanSchemaDoc):
            mapped |= doc.section_categories()
    return mapped


async def share_with_members(
    session: AsyncSession,
    runtime: Runtime,
    actor: Actor,
    *,
    child: Child,
    version: PlanVersion,
    organisations: list[str],
    categories: dict[str, str],
) -> list[Share]:
    """Decide, record and queue what each of ``organisations`` receives of ``version``, in the caller's
    transaction. The facts about the child (consents, the author's assessments and refused requests) are
    the same for every member and read once; only the member's type differs."""
    if not organisations:
        return []
    facts = await sharing_facts(
        session, sender=actor.organisation_id, recipient=actor.organisation_id, candidates=child.candidates
    )
    types = await db.active_types(session, organisations)
    recorded: list[db.NewShare] = []
    for organisation in organisations:
        if organisation in types:  # a deactivated organisation still on the team is no party to a share
            member = dataclasses.replace(facts, recipient_type=types[organisation])
            recorded.append(await _decide(session, runtime, actor, child, version, categories, member, organisation))
    await db.add_shares(session, version.id, recorded, actor.now)
    await outbox.enqueue_all(
        session,
        [
            db.entry(r.share.kind, r.share.organisation, f"{r.share.kind}:{r.id}", actor.now, plan_share_id=r.id)
            for r in recorded
        ],
    )
    return [r.share for r in recorded]


async def _decide(
    session: AsyncSession,
    runtime: Runtime,
    actor: Actor,
    child: Child,
    version: PlanVersion,
    categories: dict[str, str],
    facts: SharingFacts,
    organisation: str,
) -> db.NewShare:
    """One member's decision, recorded with its audit entry; the share it makes."""
    question = ShareQuestion(
        to_organisation=organisation,
        personal_identity_number="",  # not read: ``child`` is the child (see decide_on_facts)
        purpose=PLAN_PURPOSE,
        data_categories=sorted(categories_of(version.sections, categories)),
    )
    decision_id, decision = await decide_and_record(session, facts, question, actor=actor, child=child, runtime=runtime)
    share = ChildPlan.share(organisation, version, categories, frozenset(decision.permitted_categories))
    return db.NewShare(uuid.uuid4(), share, decision_id, decision.legal_basis if share.sections else None)
