"""Referrals in GraphQL: the same list as ``GET /v1/referrals``, metadata only (no identity, no free text).

``Query.referrals`` (``hub.api.graphql.schema``) is the field below, so the schema keeps its field order."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

import strawberry

from hub.api.graphql.context import Context
from hub.api.graphql.guard import guarded
from hub.api.graphql.problems import AuthenticationProblem, ForbiddenProblem, InvalidInputProblem
from hub.domain.errors import HubError, InvalidInput
from hub.domain.principal import Role
from hub.services.concern_states import clock
from hub.services.referrals import ReferralQuery, ReferralView, list_referrals


@strawberry.type(description="A report of concern's answer as it stands (a concern-answers code, no free text)")
class ConcernAnswer:
    answer: str | None = strawberry.field(description="investigation-opened, -not-opened or -ongoing; null: none yet")
    answered_at: datetime | None
    due_at: datetime | None = strawberry.field(description="null until the report has reached social services")
    overdue: bool


@strawberry.type(description="A referral your organisation sent or received (metadata: no identity, no free text)")
class Referral:
    id: str
    status: str
    kind: str
    role: str = strawberry.field(description="sender or receiver: your side of it")
    sender_organisation: str
    recipient_organisation: str
    service_id: str | None
    dimensions: list[str]
    trappan_step: int | None
    permitted_categories: list[str]
    legal_basis: str
    cancellation_requested: bool
    created_at: datetime
    updated_at: datetime
    delivery_state: str = strawberry.field(
        description="queued, retrying, delivered, dead-lettered (given up; the sender was told) or abandoned"
    )
    concern_answer: ConcernAnswer | None = strawberry.field(
        default=None, description="A report of concern: its answer, when due, overdue or not (null: another kind)"
    )


@strawberry.type(description="One page of referrals, newest first; pass nextCursor as `after` for the next")
class ReferralPage:
    items: list[Referral]
    next_cursor: str | None


ReferralsResult = Annotated[
    ReferralPage | InvalidInputProblem | AuthenticationProblem | ForbiddenProblem, strawberry.union("ReferralsResult")
]


REFERRAL_ROLES = (Role.SYSTEM, Role.PROFESSIONAL)


async def _referrals(
    info: strawberry.Info[Context, None],
    role: str | None = None,
    status: list[str] | None = None,
    kind: list[str] | None = None,
    counterpart: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    after: str | None = None,
    limit: int = 50,
) -> ReferralsResult:
    try:
        principal = await info.context.principal()
    except HubError as exc:
        return AuthenticationProblem(detail=exc.detail)
    if not principal.has_any(*REFERRAL_ROLES):
        return ForbiddenProblem(detail="Referrals are for the roles system and professional.")
    if role not in (None, "sender", "receiver") or not 1 <= limit <= 200:
        return InvalidInputProblem(detail="role is sender or receiver; limit is 1-200", fields=["role", "limit"])
    try:
        async with info.context.runtime.sessions() as session:
            page = await list_referrals(
                session,
                organisation_id=principal.organisation_id,
                query=ReferralQuery(
                    role=role,
                    statuses=status or [],
                    kinds=kind or [],
                    counterpart=counterpart,
                    created_from=created_from,
                    created_to=created_to,
                    cursor=after,
                    limit=limit,
                ),
                at=clock(info.context.runtime),
            )
    except InvalidInput as exc:
        return InvalidInputProblem(detail=exc.detail, fields=[e.pointer for e in exc.errors])
    return ReferralPage(
        items=[_referral(r) for r in page.items],
        next_cursor=page.next_cursor,
    )


def _referral(view: ReferralView) -> Referral:
    answer = view.concern_answer
    fields = {**asdict(view), "concern_answer": None if answer is None else ConcernAnswer(**asdict(answer))}
    return Referral(**fields)


referrals_field = strawberry.field(
    resolver=_referrals,
    description="Referrals your organisation sent or received, as GET /v1/referrals (needs a token)",
    metadata=guarded(*REFERRAL_ROLES, cost=20),
)
