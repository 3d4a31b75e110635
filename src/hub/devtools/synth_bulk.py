"""Bulk writes for ``hub synth``: referral, referral_event and consent rows by COPY, with the flow
triggers off for the load, and the rollups rebuilt afterwards by ``flow_rebuild_bulk()`` (migration
0006). Nothing here commits but the transactions it opens itself on the connection it is given."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

REFERRAL_COLUMNS = (
    "id", "sender_organisation", "recipient_organisation", "service_id", "kind", "status",
    "cancellation_requested_at", "delivered_at", "child_pseudonym", "dimensions", "trappan_step",
    "data_categories", "permitted_categories", "legal_basis", "basis_reference", "decision_id",
    "idempotency_key", "request_hash", "payload", "payload_key_id", "payload_purged_at", "created_at",
    "updated_at",
)  # fmt: skip
EVENT_COLUMNS = (
    "id", "referral_id", "seq", "type", "from_status", "to_status", "by_organisation", "by_subject",
    "reason_code", "suggested_organisation", "suggested_service", "details", "details_key_id",
    "idempotency_key", "occurred_at",
)  # fmt: skip
CONSENT_COLUMNS = (
    "id", "child_pseudonym", "recording_organisation", "valid_from", "valid_until", "withdrawn_at",
    "party_organisations", "party_types", "document", "created_at", "created_by",
)  # fmt: skip
# The triggers of migration 0005 that keep the rollups: off while a batch is copied, in its transaction
# only (ALTER TABLE holds an exclusive lock on the table until commit, so no other writer misses them).
FLOW_TRIGGERS = (("referral", "flow_referral"), ("referral_event", "flow_referral_event"))


async def copy_batch(
    connection: Any,
    *,
    referrals: Sequence[tuple[Any, ...]],
    events: Sequence[tuple[Any, ...]],
    consents: Sequence[tuple[Any, ...]],
) -> None:
    """One batch in one transaction on an asyncpg connection, rows in the column orders above. The
    rollups do not see it until :func:`rebuild_rollups`."""
    async with connection.transaction():
        for table, trigger in FLOW_TRIGGERS:
            await connection.execute(f"alter table {table} disable trigger {trigger}")
        if consents:
            await connection.copy_records_to_table("consent", records=consents, columns=CONSENT_COLUMNS)
        await connection.copy_records_to_table("referral", records=referrals, columns=REFERRAL_COLUMNS)
        await connection.copy_records_to_table("referral_event", records=events, columns=EVENT_COLUMNS)
        for table, trigger in FLOW_TRIGGERS:
            await connection.execute(f"alter table {table} enable trigger {trigger}")


async def rebuild_rollups(connection: Any) -> None:
    """Every rollup again from the raw rows, set-based (migration 0006), committed."""
    async with connection.transaction():
        await connection.execute("select flow_rebuild_bulk()")
    # Fresh statistics for the planner after a load of this size (the function analyzes the rollups).
    await connection.execute("analyze referral")
    await connection.execute("analyze referral_event")


async def organisation_exists(session: AsyncSession, organisation_id: str) -> bool:
    found = await session.scalar(text("select 1 from organisation where id = :id"), {"id": organisation_id})
    return found is not None


async def hold_back_deliveries(session: AsyncSession, referral_id: uuid.UUID, reason: str) -> None:
    """Synthetic history is never delivered: its outbox entries are abandoned, with why."""
    await session.execute(
        text(
            "update outbox set state = 'abandoned', last_error = :reason, updated_at = now() "
            "where referral_id = :id and state in ('queued', 'retrying')"
        ),
        {"id": referral_id, "reason": reason},
    )
