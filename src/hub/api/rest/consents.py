"""Consents (samtycke): record, read, list for a child, withdraw. Never deleted."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, status
from pydantic import BaseModel, ConfigDict, Field

from hub.api.auth import require
from hub.api.deps import RuntimeDep, actor_for
from hub.api.rest.schemas import ChildRef, Instant
from hub.api.routing import Router
from hub.domain.principal import Principal, Role
from hub.services import consents as svc
from hub.services.consents import ConsentDraft, ConsentView

router = Router(prefix="/v1/consents", tags=["consents"])
Recorder = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL))]
# An admin of the recording organisation may withdraw too (the service checks the organisation).
Withdrawer = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL, Role.ADMIN))]

_STRICT = ConfigDict(extra="forbid")


class GrantorIn(BaseModel):
    model_config = _STRICT
    role: Literal["guardian", "child"]
    reference: str = Field(
        min_length=1, max_length=100, description="A name-free label or source-system id, e.g. 'vh1'"
    )
    agreed: bool = True
    categories: list[str] | None = Field(
        default=None, description="What this grantor agreed to; omit for all the consent's categories"
    )


class PartiesIn(BaseModel):
    model_config = _STRICT
    organisation_ids: list[str] = Field(default=[], max_length=100)
    organisation_types: list[str] = Field(default=[], max_length=50, description="organisation-types codes")


class InformationGivenIn(BaseModel):
    model_config = _STRICT
    language: str = Field(min_length=2, max_length=35, examples=["sv"])
    form: str = Field(
        min_length=1, max_length=50, examples=["written"], description="written, oral, easy-read, interpreter…"
    )


class ConsentCreate(BaseModel):
    model_config = _STRICT
    child: ChildRef
    guardian_count: int = Field(ge=1, le=2, description="Guardians with custody (2 for joint custody)")
    grantors: list[GrantorIn] = Field(min_length=1, max_length=3)
    data_categories: list[str] = Field(min_length=1, description="data-categories codes")
    from_parties: PartiesIn
    to_parties: PartiesIn
    purposes: list[str] = Field(min_length=1, description="referral-kinds codes")
    valid_from: Instant
    valid_until: Instant
    information_given: InformationGivenIn
    evidence_reference: str = Field(
        min_length=1, max_length=200, description="Where the signed consent is kept in the source system"
    )


class ConsentRead(BaseModel):
    id: str
    state: Literal["active", "not-yet-valid", "expired", "withdrawn"]
    recording_organisation: str
    guardian_count: int
    grantors: list[GrantorIn]
    data_categories: list[str]
    from_parties: PartiesIn
    to_parties: PartiesIn
    purposes: list[str]
    valid_from: datetime
    valid_until: datetime
    information_given: InformationGivenIn
    evidence_reference: str
    withdrawn_at: datetime | None
    withdrawn_by: str | None
    withdrawal_reason: str | None


class ConsentSearch(BaseModel):
    model_config = _STRICT
    child: ChildRef


class ConsentList(BaseModel):
    items: list[ConsentRead]


class WithdrawalIn(BaseModel):
    model_config = _STRICT
    withdrawn_by: str = Field(min_length=1, max_length=100, description="Who withdrew: a role or reference, e.g. 'vh2'")
    reason: str = Field(min_length=1, max_length=1000)
    withdrawn_at: Instant | None = Field(default=None, description="When; now if omitted")


def _scope(scope) -> PartiesIn:  # type: ignore[no-untyped-def]
    return PartiesIn(
        organisation_ids=sorted(scope.organisation_ids), organisation_types=sorted(scope.organisation_types)
    )


def to_read(view: ConsentView) -> ConsentRead:
    c = view.consent
    return ConsentRead(
        id=c.id,
        state=view.state,
        recording_organisation=c.recording_organisation_id,
        guardian_count=c.guardian_count,
        grantors=[
            GrantorIn(
                role=g.role,
                reference=g.reference,
                agreed=g.agreed,
                categories=sorted(g.categories) if g.categories is not None else None,
            )
            for g in c.grantors
        ],
        data_categories=sorted(c.data_categories),
        from_parties=_scope(c.from_parties),
        to_parties=_scope(c.to_parties),
        purposes=sorted(c.purposes),
        valid_from=c.valid_from,
        valid_until=c.valid_until,
        information_given=InformationGivenIn(language=c.information_given.language, form=c.information_given.form),
        evidence_reference=c.evidence_reference,
        withdrawn_at=c.withdrawn_at,
        withdrawn_by=c.withdrawn_by,
        withdrawal_reason=c.withdrawal_reason,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ConsentRead, summary="Record a consent")
async def create(body: ConsentCreate, principal: Recorder, runtime: RuntimeDep) -> ConsentRead:
    draft = ConsentDraft(
        personal_identity_number=body.child.personal_identity_number,
        guardian_count=body.guardian_count,
        grantors=[g.model_dump() for g in body.grantors],
        data_categories=body.data_categories,
        from_parties=body.from_parties.model_dump(),
        to_parties=body.to_parties.model_dump(),
        purposes=body.purposes,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        information_given=body.information_given.model_dump(),
        evidence_reference=body.evidence_reference,
    )
    view = await svc.record_consent(actor=actor_for(principal), draft=draft, runtime=runtime)
    return to_read(view)


@router.post(
    "/search",
    response_model=ConsentList,
    summary="The child's consents the caller's organisation may read",
)
async def search(body: ConsentSearch, principal: Recorder, runtime: RuntimeDep) -> ConsentList:
    """A POST so the personal identity number travels in the body, never in a URL or an access log.
    Readable: consents your organisation recorded or that name it by id, and consents that name its
    type under which it sent or received a referral."""
    views = await svc.list_consents(
        actor=actor_for(principal), personal_identity_number=body.child.personal_identity_number, runtime=runtime
    )
    return ConsentList(items=[to_read(v) for v in views])


@router.get("/{consent_id}", response_model=ConsentRead, summary="One consent (404 unless the caller may read it)")
async def read(consent_id: str, principal: Recorder, runtime: RuntimeDep) -> ConsentRead:
    """As `/search` says who may read; any other caller is told 404, as for an id that does not exist."""
    view = await svc.get_consent(actor=actor_for(principal), consent_id=consent_id, runtime=runtime)
    return to_read(view)


@router.post(
    "/{consent_id}/withdraw",
    response_model=ConsentRead,
    summary="Withdraw a consent, effective at once (the recording organisation only)",
)
async def withdraw(consent_id: str, body: WithdrawalIn, principal: Withdrawer, runtime: RuntimeDep) -> ConsentRead:
    """Only the organisation that recorded the consent (a system, professional or admin of it): a party
    that may read it is answered 403, anyone else 404."""
    view = await svc.withdraw(
        actor=actor_for(principal),
        consent_id=consent_id,
        withdrawn_by=body.withdrawn_by,
        reason=body.reason,
        runtime=runtime,
        withdrawn_at=body.withdrawn_at,
    )
    return to_read(view)
