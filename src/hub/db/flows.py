"""Coordinators' aggregates in PostgreSQL: reads of the flow rollups (``flow_rollup``) and of the
per-referral facts beside them (``flow_referral``), both kept current by the triggers of migration
``0005_flows``. Never a read of the raw referral tables.

Every query groups by at most two groupings, with the totals of each (PostgreSQL grouping sets), and
returns per key what the disclosure contract needs (``hub.domain.disclosure``): sums over the key's
*base cells* (a rollup cell: measure × dimension × week × cell, its slots' rows summed: migration 0025)
of their value, their distinct children and their adjustments (:func:`adjustment_sql`). Nothing here
commits.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.engine import Statement, driver
from hub.db.flow_sql import (
    ALL,
    COLUMNS,
    GROUPINGS,
    MODULUS,
    PERIODS,
    REQUESTED,
    STALL_GROUPINGS,
    Key,
    Scope,
    adjustment_sql,
    group_columns,
    grouping_sets,
    histogram_rows,
    requested_rows,
    result_key,
    rollup_rows,
    scope_filters,
    whole_months,
)

__all__ = [
    "ALL",
    "GROUPINGS",
    "MODULUS",
    "PERIODS",
    "STALL_GROUPINGS",
    "Aggregate",
    "Ask",
    "Key",
    "Scope",
    "Stalled",
    "adjustment_sql",
    "cube",
    "cubes",
    "stalls",
    "summed_days",
    "whole_months",
]


@dataclass(frozen=True)
class Aggregate:
    """One key of a query, summed over its base cells: referrals, each cell's distinct children, the
    cells' adjustments, and the merged lead-time histogram (bucket -> referrals) when asked for."""

    value: int
    children: int
    noise: int
    histogram: Mapping[int, int] = field(default_factory=dict)


async def _read_settings(session: AsyncSession) -> None:
    """Plan each of this transaction's statements for its own values: the driver prepares statements, and
    PostgreSQL's generic plan for a range of weeks over a county's history reads the rollups three times
    slower than a plan made for the weeks asked. And dates as ISO text, which the month and year use."""
    await session.execute(
        text(
            "select set_config('plan_cache_mode', 'force_custom_plan', true), set_config('datestyle', 'ISO, YMD', true)"
        )
    )


async def _fetch(session: AsyncSession, sql: str, params: dict[str, Any]) -> list[Any]:
    """Every row of a read, on the session's own driver connection (in its transaction): the large
    results here (thousands of histogram rows) cost more in SQLAlchemy's row handling than in PostgreSQL."""
    async with driver(session) as connection:
        return await Statement(sql).fetch(connection, params)


async def cube(
    session: AsyncSession,
    scope: Scope,
    *,
    groups: Sequence[str],
    measures: Sequence[str],
    histogram: bool = False,
) -> dict[Key, Aggregate]:
    """The base cells in ``scope`` of ``measures`` (one measure; or, grouped by ``status`` or ``reason``,
    the measures of that family), grouped by ``groups`` (at most two) with every total: per key the sums
    of the cells' values, distinct children and adjustments. With ``histogram``, each key's merged
    lead-time histogram too, and whole months may be read from the monthly rollup (see
    :func:`histogram_rows`: for statistics only)."""
    if len(groups) > 2:
        raise ValueError("at most two groupings")
    await _read_settings(session)
    params: dict[str, Any] = {}
    if REQUESTED in measures:  # the few requested referrals, from flow_referral
        rows = f"{rollup_rows(scope, groups, measures, params)} union all {requested_rows(scope, groups, params)}"
    elif histogram:
        rows = histogram_rows(scope, groups, measures, params)
    else:
        rows = rollup_rows(scope, groups, measures, params)
    level, sets = grouping_sets(groups)
    result = await _fetch(
        session,
        f"""select {level}, sum(value), sum(children), sum(adjustment)
            from ({rows}) x where x.value > 0 group by {sets}""",
        params,
    )
    totals = {
        result_key(groups, bits, (g1, g2)): (int(value), int(children), int(noise))
        for bits, g1, g2, value, children, noise in result
        if value is not None  # the grand total of nothing
    }
    if histogram:  # the rows as stored: a histogram is a plain sum over them, slots or not
        histograms = await _histograms(
            session, groups, histogram_rows(scope, groups, measures, params, slots=True), params
        )
    else:
        histograms = {}
    return {
        key: Aggregate(value, children, noise, histograms.get(key, {}))
        for key, (value, children, noise) in totals.items()
    }


async def _histograms(
    session: AsyncSession, groups: Sequence[str], rows: str, params: dict[str, Any]
) -> dict[Key, dict[int, int]]:
    """Each key's merged lead-time histogram (bucket -> referrals) over ``rows``."""
    level, _ = grouping_sets(groups)
    _, bucket_sets = grouping_sets(groups, "bucket")
    # Unnested in the select list and summed per group and bucket before the grouping sets, the groups
    # computed once per row ("offset 0" keeps the planner from computing them per bucket): a third of
    # the time of a lateral unnest over a year of a county's cells.
    found = await _fetch(
        session,
        f"""select {level}, bucket, sum(count)::bigint
            from (select u.g1, u.g2, (u.e >> 32)::int as bucket, sum(u.e & {MODULUS - 1}) as count
                  from (select x.g1, x.g2, unnest(x.hist) as e
                        from ({rows} offset 0) x where x.hist is not null) u
                  group by 1, 2, 3) h
            group by {bucket_sets}""",
        params,
    )
    by_row: dict[tuple[int, str, str], dict[int, int]] = {}
    for bits, g1, g2, bucket, count in found:  # a key's buckets, then the key once (thousands of rows)
        by_row.setdefault((bits, g1, g2), {})[bucket] = count
    return {result_key(groups, bits, (g1, g2)): h for (bits, g1, g2), h in by_row.items()}


@dataclass(frozen=True)
class Ask:
    """One :func:`cube` of a :func:`cubes` call."""

    measures: tuple[str, ...]
    histogram: bool = False


async def cubes(
    session: AsyncSession, scope: Scope, *, groups: Sequence[str], asks: Sequence[Ask]
) -> list[dict[Key, Aggregate]]:
    """Several :func:`cube` calls over the same scope and groups at once, each on a connection of its own
    (from ``session``'s engine): the reads are independent, and PostgreSQL then runs them on as many
    cores as it has. Each sees its own snapshot; an aggregate spanning them may be a few referrals apart,
    which no answer relies on (each measure is protected and published on its own)."""
    engine = session.bind

    async def one(ask: Ask) -> dict[Key, Aggregate]:
        async with AsyncSession(engine) as own:
            return await cube(own, scope, groups=groups, measures=ask.measures, histogram=ask.histogram)

    return list(await asyncio.gather(*(one(ask) for ask in asks)))


_UTC_DAY = "extract(epoch from f.changed_at)::bigint / 86400"  # a time zone conversion costs 5 times as much


@dataclass(frozen=True)
class Stalled:
    """Open referrals without a transition since the cutoff, per key: sums over the key's base cells of
    their referrals, distinct children and adjustments, and the median whole days since the day of the
    last transition."""

    value: int
    children: int
    noise: int
    median_days: float | None


async def stalls(
    session: AsyncSession,
    scope: Scope,
    *,
    groups: Sequence[str],
    steps: Sequence[int],
    open_statuses: Sequence[str],
    cutoff: datetime,
    now: datetime,
) -> dict[Key, Stalled]:
    """Referrals at one of ``steps`` in an open status whose last transition was before ``cutoff``
    (index ``flow_referral_status_step``), grouped by ``groups`` with totals. The weeks of ``scope`` are not
    applied: a stall is about now, whenever the referral was sent.

    A stall's base cell is the referral's cell with its status and the day (UTC) of its last transition:
    ``cutoff`` must be the start of a day, so a base cell is wholly in or out. The base cells are summed
    per key and day in one pass; the days give the median (whole days waited, from the day of the last
    transition to ``now``'s) without sorting every referral."""
    await _read_settings(session)
    params: dict[str, Any] = {"steps": list(steps), "open": list(open_statuses), "cutoff": cutoff}
    where = ["f.trappan_step = any(:steps)", "f.status = any(:open)", "f.changed_at < :cutoff"]
    unstepped = Scope(
        scope.week_from, scope.week_to, scope.municipalities, scope.sender_types, scope.recipient_types, scope.kinds
    )
    where += scope_filters(unstepped, params, weeks=False)
    where.append(":dimension = any(f.dimensions)")
    params["dimension"] = scope.dimension or ALL
    exprs = [("f.status" if g == "status" else COLUMNS[g]) for g in groups]
    level, sets = grouping_sets(groups, "day")
    found = await _fetch(
        session,
        f"""select {level}, day, sum(value), sum(children), sum({adjustment_sql("cell_key", "children")})
            from (select r.g1, r.g2, r.day, count(*) as value, count(distinct r.child_key)::integer as children,
                         (sum(distinct r.child_key) % {MODULUS})::bigint as cell_key
                  from (select {group_columns(exprs)}, f.cell, f.status, {_UTC_DAY} as day, f.child_key
                        from flow_referral f where {" and ".join(where)}) r
                  group by r.g1, r.g2, r.cell, r.status, r.day) c
            group by {sets}""",
        params,
    )
    today = int(now.timestamp()) // 86400
    days: dict[Key, list[tuple[int, int, int, int]]] = {}
    for bits, g1, g2, day, value, children, noise in found:
        days.setdefault(result_key(groups, bits, (g1, g2)), []).append(
            (today - day, int(value), int(children), int(noise))
        )
    return {key: summed_days(per_day) for key, per_day in days.items()}


def summed_days(per_day: list[tuple[int, int, int, int]]) -> Stalled:
    """A key's sums over its days (days waited, value, children, noise), and the median of the days waited
    as percentile_cont would give it."""
    per_day.sort()
    n = sum(value for _, value, _, _ in per_day)
    position = (n - 1) / 2
    median, seen = [], 0
    for waited, value, _, _ in per_day:
        # the values at positions floor and ceil of the middle, in the sorted list of every referral
        median += [waited] * sum(1 for p in {math.floor(position), math.ceil(position)} if seen <= p < seen + value)
        seen += value
    return Stalled(
        n,
        sum(children for _, _, children, _ in per_day),
        sum(noise for _, _, _, noise in per_day),
        sum(median) / len(median),
    )


async def compact_rollups(session: AsyncSession, now: datetime) -> int:
    """Fold the rollup slots of every week before last week (Stockholm time, as the cells' weeks), and of
    the months before that week's month, into one row per base cell (migration 0027): the readers' fast
    path again, the same figures. How many rows it removed."""
    last_week = "(date_trunc('week', :now at time zone 'Europe/Stockholm') - interval '7 days')::date"
    removed = await session.execute(text(f"select flow_compact({last_week})"), {"now": now})
    return int(removed.scalar_one())
