"""The team around the child: read it (members only), name a named person, hand the role over by an offer
the next organisation accepts, appoint and end a lead professional, add and remove participants, record
the family's choice. The child is named by personal identity number in the body, or for a read in the
``Child-Personal-Identity-Number`` header: never in a URL."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Header, Response, status
from pydantic import BaseModel, ConfigDict, Field

from hub.api.auth import require
from hub.api.deps import RuntimeDep, actor_for
from hub.api.rest.schemas import ChildRef, Instant, OrganisationRefRead
from hub.api.routing import Router
from hub.domain.errors import NotFound
from hub.domain.principal import Principal, Role
from hub.services import teams as svc

router = Router(prefix="/v1/children/team", tags=["team"])
Party = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL))]
# A coordinator's token is let in to be told what everyone off the team is told: 404, not 403 (a 403 would
# say there is something to be refused).
Reader = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL, Role.COORDINATOR))]
_STRICT = ConfigDict(extra="forbid")
PIN_HEADER = "Child-Personal-Identity-Number"
Ref = Field(default=None, max_length=200, description="An opaque reference to the professional (an HSA-id later)")


class AssignmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    role: Literal["named-person", "lead-professional"]
    organisation: OrganisationRefRead
    stage: str | None = Field(description="A life-stages code (the named person's)")
    professional_ref: str | None
    period_start: datetime
    period_end: datetime | None
    start_reason: str
    end_reason: str | None


class OfferRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    state: Literal["open", "accepted", "declined", "withdrawn"]
    stage: str
    from_organisation: OrganisationRefRead
    to_organisation: OrganisationRefRead
    professional_ref: str | None
    offered_at: datetime
    answered_at: datetime | None
    reason: str | None


class MembershipRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    organisation: OrganisationRefRead
    period_start: datetime
    period_end: datetime | None
    join_reason: str
    leave_reason: str | None


class MemberRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    organisation: OrganisationRefRead
    roles: list[str] = Field(description="named-person, lead-professional, participant")


class ChoiceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    about: str
    choice: str
    chosen_by: str
    recorded_by: OrganisationRefRead
    recorded_at: datetime


class ResponsibleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    organisation: OrganisationRefRead | None
    role: str | None
    returned: bool = Field(
        description="The lead professional's role ended; responsibility is back with the named person"
    )
    note_sv: str | None
    note_en: str | None


class TeamRead(BaseModel):
    """The team as its current members see it: organisations and roles, never case content."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    responsible: ResponsibleRead
    named_person: AssignmentRead | None
    lead_professional: AssignmentRead | None
    members: list[MemberRead]
    assignments: list[AssignmentRead]
    memberships: list[MembershipRead]
    offers: list[OfferRead]
    family_choices: list[ChoiceRead]
    updated_at: datetime


class PeriodIn(BaseModel):
    model_config = _STRICT
    start: Instant | None = Field(default=None, description="Default: now")
    end: Instant | None = None


class NamedPersonCreate(BaseModel):
    model_config = _STRICT
    child: ChildRef
    stage: str = Field(max_length=64, examples=["school"], description="A life-stages code")
    professional_ref: str | None = Ref
    period: PeriodIn = PeriodIn()


class OfferCreate(BaseModel):
    model_config = _STRICT
    child: ChildRef
    to_organisation: str = Field(max_length=64, examples=["nora-gymnasieskola"])
    stage: str = Field(max_length=64, examples=["upper-secondary"], description="The stage the receiver holds it in")
    professional_ref: str | None = Ref


class OfferAccept(BaseModel):
    model_config = _STRICT
    professional_ref: str | None = Ref


class OfferDecline(BaseModel):
    model_config = _STRICT
    reason: str | None = Field(default=None, max_length=500)


class LeadCreate(BaseModel):
    model_config = _STRICT
    child: ChildRef
    organisation_id: str = Field(max_length=64)
    professional_ref: str | None = Ref


class LeadEnd(BaseModel):
    model_config = _STRICT
    child: ChildRef
    reason: str | None = Field(default=None, max_length=200, examples=["resolved"])


class ParticipantChange(BaseModel):
    model_config = _STRICT
    child: ChildRef
    organisation_id: str = Field(max_length=64)
    reason: str = Field(min_length=1, max_length=200)


class ChoiceCreate(BaseModel):
    model_config = _STRICT
    child: ChildRef
    about: Literal["lead-professional", "plan"]
    choice: Literal["declined", "agreed"]
    chosen_by: Literal["guardian", "child"]


def _team(changed: svc.Changed) -> TeamRead | Response:
    """The team as the caller now sees it; 204 when the change took the caller off the team (a lead
    professional that was on it only as the lead, say)."""
    if changed.team is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return TeamRead.model_validate(changed.team)


@router.get("", response_model=TeamRead)
async def read_team(
    principal: Reader,
    runtime: RuntimeDep,
    pin: Annotated[str, Header(alias=PIN_HEADER, min_length=10, max_length=13, description="The child's PIN")],
) -> TeamRead:
    """The team around the child, for its current members; 404 for everyone else (no team and not a
    member are the same answer). Audited with the reader's membership as its basis."""
    if not principal.has_any(Role.SYSTEM, Role.PROFESSIONAL):
        raise NotFound(svc.NOT_ON_TEAM)
    view = await svc.read_team(runtime, actor_for(principal), pin=pin, pointer=PIN_HEADER)
    return TeamRead.model_validate(view)


@router.post(
    "/named-person",
    response_model=TeamRead,
    status_code=status.HTTP_201_CREATED,
    responses={204: {"description": "Recorded; a period not current puts no one on the team now"}},
)
async def name_person(body: NamedPersonCreate, principal: Party, runtime: RuntimeDep) -> TeamRead | Response:
    """The caller's organisation becomes the named person for the stage, for a period no other named
    person holds (409 with the conflicting assignment otherwise: a current holder hands over by an offer)."""
    changed = await svc.name_person(
        runtime,
        actor_for(principal),
        pin=body.child.personal_identity_number,
        stage=body.stage,
        professional_ref=body.professional_ref,
        period=(body.period.start, body.period.end),
    )
    return _team(changed)


@router.post("/offers", response_model=OfferRead, status_code=status.HTTP_201_CREATED)
async def offer_handover(body: OfferCreate, principal: Party, runtime: RuntimeDep) -> OfferRead:
    """The named person offers its role to the next organisation, whose system receives the offer through
    its adapter; the offerer stays responsible until it is accepted."""
    view = await svc.offer_handover(
        runtime,
        actor_for(principal),
        pin=body.child.personal_identity_number,
        to_organisation=body.to_organisation,
        stage=body.stage,
        professional_ref=body.professional_ref,
    )
    return OfferRead.model_validate(view)


@router.get("/offers/{offer_id}", response_model=OfferRead)
async def read_offer(offer_id: str, principal: Party, runtime: RuntimeDep) -> OfferRead:
    """An offer, for either of its two organisations (answered or not); 404 for anyone else."""
    return OfferRead.model_validate(await svc.read_offer(runtime, actor_for(principal), offer_id))


@router.post("/offers/{offer_id}/accept", response_model=OfferRead)
async def accept_offer(
    offer_id: str, principal: Party, runtime: RuntimeDep, body: OfferAccept | None = None
) -> OfferRead:
    """The receiver takes the role over now; 409 with the offer's current state if it was withdrawn or answered."""
    ref = body.professional_ref if body else None
    view = await svc.change_offer(runtime, actor_for(principal), offer_id, "accept", professional_ref=ref)
    return OfferRead.model_validate(view)


@router.post("/offers/{offer_id}/decline", response_model=OfferRead)
async def decline_offer(
    offer_id: str, principal: Party, runtime: RuntimeDep, body: OfferDecline | None = None
) -> OfferRead:
    """The receiver declines; the holder stays named person and both still see the offer."""
    view = await svc.change_offer(
        runtime, actor_for(principal), offer_id, "decline", reason=body.reason if body else None
    )
    return OfferRead.model_validate(view)


@router.post("/offers/{offer_id}/withdraw", response_model=OfferRead)
async def withdraw_offer(offer_id: str, principal: Party, runtime: RuntimeDep) -> OfferRead:
    return OfferRead.model_validate(await svc.change_offer(runtime, actor_for(principal), offer_id, "withdraw"))


@router.post("/lead-professional", response_model=TeamRead, status_code=status.HTTP_201_CREATED)
async def appoint_lead(body: LeadCreate, principal: Party, runtime: RuntimeDep) -> TeamRead | Response:
    """The named person appoints a lead professional among the team's members; one at a time."""
    changed = await svc.appoint_lead(
        runtime,
        actor_for(principal),
        pin=body.child.personal_identity_number,
        organisation_id=body.organisation_id,
        professional_ref=body.professional_ref,
    )
    return _team(changed)


@router.post("/lead-professional/end", response_model=TeamRead, responses={204: {"description": "Off the team now"}})
async def end_lead(body: LeadEnd, principal: Party, runtime: RuntimeDep) -> TeamRead | Response:
    """The lead role ends; the team shows the named person responsible again."""
    changed = await svc.end_lead(
        runtime, actor_for(principal), pin=body.child.personal_identity_number, reason=body.reason
    )
    return _team(changed)


@router.post("/participants", response_model=TeamRead, status_code=status.HTTP_201_CREATED)
async def add_participant(body: ParticipantChange, principal: Party, runtime: RuntimeDep) -> TeamRead | Response:
    """The lead professional (or, while there is none, the named person) adds an organisation."""
    changed = await svc.add_participant(
        runtime,
        actor_for(principal),
        pin=body.child.personal_identity_number,
        organisation_id=body.organisation_id,
        reason=body.reason,
    )
    return _team(changed)


@router.post("/participants/remove", response_model=TeamRead, responses={204: {"description": "Off the team now"}})
async def remove_participant(body: ParticipantChange, principal: Party, runtime: RuntimeDep) -> TeamRead | Response:
    changed = await svc.remove_participant(
        runtime,
        actor_for(principal),
        pin=body.child.personal_identity_number,
        organisation_id=body.organisation_id,
        reason=body.reason,
    )
    return _team(changed)


@router.post("/family-choices", response_model=TeamRead, status_code=status.HTTP_201_CREATED)
async def record_choice(body: ChoiceCreate, principal: Party, runtime: RuntimeDep) -> TeamRead | Response:
    """A member records the family's choice about a lead professional or a plan; it blocks nothing."""
    changed = await svc.record_choice(
        runtime,
        actor_for(principal),
        pin=body.child.personal_identity_number,
        about=body.about,
        choice=body.choice,
        chosen_by=body.chosen_by,
    )
    return _team(changed)
