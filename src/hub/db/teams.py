"""The team around the child in PostgreSQL: loading a child's team as the domain's aggregate (locked for a
change), and persisting what the aggregate changed. Never commits; holds no rule."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.referrals.rows import OutboxRow
from hub.domain.teams import Assignment, FamilyChoice, Membership, Offer, Team

TEAM_OFFER = "team-offer"  # the outbox kind of an offer's news

_ASSIGNMENT = (
    "id, role, organisation_id, stage, professional_ref, period_start, period_end, start_reason, end_reason, "
    "stage_ends_on"
)
_OFFER = (
    "id, stage, from_organisation, to_organisation, professional_ref, state, offered_at, answered_at, reason, "
    "stage_ends_on"
)
_MEMBERSHIP = "id, organisation_id, period_start, period_end, join_reason, leave_reason, referral_id"
_CHOICE = "id, about, choice, chosen_by, recorded_by, recorded_at"


@dataclass(frozen=True)
class StoredTeam:
    """A child's team as loaded: the aggregate and the pseudonym it is stored under."""

    team: Team
    child_pseudonym: str


async def team_for_child(
    session: AsyncSession, pseudonyms: Sequence[str], stages: Mapping[str, frozenset[str]], *, lock: bool = False
) -> StoredTeam | None:
    """The team of the child with any of ``pseudonyms`` (every key's: see ``Pseudonymizer.candidates``)."""
    row = (
        await session.execute(
            text(
                "select id, child_pseudonym from team where child_pseudonym = any(:p) order by created_at limit 1"
                + (" for update" if lock else "")
            ),
            {"p": list(pseudonyms)},
        )
    ).first()
    return None if row is None else StoredTeam(await _load(session, row[0], stages), row[1])


async def team_of_offer(
    session: AsyncSession, offer_id: uuid.UUID, stages: Mapping[str, frozenset[str]], *, lock: bool = False
) -> StoredTeam | None:
    row = (
        await session.execute(
            text(
                "select t.id, t.child_pseudonym from team t join team_offer o on o.team_id = t.id where o.id = :id"
                + (" for update of t" if lock else "")
            ),
            {"id": offer_id},
        )
    ).first()
    return None if row is None else StoredTeam(await _load(session, row[0], stages), row[1])


async def team_by_id(session: AsyncSession, team_id: str, stages: Mapping[str, frozenset[str]]) -> StoredTeam | None:
    try:
        tid = uuid.UUID(team_id)
    except ValueError:
        return None
    row = (await session.execute(text("select id, child_pseudonym from team where id = :id"), {"id": tid})).first()
    return None if row is None else StoredTeam(await _load(session, row[0], stages), row[1])


async def create_team(session: AsyncSession, pseudonym: str, now: datetime) -> None:
    """A child's team, if it has none (concurrent creators meet at the unique pseudonym)."""
    await session.execute(
        text(
            "insert into team (id, child_pseudonym, created_at, updated_at) values (:id, :p, :now, :now) "
            "on conflict (child_pseudonym) do nothing"
        ),
        {"id": uuid.uuid4(), "p": pseudonym, "now": now},
    )


async def _load(session: AsyncSession, team_id: uuid.UUID, stages: Mapping[str, frozenset[str]]) -> Team:
    async def rows(columns: str, table: str, order: str) -> list[Any]:
        result = await session.execute(
            text(f"select {columns} from {table} where team_id = :t order by {order}, id"), {"t": team_id}
        )
        return list(result.all())

    return Team(
        id=team_id,
        stages=stages,
        assignments=[Assignment(*r) for r in await rows(_ASSIGNMENT, "team_assignment", "period_start")],
        offers=[Offer(*r) for r in await rows(_OFFER, "team_offer", "offered_at")],
        memberships=[
            Membership(r[0], r[1], r[2], r[3], r[4], r[5], r[6])
            for r in await rows(_MEMBERSHIP, "team_membership", "period_start")
        ],
        choices=[FamilyChoice(*r) for r in await rows(_CHOICE, "team_family_choice", "recorded_at")],
    )


def _upsert(table: str, columns: str, updated: Sequence[str]) -> str:
    names = [c.strip() for c in columns.split(",")]
    sets = ", ".join(f"{c} = excluded.{c}" for c in updated)
    return (
        f"insert into {table} (team_id, {columns}) values (:team_id, {', '.join(':' + n for n in names)}) "
        f"on conflict (id) do update set {sets}"
    )


_SAVE_ASSIGNMENT = _upsert("team_assignment", _ASSIGNMENT, ["period_end", "end_reason"])
_SAVE_MEMBERSHIP = _upsert("team_membership", _MEMBERSHIP, ["period_end", "leave_reason"])
_SAVE_CHOICE = _upsert("team_family_choice", _CHOICE, ["choice"])
_SAVE_OFFER = _upsert("team_offer", _OFFER + ", child, child_key_id", ["state", "answered_at", "reason"])


async def save(
    session: AsyncSession, team: Team, now: datetime, *, sealed_children: Mapping[uuid.UUID, tuple[bytes, str]]
) -> None:
    """Persist every record the aggregate changed (``Team.changed``). A new offer carries the child's
    identity sealed for its delivery (``sealed_children``, by offer id)."""
    for record in team.changed:
        params: dict[str, Any] = {"team_id": team.id}
        if isinstance(record, Assignment):
            statement = _SAVE_ASSIGNMENT
            params |= dict(
                record.__dict__, organisation_id=record.organisation, period_start=record.start, period_end=record.end
            )
        elif isinstance(record, Membership):
            statement = _SAVE_MEMBERSHIP
            params |= dict(
                record.__dict__, organisation_id=record.organisation, period_start=record.start, period_end=record.end
            )
        elif isinstance(record, FamilyChoice):
            statement = _SAVE_CHOICE
            params |= dict(record.__dict__, chosen_by=record.by)
        else:
            statement = _SAVE_OFFER
            sealed, key_id = sealed_children.get(record.id, (b"", ""))
            params |= dict(record.__dict__, child=sealed, child_key_id=key_id)
        await session.execute(text(statement), params)
    await session.execute(text("update team set updated_at = :now where id = :id"), {"now": now, "id": team.id})


@dataclass(frozen=True)
class OfferFacts:
    """What an offer's message carries: the offer, the child's sealed identity, the two organisations."""

    offer: Offer
    child: bytes
    child_key_id: str
    organisations: dict[str, dict[str, Any]]


async def offer_facts(session: AsyncSession, offer_id: uuid.UUID) -> OfferFacts | None:
    row = (
        await session.execute(
            text(f"select {_OFFER}, child, child_key_id from team_offer where id = :id"), {"id": offer_id}
        )
    ).first()
    if row is None:
        return None
    offer = Offer(*row[:10])
    organisations = await organisation_cards(session, [offer.from_organisation, offer.to_organisation])
    return OfferFacts(offer, bytes(row[10]), row[11], organisations)


async def organisation_cards(session: AsyncSession, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each registered organisation as a message names it (id, name, type, municipality, HSA-id), by id."""
    rows = await session.execute(
        text("select id, name, type, municipality_code, hsa_id from organisation where id = any(:ids)"),
        {"ids": list(ids)},
    )
    return {
        r[0]: {"organisation_id": r[0], "name": r[1], "type": r[2], "municipality_code": r[3], "hsa_id": r[4]}
        for r in rows.all()
    }


async def team_id_of_offer(session: AsyncSession, offer_id: uuid.UUID) -> uuid.UUID | None:
    found = await session.scalar(text("select team_id from team_offer where id = :id"), {"id": offer_id})
    return None if found is None else uuid.UUID(str(found))


async def organisations(session: AsyncSession, ids: Sequence[str]) -> dict[str, tuple[str, str, str | None]]:
    """Each registered organisation's (name, type, HSA-id); unknown ids are absent."""
    result = await session.execute(
        text("select id, name, type, hsa_id from organisation where id = any(:ids)"), {"ids": list(ids)}
    )
    return {r[0]: (r[1], r[2], r[3]) for r in result.all()}


def offer_entry(offer_id: uuid.UUID, recipient: str, state: str, at: datetime) -> OutboxRow:
    """The outbox entry that tells ``recipient``'s system of an offer's news (``state``): kind ``team-offer``,
    no referral; one per offer and state, so its idempotency key is stable across retries."""
    return OutboxRow.queued(TEAM_OFFER, recipient, f"team-offer:{offer_id}:{state}", at, team_offer_id=offer_id)
