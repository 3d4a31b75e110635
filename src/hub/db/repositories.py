"""All SQL lives in repositories. Repositories never commit: the service that called them does."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.tables import Organisation


class OrganisationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, organisation_id: str) -> Organisation | None:
        return await self.session.get(Organisation, organisation_id)

    async def list(self) -> list[Organisation]:
        result = await self.session.execute(select(Organisation).order_by(Organisation.id))
        return list(result.scalars())

    async def upsert(self, org: Organisation) -> None:
        values = org.model_dump(exclude={"created_at"})
        stmt = insert(Organisation).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Organisation.id], set_={k: v for k, v in values.items() if k != "id"}
        )
        await self.session.execute(stmt)
