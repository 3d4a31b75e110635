"""The child's plan: the team's responsible organisation sends versions (``If-Match`` with the current
version's ETag), each member receives the sections its legal basis covers, members read versions (only
those sections, the withheld ones listed with their reason) and review them. The child is named by
personal identity number in the body, or for a read in the ``Child-Personal-Identity-Number`` header:
never in a URL."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Header, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from hub.api.deps import RuntimeDep, actor_for
from hub.api.rest.schemas import ChildRef, OrganisationRefRead
from hub.api.rest.teams import PIN_HEADER, Party, Reader
from hub.api.routing import Router
from hub.domain.errors import NotFound
from hub.domain.principal import Role
from hub.services import plans as svc

router = Router(prefix="/v1/children/plan", tags=["plan"])
_STRICT = ConfigDict(extra="forbid")
PinHeader = Annotated[str, Header(alias=PIN_HEADER, min_length=10, max_length=13, description="The child's PIN")]
Number = Annotated[int, Path(ge=1, le=1_000_000, description="The version's number (1, 2, …)")]


class PlanVersionCreate(BaseModel):
    model_config = _STRICT
    child: ChildRef
    plan: dict[str, Any] = Field(description="The plan, by the vocabulary's child-plan schema (schema_version)")


class WithheldRead(BaseModel):
    section: str
    data_category: str
    reason: str = Field(description="not-covered-by-legal-basis, or not-shared-with-organisation")


class ShareRead(BaseModel):
    organisation_id: str
    kind: Literal["plan-version", "plan-notice"]
    sections: list[str]
    withheld: list[WithheldRead]


class PlanVersionSent(BaseModel):
    id: str
    team_id: str
    version: int
    etag: str
    created_at: datetime
    shares: list[ShareRead] = Field(description="What each other member of the team receives, decided on its own")


class PlanRead(BaseModel):
    """A version as the reader may see it."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    team_id: str
    version: int
    etag: str
    current: bool
    author: OrganisationRefRead
    schema_version: str
    created_at: datetime
    purged_at: datetime | None
    plan: dict[str, Any] | None = Field(description="Metadata and the sections you may see; null once purged")
    sections: list[str]
    withheld: list[WithheldRead]
    legal_basis: str | None = Field(description="Your basis for the sections you see (plan-author for the author)")
    decision_id: str | None


class ReviewCreate(BaseModel):
    model_config = _STRICT
    child: ChildRef
    answers: dict[str, Any] = Field(
        description="The five evaluation questions, as the child-plan schema's evaluation item: date, "
        "what_has_improved, has_anything_got_worse, purpose_met, what_should_change, can_activities_continue"
    )


class ReviewSent(BaseModel):
    id: str
    version: int
    notified_organisation: str | None


@router.post("/versions", response_model=PlanVersionSent, status_code=status.HTTP_201_CREATED)
async def send_version(
    body: PlanVersionCreate,
    principal: Party,
    runtime: RuntimeDep,
    response: Response,
    if_match: Annotated[str | None, Header(alias="If-Match", max_length=200)] = None,
) -> PlanVersionSent:
    """The next version, from the lead professional (or, while there is none, the named person); after
    the first, ``If-Match`` must carry the current version's ETag (missing: 428, stale: 412 with the
    current ETag). A child with no team: 409 naming what is missing; not on the team: 404; a member that
    is not responsible: 403."""
    sent = await svc.send_version(
        runtime, actor_for(principal), pin=body.child.personal_identity_number, document=body.plan, if_match=if_match
    )
    version = sent.version
    response.headers["ETag"] = version.etag
    response.headers["Location"] = f"/v1/children/plan/versions/{version.number}"
    return PlanVersionSent(
        id=str(version.id),
        team_id=sent.team_id,
        version=version.number,
        etag=version.etag,
        created_at=version.created_at,
        shares=[
            ShareRead(
                organisation_id=s.organisation,
                kind=s.kind,
                sections=list(s.sections),
                withheld=[WithheldRead(**w.as_json()) for w in s.withheld],
            )
            for s in sent.shares
        ],
    )


async def _read(principal: Any, runtime: Any, pin: str, number: int | None, response: Response) -> PlanRead:
    if not principal.has_any(Role.SYSTEM, Role.PROFESSIONAL):
        raise NotFound(svc.NO_PLAN)
    view = await svc.read_plan(runtime, actor_for(principal), pin=pin, number=number, pointer=PIN_HEADER)
    response.headers["ETag"] = view.etag
    return PlanRead.model_validate(view)


@router.get("", response_model=PlanRead)
async def read_current(principal: Reader, runtime: RuntimeDep, pin: PinHeader, response: Response) -> PlanRead:
    """The current version, with only the sections you may see; 404 for anyone not on the child's team."""
    return await _read(principal, runtime, pin, None, response)


@router.get("/versions/{number}", response_model=PlanRead)
async def read_version(
    number: Number, principal: Reader, runtime: RuntimeDep, pin: PinHeader, response: Response
) -> PlanRead:
    """A version by its number, with only the sections you may see."""
    return await _read(principal, runtime, pin, number, response)


@router.post("/versions/{number}/reviews", response_model=ReviewSent, status_code=status.HTTP_201_CREATED)
async def review_version(number: Number, body: ReviewCreate, principal: Party, runtime: RuntimeDep) -> ReviewSent:
    """A member's review against the five evaluation questions; the version's author's system receives it."""
    reviewed = await svc.review_version(
        runtime, actor_for(principal), pin=body.child.personal_identity_number, number=number, answers=body.answers
    )
    return ReviewSent(
        id=str(reviewed.review.id), version=reviewed.version, notified_organisation=reviewed.review.notify
    )
