"""Coordinators' counts of the teams around children, in PostgreSQL: children with a named person and with
a lead professional now, and the handover gaps (offers unanswered, stage transitions passed without a new
named person). Read from the team tables with each team's child record key from ``flow_team`` (kept by
the trigger of migration 0020), grouped into base cells that no filter or grouping splits, each with its
value, distinct children and adjustment, exactly as :mod:`hub.db.flows` sums the rollups' rows.

A team's **municipality** is its named person's organisation's (``county`` for a county-wide one); a team
with a lead professional but no named person now takes the lead's. The roles and the offer states come
from the domain as parameters: no SQL here names one. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.engine import Statement, driver
from hub.db.flow_sql import MODULUS, Key, adjustment_sql, group_columns, grouping_sets, result_key
from hub.db.flows import Aggregate, Stalled, summed_days

TEAM_GROUPINGS = frozenset({"stage", "municipality", "organisation_type"})
CELL = ("stage", "municipality", "organisation_type")  # a base cell (with the day, for handover gaps)
NONE = "none"  # no named person now: its stage and organisation type


@dataclass(frozen=True)
class TeamScope:
    """What the domain says the words are (its roles and open offer states), the time counted at, the
    cutoff of handover gaps (a day's start, UTC), and the municipalities asked for (all when empty)."""

    named_person: str
    lead_professional: str
    open_states: tuple[str, ...]
    now: datetime
    cutoff: datetime
    municipalities: tuple[str, ...] = ()


# The latest named person of each team to have started by :now (current while its period runs).
_NAMED = """
    select distinct on (a.team_id) a.team_id, a.stage, a.stage_ends_on, a.period_end, o.type,
           coalesce(o.municipality_code, 'county') as municipality,
           (a.period_end is null or a.period_end > :now) as current
    from team_assignment a join organisation o on o.id = a.organisation_id
    where a.role = :named and a.period_start <= :now
    order by a.team_id, a.period_start desc
"""

# Each team's current named person: at most one, since its periods never overlap (no sort needed).
_CURRENT = """
    select a.team_id, a.stage, o.type, coalesce(o.municipality_code, 'county') as municipality
    from team_assignment a join organisation o on o.id = a.organisation_id
    where a.role = :named and a.period_start <= :now and (a.period_end is null or a.period_end > :now)
"""

ROWS: dict[str, str] = {
    # Children with a named person now, by its stage, municipality and organisation type.
    "named": f"""
        select n.stage, n.municipality, n.type as organisation_type, f.child_key
        from ({_CURRENT}) n join flow_team f on f.team_id = n.team_id""",
    # Children with a lead professional now, by their named person's cell (none: the lead's municipality).
    "lead": f"""
        select coalesce(n.stage, '{NONE}') as stage,
               coalesce(n.municipality, lo.municipality_code, 'county') as municipality,
               coalesce(n.type, '{NONE}') as organisation_type, f.child_key
        from team_assignment l
        join organisation lo on lo.id = l.organisation_id
        join flow_team f on f.team_id = l.team_id
        left join ({_CURRENT}) n on n.team_id = l.team_id
        where l.role = :lead and l.period_start <= :now and (l.period_end is null or l.period_end > :now)""",
    # Offers open since before the cutoff: the stage offered, the offering (named person's) municipality,
    # the type of the organisation that has not answered; the UTC day it was made.
    "offers": """
        select o.stage, coalesce(fo.municipality_code, 'county') as municipality, tor.type as organisation_type,
               f.child_key, extract(epoch from o.offered_at)::bigint / 86400 as day
        from team_offer o
        join organisation fo on fo.id = o.from_organisation
        join organisation tor on tor.id = o.to_organisation
        join flow_team f on f.team_id = o.team_id
        where o.state = any(:open) and o.offered_at < :cutoff""",
    # Past a stage transition without a new named person: the named person still holds a stage expected
    # to have ended before the cutoff, or the last one's period ended then and nobody holds the role.
    "transitions": f"""
        select n.stage, n.municipality, n.type as organisation_type, f.child_key, n.day
        from (select x.*, case when x.current then x.stage_ends_on - date '1970-01-01'
                               else extract(epoch from x.period_end)::bigint / 86400 end as day
              from ({_NAMED}) x) n
        join flow_team f on f.team_id = n.team_id
        where n.day < extract(epoch from cast(:cutoff as timestamptz))::bigint / 86400""",
}

# Each team's plan (its latest version by now), under the named person's cell (none: the author's
# municipality), with the days from the child's first referral to the plan's first version.
_PLAN = f"""
    select coalesce(n.stage, '{NONE}') as stage,
           coalesce(n.municipality, ao.municipality_code, 'county') as municipality,
           coalesce(n.type, '{NONE}') as organisation_type, f.child_key, p.team_id, p.first_at
    from (select distinct on (v.team_id) v.team_id, v.author_organisation,
                 min(v.created_at) over (partition by v.team_id) as first_at
          from plan_version v where v.created_at <= :now order by v.team_id, v.number desc) p
    join organisation ao on ao.id = p.author_organisation
    join flow_team f on f.team_id = p.team_id
    left join ({_CURRENT}) n on n.team_id = p.team_id
"""
ROWS |= {
    # Children with a plan.
    "plans": f"select p.stage, p.municipality, p.organisation_type, p.child_key from ({_PLAN}) p",
    # Children with a plan and a lead professional now.
    "plans_lead": f"""
        select p.stage, p.municipality, p.organisation_type, p.child_key from ({_PLAN}) p
        where exists (select 1 from team_assignment l where l.team_id = p.team_id and l.role = :lead
                      and l.period_start <= :now and (l.period_end is null or l.period_end > :now))""",
    # Reviews on the children's plans (one row per review).
    "reviews": f"""
        select p.stage, p.municipality, p.organisation_type, p.child_key from ({_PLAN}) p
        join plan_version v on v.team_id = p.team_id join plan_review r on r.plan_version_id = v.id
        where r.created_at <= :now""",
    # Days from the child's first referral (any kind) to its plan's first version, as a "day" that many
    # days before today (so that today - day is the time taken). Only children referred before the plan.
    "concern_to_plan": f"""
        select p.stage, p.municipality, p.organisation_type, p.child_key,
               extract(epoch from cast(:now as timestamptz))::bigint / 86400
               - (extract(epoch from p.first_at)::bigint / 86400 - extract(epoch from c.first_at)::bigint / 86400)
               as day
        from ({_PLAN}) p
        join (select r.child_key, min(r.created_at) as first_at from flow_referral r
              where r.child_key in (select child_key from flow_team) group by r.child_key) c
          on c.child_key = p.child_key and c.first_at <= p.first_at""",
}
Measure = Literal["named", "lead", "offers", "transitions", "plans", "plans_lead", "reviews", "concern_to_plan"]


def _params(scope: TeamScope) -> dict[str, Any]:
    return {
        "now": scope.now,
        "named": scope.named_person,
        "lead": scope.lead_professional,
        "open": list(scope.open_states),
        "cutoff": scope.cutoff,
        "municipalities": list(scope.municipalities),
    }


def _cells(measure: Measure, groups: Sequence[str], *, days: bool) -> str:
    """Per base cell (and day): its value, distinct children and cell key, with the group values g1, g2."""
    exprs = [f"r.{g}" for g in groups]
    day = ", r.day" if days else ""
    return f"""
        select x.g1, x.g2{day.replace("r.", "x.")}, count(*) as value,
               count(distinct x.child_key)::integer as children,
               (sum(distinct x.child_key) % {MODULUS})::bigint as cell_key
        from (select {group_columns(exprs)}, {", ".join(f"r.{c}" for c in CELL)}{day}, r.child_key
              from ({ROWS[measure]}) r
              where cardinality(cast(:municipalities as text[])) = 0 or r.municipality = any(:municipalities)) x
        group by x.g1, x.g2, {", ".join(f"x.{c}" for c in CELL)}{day.replace("r.", "x.")}"""


async def _fetch(session: AsyncSession, sql: str, params: dict[str, Any]) -> list[Any]:
    async with driver(session) as connection:
        return await Statement(sql).fetch(connection, params)


async def team_counts(
    session: AsyncSession,
    scope: TeamScope,
    *,
    measure: Literal["named", "lead", "plans", "plans_lead", "reviews"],
    groups: Sequence[str],
) -> dict[Key, Aggregate]:
    """Children in ``measure`` now, grouped by ``groups`` (one or two of :data:`TEAM_GROUPINGS`) with
    every total: per key the sums over its base cells (stage, municipality, organisation type)."""
    level, sets = grouping_sets(groups)
    found = await _fetch(
        session,
        f"""select {level}, sum(value), sum(children), sum({adjustment_sql("cell_key", "children")})
            from ({_cells(measure, groups, days=False)}) c group by {sets}""",
        _params(scope),
    )
    return {
        result_key(groups, bits, (g1, g2)): Aggregate(int(value), int(children), int(noise))
        for bits, g1, g2, value, children, noise in found
        if value is not None
    }


async def handover_gaps(
    session: AsyncSession,
    scope: TeamScope,
    *,
    measure: Literal["offers", "transitions", "concern_to_plan"],
    groups: Sequence[str],
) -> dict[Key, Stalled]:
    """Handover gaps at the cutoff, grouped by ``groups`` with every total, and the median whole days since
    the gap began (the offer's day, the stage's expected end). A base cell is a cell and its day, so the
    cutoff (a day's start) takes it wholly or not at all."""
    level, sets = grouping_sets(groups, "day")
    found = await _fetch(
        session,
        f"""select {level}, day, sum(value), sum(children), sum({adjustment_sql("cell_key", "children")})
            from ({_cells(measure, groups, days=True)}) c group by {sets}""",
        _params(scope),
    )
    today = int(scope.now.timestamp()) // 86400
    days: dict[Key, list[tuple[int, int, int, int]]] = {}
    for bits, g1, g2, day, value, children, noise in found:
        days.setdefault(result_key(groups, bits, (g1, g2)), []).append(
            (today - int(day), int(value), int(children), int(noise))
        )
    return {key: summed_days(per_day) for key, per_day in days.items()}
