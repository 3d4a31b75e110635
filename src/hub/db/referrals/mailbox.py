"""The mailbox: messages left for organisations that fetch them, until acknowledged."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.engine import planned_per_call


async def mailbox_put(
    session: AsyncSession,
    *,
    organisation_id: str,
    outbox_id: uuid.UUID,
    kind: str,
    body: bytes,
    key_id: str,
    now: datetime,
    created_at: datetime,
) -> uuid.UUID:
    """Store once per outbox entry: a redelivered entry finds its message already there."""
    new_id = uuid.uuid4()
    stored = await session.scalar(
        text(
            """
            insert into mailbox_message (id, organisation_id, outbox_id, kind, body, body_key_id, visible_at,
                                         created_at)
            values (:id, :org, :outbox, :kind, :body, :kid, :now, :created_at)
            on conflict (outbox_id) do update set outbox_id = excluded.outbox_id
            returning id
            """
        ),
        {
            "id": new_id,
            "org": organisation_id,
            "outbox": outbox_id,
            "kind": kind,
            "body": body,
            "kid": key_id,
            "now": now,
            "created_at": created_at,
        },
    )
    assert isinstance(stored, uuid.UUID)
    return stored


@dataclass(frozen=True)
class MailboxRow:
    id: uuid.UUID
    outbox_id: uuid.UUID
    kind: str
    body: bytes
    body_key_id: str
    fetch_count: int
    created_at: datetime


# The organisation's oldest visible messages, locked once (a materialized CTE: as ``id in (select ... limit
# ... for update skip locked)`` a plan could re-run the pick per row and hand out every visible message).
_FETCH = text(
    """
    with picked as materialized (
        select id from mailbox_message
        where organisation_id = :org and acknowledged_at is null and visible_at <= :now
        order by created_at limit :limit for update skip locked
    )
    update mailbox_message set visible_at = :now + make_interval(secs => :vis), fetch_count = fetch_count + 1
    where id = any(array(select id from picked))
    returning id, outbox_id, kind, body, body_key_id, fetch_count, created_at
    """
)


async def mailbox_fetch(
    session: AsyncSession, *, organisation_id: str, now: datetime, visibility_seconds: float, limit: int
) -> list[MailboxRow]:
    """Messages due for the organisation; each becomes invisible for ``visibility_seconds`` and comes back
    unless acknowledged (at-least-once, like NHS MESH)."""
    params = {"org": organisation_id, "now": now, "vis": visibility_seconds, "limit": limit}
    async with planned_per_call(session):  # as the outbox's claim (``leases.CLAIM``), and for the same reasons
        rows = (await session.execute(_FETCH, params)).all()
    return sorted((MailboxRow(*r) for r in rows), key=lambda m: m.created_at)


async def mailbox_ack(
    session: AsyncSession, *, organisation_id: str, message_id: uuid.UUID, now: datetime
) -> tuple[uuid.UUID, bool] | None:
    """(outbox id, first acknowledgement?) or None when the organisation has no such message."""
    row = (
        await session.execute(
            text(
                "select outbox_id, acknowledged_at from mailbox_message where id = :id and organisation_id = :org "
                "for update"
            ),
            {"id": message_id, "org": organisation_id},
        )
    ).first()
    if row is None:
        return None
    if row[1] is None:
        await session.execute(
            text("update mailbox_message set acknowledged_at = :now where id = :id"), {"id": message_id, "now": now}
        )
    return row[0], row[1] is None
