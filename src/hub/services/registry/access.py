"""Who may change which registry entries, and the audit entry every change writes (``admin-change``)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.repositories import OrganisationRepository
from hub.domain.audit import AuditAction
from hub.domain.errors import NotPermitted
from hub.domain.principal import Role
from hub.services.auditing import audit
from hub.services.context import Actor

REGIONAL_TYPE = "regional-samordning"
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")


async def is_regional_admin(session: AsyncSession, actor: Actor) -> bool:
    if not actor.principal.has_any(Role.ADMIN):
        return False
    org = await OrganisationRepository(session).get(actor.organisation_id)
    return org is not None and org.type == REGIONAL_TYPE


async def require_manager(session: AsyncSession, actor: Actor, organisation_id: str, *, system: bool = False) -> None:
    """The organisation's own admin (or, with ``system``, its own system) or a regional admin."""
    own_roles = (Role.ADMIN, Role.SYSTEM) if system else (Role.ADMIN,)
    if actor.organisation_id == organisation_id and actor.principal.has_any(*own_roles):
        return
    if not await is_regional_admin(session, actor):
        who = "its own admin or system" if system else "its own admin"
        raise NotPermitted(f"Only {who} or a regional admin may manage {organisation_id}'s registry entries.")


async def audit_change(
    session: AsyncSession, actor: Actor, change: str, entity: str, entity_id: str, org_id: str, **details: Any
) -> None:
    """The change's audit entry, in the change's own transaction."""
    await audit(
        session,
        actor,
        AuditAction.ADMIN_CHANGE,
        entity_type=entity,
        entity_id=entity_id,
        counterpart_organisation=org_id if org_id != actor.organisation_id else None,
        details={"change": change, **details},
    )
