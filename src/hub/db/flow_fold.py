"""The flows' queue (migration 0030): the referral triggers queue each referral and status event in
``flow_pending``; ``flow_fold()`` applies queued rows to the flow tables in ``seq`` order, one fold at a
time (the advisory lock 7274229, which it, the rebuilds and ``flow_compact`` take in the caller's
transaction, which must be READ COMMITTED, the default). Nothing here commits."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def queued(conn: AsyncConnection) -> bool:
    """Whether any committed row waits to be folded (one index probe)."""
    return bool(await conn.scalar(text("select exists (select from flow_pending)")))


async def fold(conn: AsyncConnection, *, max_rows: int) -> int:
    """Fold the oldest ``max_rows`` visible queued rows (waiting for a fold running elsewhere to end);
    how many it folded."""
    return int(await conn.scalar(text("select flow_fold(:n)"), {"n": max_rows}) or 0)


async def pending(conn: AsyncConnection) -> int:
    """How many rows wait to be folded (for ``/metrics``: normally near zero)."""
    return int(await conn.scalar(text("select count(*) from flow_pending")) or 0)
