"""The end of every coordinator's query: its audit entry (the question, and why each hidden key is hidden:
for the audit log only) written and committed before the answer leaves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import flows as db
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.disclosure import ProtectedTable
from hub.domain.errors import Explanation
from hub.services.auditing import audit
from hub.services.flow_model import Context, FlowAnswer, FlowFilter, FlowRow


async def answered(
    session: AsyncSession,
    ctx: Context,
    table: str,
    groups: Sequence[str],
    columns: Sequence[str],
    scope: db.Scope,
    flt: FlowFilter,
    rows: Sequence[FlowRow],
    protected: Sequence[ProtectedTable],
    extra: Mapping[str, Any] | None = None,
) -> FlowAnswer:
    """End the read, then audit it (with why each hidden key is hidden: for the audit log only) on the
    primary and commit: the answer leaves only once its audit entry is stored."""
    filters = {
        "municipality": list(flt.municipalities),
        "sender_type": list(flt.sender_types),
        "recipient_type": list(flt.recipient_types),
        "kind": list(flt.kinds),
        "step": list(flt.steps),
        "dimension": flt.dimension,
        **(extra or {}),
    }
    filters = {name: value for name, value in filters.items() if value not in (None, [])}
    hidden = {"|".join(key): reason for p in protected for key, reason in p.suppression_log.items()}
    await session.rollback()  # the reads wrote nothing (and may be on a read-only replica)
    async with UnitOfWork.of(ctx.audit_sessions) as uow:
        await audit(
            uow.session,
            ctx.actor,
            AuditAction.FLOWS_READ,
            entity_type="FlowTable",
            entity_id=table,
            details={
                "by": list(groups),
                "weeks": [scope.week_from.isoformat(), scope.week_to.isoformat()],
                "filters": filters,
                "k": ctx.rules.k,
                "hidden": hidden,
            },
        )
        await uow.commit()
    notes: dict[str, Explanation] = {}
    for p in protected:
        notes.update({note.code: note for note in p.notes})
    return FlowAnswer(
        table=table,
        by=tuple(groups),
        columns=tuple(columns),
        week_from=scope.week_from,
        week_to=scope.week_to,
        k=ctx.rules.k,
        rows=tuple(rows),
        notes=tuple(notes.values()),
        filters=filters,
    )
