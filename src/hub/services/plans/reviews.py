"""Reviewing a plan version against the five evaluation questions (what has improved, has anything got
worse, has the purpose been met, what should change, can the activities continue: the child-plan schema's
``evaluation`` item): a current member posts its answers, sealed at rest; the version's author (the lead
professional's system) receives them through the outbox (``plan-review``). One commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.db import plans as db
from hub.db import referrals as outbox
from hub.db import teams as teams_db
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import FieldError, InvalidInput, NotFound
from hub.domain.plans import ChildPlan, Review
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.child_plan import child_plan_schema, validate_child_plan
from hub.services.children import identify_child
from hub.services.context import Actor
from hub.services.plans.read import NO_PLAN
from hub.services.teams.changes import MEMBERSHIP, PIN_POINTER, stages


@dataclass(frozen=True)
class Reviewed:
    review: Review
    version: int


def _check_answers(runtime: Runtime, schema_version: str, answers: dict[str, Any]) -> None:
    """The answers against the plan schema's evaluation item (its five questions), 422 at each pointer."""
    schema = child_plan_schema(runtime.vocabulary, schema_version)
    item = schema["properties"]["evaluation"]["properties"]["evaluations"]["items"]
    violations = validate_child_plan(answers, {"$defs": schema["$defs"], **item})
    if violations:
        raise InvalidInput(
            "The review does not answer the five evaluation questions as the plan schema asks.",
            errors=[FieldError("/answers" + v.pointer, v.message, v.keyword) for v in violations],
        )


async def review_version(runtime: Runtime, actor: Actor, *, pin: str, number: int, answers: dict[str, Any]) -> Reviewed:
    child = identify_child(pin, pseudonymizer=runtime.pseudonymizer, today=actor.today, pointer=PIN_POINTER)
    async with UnitOfWork.of(runtime.sessions) as uow:
        session = uow.session
        stored = await teams_db.team_for_child(session, child.candidates, stages(runtime.vocabulary))
        if stored is None:
            raise NotFound(NO_PLAN)
        plan = ChildPlan(stored.team, await db.versions(session, stored.team.id))
        version = plan.version(number, actor.organisation_id, actor.now)
        _check_answers(runtime, version.schema_version, answers)
        review = plan.review(actor.organisation_id, number, answers, actor.now)
        await db.add_review(session, review, runtime.cipher.encrypt(answers, bound_to=str(review.id)))
        if review.notify is not None:
            key = f"plan-review:{review.id}"
            await outbox.enqueue(
                session, db.entry(db.PLAN_REVIEW, review.notify, key, actor.now, plan_review_id=review.id)
            )
        await audit(
            session,
            actor,
            AuditAction.PLAN_REVIEWED,
            child_pseudonym=stored.child_pseudonym,
            legal_basis=MEMBERSHIP,
            counterpart_organisation=review.notify,
            entity_type="CarePlan",
            entity_id=str(version.id),
            details={"version": number, "review": str(review.id)},
        )
        await uow.commit()
    return Reviewed(review, number)
