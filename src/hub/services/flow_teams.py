"""Coordinators' counts of the teams around children (issue 12, section 4): children with a named person
and with a lead professional now, and the handover gaps — offers unanswered for ``days`` or more, and
children past a stage transition without a new named person. Read through ``hub.db.flow_teams`` (base
cells with their adjustments, like every flow), protected by ``hub.domain.disclosure.protect`` and audited
like every flow read. Only the role ``coordinator``. See ``docs/coordinators.md`` ("Teams and
handovers").

And the plans: children with a plan, with a lead professional, reviews per plan, and the time from the
child's first referral to its plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import flow_teams as db
from hub.db.flows import Aggregate, Key, Scope, Stalled
from hub.domain.disclosure import ProtectedTable, Published, Statistic, protect
from hub.domain.teams import LEAD_PROFESSIONAL, NAMED_PERSON, OPEN
from hub.services.flow_audit import answered
from hub.services.flow_model import Context, FlowAnswer, FlowFilter, FlowRow
from hub.services.flow_request import checked_groups, invalid, scope_of
from hub.services.flow_tables import disclosure_table, published_or, sorted_rows

TEAM_GROUPINGS = db.TEAM_GROUPINGS
MAX_HANDOVER_DAYS = 365
_TEAM_COLUMNS: tuple[tuple[str, Literal["named", "lead"]], ...] = (
    ("named_person", "named"),
    ("lead_professional", "lead"),
)
_GAP_COLUMNS: tuple[tuple[str, Literal["offers", "transitions"]], ...] = (
    ("offers_unanswered", "offers"),
    ("past_transition", "transitions"),
)
NOT_TEAMS = "does not apply to team counts (they are about now, by stage, municipality and organisation type)"


def _scope(ctx: Context, flt: FlowFilter, *, days: int = 1) -> tuple[Scope, db.TeamScope]:
    """The municipalities asked for, checked as every flow checks them; a filter team counts cannot
    apply is refused rather than silently ignored. The answer's weeks are this week: the counts are
    about now."""
    for name, given in (
        ("from", flt.date_from),
        ("to", flt.date_to),
        ("sender_type", flt.sender_types),
        ("recipient_type", flt.recipient_types),
        ("kind", flt.kinds),
        ("step", flt.steps),
        ("dimension", flt.dimension),
    ):
        if given:
            raise invalid(name, NOT_TEAMS)
    today = ctx.actor.today
    checked = scope_of(ctx, FlowFilter(date_from=today, date_to=today, municipalities=flt.municipalities))
    now = ctx.actor.now
    # Whole days (UTC): a gap's base cell is its cell and the day it began, so the cutoff never splits one.
    cutoff = datetime.combine(now.astimezone(UTC).date() - timedelta(days=days - 1), time(0), UTC)
    team_scope = db.TeamScope(
        named_person=NAMED_PERSON,
        lead_professional=LEAD_PROFESSIONAL,
        open_states=(OPEN,),
        now=now,
        cutoff=cutoff,
        municipalities=flt.municipalities,
    )
    return checked, team_scope


def _rows(
    groups: Sequence[str], tables: Mapping[str, ProtectedTable], statistics: Mapping[str, str] | None = None
) -> tuple[FlowRow, ...]:
    """One row per key any table publishes, a column per table (0 where a table has no base cell for the
    key: a true zero) and per statistic (column → its table)."""
    keys: dict[Key, None] = {}
    for table in tables.values():
        keys.update(dict.fromkeys(key for key, _ in table.items()))
    empty = Published(0)
    rows = []
    for key in keys:
        values: dict[str, float | None] = {name: published_or(t, key, empty).value for name, t in tables.items()}
        for column, name in (statistics or {}).items():
            values[column] = published_or(tables[name], key, empty).statistics.get(column)
        rows.append(FlowRow(tuple(zip(groups, key, strict=True)), values))
    return sorted_rows(rows)


async def teams(session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: Sequence[str]) -> FlowAnswer:
    """Children with a named person now, and children with a lead professional now, by the named
    person's stage, municipality and organisation type (``none``: a lead professional and no named
    person; the municipality is then the lead's)."""
    groups = checked_groups(ctx, by, TEAM_GROUPINGS)
    scope, team_scope = _scope(ctx, flt)
    tables = {
        column: protect(
            disclosure_table(await db.team_counts(session, team_scope, measure=measure, groups=groups), groups),
            rules=ctx.rules,
        )
        for column, measure in _TEAM_COLUMNS
    }
    rows = _rows(groups, tables)
    extra = {"as_of": ctx.actor.now.isoformat()}
    return await answered(session, ctx, "teams", groups, tuple(tables), scope, flt, rows, list(tables.values()), extra)


async def handovers(
    session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: Sequence[str], days: int | None
) -> FlowAnswer:
    """Handover gaps: offers of the named person's role open for ``days`` or more whole days (default the
    hub's ``handover_days``), and children whose named person's stage was expected to end ``days`` or more
    days ago and who have no new one (or whose last named person's period ended then, and none since);
    each with the median whole days since the gap began."""
    groups = checked_groups(ctx, by, TEAM_GROUPINGS)
    days = ctx.settings.handover_days if days is None else days
    if not 1 <= days <= MAX_HANDOVER_DAYS:
        raise invalid("days", f"between 1 and {MAX_HANDOVER_DAYS}")
    scope, team_scope = _scope(ctx, flt, days=days)
    tables: dict[str, ProtectedTable] = {}
    for column, measure in _GAP_COLUMNS:
        found = await db.handover_gaps(session, team_scope, measure=measure, groups=groups)
        aggs = {key: Aggregate(s.value, s.children, s.noise) for key, s in found.items()}

        def statistics(key: Key, found: Mapping[Key, Stalled] = found, column: str = column) -> dict[str, Statistic]:
            median, agg = found[key].median_days, found[key]
            if median is None:
                return {}
            return {f"{column}_median_days": Statistic(round(median, 1), agg.children, agg.noise)}

        tables[column] = protect(disclosure_table(aggs, groups, statistics), rules=ctx.rules)
    medians = {f"{column}_median_days": column for column in tables}
    rows = _rows(groups, tables, medians)
    columns = ("offers_unanswered", "offers_unanswered_median_days", "past_transition", "past_transition_median_days")
    extra = {"days": days, "as_of": ctx.actor.now.isoformat()}
    return await answered(session, ctx, "handovers", groups, columns, scope, flt, rows, list(tables.values()), extra)


_PLAN_COLUMNS: tuple[tuple[str, Literal["plans", "plans_lead", "reviews"]], ...] = (
    ("plans", "plans"),
    ("with_lead_professional", "plans_lead"),
    ("reviews", "reviews"),
)


async def plans(session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: Sequence[str]) -> FlowAnswer:
    """Children with a plan, those of them with a lead professional now, the reviews on their plans and
    reviews per plan (from the published counts), and the median days from the child's first referral to
    the plan's first version (children referred before their plan), by the named person's cell."""
    groups = checked_groups(ctx, by, TEAM_GROUPINGS)
    scope, team_scope = _scope(ctx, flt)
    took = await db.handover_gaps(session, team_scope, measure="concern_to_plan", groups=groups)

    def statistics(key: Key) -> dict[str, Statistic]:
        found = took.get(key)
        if found is None or found.median_days is None:
            return {}
        return {"concern_to_plan_median_days": Statistic(round(found.median_days, 1), found.children, found.noise)}

    tables: dict[str, ProtectedTable] = {}
    for column, measure in _PLAN_COLUMNS:
        aggs = await db.team_counts(session, team_scope, measure=measure, groups=groups)
        tables[column] = protect(
            disclosure_table(aggs, groups, statistics if column == "plans" else None), rules=ctx.rules
        )
    rows = tuple(
        FlowRow(row.key, {**row.values, "reviews_per_plan": _per(row.values["reviews"], row.values["plans"])})
        for row in _rows(groups, tables, {"concern_to_plan_median_days": "plans"})
    )
    columns = ("plans", "with_lead_professional", "reviews", "reviews_per_plan", "concern_to_plan_median_days")
    extra = {"as_of": ctx.actor.now.isoformat()}
    return await answered(session, ctx, "plans", groups, columns, scope, flt, rows, list(tables.values()), extra)


def _per(numerator: float | None, denominator: float | None) -> float | None:
    """A ratio of two published counts (never of true ones), hidden when either is."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


__all__ = ["MAX_HANDOVER_DAYS", "TEAM_GROUPINGS", "handovers", "plans", "teams"]
