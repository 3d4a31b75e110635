"""The report-of-concern loop: social services answer a report (one code, no free text; the reporter's
system is told), and search the reports about a child received in their own municipality. The child is
named in the body or the ``Child-Personal-Identity-Number`` header: never in a URL."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header, status
from pydantic import BaseModel, ConfigDict, Field

from hub.api.auth import require
from hub.api.deps import RuntimeDep, actor_for
from hub.api.rest.schemas import ChildRef
from hub.api.routing import Router
from hub.domain.errors import FieldError, InvalidInput
from hub.domain.principal import Principal, Role
from hub.services import concern_reports as svc

router = Router(prefix="/v1", tags=["reports of concern"])
Party = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL))]
# A coordinator is let in to find what everyone but the receiving social services finds: nothing (not a 403,
# which would say there is something to refuse).
Searcher = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL, Role.COORDINATOR))]
PIN_HEADER = "Child-Personal-Identity-Number"


class ConcernRead(BaseModel):
    """A report of concern's answer as it stands: the answer (a concern-answers code) once given, when it is
    due (the report's delivery plus the policy's concern_answer_days) and whether it is overdue now."""

    answer: str | None = Field(description="investigation-opened, investigation-not-opened, investigation-ongoing")
    answered_at: datetime | None
    due_at: datetime | None = Field(description="null until the report has reached social services")
    overdue: bool


class AnswerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str = Field(max_length=64, examples=["investigation-opened"], description="A concern-answers code")


class ReportRead(BaseModel):
    id: str
    status: str
    sender_organisation: str
    recipient_organisation: str
    created_at: datetime
    delivered_at: datetime | None
    concern: ConcernRead


class ReportSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    child: ChildRef | None = Field(default=None, description="Or the Child-Personal-Identity-Number header")


class ReportPage(BaseModel):
    items: list[ReportRead]


@router.post(
    "/referrals/{referral_id}/concern-answer",
    status_code=status.HTTP_201_CREATED,
    response_model=ConcernRead,
    summary="Answer a report of concern you received (once; the reporter's system is told)",
    responses={409: {"description": "Not a report of concern, already answered, or withdrawn"}},
)
async def answer(referral_id: str, body: AnswerCreate, principal: Party, runtime: RuntimeDep) -> ConcernRead:
    state = await svc.answer_report(
        actor=actor_for(principal), referral_id=referral_id, answer=body.answer, runtime=runtime
    )
    return ConcernRead(**asdict(state))


@router.post(
    "/concern-reports/search",
    response_model=ReportPage,
    summary="Reports of concern about a child received by social services of your municipality (audited)",
)
async def search(
    principal: Searcher,
    runtime: RuntimeDep,
    body: ReportSearch | None = None,
    pin: Annotated[str | None, Header(alias=PIN_HEADER, min_length=10, max_length=13)] = None,
) -> ReportPage:
    """Only social services of a type that receives reports (the policy's) find anything, and only reports
    received in their own municipality; every other caller gets an empty list, as when there is none."""
    number = body.child.personal_identity_number if body is not None and body.child is not None else pin
    if number is None:
        raise InvalidInput(
            "Name the child in the body or the Child-Personal-Identity-Number header.",
            errors=[FieldError("/child/personal_identity_number", "required")],
        )
    pointer = PIN_HEADER if number is pin else "/child/personal_identity_number"
    found = await svc.search_reports(actor=actor_for(principal), pin=number, pointer=pointer, runtime=runtime)
    return ReportPage(items=[ReportRead(**asdict(f)) for f in found])
