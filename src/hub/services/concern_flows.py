"""The coordinators' count of reports of concern overdue for their answer, per municipality (of the
receiving social services, by default), protected like every flow table (``hub.domain.disclosure``) and
audited. See docs/coordinators.md ("Reports of concern overdue")."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.concern_flows import overdue_reports
from hub.domain.concern import UNANSWERABLE
from hub.domain.disclosure import protect
from hub.domain.policy import Policy, swedish_day
from hub.services.flow_audit import answered
from hub.services.flow_model import Context, FlowAnswer, FlowFilter
from hub.services.flow_request import checked_groups, scope_of
from hub.services.flow_tables import disclosure_table, flow_rows

# Where a report is and who sent it; no period (overdue is about now) and no status (an answer is not one).
OVERDUE_GROUPINGS = frozenset({"recipient_municipality", "municipality", "sender_type", "recipient_type"})


async def overdue(
    session: AsyncSession, *, ctx: Context, flt: FlowFilter, by: Sequence[str], policy: Policy
) -> FlowAnswer:
    """Reports of concern delivered to social services and still unanswered more than the policy's
    ``concern_answer_days`` (in force today) after the day they arrived, by ``by`` with totals."""
    groups = checked_groups(ctx, by, OVERDUE_GROUPINGS)
    scope = scope_of(ctx, flt)
    in_force = policy.in_force(swedish_day(ctx.actor.now))
    days = in_force.concern_answer_days
    # Whole UTC days, as stalls: a report delivered on day D is counted from day D + days + 1, when its
    # deadline has passed whatever the hour it arrived, so no base cell (a cell and a day) is ever split.
    cutoff = datetime.combine(ctx.actor.now.astimezone(UTC).date() - timedelta(days=days), time(0), UTC)
    aggs = await overdue_reports(
        session,
        scope,
        groups=groups,
        kind=in_force.report_of_concern_purpose,
        unanswerable=sorted(UNANSWERABLE),
        cutoff=cutoff,
    )
    protected = protect(disclosure_table(aggs, groups), rules=ctx.rules)
    rows = flow_rows(groups, protected, lambda key, p: {"overdue": p.value})
    extra = {"concern_answer_days": days}
    return await answered(session, ctx, "concern-overdue", groups, ("overdue",), scope, flt, rows, [protected], extra)
