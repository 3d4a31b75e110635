"""The SQL text of the flow reads: what each grouping is over the rollups, the scope's filters, the
grouping sets and the rows a query sums (from ``flow_rollup``, ``flow_rollup_month`` or
``flow_referral``), and a base cell's adjustment. Builds text and parameters; runs nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from hub.domain.disclosure import ADJUSTMENTS, DRAWS

ALL = "*"
"""A rolled-up grouping in a key (the disclosure module's ``TOTAL``)."""

MODULUS = 4294967296
REQUESTED = "status:requested"  # not kept in flow_rollup: read from flow_referral

# What each grouping is, over flow_rollup and over flow_referral (which have the same cell columns).
COLUMNS: dict[str, str] = {
    "municipality": "f.municipality",
    "sender_municipality": "f.sender_municipality",
    "recipient_municipality": "f.recipient_municipality",
    "sender_type": "f.sender_type",
    "recipient_type": "f.recipient_type",
    "kind": "f.kind",
    "step": "case when f.trappan_step < 0 then 'none' else f.trappan_step::text end",
    "week": """to_char(f.week, 'IYYY-"W"IW')""",
}


def period_columns(day: str) -> dict[str, str]:
    """Month, quarter and year of a row whose date in that month is ``day``. A week belongs to the month,
    quarter and year its Thursday is in (as ISO 8601 assigns weeks to years). Month and year come from the
    date's ISO text (DateStyle is set to ISO for these reads: _read_settings): to_char costs a third of a
    year's rollup read."""
    return {
        "month": f"left(({day})::text, 7)",
        "quarter": f"""to_char({day}, 'YYYY-"Q"Q')""",
        "year": f"left(({day})::text, 4)",
    }


COLUMNS.update(period_columns("f.week + 3"))
# What flow_rollup_month (by month, without the sender's and recipient's municipality) can answer.
MONTH_COLUMNS = {
    **{g: e for g, e in COLUMNS.items() if g not in ("week", "sender_municipality", "recipient_municipality")},
    **period_columns("f.month"),
}
# Groupings that are families of measures: the group value is the measure's suffix.
FAMILIES: dict[str, str] = {"status": "status:", "reason": "rejected:"}
PERIODS = ("week", "month", "quarter", "year")
GROUPINGS = frozenset(COLUMNS) | frozenset(FAMILIES) | {"dimension"}
STALL_GROUPINGS = frozenset(COLUMNS) - set(PERIODS) | {"status"}


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


def adjustment_sql(cell_key: str, children: str) -> str:
    """SQL for a base cell's adjustment, ``hub.domain.disclosure.adjustment(children, draw)``: the draw is
    PostgreSQL's ``hashint8extended`` of the cell's secret key seeded with its children, a fast built-in
    whose values hash partitioning relies on staying the same. The same children in a base cell give the
    same adjustment in every query; an empty cell (no children) adds nothing."""
    rows = ",".join("{" + ",".join(map(str, ADJUSTMENTS[c])) + "}" for c in (1, 2, 3))
    draw = f"(hashint8extended({cell_key}, {children}) & 2147483647) % {DRAWS}"
    return f"(('{{{rows}}}'::smallint[])[least({children}, 3)][1 + {draw}])"


ADJUSTMENT = adjustment_sql("f.cell_key", "f.children")


Key = tuple[str, ...]


def scope_filters(scope: Scope, params: dict[str, Any], *, weeks: bool = True) -> list[str]:
    where = []
    if weeks:
        where.append("f.week between :week_from and :week_to")
        params.update(week_from=scope.week_from, week_to=scope.week_to)
    where += unperiodic_filters(scope, params)
    return where


def unperiodic_filters(scope: Scope, params: dict[str, Any]) -> list[str]:
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


def grouping_sets(groups: Sequence[str], *extra: str) -> tuple[str, str]:
    """The select list's start: ``grouping(...)`` over the used group expressions (a bit per rolled-up
    one) and the two group columns ('' for an unused one); and the grouping sets: both groups, each
    alone, and none (every total), each with ``extra`` expressions."""
    used = ["g1", "g2"][: len(groups)]
    level = f"grouping({', '.join(used)})" if used else "0"
    columns = ", ".join([*used, *["''"] * (2 - len(used))])
    sets = [used, *([[name] for name in used] if len(used) == 2 else []), []] if used else [[]]
    inner = ", ".join("(" + ", ".join([*extra, *s]) + ")" for s in sets)
    return f"{level}, {columns}", f"grouping sets ({inner})"


def result_key(groups: Sequence[str], level: int, row: Sequence[Any]) -> Key:
    """The key of a result row: its group values, ``*`` where the grouping rolled them up."""
    n = len(groups)
    return tuple(ALL if level & (1 << (n - 1 - i)) else str(row[i]) for i in range(n))


def group_columns(exprs: Sequence[str]) -> str:
    padded = [*exprs, *["''"] * (2 - len(exprs))]
    return f"{padded[0]} as g1, {padded[1]} as g2"


# A base cell's key in each rollup: its rows differ only in their slot (migration 0025).
BASE_CELLS = {
    "flow_rollup": "f.measure, f.dimension, f.week, f.cell",
    "flow_rollup_month": "f.measure, f.dimension, f.month, f.municipality, f.sender_type, f.recipient_type, f.kind, "
    "f.trappan_step",
}


def rollup_rows(
    scope: Scope, groups: Sequence[str], measures: Sequence[str], params: dict[str, Any], *, slots: bool = False
) -> str:
    """The base cells of the query, each with its group values g1 and g2, from ``flow_rollup``; with
    ``slots``, their rows as stored instead (see :func:`rows_of`)."""
    where = scope_filters(scope, params)
    return rows_of("flow_rollup", COLUMNS, where, scope, groups, measures, params, slots=slots)


def histogram_rows(
    scope: Scope, groups: Sequence[str], measures: Sequence[str], params: dict[str, Any], *, slots: bool = False
) -> str:
    """The rows a cube with histograms sums: :func:`rollup_rows`, or for lead measures, when the groups
    allow, the whole months of the scope from ``flow_rollup_month`` and the weeks before and after them
    from ``flow_rollup`` (``slots`` as there). A monthly row is its weeks' rows summed, children included,
    and has its own adjustment from its own key: fine for the statistics' thresholds these cubes serve,
    never for a published count (a count read both ways would give two readings of the same base cells)."""
    months = whole_months(scope)
    if months is None or not all(m.startswith("lead:") for m in measures) or not set(groups) <= MONTH_COLUMNS.keys():
        return rollup_rows(scope, groups, measures, params, slots=slots)
    first, last = months
    params.update(month_from=first, month_to=last)
    parts = [
        rows_of(
            "flow_rollup_month",
            MONTH_COLUMNS,
            ["f.month between :month_from and :month_to", *unperiodic_filters(scope, params)],
            scope,
            groups,
            measures,
            params,
            slots=slots,
        )
    ]
    for name, weeks in (
        ("head", (scope.week_from, first_week(first) - WEEK)),
        ("tail", (first_week(next_month(last)), scope.week_to)),
    ):
        if weeks[0] <= weeks[1]:
            params.update({f"{name}_from": weeks[0], f"{name}_to": weeks[1]})
            where = [f"f.week between :{name}_from and :{name}_to", *unperiodic_filters(scope, params)]
            parts.append(rows_of("flow_rollup", COLUMNS, where, scope, groups, measures, params, slots=slots))
    return " union all ".join(parts)


def rows_of(
    table: str,
    columns: Mapping[str, str],
    where: list[str],
    scope: Scope,
    groups: Sequence[str],
    measures: Sequence[str],
    params: dict[str, Any],
    *,
    slots: bool = False,
) -> str:
    """The query's rows of ``table`` with their group values g1 and g2: per base cell its value, distinct
    children and adjustment, its slots' rows summed first (migration 0025: the figures and the adjustment
    are the ones one row per cell would hold; the group values are the cell's, the same in each slot).
    With ``slots``, the rows as stored with their histograms, for what is a plain sum over rows whatever
    cells they are in (the histograms' counts per bucket), without grouping them into cells."""
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
    condition = " and ".join(where)
    if slots:
        return f"select f.value, f.hist, {group_columns(exprs)} from {table} f where {condition}"
    # Summing the slots costs a hash aggregate over every row read (as much again as reading them). Rows of
    # the query in other slots than 0 are found by the partial index on them; without any, each row is a
    # whole cell and is read as it is. The check is one uncorrelated subquery, evaluated once before either
    # branch runs, in the statement's snapshot: exactly one branch reads the rows.
    spread = f"exists (select from {table} f where {condition} and f.slot <> 0)"
    whole = f"select f.value, f.children, {ADJUSTMENT} as adjustment, {group_columns(exprs)} from {table} f"
    cells = (
        f"select sum(f.value)::integer as value, sum(f.children)::integer as children, "
        f"(sum(f.cell_key) % {MODULUS})::bigint as cell_key, {group_columns(exprs)} "
        f"from {table} f where {condition} and {spread} group by {BASE_CELLS[table]}, g1, g2"
    )
    return (
        f"{whole} where {condition} and not {spread} "
        f"union all select f.value, f.children, {ADJUSTMENT} as adjustment, f.g1, f.g2 from ({cells}) f"
    )


WEEK = timedelta(weeks=1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def first_week(month: date) -> date:
    """The Monday of the first ISO week whose Thursday is in ``month`` (its first day)."""
    return month + timedelta(days=(3 - month.weekday()) % 7 - 3)


def whole_months(scope: Scope) -> tuple[date, date] | None:
    """The first days of the first and last months all of whose weeks the scope covers, if any."""
    first = (scope.week_from + timedelta(days=3)).replace(day=1)
    if first_week(first) < scope.week_from:
        first = next_month(first)
    last = (scope.week_to + timedelta(days=3)).replace(day=1)
    if first_week(next_month(last)) - WEEK > scope.week_to:
        last = (last - timedelta(days=1)).replace(day=1)
    return (first, last) if first <= last else None


def requested_rows(scope: Scope, groups: Sequence[str], params: dict[str, Any]) -> str:
    """The base cells of the referrals in ``requested`` (not kept in ``flow_rollup``: see migration 0005),
    from ``flow_referral``: per cell (and dimension, when grouped by it) their number, distinct children
    and adjustment, as a rollup row of ``status:requested`` would hold them."""
    exprs = ["f.status" if g == "status" else "d.dimension" if g == "dimension" else COLUMNS[g] for g in groups]
    initial = "f.status in (select c.status from referral_status_class c where c.initial)"  # the domain's
    where = [initial, *scope_filters(scope, params)]
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
                from (select f.cell, f.child_key, {group_columns(exprs)} from {source} where {" and ".join(where)}) r
                group by r.cell, r.g1, r.g2"""
    return (
        f"select c.value, c.children, {adjustment_sql('c.cell_key', 'c.children')} as adjustment, "
        f"c.g1, c.g2 from ({cells}) c"
    )
