"""GraphQL fields for coordinators' aggregates over referral flows (``flowCounts``, ``flowMatrix``…), the
same use cases as ``GET /v1/flows/...`` (``hub.services.flows``). Expected outcomes are union members:
no token, not a coordinator, an invalid filter."""

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from hub.api.deps import actor_for
from hub.api.graphql.context import Context
from hub.api.graphql.guard import guarded
from hub.api.graphql.problems import AuthenticationProblem, ForbiddenProblem, InvalidInputProblem
from hub.domain.errors import HubError, InvalidInput, NotPermitted
from hub.domain.principal import Role
from hub.services import concern_flows, flow_teams
from hub.services import flows as svc
from hub.services.flow_folder import fold_before_read

# A flow table runs aggregate queries and writes an audit entry: it costs the most of any field.
_COORDINATOR = guarded(Role.COORDINATOR, cost=50)


@strawberry.input(description="What to count: dates are widened to whole ISO weeks (or coarser periods)")
class FlowFilterInput:
    date_from: date | None = None
    date_to: date | None = None
    municipalities: list[str] | None = strawberry.field(
        default=None, description="SCB codes, or county (county-wide units): the referral's municipality"
    )
    sender_types: list[str] | None = None
    recipient_types: list[str] | None = None
    kinds: list[str] | None = None
    steps: list[str] | None = strawberry.field(default=None, description="Trappan steps: 0, 1, 2, 3 or none")
    dimension: str | None = strawberry.field(default=None, description="One wellbeing-wheel code")


@strawberry.type(description="One grouping's value in a row's key; * where the row is a total over it")
class FlowKeyPart:
    grouping: str
    value: str


@strawberry.type(description="A value of a row; null value and hidden true: too few children to show")
class FlowValue:
    name: str
    value: float | None
    hidden: bool


@strawberry.type
class FlowRow:
    key: list[FlowKeyPart]
    total: bool
    values: list[FlowValue]


@strawberry.type(description="How the table was protected, to show beside it")
class FlowNote:
    code: str
    sv: str
    en: str


@strawberry.type(description="A protected aggregate table over referral flows (coordinators)")
class FlowTable:
    table: str
    by: list[str]
    columns: list[str]
    week_from: date = strawberry.field(description="Monday of the first ISO week counted")
    week_to: date = strawberry.field(description="Monday of the last ISO week counted")
    k: int = strawberry.field(description="The fewest children a published value rests on")
    rows: list[FlowRow]
    notes: list[FlowNote]


FlowTableResult = Annotated[
    FlowTable | InvalidInputProblem | AuthenticationProblem | ForbiddenProblem, strawberry.union("FlowTableResult")
]


def _filter(given: FlowFilterInput | None) -> svc.FlowFilter:
    f = given or FlowFilterInput()
    return svc.FlowFilter(
        date_from=f.date_from,
        date_to=f.date_to,
        municipalities=tuple(f.municipalities or ()),
        sender_types=tuple(f.sender_types or ()),
        recipient_types=tuple(f.recipient_types or ()),
        kinds=tuple(f.kinds or ()),
        steps=tuple(f.steps or ()),
        dimension=f.dimension,
    )


def _table(answer: svc.FlowAnswer) -> FlowTable:
    return FlowTable(
        table=answer.table,
        by=list(answer.by),
        columns=list(answer.columns),
        week_from=answer.week_from,
        week_to=answer.week_to,
        k=answer.k,
        rows=[
            FlowRow(
                key=[FlowKeyPart(grouping=g, value=v) for g, v in row.key],
                total=row.total,
                values=[FlowValue(name=n, value=v, hidden=v is None) for n, v in row.values.items()],
            )
            for row in answer.rows
        ],
        notes=[FlowNote(code=n.code, sv=n.sv, en=n.en) for n in answer.notes],
    )


async def _run(
    info: strawberry.Info[Context, None], query: Callable[[AsyncSession, svc.Context], Awaitable[svc.FlowAnswer]]
) -> FlowTableResult:
    try:
        principal = await info.context.principal()
    except HubError as exc:
        return AuthenticationProblem(detail=exc.detail)
    if not principal.has_any(Role.COORDINATOR):
        return ForbiddenProblem(detail="Referral flows are for the role coordinator.")
    runtime = info.context.runtime
    ctx = svc.Context.of(actor_for(principal), runtime)
    await fold_before_read(runtime.engine, runtime.settings)  # every committed referral counted
    try:
        async with runtime.flows_sessions() as session:
            answer = await query(session, ctx)
    except NotPermitted as exc:
        return ForbiddenProblem(detail=exc.detail)
    except InvalidInput as exc:
        return InvalidInputProblem(detail=exc.detail, fields=[e.pointer for e in exc.errors])
    return _table(answer)


Filter = Annotated[FlowFilterInput | None, strawberry.argument(description="Period and narrowing; all optional")]


@strawberry.type
class FlowsQuery:
    """The coordinator fields; ``hub.api.graphql.schema.Query`` inherits them."""

    @strawberry.field(
        description="Referrals by one or two groupings with totals, as GET /v1/flows/counts", metadata=_COORDINATOR
    )
    async def flow_counts(
        self, info: strawberry.Info[Context, None], by: list[str], filter: Filter = None, measure: str = "sent"
    ) -> FlowTableResult:
        return await _run(info, lambda s, ctx: svc.counts(s, ctx=ctx, flt=_filter(filter), by=by, measure=measure))

    @strawberry.field(
        description="Sender → recipient by organisation type or municipality (GET /v1/flows/matrix)",
        metadata=_COORDINATOR,
    )
    async def flow_matrix(
        self, info: strawberry.Info[Context, None], filter: Filter = None, level: str = "type", measure: str = "sent"
    ) -> FlowTableResult:
        return await _run(
            info, lambda s, ctx: svc.matrix(s, ctx=ctx, flt=_filter(filter), level=level, measure=measure)
        )

    @strawberry.field(
        description="Median and 90th percentile days to received, accepted, completed", metadata=_COORDINATOR
    )
    async def flow_lead_times(
        self, info: strawberry.Info[Context, None], by: list[str] | None = None, filter: Filter = None
    ) -> FlowTableResult:
        groups = by or ["recipient_type"]
        return await _run(info, lambda s, ctx: svc.lead_times(s, ctx=ctx, flt=_filter(filter), by=groups))

    @strawberry.field(description="Rejections by reason code, rejection rates and redirections", metadata=_COORDINATOR)
    async def flow_rejections(
        self, info: strawberry.Info[Context, None], by: str = "recipient_type", filter: Filter = None
    ) -> FlowTableResult:
        return await _run(info, lambda s, ctx: svc.rejections(s, ctx=ctx, flt=_filter(filter), by=by))

    @strawberry.field(
        description="Open referrals at a step with no transition for more than `days` days", metadata=_COORDINATOR
    )
    async def flow_stalls(
        self,
        info: strawberry.Info[Context, None],
        by: list[str] | None = None,
        days: int | None = None,
        step: str = "2",
        filter: Filter = None,
    ) -> FlowTableResult:
        groups = by or ["recipient_type"]
        return await _run(
            info, lambda s, ctx: svc.stalls(s, ctx=ctx, flt=_filter(filter), by=groups, days=days, step=step)
        )

    @strawberry.field(
        description="A measure per week, month, quarter or year; optionally per municipality", metadata=_COORDINATOR
    )
    async def flow_trends(
        self,
        info: strawberry.Info[Context, None],
        period: str = "month",
        measure: str = "sent",
        by_municipality: bool = False,
        filter: Filter = None,
    ) -> FlowTableResult:
        return await _run(
            info,
            lambda s, ctx: svc.trends(
                s, ctx=ctx, flt=_filter(filter), period=period, measure=measure, by_municipality=by_municipality
            ),
        )

    @strawberry.field(
        description="Children with a named person and with a lead professional now, by stage, municipality or "
        "organisation type (GET /v1/flows/teams)",
        metadata=_COORDINATOR,
    )
    async def flow_teams(
        self, info: strawberry.Info[Context, None], by: list[str] | None = None, filter: Filter = None
    ) -> FlowTableResult:
        groups = by or ["stage"]
        return await _run(info, lambda s, ctx: flow_teams.teams(s, ctx=ctx, flt=_filter(filter), by=groups))

    @strawberry.field(
        description="Handover gaps: offers unanswered for `days`, stage transitions passed without a new named "
        "person (GET /v1/flows/handovers)",
        metadata=_COORDINATOR,
    )
    async def flow_handovers(
        self,
        info: strawberry.Info[Context, None],
        by: list[str] | None = None,
        days: int | None = None,
        filter: Filter = None,
    ) -> FlowTableResult:
        groups = by or ["stage"]
        return await _run(
            info, lambda s, ctx: flow_teams.handovers(s, ctx=ctx, flt=_filter(filter), by=groups, days=days)
        )

    @strawberry.field(
        description="Children with a plan, with a lead professional, reviews per plan and days from the first "
        "referral to the plan (GET /v1/flows/plans)",
        metadata=_COORDINATOR,
    )
    async def flow_plans(
        self, info: strawberry.Info[Context, None], by: list[str] | None = None, filter: Filter = None
    ) -> FlowTableResult:
        groups = by or ["stage"]
        return await _run(info, lambda s, ctx: flow_teams.plans(s, ctx=ctx, flt=_filter(filter), by=groups))

    @strawberry.field(
        description="Reports of concern unanswered past the policy's deadline (GET /v1/flows/concern-overdue)",
        metadata=_COORDINATOR,
    )
    async def flow_concern_overdue(
        self, info: strawberry.Info[Context, None], by: list[str] | None = None, filter: Filter = None
    ) -> FlowTableResult:
        groups, policy = by or ["recipient_municipality"], info.context.runtime.policy
        return await _run(
            info, lambda s, ctx: concern_flows.overdue(s, ctx=ctx, flt=_filter(filter), by=groups, policy=policy)
        )


__all__ = ["FlowsQuery"]
