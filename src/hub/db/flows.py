"""Coordinators' aggregates in PostgreSQL: reads of the flow rollups (``flow_rollup``) and of the
per-referral facts beside them (``flow_referral``), both kept current by the triggers of migration
``0005_flows``. Never a read of the raw referral tables.

Every query groups by at most two groupings, with the totals of each (PostgreSQL grouping sets), and
returns per key what the disclosure contract needs (``hub.domain.disclosure``): sums over the key's
*base cells* (a rollup row: measure × dimension × week × cell) of their value, their distinct children
and their adjustments (:func:`adjustment_sql`). Nothing here commits.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.engine import Statement, driver
from hub.domain.disclosure import ADJUSTMENTS, DRAWS

ALL = "*"
"""A rolled-up grouping in a key (the disclosure module's ``TOTAL``)."""

MODULUS = 4294967296
REQUESTED = "status:requested"  # not kept in flow_rollup: read from flow_referral

# What each grouping is, over flow_rollup and over flow_referral (which have the same cell columns).
_COLUMNS: dict[str, str] = {
    "municipality": "f.municipality",
    "sender_municipality": "f.sender_municipality",
    "recipient_municipality": "f.recipient_municipality",
    "sender_type": "f.sender_type",
    "recipient_type": "f.recipient_type",
    "kind": "f.kind",
    "step": "case when f.trappan_step < 0 then 'none' else f.trappan_step::text end",
    "week": """to_char(f.week, 'IYYY-"W"IW')""",
}


def _periods(day: str) -> dict[str, str]:
    """Month, quarter and year of a row whose date in that month is ``day``. A week belongs to the month,
    quarter and year its Thursday is in (as ISO 8601 assigns weeks to years). Month and year come from the
    date's ISO text (DateStyle is set to ISO for these reads: _read_settings): to_char costs a third of a
    year's rollup read."""
    return {
        "month": f"left(({day})::text, 7)",
        "quarter": f"""to_char({day}, 'YYYY-"Q"Q')""",
        "year": f"left(({day})::text, 4)",
    }


_COLUMNS.update(_periods("f.week + 3"))
# What flow_rollup_month (by month, without the sender's and recipient's municipality) can answer.
_MONTH_COLUMNS = {
    **{g: e for g, e in _COLUMNS.items() if g not in ("week", "sender_municipality", "recipient_municipality")},
    **_periods("f.month"),
}
# Groupings that are families of measures: the group value is the measure's suffix.
FAMILIES: dict[str, str] = {"status": "status:", "reason": "rejected:"}
PERIODS = ("week", "month", "quarter", "year")
GROUPINGS = frozenset(_COLUMNS) | frozenset(FAMILIES) | {"dimension"}
STALL_GROUPINGS = frozenset(_COLUMNS) - set(PERIODS) | {"status"}


@dataclass(frozen=True)
class Scope:
    """Which referrals: sent in the ISO weeks from ``week_from`` to ``week_to`` (Mondays, inclusive),
    and, where given, in one of these municipalities (the referral's, see ``docs/coordinators.md``),
    from and to these organisation types, of these kinds and Trappan steps (-1: none), with this
    wellbeing dimension."""

    week_from: date
    week_to: date
    municipalities: tuple[str, ...] = ()
    sender_types: tuple[str, ...] = ()
    recipient_types: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    steps: tuple[int, ...] = ()
    dimension: str | None = None


@dataclass(frozen=True)
class Aggregate:
    """One key of a query, summed over its base cells: referrals, each cell's distinct children, the
    cells' adjustments, and the merged lead-time histogram (bucket -> referrals) when asked for."""

    value: int
    children: int
    noise: int
    histogram: Mapping[int, int] = field(default_factory=dict)


def adjustment_sql(cell_key: str, children: str) -> str:
    """SQL for a base cell's adjustment, ``hub.domain.disclosure.adjustment(children, draw)``: the draw is
    PostgreSQL's ``hashint8extended`` of the cell's secret key seeded with its children, a fast built-in
    whose values hash partitioning relies on staying the same. The same children in a base cell give the
    same adjustment in every query; an empty cell (no children) adds nothing."""
    rows = ",".join("{" + ",".join(map(str, ADJUSTMENTS[c])) + "}" for c in (1, 2, 3))
    draw = f"(hashint8extended({cell_key}, {children}) & 2147483647) % {DRAWS}"
    return f"(('{{{rows}}}'::smallint[])[least({children}, 3)][1 + {draw}])"


_ADJUSTMENT = adjustment_sql("f.cell_key", "f.children")


Key = tuple[str, ...]


def _filters(scope: Scope, params: dict[str, Any], *, weeks: bool = True) -> list[str]:
    where = []
    if weeks:
        where.append("f.week between :week_from and :week_to")
        params.update(week_from=scope.week_from, week_to=scope.week_to)
    where += _unperiodic_filters(scope, params)
    return where


def _unperiodic_filters(scope: Scope, params: dict[str, Any]) -> list[str]:
    where = []
    for name, column, values in (
        ("municipalities", "municipality", scope.municipalities),
        ("sender_types", "sender_type", scope.sender_types),
        ("recipient_types", "recipient_type", scope.recipient_types),
        ("kinds", "kind", scope.kinds),
    ):
        if values:
            where.append(f"f.{column} = any(:{name})")
            params[name] = list(values)
    if scope.steps:
        where.append("f.trappan_step = any(:steps)")
        params["steps"] = list(scope.steps)
    return where


def _grouping(groups: Sequence[str], *extra: str) -> tuple[str, str]:
    """The select list's start: ``grouping(...)`` over the used group expressions (a bit per rolled-up
    one) and the two group columns ('' for an unused one); and the grouping sets: both groups, each
    alone, and none (every total), each with ``extra`` expressions."""
    used = ["g1", "g2"][: len(groups)]
    level = f"grouping({', '.join(used)})" if used else "0"
    columns = ", ".join([*used, *["''"] * (2 - len(used))])
    sets = [used, *([[name] for name in used] if len(used) == 2 else []), []] if used else [[]]
    inner = ", ".join("(" + ", ".join([*extra, *s]) + ")" for s in sets)
    return f"{level}, {columns}", f"grouping sets ({inner})"


def _key(groups: Sequence[str], level: int, row: Sequence[Any]) -> Key:
    """The key of a result row: its group values, ``*`` where the grouping rolled them up."""
    n = len(groups)
    return tuple(ALL if level & (1 << (n - 1 - i)) else str(row[i]) for i in range(n))


def _as(exprs: Sequence[str]) -> str:
    padded = [*exprs, *["''"] * (2 - len(exprs))]
    return f"{padded[0]} as g1, {padded[1]} as g2"


def _rollup_rows(scope: Scope, groups: Sequence[str], measures: Sequence[str], params: dict[str, Any]) -> str:
    """The base cells of the query, each with its group values g1 and g2, from ``flow_rollup``."""
    return _rows_of("flow_rollup", _COLUMNS, _filters(scope, params), scope, groups, measures, params)


def _histogram_rows(scope: Scope, groups: Sequence[str], measures: Sequence[str], params: dict[str, Any]) -> str:
    """The rows a cube with histograms sums: :func:`_rollup_rows`, or for lead measures, when the groups
    allow, the whole months of the scope from ``flow_rollup_month`` and the weeks before and after them
    from ``flow_rollup``. A monthly row is its weeks' rows summed, children included, and has its own
    adjustment from its own key: fine for the statistics' thresholds these cubes serve, never for a
    published count (a count read both ways would give two readings of the same base cells)."""
    months = _whole_months(scope)
    if months is None or not all(m.startswith("lead:") for m in measures) or not set(groups) <= _MONTH_COLUMNS.keys():
        return _rollup_rows(scope, groups, measures, params)
    first, last = months
    params.update(month_from=first, month_to=last)
    parts = [
        _rows_of(
            "flow_rollup_month",
            _MONTH_COLUMNS,
            ["f.month between :month_from and :month_to", *_unperiodic_filters(scope, params)],
            scope,
            groups,
            measures,
            params,
        )
    ]
    for name, weeks in (
        ("head", (scope.week_from, _first_week(first) - WEEK)),
        ("tail", (_first_week(_next_month(last)), scope.week_to)),
    ):
        if weeks[0] <= weeks[1]:
            params.update({f"{name}_from": weeks[0], f"{name}_to": weeks[1]})
            where = [f"f.week between :{name}_from and :{name}_to", *_unperiodic_filters(scope, params)]
            parts.append(_rows_of("flow_rollup", _COLUMNS, where, scope, groups, measures, params))
    return " union all ".join(parts)


def _rows_of(
    table: str,
    columns: Mapping[str, str],
    where: list[str],
    scope: Scope,
    groups: Sequence[str],
    measures: Sequence[str],
    params: dict[str, Any],
) -> str:
    exprs = [
        f"substr(f.measure, {len(FAMILIES[g]) + 1})" if g in FAMILIES else columns.get(g, "f.dimension") for g in groups
    ]
    where = ["f.measure = any(:measures)", *where]
    params["measures"] = [m for m in measures if m != REQUESTED]
    if "dimension" in groups:
        where.append("f.dimension <> '*'")
        if scope.dimension:
            where.append("f.dimension = :dimension")
    else:
        where.append("f.dimension = :dimension")
    params["dimension"] = scope.dimension or ALL
    return (
        f"select f.value, f.children, {_ADJUSTMENT} as adjustment, f.hist, {_as(exprs)} "
        f"from {table} f where {' and '.join(where)}"
    )


WEEK = timedelta(weeks=1)


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _first_week(month: date) -> date:
    """The Monday of the first ISO week whose Thursday is in ``month`` (its first day)."""
    return month + timedelta(days=(3 - month.weekday()) % 7 - 3)


def _whole_months(scope: Scope) -> tuple[date, date] | None:
    """The first days of the first and last months all of whose weeks the scope covers, if any."""
    first = (scope.week_from + timedelta(days=3)).replace(day=1)
    if _first_week(first) < scope.week_from:
        first = _next_month(first)
    last = (scope.week_to + timedelta(days=3)).replace(day=1)
    if _first_week(_next_month(last)) - WEEK > scope.week_to:
        last = (last - timedelta(days=1)).replace(day=1)
    return (first, last) if first <= last else None


def _requested_rows(scope: Scope, groups: Sequence[str], params: dict[str, Any]) -> str:
    """The base cells of the referrals in ``requested`` (not kept in ``flow_rollup``: see migration 0005),
    from ``flow_referral``: per cell (and dimension, when grouped by it) their number, distinct children
    and adjustment, as a rollup row of ``status:requested`` would hold them."""
    exprs = ["f.status" if g == "status" else "d.dimension" if g == "dimension" else _COLUMNS[g] for g in groups]
    initial = "f.status in (select c.status from referral_status_class c where c.initial)"  # the domain's
    where = [initial, *_filters(scope, params)]
    source = "flow_referral f"
    if "dimension" in groups:
        source += " cross join unnest(f.dimensions) as d(dimension)"
        where.append("d.dimension <> '*'")
        if scope.dimension:
            where.append("d.dimension = :dimension")
    else:
        where.append(":dimension = any(f.dimensions)")
    params["dimension"] = scope.dimension or ALL
    cells = f"""select count(*) as value, count(distinct r.child_key)::integer as children,
                       (sum(distinct r.child_key) % {MODULUS})::bigint as cell_key, r.g1, r.g2
                from (select f.cell, f.child_key, {_as(exprs)} from {source} where {" and ".join(where)}) r
                group by r.cell, r.g1, r.g2"""
    return (
        f"select c.value, c.children, {adjustment_sql('c.cell_key', 'c.children')} as adjustment, "
        f"null::bigint[] as hist, c.g1, c.g2 from ({cells}) c"
    )


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
    :func:`_histogram_rows`: for statistics only)."""
    if len(groups) > 2:
        raise ValueError("at most two groupings")
    await _read_settings(session)
    params: dict[str, Any] = {}
    if REQUESTED in measures:  # the few requested referrals, from flow_referral
        rows = f"{_rollup_rows(scope, groups, measures, params)} union all {_requested_rows(scope, groups, params)}"
    elif histogram:
        rows = _histogram_rows(scope, groups, measures, params)
    else:
        rows = _rollup_rows(scope, groups, measures, params)
    level, sets = _grouping(groups)
    result = await _fetch(
        session,
        f"""select {level}, sum(value), sum(children), sum(adjustment)
            from ({rows}) x where x.value > 0 group by {sets}""",
        params,
    )
    totals = {
        _key(groups, bits, (g1, g2)): (int(value), int(children), int(noise))
        for bits, g1, g2, value, children, noise in result
        if value is not None  # the grand total of nothing
    }
    histograms = await _histograms(session, groups, rows, params) if histogram else {}
    return {
        key: Aggregate(value, children, noise, histograms.get(key, {}))
        for key, (value, children, noise) in totals.items()
    }


async def _histograms(
    session: AsyncSession, groups: Sequence[str], rows: str, params: dict[str, Any]
) -> dict[Key, dict[int, int]]:
    """Each key's merged lead-time histogram (bucket -> referrals) over ``rows``."""
    level, _ = _grouping(groups)
    _, bucket_sets = _grouping(groups, "bucket")
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
    return {_key(groups, bits, (g1, g2)): h for (bits, g1, g2), h in by_row.items()}


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
    where += _filters(unstepped, params, weeks=False)
    where.append(":dimension = any(f.dimensions)")
    params["dimension"] = scope.dimension or ALL
    exprs = [("f.status" if g == "status" else _COLUMNS[g]) for g in groups]
    level, sets = _grouping(groups, "day")
    found = await _fetch(
        session,
        f"""select {level}, day, sum(value), sum(children), sum({adjustment_sql("cell_key", "children")})
            from (select r.g1, r.g2, r.day, count(*) as value, count(distinct r.child_key)::integer as children,
                         (sum(distinct r.child_key) % {MODULUS})::bigint as cell_key
                  from (select {_as(exprs)}, f.cell, f.status, {_UTC_DAY} as day, f.child_key
                        from flow_referral f where {" and ".join(where)}) r
                  group by r.g1, r.g2, r.cell, r.status, r.day) c
            group by {sets}""",
        params,
    )
    today = int(now.timestamp()) // 86400
    days: dict[Key, list[tuple[int, int, int, int]]] = {}
    for bits, g1, g2, day, value, children, noise in found:
        days.setdefault(_key(groups, bits, (g1, g2)), []).append((today - day, int(value), int(children), int(noise)))
    return {key: _stalled(per_day) for key, per_day in days.items()}


def _stalled(per_day: list[tuple[int, int, int, int]]) -> Stalled:
    """A key's sums over its days, and the median of the days waited as percentile_cont would give it."""
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
