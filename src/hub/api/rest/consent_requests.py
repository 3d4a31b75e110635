"""Consent requests to a child's guardians: make one, record an answer from the e-service, read one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, status
from pydantic import BaseModel, ConfigDict, Field

from hub.api.auth import require
from hub.api.deps import RuntimeDep, actor_for
from hub.api.rest.consents import InformationGivenIn, PartiesIn
from hub.api.rest.schemas import Instant
from hub.api.routing import Router
from hub.domain.principal import Principal, Role
from hub.services import consent_requests as svc

router = Router(prefix="/v1/consent-requests", tags=["consents"])
Requester = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL))]

_STRICT = ConfigDict(extra="forbid")
Reference = Annotated[
    str, Field(min_length=1, max_length=100, description="A name-free label or source-system id, e.g. 'vh1'")
]


class RequestChild(BaseModel):
    model_config = _STRICT
    personal_identity_number: str = Field(min_length=10, max_length=13, examples=["20150311-2383"])
    reference: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="The child as a grantor (name-free); required when the policy's age rule asks the child",
    )


class ConsentRequestCreate(BaseModel):
    model_config = _STRICT
    child: RequestChild
    guardian_count: int = Field(ge=1, le=2, description="Guardians with custody (2 for joint custody)")
    guardians: list[Reference] = Field(
        min_length=1, max_length=2, description="Each guardian with custody, by reference"
    )
    data_categories: list[str] = Field(min_length=1, description="data-categories codes")
    from_parties: PartiesIn
    to_parties: PartiesIn
    purposes: list[str] = Field(min_length=1, description="referral-kinds codes")
    valid_from: Instant
    valid_until: Instant
    information_given: InformationGivenIn
    answer_by: Instant | None = Field(default=None, description="Answers are taken until then; 30 days if omitted")


class AnswerIn(BaseModel):
    model_config = _STRICT
    role: Literal["guardian", "child"]
    reference: Reference
    agreed: bool = Field(description="true: agreed; false: refused")
    evidence_reference: str = Field(
        min_length=1, max_length=200, description="Where the e-service keeps the signed answer"
    )
    method: str = Field(min_length=1, max_length=50, examples=["bankid"], description="How it was given")
    answered_at: Instant | None = Field(default=None, description="When; now if omitted")
    categories: list[str] | None = Field(default=None, description="What was agreed to; omit for all")


class GrantorRead(BaseModel):
    role: Literal["guardian", "child"]
    reference: str
    status: Literal["pending", "agreed", "refused"]
    answered_at: datetime | None
    evidence_reference: str | None
    method: str | None
    categories: list[str] | None


class ConsentRequestRead(BaseModel):
    id: str
    state: Literal["pending", "agreed", "refused", "expired"]
    requesting_organisation: str
    guardian_count: int
    child_required: bool = Field(description="Whether the child's own consent is required (the policy's age rule)")
    grantors: list[GrantorRead]
    data_categories: list[str]
    from_parties: PartiesIn
    to_parties: PartiesIn
    purposes: list[str]
    valid_from: datetime
    valid_until: datetime
    information_given: InformationGivenIn
    requested_at: datetime
    answer_by: datetime
    consent_id: str | None = Field(description="The consent the answers made, once every required grantor agreed")


def to_read(view: svc.RequestView) -> ConsentRequestRead:
    r = view.request
    return ConsentRequestRead(
        id=r.id,
        state=view.state,
        requesting_organisation=r.requesting_organisation_id,
        guardian_count=r.guardian_count,
        child_required=r.child_required,
        grantors=[
            GrantorRead(
                role=g.role,
                reference=g.reference,
                status=g.status,
                answered_at=g.answered_at,
                evidence_reference=g.evidence_reference,
                method=g.method,
                categories=None if g.categories is None else sorted(g.categories),
            )
            for g in r.grantors
        ],
        data_categories=sorted(r.data_categories),
        from_parties=PartiesIn(
            organisation_ids=sorted(r.from_parties.organisation_ids),
            organisation_types=sorted(r.from_parties.organisation_types),
        ),
        to_parties=PartiesIn(
            organisation_ids=sorted(r.to_parties.organisation_ids),
            organisation_types=sorted(r.to_parties.organisation_types),
        ),
        purposes=sorted(r.purposes),
        valid_from=r.valid_from,
        valid_until=r.valid_until,
        information_given=InformationGivenIn(language=r.information_given.language, form=r.information_given.form),
        requested_at=r.requested_at,
        answer_by=r.answer_by,
        consent_id=r.consent_id,
    )


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=ConsentRequestRead, summary="Ask the guardians for consent"
)
async def create(body: ConsentRequestCreate, principal: Requester, runtime: RuntimeDep) -> ConsentRequestRead:
    """Each guardian (and the child, when named) starts `pending`. Your e-service asks them and signs;
    send each answer to `/{id}/answers`."""
    draft = svc.RequestDraft(
        personal_identity_number=body.child.personal_identity_number,
        guardian_count=body.guardian_count,
        guardians=body.guardians,
        child_reference=body.child.reference,
        data_categories=body.data_categories,
        from_parties=body.from_parties.model_dump(),
        to_parties=body.to_parties.model_dump(),
        purposes=body.purposes,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        information_given=body.information_given.model_dump(),
        answer_by=body.answer_by,
    )
    return to_read(await svc.request_consent(actor=actor_for(principal), draft=draft, runtime=runtime))


@router.post(
    "/{request_id}/answers", response_model=ConsentRequestRead, summary="Record a guardian's or the child's answer"
)
async def answer(request_id: str, body: AnswerIn, principal: Requester, runtime: RuntimeDep) -> ConsentRequestRead:
    """The answer the e-service collected: the hub records its evidence reference, time and method (it
    signs nothing). When every required grantor has agreed the consent is recorded and `consent_id` set;
    a refusal closes the request. 410 after `answer_by`, 422 for a grantor the request does not list,
    409 for a second answer, 404 for another organisation's request."""
    draft = svc.AnswerDraft(
        role=body.role,
        reference=body.reference,
        agreed=body.agreed,
        evidence_reference=body.evidence_reference,
        method=body.method,
        answered_at=body.answered_at,
        categories=body.categories,
    )
    view = await svc.answer_request(actor=actor_for(principal), request_id=request_id, draft=draft, runtime=runtime)
    return to_read(view)


@router.get("/{request_id}", response_model=ConsentRequestRead, summary="One consent request (the requester only)")
async def read(request_id: str, principal: Requester, runtime: RuntimeDep) -> ConsentRequestRead:
    view = await svc.get_request(actor=actor_for(principal), request_id=request_id, runtime=runtime)
    return to_read(view)
