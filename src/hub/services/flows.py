"""Coordinators' aggregates over referral flows: counts, the flow matrix, lead times, rejections and
redirections, stalls and trends. Read from the rollups (``hub.db.flows``), never from raw referrals,
and every table protected by ``hub.domain.disclosure.protect`` before it leaves; each read is audited.

Only the role ``coordinator`` may ask. See ``docs/coordinators.md`` ("Queries") for what each answer
means and how the period, the municipality and the statistics are defined.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.config import Settings
from hub.db import flows as db
from hub.domain.audit import AuditAction
from hub.domain.disclosure import (
    TOTAL,
    Count,
    DisclosureRules,
    ProtectedTable,
    Published,
    Statistic,
    Table,
    protect,
    rate,
)
from hub.domain.errors import Explanation, FieldError, InvalidInput, NotPermitted
from hub.domain.principal import Role
from hub.domain.vocabulary import Vocabulary
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.codes import unknown_codes
from hub.services.context import Actor

TRANSITIONS = ("received", "accepted", "completed")
# What a count can count (the ``measure`` of counts and trends) → its rollup measure.
MEASURES: dict[str, str] = {
    "sent": "sent",
    "received": "lead:received",
    "accepted": "lead:accepted",
    "completed": "lead:completed",
    "rejected": "status:rejected",
    "suggested": "suggested",
    "redirected": "redirected",
}
PERIODS = db.PERIODS
GROUPINGS = db.GROUPINGS - {"reason"}
STALL_GROUPINGS = db.STALL_GROUPINGS
MAX_WEEKS = 530  # ten years and a little: a query stays a bounded read of the rollups


@dataclass(frozen=True)
class FlowFilter:
    """What a coordinator narrows a query to. Dates are snapped outwards to whole weeks (or to whole
    months, quarters or years when the hub's finest period is coarser). Steps are "0"–"3" or "none";
    municipalities SCB codes or "county" (referrals between county-wide units)."""

    date_from: date | None = None
    date_to: date | None = None
    municipalities: tuple[str, ...] = ()
    sender_types: tuple[str, ...] = ()
    recipient_types: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    dimension: str | None = None


@dataclass(frozen=True)
class FlowRow:
    """One published key: its group values (``*`` where it is a total over that grouping) and its values
    by name; ``None`` is hidden (too few children, or it would let a hidden value be worked out)."""

    key: tuple[tuple[str, str], ...]
    values: dict[str, float | None]

    @property
    def total(self) -> bool:
        return any(value == TOTAL for _, value in self.key)


@dataclass(frozen=True)
class FlowAnswer:
    """A protected table and what it was computed over: the weeks (Mondays of the first and last), the
    groupings, the threshold, and the notes to show beside it."""

    table: str
    by: tuple[str, ...]
    columns: tuple[str, ...]
    week_from: date
    week_to: date
    k: int
    rows: tuple[FlowRow, ...]
    notes: tuple[Explanation, ...]
    filters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """What every query needs besides the session it reads with: who asks, the hub's settings and
    vocabulary, and where its audit entry is written (the primary: the reads may be on a replica)."""

    actor: Actor
    settings: Settings
    vocabulary: Vocabulary
    audit_sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def of(cls, actor: Actor, runtime: Runtime) -> Context:
        return cls(actor, runtime.settings, runtime.vocabulary, runtime.sessions)

    @property
    def rules(self) -> DisclosureRules:
        return DisclosureRules(k=self.settings.disclosure_k, finest_period=self.settings.flows_finest_period)


# --- the use cases -----------------------------------------------------------------------------------------


async def counts(
    session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: Sequence[str], measure: str = "sent"
) -> FlowAnswer:
    """Referrals (or another ``measure``) by one or two groupings, with totals. ``status`` counts the
    current status of the referrals sent; ``dimension`` only alone (a referral can have several)."""
    return await _counts(session, ctx, flt, _groups(ctx, by, GROUPINGS), measure, "counts")


async def _counts(
    session: AsyncSession, ctx: Context, flt: FlowFilter, groups: tuple[str, ...], measure: str, table: str
) -> FlowAnswer:
    if "status" in groups and measure != "sent":
        raise _invalid("measure", "the status grouping counts sent referrals by their current status")
    if "dimension" in groups and len(groups) > 1:
        raise _invalid("by", "dimension cannot be combined with another grouping (a referral has several)")
    scope = _scope(ctx, flt)
    measures = _family(ctx, groups) or [_measure(measure)]
    aggs = await db.cube(session, scope, groups=groups, measures=measures)
    if "dimension" in groups:  # the total: every referral once, from the rows of all dimensions
        whole = await db.cube(session, scope, groups=(), measures=measures)
        aggs[(TOTAL,)] = whole.get((), db.Aggregate(0, 0, 0))
    protected = protect(_table(aggs, groups), rules=ctx.rules)
    rows = _rows(groups, protected, lambda key, p: {measure: p.value})
    return await _answer(session, ctx, table, groups, (measure,), scope, flt, rows, [protected])


async def matrix(
    session: AsyncSession, *, ctx: Context, flt: FlowFilter, level: str = "type", measure: str = "sent"
) -> FlowAnswer:
    """The flow matrix: sender organisation type → recipient type (or municipality → municipality)."""
    authorise(ctx.actor)
    if level not in ("type", "municipality"):
        raise _invalid("level", "type or municipality")
    groups = (f"sender_{level}", f"recipient_{level}")
    scope = _scope(ctx, flt)
    aggs = await db.cube(session, scope, groups=groups, measures=[_measure(measure)])
    protected = protect(_table(aggs, groups), rules=ctx.rules)
    rows = _rows(groups, protected, lambda key, p: {measure: p.value})
    return await _answer(session, ctx, "matrix", groups, (measure,), scope, flt, rows, [protected])


async def lead_times(session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: Sequence[str]) -> FlowAnswer:
    """Per key, referrals sent and the median and 90th percentile of days from sent to received, to
    accepted and to completed (of those that got there), from log-spaced histograms. A median needs k
    children, a 90th percentile twice as many (with fewer it is close to the largest single value)."""
    groups = _groups(ctx, by, GROUPINGS - {"status", "dimension"})
    scope = _scope(ctx, flt)
    k = ctx.rules.k
    asks = [db.Ask(("sent",)), *(db.Ask((f"lead:{t}",), histogram=True) for t in TRANSITIONS)]
    sent, *leads = await db.cubes(session, scope, groups=groups, asks=asks)
    reached = dict(zip(TRANSITIONS, leads, strict=True))

    def statistics(key: db.Key) -> dict[str, Statistic]:
        stats: dict[str, Statistic] = {}
        for t in TRANSITIONS:
            agg = reached[t].get(key)
            if agg is not None and agg.histogram:
                median, p90 = quantiles(agg.histogram, (0.5, 0.9))
                stats[f"{t}_median_days"] = Statistic(_days(median), agg.children, agg.noise)
                stats[f"{t}_p90_days"] = Statistic(_days(p90), agg.children, agg.noise, min_children=2 * k)
        return stats

    protected = protect(_table(sent, groups, statistics), rules=ctx.rules)
    columns = ("sent", *(f"{t}_{s}_days" for t in TRANSITIONS for s in ("median", "p90")))
    rows = _rows(groups, protected, lambda key, p: {"sent": p.value, **{c: p.statistics.get(c) for c in columns[1:]}})
    return await _answer(session, ctx, "lead-times", groups, columns, scope, flt, rows, [protected])


async def rejections(session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: str) -> FlowAnswer:
    """Rejections per ``by`` and reason code, with the rejection rate, and redirections: rejections with
    a suggested alternative, and how many of those children were then sent there."""
    (group,) = _groups(ctx, [by], GROUPINGS - {"status", "dimension"})
    scope = _scope(ctx, flt)
    by_reason = await db.cube(session, scope, groups=(group, "reason"), measures=_family(ctx, ["reason"]))
    reasons = protect(_table(by_reason, (group, "reason")), rules=ctx.rules)
    per_group = {}
    for name in ("sent", "suggested", "redirected"):
        aggs = await db.cube(session, scope, groups=(group,), measures=[name])
        per_group[name] = protect(_table(aggs, (group,)), rules=ctx.rules)
    empty = Published(0)
    rows = [
        FlowRow(((group, label), ("reason", reason)), {"rejected": published.value})
        for (label, reason), published in reasons.items()
        if reason != TOTAL
    ]
    for (label,), sent in per_group["sent"].items():
        published = _get(reasons, (label, TOTAL), empty)
        suggested = _get(per_group["suggested"], (label,), empty)
        redirected = _get(per_group["redirected"], (label,), empty)
        rows.append(
            FlowRow(
                ((group, label), ("reason", TOTAL)),
                {
                    "sent": sent.value,
                    "rejected": published.value,
                    "rejection_rate": _rate(published, sent),
                    "suggested": suggested.value,
                    "redirected": redirected.value,
                    "redirection_rate": _rate(redirected, suggested),
                },
            )
        )
    columns = ("sent", "rejected", "rejection_rate", "suggested", "redirected", "redirection_rate")
    return await _answer(
        session,
        ctx,
        "rejections",
        (group, "reason"),
        columns,
        scope,
        flt,
        _sorted(rows),
        [reasons, *per_group.values()],
    )


async def stalls(
    session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: Sequence[str], days: int | None, step: str = "2"
) -> FlowAnswer:
    """Open referrals at a Trappan step (default 2) with no transition for more than ``days`` (default
    the hub's ``stall_days``), by where they are stuck, with the median days they have waited."""
    groups = _groups(ctx, by, STALL_GROUPINGS)
    days = ctx.settings.stall_days if days is None else days
    if not 1 <= days <= 3650:
        raise _invalid("days", "between 1 and 3650")
    steps = _steps((step,), "step")
    scope = _scope(ctx, flt)
    statuses = ctx.vocabulary.get("referral-statuses").concepts()  # type: ignore[union-attr]
    open_statuses = sorted(c.code for c in statuses if not c.properties.get("terminal"))
    # Whole days (UTC, cheap to compute per referral): a stall's base cell is its cell, status and the
    # day of its last transition, so the cutoff must never split a day.
    cutoff = datetime.combine(ctx.actor.now.astimezone(UTC).date() - timedelta(days=days - 1), time(0), UTC)
    found = await db.stalls(
        session,
        scope,
        groups=groups,
        steps=steps,
        open_statuses=open_statuses,
        cutoff=cutoff,
        now=ctx.actor.now,
    )
    aggs = {key: db.Aggregate(s.value, s.children, s.noise) for key, s in found.items()}
    waited = {key: s.median_days for key, s in found.items()}

    def statistics(key: db.Key) -> dict[str, Statistic]:
        median = waited.get(key)
        agg = aggs[key]
        return {} if median is None else {"median_days_waiting": Statistic(round(median, 1), agg.children, agg.noise)}

    protected = protect(_table(aggs, groups, statistics), rules=ctx.rules)
    columns = ("stalled", "median_days_waiting")
    rows = _rows(
        groups,
        protected,
        lambda key, p: {"stalled": p.value, "median_days_waiting": p.statistics.get("median_days_waiting")},
    )
    extra = {"days": days, "step": step}
    return await _answer(session, ctx, "stalls", groups, columns, scope, flt, rows, [protected], extra)


async def trends(
    session: AsyncSession,
    *,
    ctx: Context,
    flt: FlowFilter,
    period: str = "month",
    measure: str = "sent",
    by_municipality: bool = False,
) -> FlowAnswer:
    """A measure per week, month, quarter or year; with ``by_municipality`` each municipality's series
    beside the county's (the column totals)."""
    authorise(ctx.actor)
    if period not in PERIODS:
        raise _invalid("period", f"one of {', '.join(PERIODS)}")
    by = ("municipality", period) if by_municipality else (period,)
    return await _counts(session, ctx, flt, _groups(ctx, by, GROUPINGS), measure, "trends")


# --- building and protecting tables ------------------------------------------------------------------------


def _table(
    aggs: Mapping[db.Key, db.Aggregate],
    groups: Sequence[str],
    statistics: Callable[[db.Key], Mapping[str, Statistic]] | None = None,
) -> Table:
    """The disclosure table of a grouped query: one-way with its total, or two-way with every total."""

    def count(key: db.Key) -> Count:
        agg = aggs.get(key)
        if agg is None or agg.value == 0:
            return Count(0, 0)
        return Count(agg.value, agg.children, agg.noise, statistics(key) if statistics else {})

    if len(groups) == 1:
        cells = {key[0]: count(key) for key in aggs if key[0] != TOTAL}
        return Table.one_way(cells, total=count((TOTAL,)))
    pairs = {(key[0], key[1]): count(key) for key in aggs if TOTAL not in key}
    return Table.two_way(
        pairs,
        rows={key[0]: count(key) for key in aggs if key[0] != TOTAL and key[1] == TOTAL},
        columns={key[1]: count(key) for key in aggs if key[0] == TOTAL and key[1] != TOTAL},
        total=count((TOTAL, TOTAL)),
    )


def _rows(
    groups: Sequence[str],
    protected: ProtectedTable,
    values: Callable[[db.Key, Published], dict[str, float | None]],
) -> tuple[FlowRow, ...]:
    rows = [FlowRow(tuple(zip(groups, key, strict=True)), values(key, p)) for key, p in protected.items()]
    return _sorted(rows)


def _sorted(rows: Sequence[FlowRow]) -> tuple[FlowRow, ...]:
    """Cells first, then totals; each in the order of their group values (``*`` after the values)."""
    return tuple(sorted(rows, key=lambda r: (r.total, [(v == TOTAL, v) for _, v in r.key])))


def _get(table: ProtectedTable, key: db.Key, default: Published) -> Published:
    try:
        return table[key]
    except KeyError:
        return default


def _rate(numerator: Published, denominator: Published) -> float | None:
    share = rate(numerator, denominator)
    return None if share is None else round(share, 3)


# Lead-time histogram buckets, as the database fills them (flow_bucket in migration 0005): bucket 0 is
# under a minute; bucket i >= 1 holds [60 * 2^((i-1)/4), 60 * 2^(i/4)) seconds; the last is open-ended.
LAST_BUCKET = 83


def bucket_bounds(bucket: int) -> tuple[float, float]:
    if bucket == 0:
        return 0.0, 60.0
    low = 60.0 * 2 ** ((bucket - 1) / 4)
    return low, math.inf if bucket >= LAST_BUCKET else 60.0 * 2 ** (bucket / 4)


def quantiles(histogram: Mapping[int, int], qs: Sequence[float]) -> list[float]:
    """The quantiles ``qs`` (ascending) in seconds from a merged histogram, in one pass: for each, the
    bucket holding rank ``q * n``, and within it geometric interpolation (linear in the first bucket; the
    open last bucket gives its lower edge). Within a bucket the true value is at most a factor 2^(1/4)
    (19 %) away."""
    buckets = sorted(item for item in histogram.items() if item[1])
    if not buckets:
        return [0.0] * len(qs)
    n = sum(count for _, count in buckets)
    found: list[float] = []
    seen = 0
    at = 0
    for q in qs:
        rank = q * n
        while at < len(buckets) - 1 and seen + buckets[at][1] < rank:
            seen += buckets[at][1]
            at += 1
        bucket, count = buckets[at]
        share = min(1.0, (rank - seen) / count)
        low, high = bucket_bounds(bucket)
        if bucket == 0:
            found.append(low + (high - low) * share)
        elif math.isinf(high):
            found.append(low)
        else:
            found.append(float(low * (high / low) ** share))
    return found


def _days(seconds: float) -> float:
    return round(seconds / 86400, 2)


# --- the request: who, which groupings, which weeks --------------------------------------------------------


def _invalid(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{name}: {message}.", errors=[FieldError(name, message)])


def authorise(actor: Actor) -> None:
    """Coordinators only: everyone else gets a 403, whatever they ask."""
    if not actor.principal.has_any(Role.COORDINATOR):
        raise NotPermitted("Referral flows are for the role coordinator.")


def _groups(ctx: Context, by: Sequence[str], allowed: frozenset[str]) -> tuple[str, ...]:
    authorise(ctx.actor)
    groups = tuple(by)
    if not 1 <= len(groups) <= 2 or len(set(groups)) != len(groups):
        raise _invalid("by", "one or two different groupings")
    unknown = [g for g in groups if g not in allowed]
    if unknown:
        raise InvalidInput(
            f"Unknown grouping {unknown[0]!r}; use one of {', '.join(sorted(allowed))}.",
            errors=[FieldError("by", f"one of {', '.join(sorted(allowed))}", "unknown-grouping")],
        )
    periods = [g for g in groups if g in PERIODS]
    if len(periods) > 1:
        raise _invalid("by", "at most one period")
    for period in periods:
        ctx.rules.check_period(period)
    return groups


def _family(ctx: Context, groups: Sequence[str]) -> list[str]:
    """The measures of a grouping that is a family of them: every status, every rejection reason."""
    if "status" in groups:
        return [f"status:{code}" for code in sorted(ctx.vocabulary.codes("referral-statuses"))]
    if "reason" in groups:
        return [f"rejected:{code}" for code in sorted(ctx.vocabulary.codes("rejection-reasons"))] + [
            "rejected:unspecified"
        ]
    return []


def _measure(measure: str) -> str:
    if measure not in MEASURES:
        raise _invalid("measure", f"one of {', '.join(MEASURES)}")
    return MEASURES[measure]


def _steps(steps: Sequence[str], name: str) -> tuple[int, ...]:
    values = {"none": -1, "0": 0, "1": 1, "2": 2, "3": 3}
    bad = [s for s in steps if s not in values]
    if bad:
        raise _invalid(name, "0, 1, 2, 3 or none")
    return tuple(values[s] for s in steps)


def _scope(ctx: Context, flt: FlowFilter) -> db.Scope:
    """Check the filter against the vocabulary and turn its dates into the weeks it covers."""
    errors: list[FieldError] = []
    vocabulary = ctx.vocabulary
    errors += unknown_codes(vocabulary, "organisation-type", flt.sender_types, "sender_type")
    errors += unknown_codes(vocabulary, "organisation-type", flt.recipient_types, "recipient_type")
    errors += unknown_codes(vocabulary, "referral-kind", flt.kinds, "kind")
    if flt.dimension is not None:
        errors += unknown_codes(vocabulary, "wellbeing-indicator", [flt.dimension], "dimension")
    errors += [
        FieldError(f"municipality/{i}", "an SCB municipality code (4 digits) or county", "invalid")
        for i, m in enumerate(flt.municipalities)
        if not (m == "county" or (len(m) == 4 and m.isdigit()))
    ]
    if errors:
        raise InvalidInput(f"{len(errors)} filter value(s) are not valid.", errors=errors)
    week_from, week_to = weeks(flt.date_from, flt.date_to, today=ctx.actor.today, finest=ctx.rules.finest_period)
    return db.Scope(
        week_from=week_from,
        week_to=week_to,
        municipalities=flt.municipalities,
        sender_types=flt.sender_types,
        recipient_types=flt.recipient_types,
        kinds=flt.kinds,
        steps=_steps(flt.steps, "step"),
        dimension=flt.dimension,
    )


def _unit(day: date, period: str) -> tuple[date, date]:
    """The first and last day of the week, month, quarter or year ``day`` is in."""
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=6)
    if period == "month":
        start = day.replace(day=1)
    elif period == "quarter":
        start = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    else:
        start = day.replace(month=1, day=1)
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    end_month = start.month - 1 + months
    end = date(start.year + end_month // 12, end_month % 12 + 1, 1) - timedelta(days=1)
    return start, end


def weeks(date_from: date | None, date_to: date | None, *, today: date, finest: str) -> tuple[date, date]:
    """The Mondays of the first and last ISO week a query covers: the dates widened to whole periods of
    the finest kind allowed, a week belonging to the period its Thursday is in. Defaults: the 52 weeks up
    to and including ``today``'s."""
    date_to = date_to or today
    date_from = date_from or date_to - timedelta(weeks=51)
    if date_from > date_to:
        raise _invalid("from", "on or before to")
    if finest == "day":
        finest = "week"
    first_day, _ = _unit(date_from, finest)
    _, last_day = _unit(date_to, finest)
    first_thursday = first_day + timedelta(days=(3 - first_day.weekday()) % 7)
    last_thursday = last_day - timedelta(days=(last_day.weekday() - 3) % 7)
    week_from, week_to = first_thursday - timedelta(days=3), last_thursday - timedelta(days=3)
    if (week_to - week_from).days // 7 + 1 > MAX_WEEKS:
        raise _invalid("from", f"a query covers at most {MAX_WEEKS} weeks")
    return week_from, week_to


async def _answer(
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
    await session.commit()
    async with ctx.audit_sessions() as primary:
        await audit(
            primary,
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
        await primary.commit()
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
