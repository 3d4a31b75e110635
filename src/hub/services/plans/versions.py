"""Sending a plan version: validate it against the vocabulary's child-plan schema, let the plan aggregate
decide (the responsible organisation, the If-Match precondition, the next number), seal the content, decide
and queue each member's share, audit, and commit once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.db import plans as db
from hub.db import teams as teams_db
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import FieldError, InvalidInput, StateConflict
from hub.domain.plans import ChildPlan, PlanVersion, Share, sections_of
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.child_plan import validate_child_plan_in
from hub.services.children import child_identity, identify_child
from hub.services.context import Actor
from hub.services.plans.shares import section_categories, share_with_members
from hub.services.teams.changes import MEMBERSHIP, PIN_POINTER, stages


@dataclass(frozen=True)
class Sent:
    """A version as its author sees it after sending: number, ETag, and what each member receives."""

    version: PlanVersion
    team_id: str
    shares: list[Share]


def _validated(runtime: Runtime, document: dict[str, Any]) -> str:
    """The plan's schema version, or a 422 naming each violation by its JSON pointer under ``/plan``."""
    violations = validate_child_plan_in(vocabulary=runtime.vocabulary, document=document)
    if violations:
        raise InvalidInput(
            f"The plan breaks the child-plan schema in {len(violations)} place(s).",
            errors=[FieldError("/plan" + v.pointer, v.message, v.keyword) for v in violations],
        )
    return str(document["schema_version"])


def _content(pin: str, actor: Actor, document: dict[str, Any]) -> dict[str, Any]:
    """What is sealed: the plan, and the child's identity its receivers' systems need to file it."""
    return {"child": child_identity(pin, today=actor.today), "plan": document}


async def send_version(
    runtime: Runtime, actor: Actor, *, pin: str, document: dict[str, Any], if_match: str | None
) -> Sent:
    """The next version of the child's plan, from the team's responsible organisation. A child with no team
    is 409 (naming what is missing); an organisation not on the team 404; a member that is not responsible
    403 (it sees the team, and so who is: nothing new to learn from the refusal)."""
    child = identify_child(pin, pseudonymizer=runtime.pseudonymizer, today=actor.today, pointer=PIN_POINTER)
    schema_version = _validated(runtime, document)
    categories = section_categories(runtime.vocabulary)
    async with UnitOfWork.of(runtime.sessions) as uow:
        session = uow.session
        stored = await teams_db.team_for_child(session, child.candidates, stages(runtime.vocabulary), lock=True)
        if stored is None:
            raise StateConflict(
                "The child has no team: name a named person before sending a plan.",
                current={"missing": ["team", "named-person"]},
            )
        plan = ChildPlan(stored.team, await db.versions(session, stored.team.id))
        version = plan.add_version(
            actor.organisation_id,
            sections=sections_of(document),
            schema_version=schema_version,
            if_match=if_match,
            now=actor.now,
        )
        sealed = runtime.cipher.encrypt(_content(pin, actor, document), bound_to=str(version.id))
        await db.add_version(session, stored.team.id, version, sealed)
        shares = await share_with_members(
            session,
            runtime,
            actor,
            child=child,
            version=version,
            organisations=plan.recipients(version, actor.now),
            categories=categories,
        )
        await audit(
            session,
            actor,
            AuditAction.PLAN_VERSION_SENT,
            child_pseudonym=stored.child_pseudonym,
            legal_basis=MEMBERSHIP,
            entity_type="CarePlan",
            entity_id=str(version.id),
            details={
                "version": version.number,
                "sections": list(version.sections),
                "shares": {s.organisation: s.kind for s in shares},
            },
        )
        await uow.commit()
    return Sent(version, str(stored.team.id), shares)
