"""Reading the child's plan: a version for a current member of the team, with only the sections that member
received (its recorded share: the decision made when the version was sent), the withheld sections listed
with their reason, every read audited with its basis. The author reads all of its version."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import plans as db
from hub.db import teams as teams_db
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import NotFound
from hub.domain.plans import ChildPlan, PlanVersion, Withheld, strip
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.children import identify_child
from hub.services.context import Actor
from hub.services.plans.shares import section_categories
from hub.services.teams.changes import PIN_POINTER, stages
from hub.services.teams.views import OrganisationRef, org

AUTHOR: Final = "plan-author"  # the basis of the author's own reads: it wrote the version
# A member with no share of a version (it joined the team after the version was sent): nothing was
# decided for it, so nothing is shown; the next version decides for it.
NOT_SHARED: Final = "not-shared-with-organisation"
NO_PLAN: Final = "No plan for this child that the organisation may see."


@dataclass(frozen=True)
class PlanView:
    """A version as one reader may see it."""

    id: str
    team_id: str
    version: int
    etag: str
    current: bool
    author: OrganisationRef
    schema_version: str
    created_at: datetime
    purged_at: datetime | None
    plan: dict[str, Any] | None  # the metadata and the sections the reader may see; None once purged
    sections: list[str]
    withheld: list[dict[str, str]]
    legal_basis: str | None
    decision_id: str | None
    child_pseudonym: str


@dataclass(frozen=True)
class _Seen:
    sections: tuple[str, ...]
    withheld: tuple[Withheld, ...]
    basis: str | None
    decision_id: str | None


async def _seen_by(session: AsyncSession, version: PlanVersion, organisation: str, categories: dict[str, str]) -> _Seen:
    if organisation == version.author:
        return _Seen(version.sections, (), AUTHOR, None)
    share = await db.share_of(session, version.id, organisation)
    if share is None:
        withheld = tuple(Withheld(s, categories.get(s, "child-plan"), NOT_SHARED) for s in version.sections)
        return _Seen((), withheld, None, None)
    return _Seen(share.sections, share.withheld, share.legal_basis, str(share.decision_id))


async def view_of(
    session: AsyncSession,
    runtime: Runtime,
    actor: Actor,
    *,
    plan: ChildPlan,
    version: PlanVersion,
    pseudonym: str,
) -> PlanView:
    """The version as ``actor``'s organisation may see it, its read audited (the caller commits)."""
    seen = await _seen_by(session, version, actor.organisation_id, section_categories(runtime.vocabulary))
    sealed = await db.content(session, version.id)
    document = None if sealed is None else runtime.cipher.decrypt(*sealed, bound_to=str(version.id))["plan"]
    names = await teams_db.organisations(session, [version.author])
    current = plan.current()
    await audit(
        session,
        actor,
        AuditAction.PLAN_READ,
        child_pseudonym=pseudonym,
        legal_basis=seen.basis,
        decision_id=seen.decision_id,
        entity_type="CarePlan",
        entity_id=str(version.id),
        details={
            "version": version.number,
            "sections": list(seen.sections),
            "withheld": [w.section for w in seen.withheld],
        },
    )
    return PlanView(
        id=str(version.id),
        team_id=str(plan.team.id),
        version=version.number,
        etag=version.etag,
        current=current is not None and current.id == version.id,
        author=org(version.author, names),
        schema_version=version.schema_version,
        created_at=version.created_at,
        purged_at=version.purged_at,
        plan=None if document is None else strip(document, seen.sections),
        sections=list(seen.sections),
        withheld=[w.as_json() for w in seen.withheld],
        legal_basis=seen.basis,
        decision_id=seen.decision_id,
        child_pseudonym=pseudonym,
    )


async def read_plan(
    runtime: Runtime, actor: Actor, *, pin: str, number: int | None, pointer: str = PIN_POINTER
) -> PlanView:
    """A version of the child's plan (the current one when ``number`` is None), for a current member of the
    team; no team, no plan and not a member are the same 404."""
    child = identify_child(pin, pseudonymizer=runtime.pseudonymizer, today=actor.today, pointer=pointer)
    async with UnitOfWork.of(runtime.sessions) as uow:
        stored = await teams_db.team_for_child(uow.session, child.candidates, stages(runtime.vocabulary))
        if stored is None:
            raise NotFound(NO_PLAN)
        plan = ChildPlan(stored.team, await db.versions(uow.session, stored.team.id))
        if number is None:
            plan.member_or_404(actor.organisation_id, actor.now)
            version = plan.current()
            if version is None:
                raise NotFound(NO_PLAN)
        else:
            version = plan.version(number, actor.organisation_id, actor.now)
        view = await view_of(uow.session, runtime, actor, plan=plan, version=version, pseudonym=stored.child_pseudonym)
        await uow.commit()
    return view


async def read_plan_by_id(runtime: Runtime, actor: Actor, version_id: str) -> PlanView:
    """A version by its id (FHIR ``CarePlan/{id}``), for a current member of the child's team."""
    try:
        vid = uuid.UUID(version_id)
    except ValueError:
        raise NotFound(NO_PLAN) from None
    async with UnitOfWork.of(runtime.sessions) as uow:
        facts = await db.version_facts(uow.session, vid)
        stored = (
            None
            if facts is None
            else await teams_db.team_by_id(uow.session, str(facts.team_id), stages(runtime.vocabulary))
        )
        if facts is None or stored is None:
            raise NotFound(NO_PLAN)
        plan = ChildPlan(stored.team, await db.versions(uow.session, stored.team.id))
        version = plan.version(facts.version.number, actor.organisation_id, actor.now)
        view = await view_of(uow.session, runtime, actor, plan=plan, version=version, pseudonym=stored.child_pseudonym)
        await uow.commit()
    return view


async def search_plans(
    runtime: Runtime, actor: Actor, *, pin: str, pointer: str, current: bool | None = None, limit: int = 20
) -> tuple[list[PlanView], int]:
    """The versions of the child's plan, newest first (``current``: only the current one, or only the
    replaced ones), at most ``limit``, with how many matched; for a current member, none for anyone else
    (the same as a child with no plan). Each version returned is an audited read."""
    child = identify_child(pin, pseudonymizer=runtime.pseudonymizer, today=actor.today, pointer=pointer)
    async with UnitOfWork.of(runtime.sessions) as uow:
        stored = await teams_db.team_for_child(uow.session, child.candidates, stages(runtime.vocabulary))
        if stored is None or not stored.team.is_member(actor.organisation_id, actor.now):
            return [], 0
        plan = ChildPlan(stored.team, await db.versions(uow.session, stored.team.id))
        latest = plan.current()
        matched = [
            v
            for v in sorted(plan.versions, key=lambda v: -v.number)
            if current is None or (latest is not None and v.id == latest.id) == current
        ]
        views = [
            await view_of(uow.session, runtime, actor, plan=plan, version=v, pseudonym=stored.child_pseudonym)
            for v in matched[:limit]
        ]
        await uow.commit()
    return views, len(matched)
