"""Coordinators' aggregates over referral flows: counts, the flow matrix, lead times, rejections and
redirections, stalls and trends. Read from the rollups (``hub.db.flows``), never from raw referrals,
and every table protected by ``hub.domain.disclosure.protect`` before it leaves; each read is audited.

Only the role ``coordinator`` may ask. See ``docs/coordinators.md`` ("Queries") for what each answer
means and how the period, the municipality and the statistics are defined.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import flows as db
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.disclosure import TOTAL, ProtectedTable, Published, Statistic, protect
from hub.domain.errors import Explanation
from hub.services.auditing import audit
from hub.services.flow_model import (
    GROUPINGS,
    MEASURES,
    PERIODS,
    STALL_GROUPINGS,
    TRANSITIONS,
    Context,
    FlowAnswer,
    FlowFilter,
    FlowRow,
)
from hub.services.flow_request import (
    authorise,
    checked_groups,
    family_measures,
    invalid,
    parse_steps,
    rollup_measure,
    scope_of,
    weeks,
)
from hub.services.flow_tables import (
    LAST_BUCKET,
    bucket_bounds,
    disclosure_table,
    flow_rows,
    in_days,
    published_or,
    quantiles,
    rounded_rate,
    sorted_rows,
)

__all__ = [
    "GROUPINGS",
    "LAST_BUCKET",
    "MEASURES",
    "PERIODS",
    "STALL_GROUPINGS",
    "TRANSITIONS",
    "Context",
    "FlowAnswer",
    "FlowFilter",
    "FlowRow",
    "authorise",
    "bucket_bounds",
    "counts",
    "lead_times",
    "matrix",
    "quantiles",
    "rejections",
    "stalls",
    "trends",
    "weeks",
]


# --- the use cases -----------------------------------------------------------------------------------------


async def counts(
    session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: Sequence[str], measure: str = "sent"
) -> FlowAnswer:
    """Referrals (or another ``measure``) by one or two groupings, with totals. ``status`` counts the
    current status of the referrals sent; ``dimension`` only alone (a referral can have several)."""
    return await _counts(session, ctx, flt, checked_groups(ctx, by, GROUPINGS), measure, "counts")


async def _counts(
    session: AsyncSession, ctx: Context, flt: FlowFilter, groups: tuple[str, ...], measure: str, table: str
) -> FlowAnswer:
    if "status" in groups and measure != "sent":
        raise invalid("measure", "the status grouping counts sent referrals by their current status")
    if "dimension" in groups and len(groups) > 1:
        raise invalid("by", "dimension cannot be combined with another grouping (a referral has several)")
    scope = scope_of(ctx, flt)
    measures = family_measures(ctx, groups) or [rollup_measure(measure)]
    aggs = await db.cube(session, scope, groups=groups, measures=measures)
    if "dimension" in groups:  # the total: every referral once, from the rows of all dimensions
        whole = await db.cube(session, scope, groups=(), measures=measures)
        aggs[(TOTAL,)] = whole.get((), db.Aggregate(0, 0, 0))
    protected = protect(disclosure_table(aggs, groups), rules=ctx.rules)
    rows = flow_rows(groups, protected, lambda key, p: {measure: p.value})
    return await _answer(session, ctx, table, groups, (measure,), scope, flt, rows, [protected])


async def matrix(
    session: AsyncSession, *, ctx: Context, flt: FlowFilter, level: str = "type", measure: str = "sent"
) -> FlowAnswer:
    """The flow matrix: sender organisation type → recipient type (or municipality → municipality)."""
    authorise(ctx.actor)
    if level not in ("type", "municipality"):
        raise invalid("level", "type or municipality")
    groups = (f"sender_{level}", f"recipient_{level}")
    scope = scope_of(ctx, flt)
    aggs = await db.cube(session, scope, groups=groups, measures=[rollup_measure(measure)])
    protected = protect(disclosure_table(aggs, groups), rules=ctx.rules)
    rows = flow_rows(groups, protected, lambda key, p: {measure: p.value})
    return await _answer(session, ctx, "matrix", groups, (measure,), scope, flt, rows, [protected])


async def lead_times(session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: Sequence[str]) -> FlowAnswer:
    """Per key, referrals sent and the median and 90th percentile of days from sent to received, to
    accepted and to completed (of those that got there), from log-spaced histograms. A median needs k
    children, a 90th percentile twice as many (with fewer it is close to the largest single value)."""
    groups = checked_groups(ctx, by, GROUPINGS - {"status", "dimension"})
    scope = scope_of(ctx, flt)
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
                stats[f"{t}_median_days"] = Statistic(in_days(median), agg.children, agg.noise)
                stats[f"{t}_p90_days"] = Statistic(in_days(p90), agg.children, agg.noise, min_children=2 * k)
        return stats

    protected = protect(disclosure_table(sent, groups, statistics), rules=ctx.rules)
    columns = ("sent", *(f"{t}_{s}_days" for t in TRANSITIONS for s in ("median", "p90")))
    rows = flow_rows(
        groups, protected, lambda key, p: {"sent": p.value, **{c: p.statistics.get(c) for c in columns[1:]}}
    )
    return await _answer(session, ctx, "lead-times", groups, columns, scope, flt, rows, [protected])


async def rejections(session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: str) -> FlowAnswer:
    """Rejections per ``by`` and reason code, with the rejection rate, and redirections: rejections with
    a suggested alternative, and how many of those children were then sent there."""
    (group,) = checked_groups(ctx, [by], GROUPINGS - {"status", "dimension"})
    scope = scope_of(ctx, flt)
    by_reason = await db.cube(session, scope, groups=(group, "reason"), measures=family_measures(ctx, ["reason"]))
    reasons = protect(disclosure_table(by_reason, (group, "reason")), rules=ctx.rules)
    per_group = {}
    for name in ("sent", "suggested", "redirected"):
        aggs = await db.cube(session, scope, groups=(group,), measures=[name])
        per_group[name] = protect(disclosure_table(aggs, (group,)), rules=ctx.rules)
    empty = Published(0)
    rows = [
        FlowRow(((group, label), ("reason", reason)), {"rejected": published.value})
        for (label, reason), published in reasons.items()
        if reason != TOTAL
    ]
    for (label,), sent in per_group["sent"].items():
        published = published_or(reasons, (label, TOTAL), empty)
        suggested = published_or(per_group["suggested"], (label,), empty)
        redirected = published_or(per_group["redirected"], (label,), empty)
        rows.append(
            FlowRow(
                ((group, label), ("reason", TOTAL)),
                {
                    "sent": sent.value,
                    "rejected": published.value,
                    "rejection_rate": rounded_rate(published, sent),
                    "suggested": suggested.value,
                    "redirected": redirected.value,
                    "redirection_rate": rounded_rate(redirected, suggested),
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
        sorted_rows(rows),
        [reasons, *per_group.values()],
    )


async def stalls(
    session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: Sequence[str], days: int | None, step: str = "2"
) -> FlowAnswer:
    """Open referrals at a Trappan step (default 2) with no transition for more than ``days`` (default
    the hub's ``stall_days``), by where they are stuck, with the median days they have waited."""
    groups = checked_groups(ctx, by, STALL_GROUPINGS)
    days = ctx.settings.stall_days if days is None else days
    if not 1 <= days <= 3650:
        raise invalid("days", "between 1 and 3650")
    steps = parse_steps((step,), "step")
    scope = scope_of(ctx, flt)
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

    protected = protect(disclosure_table(aggs, groups, statistics), rules=ctx.rules)
    columns = ("stalled", "median_days_waiting")
    rows = flow_rows(
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
        raise invalid("period", f"one of {', '.join(PERIODS)}")
    by = ("municipality", period) if by_municipality else (period,)
    return await _counts(session, ctx, flt, checked_groups(ctx, by, GROUPINGS), measure, "trends")


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
    await session.rollback()  # the reads wrote nothing (and may be on a read-only replica)
    async with UnitOfWork.of(ctx.audit_sessions) as uow:
        await audit(
            uow.session,
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
        await uow.commit()
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


answer_of = _answer  # the audited answer of a flow table, for the tables of other rooms (concern_flows)
