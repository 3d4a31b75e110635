"""``referral_status_class``: what each referral status is, as the domain classes it
(``hub.domain.referrals.Lifecycle.classes``). The flow functions and queries read their status rules from
it (migration 0010), so SQL holds no status list of its own; the hub writes it after every upgrade."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.domain.referrals import StatusClass

_UPSERT = text(
    """
    insert into referral_status_class as c (status, initial, open, milestone, rejection)
    values (:status, :initial, :open, :milestone, :rejection)
    on conflict (status) do update
        set initial = excluded.initial, open = excluded.open, milestone = excluded.milestone,
            rejection = excluded.rejection
        where (c.initial, c.open, c.milestone, c.rejection)
              is distinct from (excluded.initial, excluded.open, excluded.milestone, excluded.rejection)
    """
)


async def write_status_classes(conn: AsyncConnection, classes: Sequence[StatusClass]) -> None:
    """Make the table hold exactly ``classes``: rows that already say the same are left alone (replicas
    starting together write nothing). The caller commits."""
    await conn.execute(
        text("delete from referral_status_class where not (status = any(:statuses))"),
        {"statuses": [c.status for c in classes]},
    )
    for c in classes:
        await conn.execute(_UPSERT, c.__dict__)


async def status_classes(conn: AsyncConnection) -> list[StatusClass]:
    rows = await conn.execute(
        text("select status, initial, open, milestone, rejection from referral_status_class order by status")
    )
    return [StatusClass(*r) for r in rows.all()]
