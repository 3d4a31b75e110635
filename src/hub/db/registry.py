"""The registry's tables and SQL: organisations' delivery endpoints and the service directory.

Migration ``0003_registry`` creates ``endpoint`` and ``service``, ``0008_organisation_standing``
``coordinating_organisation_type``; these classes only map them. Every query of the registry lives here;
nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    and_,
    any_,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, array, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Column, DateTime, Field, SQLModel, col

from hub.db.tables import Organisation

_NEVER = datetime(1, 1, 1, tzinfo=UTC)  # sorts an unconfirmed waiting time before every confirmed one
_NO_WAIT = 2_147_483_647  # sorts an unknown waiting time after every known one


def _ts(*, nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


def _codes(length: int) -> Any:
    return Field(default_factory=list, sa_column=Column(ARRAY(String(length)), nullable=False, server_default="{}"))


class Endpoint(SQLModel, table=True):
    """Where and how an organisation receives: an adapter name and its config (secrets only by name)."""

    __tablename__ = "endpoint"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=64)
    adapter: str = Field(max_length=64)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    active: bool = True
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class CoordinatingOrganisationType(SQLModel, table=True):
    """An organisation type whose organisations may hold the role ``coordinator`` (seeded by the migration)."""

    __tablename__ = "coordinating_organisation_type"

    type: str = Field(primary_key=True, max_length=64)
    created_at: datetime = _ts()


class Service(SQLModel, table=True):
    """One entry of the service directory ("Vägvisaren"): what an organisation offers, to whom, how soon."""

    __tablename__ = "service"

    id: str = Field(primary_key=True, max_length=64)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=64)
    name: str = Field(max_length=200)
    description: str = ""
    intervention_level: str | None = None
    trappan_step: int | None = None
    age_min: int = 0
    age_max: int = 18
    referral_kinds: list[str] = _codes(64)
    dimensions: list[str] = _codes(64)
    municipality_codes: list[str] = _codes(4)
    waiting_days: int | None = None
    waiting_confirmed_at: datetime | None = _ts(nullable=True)
    active: bool = True
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


SERVICE_FIELDS = (
    "name",
    "description",
    "intervention_level",
    "trappan_step",
    "age_min",
    "age_max",
    "referral_kinds",
    "dimensions",
    "municipality_codes",
    "active",
)


class OrganisationDirectory:
    """Organisation queries the registry needs beyond ``OrganisationRepository``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(
        self,
        *,
        type: str | None,
        municipality_code: str | None,
        after_id: str | None,
        limit: int,
        hsa_id: str | None = None,
    ) -> list[Organisation]:
        stmt = select(Organisation).order_by(col(Organisation.id)).limit(limit)
        if hsa_id is not None:
            stmt = stmt.where(col(Organisation.hsa_id) == hsa_id)
        if type is not None:
            stmt = stmt.where(col(Organisation.type) == type)
        if municipality_code is not None:
            stmt = stmt.where(col(Organisation.municipality_code) == municipality_code)
        if after_id is not None:
            stmt = stmt.where(col(Organisation.id) > after_id)
        return list((await self.session.execute(stmt)).scalars())

    async def by_hsa_id(self, hsa_id: str) -> Organisation | None:
        """The organisation carrying this HSA-id (unique: migration 0013), else None."""
        stmt = select(Organisation).where(col(Organisation.hsa_id) == hsa_id)
        return (await self.session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()

    async def fresh(self, organisation_id: str) -> Organisation | None:
        """The organisation as the database has it now (not a copy the session loaded before a change)."""
        stmt = select(Organisation).where(col(Organisation.id) == organisation_id)
        return (await self.session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()

    async def standing(self, organisation_id: str) -> tuple[bool, bool] | None:
        """(active, of a coordinating type) for a registered organisation, else None."""
        coordinating = col(CoordinatingOrganisationType.type).is_not(None)
        stmt = (
            select(col(Organisation.active), coordinating)
            .outerjoin(CoordinatingOrganisationType, col(CoordinatingOrganisationType.type) == col(Organisation.type))
            .where(col(Organisation.id) == organisation_id)
        )
        row = (await self.session.execute(stmt)).first()
        return None if row is None else (bool(row[0]), bool(row[1]))

    async def lock(self, organisation_id: str) -> Organisation | None:
        """The organisation row, locked until commit: serialises changes to its endpoint."""
        stmt = select(Organisation).where(col(Organisation.id) == organisation_id).with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def of_type(
        self, organisation_type: str, *, municipality_code: str | None, region_code: str | None = None
    ) -> list[Organisation]:
        """Active organisations of a type in a municipality; ``municipality_code=None``: the county-wide
        units of ``region_code`` (those registered without a municipality)."""
        stmt = select(Organisation).where(col(Organisation.type) == organisation_type, col(Organisation.active))
        stmt = stmt.order_by(col(Organisation.id))
        if municipality_code is not None:
            stmt = stmt.where(col(Organisation.municipality_code) == municipality_code)
        else:
            stmt = stmt.where(
                col(Organisation.municipality_code).is_(None), col(Organisation.region_code) == region_code
            )
        return list((await self.session.execute(stmt)).scalars())


class EndpointRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active_for(self, organisation_id: str) -> Endpoint | None:
        stmt = select(Endpoint).where(col(Endpoint.organisation_id) == organisation_id, col(Endpoint.active))
        stmt = stmt.execution_options(populate_existing=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def replace(self, organisation_id: str, *, adapter: str, config: dict[str, Any], now: datetime) -> Endpoint:
        """Retire the active endpoint (kept as history) and make a new one active. Lock the organisation
        first (``OrganisationDirectory.lock``) so two concurrent replacements queue instead of clashing."""
        await self.session.execute(
            update(Endpoint)
            .where(col(Endpoint.organisation_id) == organisation_id, col(Endpoint.active))
            .values(active=False, updated_at=now)
        )
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "organisation_id": organisation_id,
            "adapter": adapter,
            "config": config,
            "active": True,
            "created_at": now,
            "updated_at": now,
        }
        await self.session.execute(insert(Endpoint).values(**values))
        return Endpoint(**values)


@dataclass(frozen=True)
class ServiceFilter:
    """What a service search asks for; ``None`` (or empty) means no condition."""

    age: int | None = None
    municipality_code: str | None = None
    referral_kind: str | None = None
    dimensions: tuple[str, ...] = ()
    trappan_step: int | None = None
    organisation_type: str | None = None
    organisation_id: str | None = None
    text: str | None = None


# A row's place in the ranking: (served locally 0/1, confirmed 0/1, waiting days, name, id).
RankKey = tuple[int, int, int, str, str]


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class ServiceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, service_id: str, *, for_update: bool = False) -> tuple[Service, Organisation] | None:
        stmt = select(Service, Organisation).join(Organisation, col(Organisation.id) == col(Service.organisation_id))
        stmt = stmt.where(col(Service.id) == service_id).execution_options(populate_existing=True)
        if for_update:
            stmt = stmt.with_for_update(of=Service)
        row = (await self.session.execute(stmt)).first()
        return (row[0], row[1]) if row else None

    async def add(self, service: Service) -> bool:
        """Insert; False when the id is taken."""
        values = service.model_dump()
        stmt = insert(Service).values(**values).on_conflict_do_nothing(index_elements=["id"]).returning(col(Service.id))
        return (await self.session.execute(stmt)).first() is not None

    async def update(self, service_id: str, *, now: datetime, **values: Any) -> None:
        await self.session.execute(
            update(Service).where(col(Service.id) == service_id).values(**values, updated_at=now)
        )

    async def upsert_keeping_wait(self, service: Service) -> None:
        """Insert, or refresh the descriptive fields only: a waiting time the organisation has confirmed
        since is kept (the demo loader uses this, so reloading changes nothing)."""
        values = service.model_dump()
        stmt = insert(Service).values(**values)
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={name: excluded[name] for name in ("organisation_id", *SERVICE_FIELDS)},
        )
        await self.session.execute(stmt)

    async def search(
        self, flt: ServiceFilter, *, confirmed_since: datetime, after: RankKey | None, limit: int
    ) -> list[tuple[Service, Organisation, RankKey]]:
        """Active services of active organisations matching ``flt``, ranked: served locally (the
        municipality is listed, or is the organisation's own) before county-wide, confirmed waiting time
        before unconfirmed, shorter wait first (unknown last), then name and id. ``after`` continues from
        a row's key."""
        s, o = Service, Organisation
        where: list[ColumnElement[bool]] = [col(s.active).is_(True), col(o.active).is_(True)]
        local: ColumnElement[int] = literal_column("0", Integer)
        if flt.municipality_code is not None:
            m = flt.municipality_code
            listed = literal(m) == any_(col(s.municipality_codes))
            unlisted = func.cardinality(col(s.municipality_codes)) == 0
            own = and_(unlisted, col(o.municipality_code) == m)
            county = and_(unlisted, col(o.municipality_code).is_(None), col(o.region_code) == m[:2])
            where.append(or_(listed, own, county))
            local = case((or_(listed, own), 0), else_=1)
        if flt.age is not None:
            where += [col(s.age_min) <= flt.age, col(s.age_max) >= flt.age]
        if flt.referral_kind is not None:
            where.append(literal(flt.referral_kind) == any_(col(s.referral_kinds)))
        if flt.dimensions:
            where.append(col(s.dimensions).overlap(array(flt.dimensions, type_=String(64))))  # type: ignore[attr-defined]
        if flt.trappan_step is not None:
            where.append(col(s.trappan_step) == flt.trappan_step)
        if flt.organisation_type is not None:
            where.append(col(o.type) == flt.organisation_type)
        if flt.organisation_id is not None:
            where.append(col(o.id) == flt.organisation_id)
        if flt.text:
            pattern = _like(flt.text)
            where.append(or_(*(c.ilike(pattern, escape="\\") for c in (col(s.name), col(s.description), col(o.name)))))
        confirmed = case((col(s.waiting_confirmed_at) >= confirmed_since, 0), else_=1)
        wait = func.coalesce(col(s.waiting_days), _NO_WAIT)
        key = (local, confirmed, wait, col(s.name), col(s.id))
        if after is not None:
            where.append(tuple_(*key) > tuple_(*(literal(v) for v in after)))
        stmt = (
            select(s, o, *key)
            .join(o, col(o.id) == col(s.organisation_id))
            .where(and_(true(), *where))
            .order_by(*(key if flt.municipality_code is not None else key[1:]))  # never ORDER BY a constant
            .limit(limit)
        )
        rows = (await self.session.execute(stmt)).all()
        return [(r[0], r[1], (int(r[2]), int(r[3]), int(r[4]), r[5], r[6])) for r in rows]

    async def stale(
        self,
        *,
        organisation_id: str | None,
        confirmed_before: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[tuple[Service, Organisation]]:
        """Active services whose waiting time was never confirmed or not since ``confirmed_before``,
        longest unconfirmed first."""
        s, o = Service, Organisation
        confirmed_at = func.coalesce(col(s.waiting_confirmed_at), _NEVER)
        where: list[ColumnElement[bool]] = [col(s.active).is_(True), confirmed_at < confirmed_before]
        if organisation_id is not None:
            where.append(col(s.organisation_id) == organisation_id)
        if after is not None:
            where.append(tuple_(confirmed_at, col(s.id)) > tuple_(literal(after[0]), literal(after[1])))
        stmt = (
            select(s, o)
            .join(o, col(o.id) == col(s.organisation_id))
            .where(*where)
            .order_by(confirmed_at, col(s.id))
            .limit(limit)
        )
        return [(r[0], r[1]) for r in (await self.session.execute(stmt)).all()]

    async def accepting(self, organisation_ids: Sequence[str], *, referral_kind: str) -> set[str]:
        """Which of these organisations have an active service that accepts ``referral_kind``."""
        stmt = select(col(Service.organisation_id)).where(
            col(Service.organisation_id).in_(organisation_ids),
            col(Service.active),
            literal(referral_kind) == any_(col(Service.referral_kinds)),
        )
        return set((await self.session.execute(stmt)).scalars())


def stale_position(service: Service) -> tuple[datetime, str]:
    """``ServiceRepository.stale``'s sort key for a row (to continue after it)."""
    return (service.waiting_confirmed_at or _NEVER, service.id)
