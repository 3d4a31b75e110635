"""Coordinators' aggregates in PostgreSQL: reads of the flow rollups (``flow_rollup``) and of the
per-referral facts beside them (``flow_referral``), both kept current by the triggers of migration
``0005_flows``. Never a read of the raw referral tables.

Every query groups by at most two groupings, with the totals of each (PostgreSQL grouping sets), and
returns per key what the disclosure contract needs (``hub.domain.disclosure``): the value, the distinct
children (capped, see :func:`cube`) and the cell key. Nothing here commits.
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
    """One key of a query: referrals, distinct children (at most the cap), cell key, and the merged
    lead-time histogram (bucket -> referrals) when asked for."""

    value: int
    children: int
    cell_key: int
    histogram: Mapping[int, int] = field(default_factory=dict)


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
    """The rollup rows of the query, each with its group values g1 and g2, from ``flow_rollup``; ``most``
    is a lower bound of the row's distinct children (here exact)."""
    return _rows_of(
        "flow_rollup", _COLUMNS, _filters(scope, params), "f.children", "f.cell", scope, groups, measures, params
    )


def _read_rows(scope: Scope, groups: Sequence[str], measures: Sequence[str], params: dict[str, Any]) -> str:
    """The rows :func:`cube` sums: :func:`_rollup_rows`, or for lead measures, when the groups allow, the
    whole months of the scope from ``flow_rollup_month`` (a row is several weeks' rows summed: its
    children are no row's distinct children, so ``most`` is 0, and it has no cell) and the weeks before
    and after them from ``flow_rollup``."""
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
            "0",
            "null::uuid",
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
            parts.append(
                _rows_of("flow_rollup", _COLUMNS, where, "f.children", "f.cell", scope, groups, measures, params)
            )
    return " union all ".join(parts)


def _rows_of(
    table: str,
    columns: Mapping[str, str],
    where: list[str],
    most: str,
    cell: str,
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
        f"select f.value, {most} as most, f.children, f.cell_key, f.hist, {cell} as cell, {_as(exprs)} "
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


def _referral_rows(scope: Scope, groups: Sequence[str], params: dict[str, Any], predicate: str) -> str:
    """Referrals (flow_referral) of the query matching ``predicate``, each with its group values and
    child: one row per referral (per dimension, when grouped by dimension)."""
    exprs = []
    for g in groups:
        if g == "status":
            exprs.append("f.status")
        elif g == "reason":
            exprs.append("coalesce(f.reason, 'unspecified')")
        elif g == "dimension":
            exprs.append("d.dimension")
        else:
            exprs.append(_COLUMNS[g])
    where = [predicate, *_filters(scope, params)]
    source = "flow_referral f"
    if "dimension" in groups:
        source += " cross join unnest(f.dimensions) as d(dimension)"
        where.append("d.dimension <> '*'")
        if scope.dimension:
            where.append("d.dimension = :dimension")
    else:
        where.append(":dimension = any(f.dimensions)")
    params["dimension"] = scope.dimension or ALL
    columns = (
        f"1 as value, 1 as most, 1 as children, f.child_key as cell_key, null::bigint[] as hist, f.cell, f.child_key, "
        f"{_as(exprs)}"
    )
    return f"select {columns} from {source} where {' and '.join(where)}"


def _predicate(groups: Sequence[str], measures: Sequence[str], params: dict[str, Any]) -> str:
    """Which flow_referral rows are in ``measures`` (a family when grouped by status or reason)."""
    if "status" in groups:
        params["statuses"] = [m.removeprefix("status:") for m in measures]
        return "f.status = any(:statuses)"
    if "reason" in groups:
        params["reasons"] = [m.removeprefix("rejected:") for m in measures]
        return "f.status = 'rejected' and coalesce(f.reason, 'unspecified') = any(:reasons)"
    (measure,) = measures
    params["measure"] = measure
    return "flow_in(f, :measure)"


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


async def max_child_referrals(session: AsyncSession) -> int:
    """The most referrals any one child has (at least 1): how often one child can be counted when
    rollup rows are merged, since each referral is in one row of a measure and dimension."""
    found = await session.scalar(text("select max_child_referrals from flow_state where id = 1"))
    return max(1, int(found or 0))


async def cube(
    session: AsyncSession,
    scope: Scope,
    *,
    groups: Sequence[str],
    measures: Sequence[str],
    cap: int,
    histogram: bool = False,
) -> dict[Key, Aggregate]:
    """The rows in ``scope`` of ``measures`` (one measure; or, grouped by ``status`` or ``reason``, the
    measures of that family), grouped by ``groups`` (at most two) with every total.

    ``children`` is the number of distinct children, or ``cap`` if that is larger: exact up to the cap,
    which is all the disclosure rules need when ``cap`` is their k. A rollup row holds its exact distinct
    children; merged rows may share a child, so a key is settled without a set union when a lower bound
    reaches the cap: its largest row's children, or the sum over its rows divided by the most referrals
    any child has (each referral is in one row per measure and dimension). Keys still unsettled (few
    children by both bounds) are counted exactly from ``flow_referral``.

    ``cell_key`` is the sum of the rows' cell keys: each row's is exact; a child in two merged rows counts
    twice, which keeps it a fixed function of which children are in which rows (all the noise needs: the
    same rows give the same key, other rows another one)."""
    if len(groups) > 2:
        raise ValueError("at most two groupings")
    await _read_settings(session)
    params: dict[str, Any] = {}
    rows = _rollup_rows(scope, groups, measures, params)
    if REQUESTED in measures:  # the few requested referrals, from flow_referral
        requested = _referral_rows(scope, groups, params, "f.status = 'requested'")
        rows = f"{rows} union all select value, most, children, cell_key, hist, cell, g1, g2 from ({requested}) r"
    read = rows if REQUESTED in measures else _read_rows(scope, groups, measures, params)
    level, sets = _grouping(groups)
    result = await _fetch(
        session,
        f"""select {level}, sum(value), max(most), sum(children), sum(cell_key) % {MODULUS}
            from ({read}) x where x.value > 0 group by {sets}""",
        params,
    )
    totals: dict[Key, tuple[int, int, int, int]] = {}
    for bits, g1, g2, value, most, summed, cell_key in result:
        if value is None:  # the grand total of nothing
            continue
        totals[_key(groups, bits, (g1, g2))] = (int(value), int(most), int(summed), int(cell_key))

    multiplicity = await max_child_referrals(session)
    settled = {
        key: min(cap, max(most, math.ceil(summed / multiplicity))) for key, (_, most, summed, _) in totals.items()
    }
    small = [key for key, children in settled.items() if children < cap]
    exact = await _distinct_children(session, scope, groups, measures, small, rows, dict(params)) if small else {}

    histograms: dict[Key, dict[int, int]] = {}
    if histogram:
        _, bucket_sets = _grouping(groups, "bucket")
        # Unnested in the select list and summed per group and bucket before the grouping sets, the groups
        # computed once per row ("offset 0" keeps the planner from computing them per bucket): a third of
        # the time of a lateral unnest over a year of a county's cells.
        found = await _fetch(
            session,
            f"""select {level}, bucket, sum(count)::bigint
                from (select u.g1, u.g2, (u.e >> 32)::int as bucket, sum(u.e & {MODULUS - 1}) as count
                      from (select x.g1, x.g2, unnest(x.hist) as e
                            from ({read} offset 0) x where x.hist is not null) u
                      group by 1, 2, 3) h
                group by {bucket_sets}""",
            params,
        )
        by_row: dict[tuple[int, str, str], dict[int, int]] = {}
        for bits, g1, g2, bucket, count in found:  # a key's buckets, then the key once (thousands of rows)
            by_row.setdefault((bits, g1, g2), {})[bucket] = count
        histograms = {_key(groups, bits, (g1, g2)): h for (bits, g1, g2), h in by_row.items()}

    return {
        key: Aggregate(
            value=value,
            children=min(cap, exact[key]) if key in exact else settled[key],
            cell_key=cell_key,
            histogram=histograms.get(key, {}),
        )
        for key, (value, _, _, cell_key) in totals.items()
    }


@dataclass(frozen=True)
class Ask:
    """One :func:`cube` of a :func:`cubes` call."""

    measures: tuple[str, ...]
    cap: int
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
            return await cube(own, scope, groups=groups, measures=ask.measures, cap=ask.cap, histogram=ask.histogram)

    return list(await asyncio.gather(*(one(ask) for ask in asks)))


async def _distinct_children(
    session: AsyncSession,
    scope: Scope,
    groups: Sequence[str],
    measures: Sequence[str],
    keys: Sequence[Key],
    rows: str,
    params: dict[str, Any],
) -> dict[Key, int]:
    """Exact distinct children of ``keys``, from the referrals under them. ``rows`` (with ``params``) are
    the query's rollup rows: the cells of the small keys' rows are found there, and only those cells'
    referrals are read (index ``flow_referral_cell``). A key is small only while its rows hold few
    children, so it has few rows and its cells few referrals, however large the county's history."""
    wanted = set(keys)
    referrals = _referral_rows(scope, groups, params, _predicate(groups, measures, params))
    conditions = []
    if any(all(part == ALL for part in key) for key in wanted):
        conditions.append("true")
    else:
        for position, name in enumerate(("g1", "g2")[: len(groups)]):
            alone = sorted(
                k[position]
                for k in wanted
                if k[position] != ALL and all(p == ALL for i, p in enumerate(k) if i != position)
            )
            if alone:
                conditions.append(f"x.{name} = any(:small_{name})")
                params[f"small_{name}"] = alone
        both = sorted(f"{k[0]}\x1f{k[1]}" for k in wanted if len(k) == 2 and ALL not in k)
        if both:
            conditions.append("x.g1 || chr(31) || x.g2 = any(:small_cells)")
            params["small_cells"] = both
    small = " or ".join(conditions)
    level, sets = _grouping(groups)
    # The cells as an array: an index scan of flow_referral_cell per cell, where a join on the CTE let the
    # planner prefer a scan of every referral in the weeks.
    found = await _fetch(
        session,
        f"""with cells as materialized (select distinct x.cell from ({rows}) x where x.value > 0 and ({small}))
            select {level}, count(distinct x.child_key)
            from ({referrals} and f.cell = any(array(select cell from cells))) x
            where {small} group by {sets}""",
        params,
    )
    exact: dict[Key, int] = {}
    for bits, g1, g2, children in found:
        key = _key(groups, bits, (g1, g2))
        if key in wanted:
            exact[key] = int(children)
    return exact


@dataclass(frozen=True)
class Stalled:
    """Open referrals without a transition since the cutoff, per key: exact distinct children and their
    record keys' sum, and the median days since the last transition."""

    value: int
    children: int
    cell_key: int
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
    (index ``flow_referral_open``), grouped by ``groups`` with totals. The weeks of ``scope`` are not
    applied: a stall is about now, whenever the referral was sent."""
    await _read_settings(session)
    params: dict[str, Any] = {"steps": list(steps), "open": list(open_statuses), "cutoff": cutoff, "now": now}
    where = ["f.trappan_step = any(:steps)", "f.status = any(:open)", "f.changed_at < :cutoff"]
    unstepped = Scope(
        scope.week_from, scope.week_to, scope.municipalities, scope.sender_types, scope.recipient_types, scope.kinds
    )
    where += _filters(unstepped, params, weeks=False)
    where.append(":dimension = any(f.dimensions)")
    params["dimension"] = scope.dimension or ALL
    exprs = [("f.status" if g == "status" else _COLUMNS[g]) for g in groups]
    level, sets = _grouping(groups)
    result = await session.execute(
        text(
            f"""select {level}, count(*), count(distinct child_key), coalesce(sum(distinct child_key), 0) % {MODULUS},
                       percentile_cont(0.5) within group (order by waited)
                from (select {_as(exprs)}, f.child_key, extract(epoch from :now - f.changed_at) / 86400 as waited
                      from flow_referral f where {" and ".join(where)}) x
                group by {sets}"""
        ),
        params,
    )
    return {
        _key(groups, bits, (g1, g2)): Stalled(
            int(value), int(children), int(cell_key), None if median is None else float(median)
        )
        for bits, g1, g2, value, children, cell_key, median in result
    }
