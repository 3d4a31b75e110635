"""``GET /v1/flows/...``: coordinators' aggregates over referral flows, as JSON or CSV.

Every answer is a protected table (sums of adjusted base cells, small ones hidden) with the
notes that say so; see ``docs/coordinators.md``. Only the role ``coordinator``; everyone else gets 403.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from hub.api.auth import require
from hub.api.deps import FlowsSession, RuntimeDep, actor_for
from hub.api.routing import Router
from hub.domain.principal import Principal, Role
from hub.services import concern_flows, flow_teams
from hub.services import flows as svc
from hub.services.flow_folder import fold_before_read

router = Router(prefix="/v1/flows", tags=["flows"])
Coordinator = Annotated[Principal, Depends(require(Role.COORDINATOR))]
CSV = "text/csv"
HIDDEN = ".."  # in CSV, as Statistics Sweden marks a value that cannot be shown


class FlowNote(BaseModel):
    code: str
    sv: str
    en: str


class FlowRowRead(BaseModel):
    key: dict[str, str] = Field(description='Grouping → value; "*" where the row is a total over that grouping')
    total: bool
    values: dict[str, int | float | None] = Field(
        description="By column; null: hidden (fewer than k children, or it would reveal a hidden value)"
    )


class FlowTableRead(BaseModel):
    table: str
    by: list[str]
    columns: list[str]
    week_from: date = Field(description="Monday of the first ISO week counted (by when the referral was sent)")
    week_to: date = Field(description="Monday of the last ISO week counted")
    k: int = Field(description="The fewest children a published value rests on")
    filters: dict[str, Any]
    rows: list[FlowRowRead]
    notes: list[FlowNote] = Field(description="Show beside the table: how it was protected, in Swedish and English")


def flow_filter(
    date_from: Annotated[date | None, Query(alias="from", description="Default: 52 weeks before `to`")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Default: today")] = None,
    municipality: Annotated[
        list[str], Query(description="SCB codes, or county (county-wide units); the referral's municipality")
    ] = [],  # noqa: B006 (FastAPI copies defaults)
    sender_type: Annotated[list[str], Query(description="organisation-types codes")] = [],  # noqa: B006
    recipient_type: Annotated[list[str], Query(description="organisation-types codes")] = [],  # noqa: B006
    kind: Annotated[list[str], Query(description="referral-kinds codes")] = [],  # noqa: B006
    step: Annotated[list[str], Query(description="Trappan step: 0, 1, 2, 3 or none")] = [],  # noqa: B006
    dimension: Annotated[str | None, Query(description="One wellbeing-wheel code")] = None,
) -> svc.FlowFilter:
    return svc.FlowFilter(
        date_from=date_from,
        date_to=date_to,
        municipalities=tuple(municipality),
        sender_types=tuple(sender_type),
        recipient_types=tuple(recipient_type),
        kinds=tuple(kind),
        steps=tuple(step),
        dimension=dimension,
    )


Filter = Annotated[svc.FlowFilter, Depends(flow_filter)]
Format = Annotated[Literal["json", "csv"] | None, Query(alias="format", description="csv: as Accept: text/csv")]
AcceptHeader = Annotated[str | None, Header(alias="Accept", include_in_schema=False)]
Measure = Annotated[str, Query(description="sent, received, accepted, completed, rejected, suggested, redirected")]
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {CSV: {"schema": {"type": "string"}}}, "description": "The table (JSON, or CSV on request)"}
}

Run = Callable[[AsyncSession, svc.Context], Awaitable[svc.FlowAnswer]]


async def _answer(
    principal: Principal, session: FlowsSession, runtime: RuntimeDep, fmt: str | None, accept: str | None, run: Run
) -> Any:
    ctx = svc.Context.of(actor_for(principal), runtime)
    await fold_before_read(runtime.engine, runtime.settings)  # every committed referral counted
    answer = await run(session, ctx)
    if fmt == "csv" or (fmt is None and accept is not None and CSV in accept):
        return Response(
            to_csv(answer),
            media_type=f"{CSV}; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="flows-{answer.table}.csv"'},
        )
    return read_model(answer)


def read_model(answer: svc.FlowAnswer) -> FlowTableRead:
    return FlowTableRead(
        table=answer.table,
        by=list(answer.by),
        columns=list(answer.columns),
        week_from=answer.week_from,
        week_to=answer.week_to,
        k=answer.k,
        filters=answer.filters,
        rows=[FlowRowRead(key=dict(r.key), total=r.total, values=r.values) for r in answer.rows],
        notes=[FlowNote(code=n.code, sv=n.sv, en=n.en) for n in answer.notes],
    )


def to_csv(answer: svc.FlowAnswer) -> str:
    """The table with a header row; ``*`` in a key column marks a total, ``..`` a hidden value, an empty
    field a value that does not apply to the row. The notes come first, as ``#`` comment lines."""
    out = io.StringIO()
    for note in answer.notes:
        out.write(f"# {note.sv} / {note.en}\n")
    out.write(f"# weeks {answer.week_from.isoformat()} .. {answer.week_to.isoformat()} (Mondays), k = {answer.k}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*answer.by, *answer.columns])
    for row in answer.rows:
        key = dict(row.key)
        cells = [_field(row.values, column) for column in answer.columns]
        writer.writerow([*(key[name] for name in answer.by), *cells])
    return out.getvalue()


def _field(values: dict[str, float | None], column: str) -> str:
    if column not in values:
        return ""
    value = values[column]
    return HIDDEN if value is None else str(value)


@router.get("/counts", response_model=FlowTableRead, responses=_ANSWERS, summary="Referrals by one or two groupings")
async def counts(
    principal: Coordinator,
    session: FlowsSession,
    runtime: RuntimeDep,
    flt: Filter,
    by: Annotated[
        list[str],
        Query(
            description="One or two of: status, kind, step, dimension (alone), municipality, sender_type, "
            "recipient_type, sender_municipality, recipient_municipality, week, month, quarter, year"
        ),
    ] = ["status"],  # noqa: B006
    measure: Measure = "sent",
    fmt: Format = None,
    accept: AcceptHeader = None,
) -> Any:
    return await _answer(
        principal,
        session,
        runtime,
        fmt,
        accept,
        lambda s, ctx: svc.counts(s, ctx=ctx, flt=flt, by=by, measure=measure),
    )


@router.get("/matrix", response_model=FlowTableRead, responses=_ANSWERS, summary="Flow matrix sender → recipient")
async def matrix(
    principal: Coordinator,
    session: FlowsSession,
    runtime: RuntimeDep,
    flt: Filter,
    level: Annotated[
        Literal["type", "municipality"], Query(description="Organisation types or municipalities")
    ] = "type",
    measure: Measure = "sent",
    fmt: Format = None,
    accept: AcceptHeader = None,
) -> Any:
    return await _answer(
        principal,
        session,
        runtime,
        fmt,
        accept,
        lambda s, ctx: svc.matrix(s, ctx=ctx, flt=flt, level=level, measure=measure),
    )


@router.get(
    "/lead-times", response_model=FlowTableRead, responses=_ANSWERS, summary="Median and 90th percentile lead times"
)
async def lead_times(
    principal: Coordinator,
    session: FlowsSession,
    runtime: RuntimeDep,
    flt: Filter,
    by: Annotated[list[str], Query(description="One or two groupings (not status or dimension)")] = ["recipient_type"],  # noqa: B006
    fmt: Format = None,
    accept: AcceptHeader = None,
) -> Any:
    return await _answer(
        principal, session, runtime, fmt, accept, lambda s, ctx: svc.lead_times(s, ctx=ctx, flt=flt, by=by)
    )


@router.get(
    "/rejections", response_model=FlowTableRead, responses=_ANSWERS, summary="Rejections by reason, redirections"
)
async def rejections(
    principal: Coordinator,
    session: FlowsSession,
    runtime: RuntimeDep,
    flt: Filter,
    by: Annotated[str, Query(description="One grouping (not status or dimension)")] = "recipient_type",
    fmt: Format = None,
    accept: AcceptHeader = None,
) -> Any:
    return await _answer(
        principal, session, runtime, fmt, accept, lambda s, ctx: svc.rejections(s, ctx=ctx, flt=flt, by=by)
    )


@router.get("/stalls", response_model=FlowTableRead, responses=_ANSWERS, summary="Referrals stuck at a step")
async def stalls(
    principal: Coordinator,
    session: FlowsSession,
    runtime: RuntimeDep,
    flt: Filter,
    by: Annotated[list[str], Query(description="One or two of: recipient_type, status, …")] = ["recipient_type"],  # noqa: B006
    days: Annotated[int | None, Query(ge=1, le=3650, description="Default: the hub's stall_days")] = None,
    step: Annotated[str, Query(description="Trappan step: 0, 1, 2, 3 or none")] = "2",
    fmt: Format = None,
    accept: AcceptHeader = None,
) -> Any:
    return await _answer(
        principal,
        session,
        runtime,
        fmt,
        accept,
        lambda s, ctx: svc.stalls(s, ctx=ctx, flt=flt, by=by, days=days, step=step),
    )


@router.get(
    "/concern-overdue",
    response_model=FlowTableRead,
    responses=_ANSWERS,
    summary="Reports of concern unanswered past the policy's deadline",
)
async def concern_overdue(
    principal: Coordinator,
    session: FlowsSession,
    runtime: RuntimeDep,
    flt: Filter,
    by: Annotated[list[str], Query(description="One or two of: recipient_municipality, …")] = [  # noqa: B006
        "recipient_municipality"
    ],
    fmt: Format = None,
    accept: AcceptHeader = None,
) -> Any:
    return await _answer(
        principal,
        session,
        runtime,
        fmt,
        accept,
        lambda s, ctx: concern_flows.overdue(s, ctx=ctx, flt=flt, by=by, policy=runtime.policy),
    )


@router.get("/trends", response_model=FlowTableRead, responses=_ANSWERS, summary="A measure per period")
async def trends(
    principal: Coordinator,
    session: FlowsSession,
    runtime: RuntimeDep,
    flt: Filter,
    period: Annotated[Literal["week", "month", "quarter", "year"], Query()] = "month",
    measure: Measure = "sent",
    by_municipality: Annotated[bool, Query(description="Each municipality beside the county")] = False,
    fmt: Format = None,
    accept: AcceptHeader = None,
) -> Any:
    return await _answer(
        principal,
        session,
        runtime,
        fmt,
        accept,
        lambda s, ctx: svc.trends(s, ctx=ctx, flt=flt, period=period, measure=measure, by_municipality=by_municipality),
    )


TeamGroups = Annotated[
    list[str],
    Query(description="One or two of: stage (the named person's life stage), municipality, organisation_type"),
]


@router.get(
    "/teams",
    response_model=FlowTableRead,
    responses=_ANSWERS,
    summary="Children with a named person and with a lead professional, now",
)
async def teams(
    principal: Coordinator,
    session: FlowsSession,
    runtime: RuntimeDep,
    flt: Filter,
    by: TeamGroups = ["stage"],  # noqa: B006
    fmt: Format = None,
    accept: AcceptHeader = None,
) -> Any:
    return await _answer(
        principal, session, runtime, fmt, accept, lambda s, ctx: flow_teams.teams(s, ctx=ctx, flt=flt, by=by)
    )


@router.get(
    "/handovers",
    response_model=FlowTableRead,
    responses=_ANSWERS,
    summary="Handover gaps: offers unanswered, stage transitions passed without a new named person",
)
async def handovers(
    principal: Coordinator,
    session: FlowsSession,
    runtime: RuntimeDep,
    flt: Filter,
    by: TeamGroups = ["stage"],  # noqa: B006
    days: Annotated[
        int | None,
        Query(ge=1, le=flow_teams.MAX_HANDOVER_DAYS, description="Default: the hub's handover_days (14)"),
    ] = None,
    fmt: Format = None,
    accept: AcceptHeader = None,
) -> Any:
    return await _answer(
        principal,
        session,
        runtime,
        fmt,
        accept,
        lambda s, ctx: flow_teams.handovers(s, ctx=ctx, flt=flt, by=by, days=days),
    )


@router.get(
    "/plans",
    response_model=FlowTableRead,
    responses=_ANSWERS,
    summary="Children with a plan: with a lead professional, reviews per plan, days from first referral to plan",
)
async def plans(
    principal: Coordinator,
    session: FlowsSession,
    runtime: RuntimeDep,
    flt: Filter,
    by: TeamGroups = ["stage"],  # noqa: B006
    fmt: Format = None,
    accept: AcceptHeader = None,
) -> Any:
    return await _answer(
        principal, session, runtime, fmt, accept, lambda s, ctx: flow_teams.plans(s, ctx=ctx, flt=flt, by=by)
    )
