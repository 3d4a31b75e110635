"""The reads behind the FHIR referral surface: Tasks (referrals the caller's organisation sent or
received, metadata only, as ``GET /v1/referrals``) and the organisations they name.

Writes go through the referral use cases themselves (``send_referral``, ``record_event``): a referral sent
in FHIR is decided, audited and made idempotent exactly as one sent over REST.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import referrals as db
from hub.db.registry import OrganisationDirectory
from hub.db.tables import Organisation
from hub.domain.errors import FieldError, InvalidInput
from hub.domain.hsa import HSA_ID_SYSTEM, InvalidHsaId, parse_hsa_id
from hub.services.referrals import ReferralQuery, ReferralView, list_referrals, visible_referral
from hub.services.referrals.read import cursor_after, position_of
from hub.services.referrals.views import referral_view

__all__ = ["TaskPage", "TaskQuery", "organisation_for_identifier", "organisations", "search_tasks", "task_view"]

_PAGE = 200
_MAX_SCANNED = 2_000  # a search reads at most this many of the organisation's referrals


@dataclass(frozen=True)
class TaskQuery:
    """A Task search: ``owner``/``requester`` are organisation ids; ``updated_from``/``updated_to``
    bound ``_lastUpdated`` (inclusive, exclusive)."""

    ids: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    owner: str | None = None
    requester: str | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    count: int = 50
    cursor: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskPage:
    """A page of a Task search, and where the next one starts (None: this is the last)."""

    items: list[ReferralView]
    next_cursor: str | None


async def task_view(session: AsyncSession, *, organisation_id: str, referral_id: str) -> ReferralView:
    """One referral the organisation sent or received (404 otherwise: its existence is not told)."""
    row, side = await visible_referral(session, referral_id, organisation_id)
    delivery = await db.delivery_states(session, [row.id])
    return referral_view(row, side, delivery.get(row.id))


def _role(organisation_id: str, q: TaskQuery) -> tuple[str | None, str | None] | None:
    """(role, counterpart) for ReferralQuery, or None when no referral can match."""
    owner, requester = q.owner, q.requester
    if owner == organisation_id:
        return ("receiver", requester) if requester != organisation_id else None
    if requester == organisation_id:
        return "sender", owner
    if owner is not None:
        return None if requester is not None else ("sender", owner)
    if requester is not None:
        return "receiver", requester
    return None, None


async def search_tasks(session: AsyncSession, *, organisation_id: str, q: TaskQuery) -> TaskPage:
    """The organisation's referrals matching ``q``, newest first, at most ``q.count`` from ``q.cursor`` on.
    A search reads at most ``_MAX_SCANNED`` referrals: where that bound stopped it, the page may hold fewer
    than ``q.count`` (none, even) and still have a next one."""
    role = _role(organisation_id, q)
    if role is None:
        return TaskPage([], None)
    found: list[ReferralView] = []
    cursor = q.cursor
    position_of(cursor, "_cursor")  # a bad one named as the FHIR parameter is, before any reading
    for _ in range(_MAX_SCANNED // _PAGE):
        query = ReferralQuery(role=role[0], statuses=list(q.statuses), counterpart=role[1], cursor=cursor, limit=_PAGE)
        page = await list_referrals(session, organisation_id=organisation_id, query=query)
        found += [v for v in page.items if _matches(v, q)]
        cursor = page.next_cursor
        if cursor is None or len(found) > q.count:
            break
    if len(found) > q.count:
        last = found[q.count - 1]
        return TaskPage(found[: q.count], cursor_after(last.created_at, last.id))
    return TaskPage(found, cursor)


def _matches(view: ReferralView, q: TaskQuery) -> bool:
    if q.ids and view.id not in q.ids:
        return False
    if q.updated_from is not None and view.updated_at < q.updated_from:
        return False
    return q.updated_to is None or view.updated_at < q.updated_to


async def organisations(session: AsyncSession, ids: Iterable[str]) -> dict[str, Organisation]:
    directory = OrganisationDirectory(session)
    found = {}
    for org_id in set(ids):
        org = await directory.fresh(org_id)
        if org is not None:
            found[org_id] = org
    return found


async def organisation_for_identifier(
    session: AsyncSession, *, system: str | None, value: str, pointer: str, hub_system: str
) -> Organisation | None:
    """The registry organisation an identifier names: an HSA-id (validated: a bad one is a 422 at
    ``pointer``) or the hub's organisation id (``hub_system``, or no system at all)."""
    directory = OrganisationDirectory(session)
    if system == HSA_ID_SYSTEM:
        try:
            parse_hsa_id(value)
        except InvalidHsaId as exc:
            raise InvalidInput(
                "The HSA-id is not valid.", errors=[FieldError(pointer, exc.message, f"hsa-id-{exc.reason}")]
            ) from None
        return await directory.by_hsa_id(value)
    if system in (None, hub_system):
        return await directory.fresh(value)
    raise InvalidInput(
        "Organisations are named by HSA-id or the hub's id.",
        errors=[FieldError(pointer, f"an identifier of {HSA_ID_SYSTEM} or {hub_system}", "unknown-system")],
    )
