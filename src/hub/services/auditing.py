"""Writing audit entries from use cases, in the use case's own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import audit as audit_db
from hub.domain.audit import AuditAction, AuditOutcome, AuditRecord
from hub.services.context import Actor


def audit_record(
    actor: Actor, action: AuditAction, *, outcome: AuditOutcome = AuditOutcome.SUCCESS, **fields: Any
) -> AuditRecord:
    """The entry :func:`audit` appends for ``actor``, for a use case that appends it in a statement of its own."""
    return AuditRecord(
        occurred_at=actor.now,
        action=action,
        outcome=outcome,
        actor_subject=actor.principal.subject,
        actor_organisation=actor.organisation_id,
        actor_roles=actor.roles,
        request_id=actor.request_id,
        **fields,
    )


async def audit(
    session: AsyncSession,
    actor: Actor,
    action: AuditAction,
    *,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    child_pseudonym: str | None = None,
    legal_basis: str | None = None,
    decision_id: str | None = None,
    counterpart_organisation: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    purpose: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    record = audit_record(
        actor,
        action,
        outcome=outcome,
        child_pseudonym=child_pseudonym,
        legal_basis=legal_basis,
        decision_id=decision_id,
        counterpart_organisation=counterpart_organisation,
        entity_type=entity_type,
        entity_id=entity_id,
        purpose=purpose,
        details=details or {},
    )
    return await audit_db.append(session, record)
