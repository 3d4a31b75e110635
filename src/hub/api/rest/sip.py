"""SIP meetings (samordnad individuell plan): invite several organisations in one request, each invitee
decided on its own; answers back to the inviter; cancelling. The child is named by personal identity
number in the body, never in a URL."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Header, Response, status
from pydantic import BaseModel, ConfigDict, Field

from hub.api.auth import require
from hub.api.deps import RuntimeDep, actor_for
from hub.api.rest.schemas import ChildRef, Explanation, Instant, OrganisationRefRead
from hub.api.routing import Router
from hub.domain.errors import NotFound
from hub.domain.principal import Principal, Role
from hub.domain.sip import MAX_INVITEES, NOT_FOUND
from hub.services import sip as svc

router = Router(prefix="/v1/sip-meetings", tags=["sip-meetings"])
Party = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL))]
# A coordinator is let in to be told what everyone else is told: 404, not 403 (a 403 would say there is
# something to be refused).
Reader = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL, Role.COORDINATOR))]
_STRICT = ConfigDict(extra="forbid")
Org = Annotated[str, Field(min_length=1, max_length=64, examples=["region-bup"])]

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Your unique key for this meeting: the same key and body give the same meeting; "
        "the same key with another body is a 409.",
    ),
]


class MeetingCreate(BaseModel):
    model_config = _STRICT
    child: ChildRef
    invitees: list[Org] = Field(max_length=MAX_INVITEES, description="Organisation ids, each invited on its own")
    times: list[Instant] = Field(min_length=1, max_length=5, description="Proposed start times, still to come")
    duration_minutes: int = Field(default=60, ge=15, le=480)
    format: Literal["in-person", "video", "phone"] = "in-person"
    language: str = Field(default="sv", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", description="BCP 47, e.g. sv")
    purpose: str | None = Field(default=None, max_length=2000, description="Why the meeting (sealed at rest)")
    place: str | None = Field(default=None, max_length=500, description="Where, or the video link (sealed at rest)")


class AnswerCreate(BaseModel):
    model_config = _STRICT
    answer: Literal["accepted", "declined", "proposed-time"]
    reason: str | None = Field(default=None, max_length=500, description="With declined; optional")
    proposed_time: Instant | None = Field(default=None, description="Required with proposed-time")


class CancelCreate(BaseModel):
    model_config = _STRICT
    reason: str | None = Field(default=None, max_length=500)


class ExplanationRead(Explanation):
    model_config = ConfigDict(from_attributes=True)


class DecisionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    decision_id: str
    legal_basis: str | None
    reasons: list[ExplanationRead]
    remedies: list[ExplanationRead] = Field(description="What would make the invitation lawful (when withheld)")


class InvitationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    organisation: OrganisationRefRead
    outcome: Literal["invited", "withheld"] | None = Field(
        description="The inviter's view: invited (queued to its system) or withheld (no basis; it got nothing)"
    )
    decision: DecisionRead | None = Field(description="The inviter's view: the sharing decision and its reasons")
    answer: Literal["accepted", "declined", "proposed-time"] | None
    answered_at: datetime | None
    reason: str | None
    proposed_time: datetime | None


class MeetingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    state: Literal["open", "cancelled"]
    inviter: OrganisationRefRead
    times: list[datetime]
    duration_minutes: int
    format: str
    language: str
    purpose: str | None
    place: str | None
    created_at: datetime
    cancelled_at: datetime | None
    cancel_reason: str | None
    invitations: list[InvitationRead] = Field(
        description="The inviter sees every invitation; an invited organisation the invited ones (never a withheld one)"
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MeetingRead,
    summary="Invite several organisations to a SIP meeting (each invitee decided on its own)",
)
async def create(
    body: MeetingCreate, key: IdempotencyKey, principal: Party, runtime: RuntimeDep, response: Response
) -> MeetingRead:
    """Each invitee is decided by the sharing engine on its own (purpose `sip-kallelse`, categories
    `identity` and `child-plan`); only those with a basis are sent the invitation. The answer lists each
    invitation: `invited`, or `withheld` with the decision's reasons and remedies."""
    draft = svc.MeetingDraft(
        personal_identity_number=body.child.personal_identity_number,
        **body.model_dump(exclude={"child"}),
    )
    made = await svc.invite(actor=actor_for(principal), draft=draft, idempotency_key=key, runtime=runtime)
    if made.replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return MeetingRead.model_validate(made.meeting)


@router.get("/{meeting_id}", response_model=MeetingRead, summary="One SIP meeting (audited read)")
async def read(meeting_id: str, principal: Reader, runtime: RuntimeDep) -> MeetingRead:
    """For the inviter and the invited organisations; 404 for everyone else (the same as no such meeting)."""
    if not principal.has_any(Role.SYSTEM, Role.PROFESSIONAL):
        raise NotFound(NOT_FOUND)
    return MeetingRead.model_validate(await svc.read_meeting(runtime, actor_for(principal), meeting_id))


@router.post(
    "/{meeting_id}/answers",
    response_model=MeetingRead,
    summary="Answer an invitation: accept, decline, or propose another time",
    responses={409: {"description": "The meeting is cancelled (`current.meeting`)"}},
)
async def answer(meeting_id: str, body: AnswerCreate, principal: Party, runtime: RuntimeDep) -> MeetingRead:
    """By an invited organisation; the answer travels to the inviter's system. The latest answer stands
    (an organisation may change its mind); repeating the answer that stands changes nothing."""
    view = await svc.answer(
        runtime,
        actor_for(principal),
        meeting_id,
        body.answer,
        reason=body.reason,
        proposed_time=body.proposed_time,
    )
    return MeetingRead.model_validate(view)


@router.post(
    "/{meeting_id}/cancel",
    response_model=MeetingRead,
    summary="Cancel a SIP meeting (the invited organisations' systems are told)",
    responses={409: {"description": "Already cancelled (`current.meeting`)"}},
)
async def cancel(
    meeting_id: str, principal: Party, runtime: RuntimeDep, body: CancelCreate | None = None
) -> MeetingRead:
    view = await svc.cancel(runtime, actor_for(principal), meeting_id, reason=body.reason if body else None)
    return MeetingRead.model_validate(view)
