"""``POST /v1/sharing-decisions``: the decision engine as a dry run ("may we send this?"), audited; necessity
assessments; clearing a child's protected-identity mark."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from hub.api.auth import require
from hub.api.deps import RuntimeDep, actor_for
from hub.api.rest.schemas import ChildRef, Explanation, Instant, ProtectableChild
from hub.api.routing import Router
from hub.domain.principal import Principal, Role
from hub.services import protected_identity as protection_svc
from hub.services import sharing as svc
from hub.services.rate_limits import for_runtime

router = Router(prefix="/v1", tags=["lawful sharing"])
Sender = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL))]


class SharingQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to_organisation: str = Field(examples=["region-bup"], description="The receiving organisation's id")
    child: ProtectableChild
    purpose: str = Field(examples=["remiss"], description="A referral-kinds code")
    data_categories: list[str] = Field(min_length=1, examples=[["identity", "health"]])
    legal_basis: Literal["consent", "report-of-concern", "necessary-disclosure"] | None = Field(
        default=None, description="The basis you invoke; omitted: the hub finds the basis that permits most"
    )
    basis_reference: str | None = Field(default=None, description="A consent id or necessity assessment id")


class SharingDecisionRead(BaseModel):
    id: str
    decided_at: datetime
    from_organisation: str
    to_organisation: str
    purpose: str
    allowed: bool
    legal_basis: str | None
    basis_reference: str | None = Field(
        description="The consent or assessment id; null for a consent your organisation may not see"
    )
    permitted_categories: list[str]
    denied_categories: list[str]
    reasons: list[Explanation]
    remedies: list[Explanation] = Field(description="What would make the denied part lawful")


def to_read(recorded: svc.RecordedDecision) -> SharingDecisionRead:
    d = recorded.decision
    return SharingDecisionRead(
        id=str(recorded.id),
        decided_at=recorded.decided_at,
        from_organisation=recorded.from_organisation,
        to_organisation=recorded.to_organisation,
        purpose=recorded.purpose,
        allowed=d.allowed,
        legal_basis=d.legal_basis,
        basis_reference=d.shown_reference,
        permitted_categories=list(d.permitted_categories),
        denied_categories=list(d.denied_categories),
        reasons=[Explanation(**dataclasses.asdict(r)) for r in d.reasons],
        remedies=[Explanation(**dataclasses.asdict(r)) for r in d.remedies],
    )


@router.post("/sharing-decisions", response_model=SharingDecisionRead, summary="May we send this? (dry run, audited)")
async def sharing_decision(body: SharingQuestion, principal: Sender, runtime: RuntimeDep) -> SharingDecisionRead:
    """The sender is the caller's organisation. A refusal is an answer (200, `allowed: false`) with the
    reasons and what would make the share lawful; it is recorded in the audit trail like an allowance.
    The reasons describe only consents your organisation recorded or is named in (by id); another
    organisation's consent may still allow the share, unnamed. Rate limited per organisation and per
    organisation and child (429 with `Retry-After`)."""
    recorded = await svc.decide_share(
        actor=actor_for(principal),
        question=svc.ShareQuestion(
            to_organisation=body.to_organisation,
            personal_identity_number=body.child.personal_identity_number,
            purpose=body.purpose,
            data_categories=body.data_categories,
            legal_basis=body.legal_basis,
            basis_reference=body.basis_reference,
            child_protected=body.child.protected_identity,  # decided on, not kept: a dry run sends nothing
        ),
        runtime=runtime,
        dry_run=True,
        limits=for_runtime(runtime),
    )
    return to_read(recorded)


class AssessmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    child: ChildRef
    recipient_organisation: str
    decided_by_person: str = Field(
        min_length=1, max_length=100, description="The deciding professional's id (e.g. HSA-id), not a name"
    )
    decided_by_role: str = Field(min_length=1, max_length=100, examples=["rektor"])
    justification: str = Field(min_length=10, max_length=4000)
    case_reference: str = Field(min_length=1, max_length=100)
    data_categories: list[str] = Field(min_length=1)
    decided_at: Instant | None = None


class AssessmentRead(BaseModel):
    id: str
    organisation: str
    recipient_organisation: str
    decided_by_person: str
    decided_by_role: str
    case_reference: str
    data_categories: list[str]
    decided_at: datetime


@router.post(
    "/necessity-assessments",
    status_code=status.HTTP_201_CREATED,
    response_model=AssessmentRead,
    summary="Record a necessity assessment (OSL 10 kap. 2 §) for one child and recipient",
)
async def create_assessment(body: AssessmentCreate, principal: Sender, runtime: RuntimeDep) -> AssessmentRead:
    a = await svc.record_assessment(
        actor=actor_for(principal),
        draft=svc.AssessmentDraft(
            personal_identity_number=body.child.personal_identity_number,
            recipient_organisation=body.recipient_organisation,
            decided_by_person=body.decided_by_person,
            decided_by_role=body.decided_by_role,
            justification=body.justification,
            case_reference=body.case_reference,
            data_categories=body.data_categories,
            decided_at=body.decided_at,
        ),
        runtime=runtime,
    )
    return AssessmentRead(
        id=a.id,
        organisation=a.organisation_id,
        recipient_organisation=a.recipient_organisation_id,
        decided_by_person=a.decided_by.person,
        decided_by_role=a.decided_by.role,
        case_reference=a.case_reference,
        data_categories=sorted(a.data_categories),
        decided_at=a.decided_at,
    )


class ProtectionClearance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    child: ChildRef


@router.post(
    "/protected-identity/clearances",
    status_code=204,
    summary="Clear a child's protected-identity mark (organisations the policy names only; audited)",
    responses={403: {"description": "Your organisation may not clear marks (answered before the child is looked up)"}},
)
async def clear_protected_identity(body: ProtectionClearance, principal: Sender, runtime: RuntimeDep) -> Response:
    """The hub keeps a child's protected-identity mark until an organisation the policy names under
    `protected_identity.may_clear` clears it here. The answer is 204 whether or not the child was marked,
    so it tells nothing about the child; the audit entry (`protected-identity-cleared`) records which.
    Any other organisation gets 403, whatever the child."""
    await protection_svc.clear_protection(
        actor=actor_for(principal), personal_identity_number=body.child.personal_identity_number, runtime=runtime
    )
    return Response(status_code=204)
