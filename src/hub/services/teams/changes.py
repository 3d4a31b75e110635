"""Changing the team around a child: each use case identifies the child (personal identity number →
pseudonym), locks the child's team, lets the aggregate (``hub.domain.teams.Team``) decide, persists what
it changed with the offers' news queued for the organisations' systems and the audit entry, and commits
once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import referrals as outbox
from hub.db import teams as db
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import FieldError, NotFound
from hub.domain.identity import parse_personal_identity_number
from hub.domain.teams import Offer, Team, expected_end
from hub.domain.vocabulary import LifeStagesDoc, Vocabulary
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.children import child_identity, identify_child
from hub.services.context import Actor
from hub.services.teams.views import OfferView, TeamView, offer_view, organisations_named, team_view

T = TypeVar("T")
PIN_POINTER = "/child/personal_identity_number"
MEMBERSHIP = "team-membership"  # the basis of every read and change: the caller is on the team


def stages(vocabulary: Vocabulary) -> dict[str, frozenset[str]]:
    doc = vocabulary.get("life-stages")
    assert isinstance(doc, LifeStagesDoc)
    return doc.holders()


def stage_ends_on(vocabulary: Vocabulary, stage: str, pin: str, today: date) -> date | None:
    """When ``stage`` is expected to end for the child: from the stage vocabulary and the year of birth
    alone (``hub.domain.teams.stages``). Call it once the number is known valid."""
    doc = vocabulary.get("life-stages")
    assert isinstance(doc, LifeStagesDoc)
    return expected_end(doc.ends().get(stage), parse_personal_identity_number(pin, today=today).birth_date.year)


@dataclass(frozen=True)
class Changed:
    """What a change returns: the team as the caller now sees it, or (no longer a member) None."""

    team: TeamView | None


async def _organisation_type(session: AsyncSession, organisation_id: str, pointer: str) -> str:
    found = await db.organisations(session, [organisation_id])
    if organisation_id not in found:
        raise NotFound(
            "No such organisation.", errors=[FieldError(pointer, "not in the registry", "unknown-organisation")]
        )
    return found[organisation_id][1]


async def persist(
    session: AsyncSession, actor: Actor, stored: db.StoredTeam, *, what: str, runtime: Runtime, pin: str | None = None
) -> None:
    """Write what the aggregate changed, queue its notices, audit the change. The caller commits."""
    team, now = stored.team, actor.now
    sealed: dict[uuid.UUID, tuple[bytes, str]] = {}
    for record in team.changed:
        if isinstance(record, Offer) and record.state == "open" and pin is not None:
            child = child_identity(pin, today=actor.today)
            sealed[record.id] = runtime.cipher.encrypt(child, bound_to=str(record.id))
    await db.save(session, team, now, sealed_children=sealed)
    for notice in team.notices:
        await outbox.enqueue(session, db.offer_entry(notice.offer_id, notice.to_organisation, notice.state, now))
    await audit(
        session,
        actor,
        AuditAction.TEAM_CHANGED,
        child_pseudonym=stored.child_pseudonym,
        legal_basis=MEMBERSHIP,
        entity_type="CareTeam",
        entity_id=str(team.id),
        details={"change": what, "notices": [n.to_organisation for n in team.notices]},
    )


async def view_for(session: AsyncSession, team: Team, organisation: str, now: datetime) -> TeamView | None:
    if not team.is_member(organisation, now):
        return None
    names = await db.organisations(session, sorted(organisations_named(team)))
    return team_view(team, names, now)


async def change_for_child(
    runtime: Runtime,
    actor: Actor,
    pin: str,
    what: str,
    decide: Callable[[Team, dict[str, str]], object],
    *,
    create: bool = False,
    lookups: dict[str, tuple[str, str]] | None = None,
) -> Changed:
    """The common walk of a change for a child named by ``pin``: identify, lock, decide, persist, commit.
    ``create``: the child's team is created if it has none (naming the first named person); otherwise a
    child without a team is 404, like a team the caller is not on. ``lookups``: name → (organisation id, its
    field's pointer) of the organisations whose types ``decide`` receives (an unknown one is 404 there)."""
    child = identify_child(pin, pseudonymizer=runtime.pseudonymizer, today=actor.today, pointer=PIN_POINTER)
    known = stages(runtime.vocabulary)
    async with UnitOfWork.of(runtime.sessions) as uow:
        session = uow.session
        types = {
            name: await _organisation_type(session, org, pointer) for name, (org, pointer) in (lookups or {}).items()
        }
        stored = await db.team_for_child(session, child.candidates, known, lock=True)
        if stored is None and create:
            await db.create_team(session, child.pseudonym, actor.now)
            stored = await db.team_for_child(session, child.candidates, known, lock=True)
        if stored is None:
            raise NotFound("No team around this child that includes the organisation.")
        decide(stored.team, types)
        await persist(session, actor, stored, what=what, runtime=runtime, pin=pin)
        view = await view_for(session, stored.team, actor.organisation_id, actor.now)
        await uow.commit()
    return Changed(view)


async def change_offer(
    runtime: Runtime, actor: Actor, offer_id: str, what: Literal["accept", "decline", "withdraw"], **kw: str | None
) -> OfferView:
    """Answer (accept, decline) or withdraw an offer, by its id: only its two parties learn it exists."""
    try:
        oid = uuid.UUID(offer_id)
    except ValueError:
        raise NotFound("No such offer.") from None
    async with UnitOfWork.of(runtime.sessions) as uow:
        stored = await db.team_of_offer(uow.session, oid, stages(runtime.vocabulary), lock=True)
        if stored is None:
            raise NotFound("No such offer.")
        team, by, now = stored.team, actor.organisation_id, actor.now
        if what == "accept":
            team.accept(oid, by, now, kw.get("professional_ref"))
        elif what == "decline":
            team.decline(oid, by, now, kw.get("reason"))
        else:
            team.withdraw(oid, by, now)
        await persist(uow.session, actor, stored, what=f"offer-{what}", runtime=runtime)
        offer = team.offer(oid, by)
        names = await db.organisations(uow.session, [offer.from_organisation, offer.to_organisation])
        await uow.commit()
    return offer_view(offer, names)


async def read_offer(runtime: Runtime, actor: Actor, offer_id: str) -> OfferView:
    """One offer, for either of its parties (a declined or unanswered offer stays visible to both)."""
    try:
        oid = uuid.UUID(offer_id)
    except ValueError:
        raise NotFound("No such offer.") from None
    async with UnitOfWork.of(runtime.sessions) as uow:
        stored = await db.team_of_offer(uow.session, oid, stages(runtime.vocabulary))
        if stored is None:
            raise NotFound("No such offer.")
        offer = stored.team.offer(oid, actor.organisation_id)
        names = await db.organisations(uow.session, [offer.from_organisation, offer.to_organisation])
        await audit(
            uow.session,
            actor,
            AuditAction.TEAM_READ,
            child_pseudonym=stored.child_pseudonym,
            legal_basis="team-offer-party",
            entity_type="CareTeam",
            entity_id=str(stored.team.id),
            details={"offer": offer_id},
        )
        await uow.commit()
    return offer_view(offer, names)
