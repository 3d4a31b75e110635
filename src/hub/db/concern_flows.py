"""Reports of concern overdue for their answer, for the coordinators' flows: counted per key from
``flow_referral`` (the referral's cell and child key, as every flow count) beside the report's delivery
and its answer (``concern_answer``). Returns what the disclosure contract needs (``hub.domain.disclosure``):
per key the sums over its base cells (a report's cell and the day, UTC, it reached social services) of
reports, distinct children and adjustments. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.flow_sql import (
    COLUMNS,
    MODULUS,
    Key,
    Scope,
    adjustment_sql,
    group_columns,
    grouping_sets,
    result_key,
    unperiodic_filters,
)
from hub.db.flows import Aggregate

_DELIVERED_DAY = "extract(epoch from r.delivered_at)::bigint / 86400"


async def overdue_reports(
    session: AsyncSession,
    scope: Scope,
    *,
    groups: Sequence[str],
    kind: str,
    unanswerable: Sequence[str],
    cutoff: datetime,
) -> dict[Key, Aggregate]:
    """Referrals of ``kind`` delivered before ``cutoff`` (the start of a UTC day, so a base cell is wholly in
    or out), never answered and not in one of the ``unanswerable`` statuses (the domain's: withdrawn or made
    in error), grouped by ``groups`` with totals. As with stalls, the weeks of ``scope`` are not applied:
    overdue is about now, whenever the report was sent."""
    params: dict[str, Any] = {"kind": kind, "unanswerable": list(unanswerable), "cutoff": cutoff}
    where = [
        "f.kind = :kind",
        "a.referral_id is null",
        "r.delivered_at < :cutoff",
        "f.status <> all(:unanswerable)",
        *unperiodic_filters(scope, params),
    ]
    level, sets = grouping_sets(groups)
    exprs = [COLUMNS[g] for g in groups]
    found = await session.execute(
        text(
            f"""select {level}, sum(value), sum(children), sum({adjustment_sql("cell_key", "children")})
                from (select c.g1, c.g2, count(*) as value, count(distinct c.child_key)::integer as children,
                             (sum(distinct c.child_key) % {MODULUS})::bigint as cell_key
                      from (select {group_columns(exprs)}, f.cell, f.child_key, {_DELIVERED_DAY} as day
                            from flow_referral f join referral r on r.id = f.referral_id
                            left join concern_answer a on a.referral_id = f.referral_id
                            where {" and ".join(where)}) c
                      group by c.g1, c.g2, c.cell, c.day) x
                group by {sets}"""
        ),
        params,
    )
    return {
        result_key(groups, bits, (g1, g2)): Aggregate(int(value), int(children), int(noise))
        for bits, g1, g2, value, children, noise in found.all()
        if value is not None
    }
