"""The use cases of the team around a child, one function per thing a caller can do; each decides through
the aggregate (``hub.domain.teams.Team``) in ``changes.change_for_child``'s one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from hub.db import teams as db
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import NotFound
from hub.domain.teams import Team
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.children import identify_child
from hub.services.context import Actor
from hub.services.teams.changes import (
    MEMBERSHIP,
    PIN_POINTER,
    Changed,
    change_for_child,
    stage_ends_on,
    stages,
    view_for,
)
from hub.services.teams.views import OfferView, TeamView

NOT_ON_TEAM = "No team around this child that includes the organisation."


async def name_person(
    runtime: Runtime,
    actor: Actor,
    *,
    pin: str,
    stage: str,
    professional_ref: str | None,
    period: tuple[datetime | None, datetime | None],
) -> Changed:
    """The caller's organisation becomes the child's named person for a period no one else holds."""
    start, end = period

    def decide(team: Team, types: dict[str, str]) -> None:
        team.name_person(
            actor.organisation_id,
            types["self"],
            stage=stage,
            professional_ref=professional_ref,
            period=(start or actor.now, end),
            stage_ends_on=stage_ends_on(runtime.vocabulary, stage, pin, actor.today),
        )

    return await change_for_child(
        runtime, actor, pin, "named-person", decide, create=True, lookups={"self": (actor.organisation_id, "org_id")}
    )


async def offer_handover(
    runtime: Runtime, actor: Actor, *, pin: str, to_organisation: str, stage: str, professional_ref: str | None
) -> OfferView:
    """The named person offers its role to the next organisation; the offer goes to that one's system."""
    made: list[str] = []

    def decide(team: Team, types: dict[str, str]) -> None:
        offer = team.offer_handover(
            actor.organisation_id,
            to_organisation,
            types["to"],
            stage=stage,
            professional_ref=professional_ref,
            now=actor.now,
            stage_ends_on=stage_ends_on(runtime.vocabulary, stage, pin, actor.today),
        )
        made.append(str(offer.id))

    changed = await change_for_child(
        runtime, actor, pin, "offer", decide, lookups={"to": (to_organisation, "/to_organisation")}
    )
    assert changed.team is not None  # the named person made the offer and is still on the team
    return next(o for o in changed.team.offers if o.id == made[0])


async def appoint_lead(
    runtime: Runtime, actor: Actor, *, pin: str, organisation_id: str, professional_ref: str | None
) -> Changed:
    return await change_for_child(
        runtime,
        actor,
        pin,
        "lead-professional-appointed",
        lambda team, _: team.appoint_lead(
            actor.organisation_id, organisation_id, professional_ref=professional_ref, now=actor.now
        ),
    )


async def end_lead(runtime: Runtime, actor: Actor, *, pin: str, reason: str | None) -> Changed:
    return await change_for_child(
        runtime,
        actor,
        pin,
        "lead-professional-ended",
        lambda team, _: team.end_lead(actor.organisation_id, actor.now, reason),
    )


async def add_participant(runtime: Runtime, actor: Actor, *, pin: str, organisation_id: str, reason: str) -> Changed:
    return await change_for_child(
        runtime,
        actor,
        pin,
        "participant-added",
        lambda team, _: team.add_participant(actor.organisation_id, organisation_id, reason=reason, now=actor.now),
        lookups={"participant": (organisation_id, "/organisation_id")},
    )


async def remove_participant(runtime: Runtime, actor: Actor, *, pin: str, organisation_id: str, reason: str) -> Changed:
    return await change_for_child(
        runtime,
        actor,
        pin,
        "participant-removed",
        lambda team, _: team.remove_participant(actor.organisation_id, organisation_id, reason=reason, now=actor.now),
    )


async def record_choice(
    runtime: Runtime,
    actor: Actor,
    *,
    pin: str,
    about: Literal["lead-professional", "plan"],
    choice: Literal["declined", "agreed"],
    chosen_by: Literal["guardian", "child"],
) -> Changed:
    return await change_for_child(
        runtime,
        actor,
        pin,
        "family-choice",
        lambda team, _: team.record_choice(
            actor.organisation_id, about=about, choice=choice, chosen_by=chosen_by, now=actor.now
        ),
    )


async def read_team(runtime: Runtime, actor: Actor, *, pin: str, pointer: str = PIN_POINTER) -> TeamView:
    """The team around the child, for its current members; audited with the reader's membership as its
    basis. No team and not a member are the same 404."""
    return (await read_team_of_child(runtime, actor, pin=pin, pointer=pointer))[0]


async def read_team_of_child(
    runtime: Runtime, actor: Actor, *, pin: str, pointer: str = PIN_POINTER
) -> tuple[TeamView, str]:
    """``read_team``, with the child's pseudonym (FHIR's CareTeam.subject)."""
    child = identify_child(pin, pseudonymizer=runtime.pseudonymizer, today=actor.today, pointer=pointer)
    async with UnitOfWork.of(runtime.sessions) as uow:
        stored = await db.team_for_child(uow.session, child.candidates, stages(runtime.vocabulary))
        view = None if stored is None else await view_for(uow.session, stored.team, actor.organisation_id, actor.now)
        if stored is None or view is None:
            raise NotFound(NOT_ON_TEAM)
        await _audit_read(uow, actor, stored)
        await uow.commit()
    return view, stored.child_pseudonym


async def read_team_by_id(runtime: Runtime, actor: Actor, team_id: str) -> tuple[TeamView, str]:
    """A team by its id (FHIR ``CareTeam/{id}``), for its members; with the child's pseudonym."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        stored = await db.team_by_id(uow.session, team_id, stages(runtime.vocabulary))
        view = None if stored is None else await view_for(uow.session, stored.team, actor.organisation_id, actor.now)
        if stored is None or view is None:
            raise NotFound(NOT_ON_TEAM)
        await _audit_read(uow, actor, stored)
        await uow.commit()
    return view, stored.child_pseudonym


async def _audit_read(uow: UnitOfWork, actor: Actor, stored: db.StoredTeam) -> None:
    await audit(
        uow.session,
        actor,
        AuditAction.TEAM_READ,
        child_pseudonym=stored.child_pseudonym,
        legal_basis=MEMBERSHIP,
        entity_type="CareTeam",
        entity_id=str(stored.team.id),
        details={"basis": "membership", "roles": stored.team.member_roles(actor.now)[actor.organisation_id]},
    )
