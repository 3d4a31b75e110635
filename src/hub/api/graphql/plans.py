"""The child's plan in GraphQL: the current version as the caller may see it (as ``GET /v1/children/plan``),
for the team's members. The child is named by the ``Child-Personal-Identity-Number`` header, never by an
argument (a GraphQL query may travel in a URL)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from hub.api.graphql.context import Context
from hub.api.graphql.guard import guarded
from hub.api.graphql.problems import AuthenticationProblem, InvalidInputProblem, NotFoundProblem
from hub.api.graphql.teams import PIN_HEADER, TeamOrganisation, child_asked
from hub.domain.errors import InvalidInput, NotFound
from hub.domain.principal import Role
from hub.services import plans as svc


@strawberry.type(description="A section the reader does not get: its data category and why")
class PlanWithheldSection:
    section: str
    data_category: str
    reason: str


@strawberry.type(description="A version of the child's plan with only the sections the reader may see")
class ChildPlan:
    id: str
    version: int
    etag: str
    current: bool
    author: TeamOrganisation
    schema_version: str
    created_at: datetime
    purged_at: datetime | None
    plan: JSON | None
    sections: list[str]
    withheld: list[PlanWithheldSection]
    legal_basis: str | None


ChildPlanResult = Annotated[
    ChildPlan | NotFoundProblem | InvalidInputProblem | AuthenticationProblem, strawberry.union("ChildPlanResult")
]


def child_plan(view: svc.PlanView) -> ChildPlan:
    a = view.author
    return ChildPlan(
        id=view.id,
        version=view.version,
        etag=view.etag,
        current=view.current,
        author=TeamOrganisation(organisation_id=a.organisation_id, name=a.name, type=a.type),
        schema_version=view.schema_version,
        created_at=view.created_at,
        purged_at=view.purged_at,
        plan=JSON(view.plan) if view.plan is not None else None,
        sections=view.sections,
        withheld=[PlanWithheldSection(**w) for w in view.withheld],
        legal_basis=view.legal_basis,
    )


@strawberry.type
class PlanQuery:
    """The childPlan field; ``hub.api.graphql.schema.Query`` inherits it."""

    @strawberry.field(
        description=f"The current version of the child's plan named by the {PIN_HEADER} header, with only the "
        "sections you may see (as GET /v1/children/plan); not found for everyone not on the child's team",
        metadata=guarded(Role.SYSTEM, Role.PROFESSIONAL, Role.COORDINATOR, cost=5),
    )
    async def child_plan(self, info: strawberry.Info[Context, None]) -> ChildPlanResult:
        asked = await child_asked(info, svc.NO_PLAN)
        if not isinstance(asked, tuple):
            return asked
        actor, pin = asked
        try:
            view = await svc.read_plan(info.context.runtime, actor, pin=pin, number=None, pointer=PIN_HEADER)
        except InvalidInput as exc:
            return InvalidInputProblem(detail=exc.detail, fields=[e.pointer for e in exc.errors])
        except NotFound as exc:
            return NotFoundProblem(detail=exc.detail, field=None)
        return child_plan(view)
