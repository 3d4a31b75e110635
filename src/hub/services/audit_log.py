"""Reading the audit trail (auditors) and verifying its hash chains."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from hub.db import audit as audit_db
from hub.db.repositories import OrganisationRepository
from hub.domain.audit import AuditAction
from hub.domain.errors import FieldError, InvalidInput, NotPermitted
from hub.domain.identity import Pseudonymizer
from hub.domain.principal import Role
from hub.services.auditing import audit
from hub.services.children import identify_child
from hub.services.context import Actor

REGIONAL_AUDITOR_TYPE = "regional-samordning"


@dataclass(frozen=True)
class AuditQuery:
    organisation: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    personal_identity_number: str | None = None
    cursor: str | None = None
    limit: int = 50


@dataclass(frozen=True)
class AuditEntry:
    id: int
    partition: str
    seq: int
    hash: str
    content: dict[str, Any]


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEntry]
    next_cursor: str | None


def _decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("before:"))
    except ValueError:
        raise InvalidInput(
            "The cursor is not one this hub issued.", errors=[FieldError("cursor", "invalid cursor")]
        ) from None


def _encode_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"before:{entry_id}".encode()).decode()


async def read_audit(
    session: AsyncSession, *, actor: Actor, query: AuditQuery, pseudonymizer: Pseudonymizer
) -> AuditPage:
    """An organisation's auditor sees entries about its own organisation; a regional auditor sees all."""
    if not actor.principal.has_any(Role.AUDITOR):
        raise NotPermitted("Reading the audit trail needs the auditor role.")
    org = await OrganisationRepository(session).get(actor.organisation_id)
    regional = org is not None and org.type == REGIONAL_AUDITOR_TYPE
    scope = query.organisation if regional else actor.organisation_id
    if not regional and query.organisation not in (None, actor.organisation_id):
        raise NotPermitted("An organisation's auditor sees only entries about its own organisation.")
    children: tuple[str, ...] = ()
    child_pseudonym: str | None = None
    if query.personal_identity_number is not None:
        child = identify_child(
            query.personal_identity_number,
            pseudonymizer=pseudonymizer,
            today=actor.today,
            pointer="/child/personal_identity_number",
        )
        children, child_pseudonym = child.candidates, child.pseudonym
    flt = audit_db.AuditFilter(
        organisation=scope,
        action=query.action,
        outcome=query.outcome,
        since=query.since,
        until=query.until,
        child_pseudonyms=children,
        before_id=_decode_cursor(query.cursor) if query.cursor else None,
    )
    rows = await audit_db.search(session, flt, limit=query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    # A search about one child is itself a look at that child's data: it is in the child's trail too.
    await audit(
        session,
        actor,
        AuditAction.AUDIT_READ,
        child_pseudonym=child_pseudonym,
        details={"count": len(rows), "scope": scope or "all"},
    )
    await session.commit()
    return AuditPage(
        items=[AuditEntry(r.id, r.partition, r.seq, r.hash.hex(), json.loads(r.canonical)) for r in rows],
        next_cursor=_encode_cursor(rows[-1].id) if more and rows else None,
    )


async def verify_audit(engine: AsyncEngine) -> audit_db.VerifyReport:
    async with engine.connect() as conn:
        return await audit_db.verify(conn)
