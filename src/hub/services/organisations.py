"""Use cases about organisations as the hub knows them, and their standing as token organisations."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.db.registry import OrganisationDirectory
from hub.db.repositories import OrganisationRepository
from hub.db.tables import Organisation
from hub.domain.principal import OrganisationStanding

_MAX_ENTRIES = 10_000


async def get_organisation(session: AsyncSession, *, organisation_id: str) -> Organisation | None:
    return await OrganisationRepository(session).get(organisation_id)


async def organisation_standing(session: AsyncSession, *, organisation_id: str) -> OrganisationStanding | None:
    found = await OrganisationDirectory(session).standing(organisation_id)
    return None if found is None else OrganisationStanding(active=found[0], coordinating=found[1])


class OrganisationStandings:
    """The registry's word on token organisations, remembered ``ttl_seconds`` per organisation.

    Every authenticated request asks; a cache keeps that off the database in steady state. So another
    process's deactivation takes effect here within ``ttl_seconds``; :func:`forget_standing` (called by
    the registry's changes) makes it take effect at once in this process. An organisation not found is
    not remembered, so a registration is honoured at once.
    """

    def __init__(self, sessions: Callable[[], async_sessionmaker[AsyncSession]], *, ttl_seconds: float) -> None:
        self._sessions = sessions
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[OrganisationStanding, float]] = {}
        self._hsa: dict[str, tuple[str, float]] = {}
        self._forgotten = 0  # a read that began before a forget must not store what it read
        _live.add(self)

    async def get(self, organisation_id: str) -> OrganisationStanding | None:
        now = time.monotonic()
        hit = self._entries.get(organisation_id)
        if hit is not None and now < hit[1]:
            return hit[0]
        forgotten = self._forgotten
        async with self._sessions()() as session:
            standing = await organisation_standing(session, organisation_id=organisation_id)
        if standing is None or forgotten != self._forgotten:
            return standing
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[organisation_id] = (standing, now + self._ttl)
        return standing

    async def by_hsa_id(self, hsa_id: str) -> str | None:
        """The id of the organisation registered with ``hsa_id`` (federated tokens name their unit so),
        remembered as standings are; an HSA-id no organisation has is not remembered."""
        now = time.monotonic()
        hit = self._hsa.get(hsa_id)
        if hit is not None and now < hit[1]:
            return hit[0]
        forgotten = self._forgotten
        async with self._sessions()() as session:
            found = await OrganisationDirectory(session).by_hsa_id(hsa_id)
        if found is None or forgotten != self._forgotten:
            return None if found is None else found.id
        if len(self._hsa) >= _MAX_ENTRIES:
            self._hsa.clear()
        self._hsa[hsa_id] = (found.id, now + self._ttl)
        return found.id

    def forget(self, organisation_id: str | None = None) -> None:
        self._forgotten += 1
        self._hsa.clear()  # an HSA-id may have moved to or from this organisation
        if organisation_id is None:
            self._entries.clear()
        else:
            self._entries.pop(organisation_id, None)


_live: weakref.WeakSet[OrganisationStandings] = weakref.WeakSet()


def forget_standing(organisation_id: str | None = None) -> None:
    """Drop what this process's caches remember of ``organisation_id`` (of every organisation if None)."""
    for cache in list(_live):
        cache.forget(organisation_id)
