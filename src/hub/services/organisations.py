"""Use cases about organisations as the hub knows them."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.repositories import OrganisationRepository
from hub.db.tables import Organisation


async def get_organisation(session: AsyncSession, *, organisation_id: str) -> Organisation | None:
    return await OrganisationRepository(session).get(organisation_id)
