"""Referrals: send (idempotent), follow the lifecycle, list, read; and the mailbox for systems that fetch."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.adapters.base import MessageKind
from hub.api.auth import require
from hub.api.deps import RuntimeDep, Session, actor_for
from hub.api.rest.concern_reports import ConcernRead
from hub.api.rest.schemas import Instant, ProtectableChild
from hub.api.routing import Router
from hub.domain.principal import Principal, Role
from hub.runtime import Runtime
from hub.services import mailbox as mailbox_svc
from hub.services import referrals as svc
from hub.services.concern_states import clock as concern_clock

router = Router(prefix="/v1", tags=["referrals"])
Party = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL))]
System = Annotated[Principal, Depends(require(Role.SYSTEM))]
_STRICT = ConfigDict(extra="forbid")

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Your unique key for this referral: the same key and body give the same referral; "
        "the same key with another body is a 409.",
    ),
]


class TargetIn(BaseModel):
    model_config = _STRICT
    organisation_id: str | None = Field(default=None, examples=["region-bup"])
    service_id: str | None = None
    organisation_type: str | None = Field(default=None, description="With municipality_code: resolved via the registry")
    municipality_code: str | None = Field(default=None, pattern=r"^\d{4}$", examples=["1884"])

    @model_validator(mode="after")
    def _one_way(self) -> TargetIn:
        ways = [self.organisation_id is not None, self.service_id is not None, self.organisation_type is not None]
        if sum(ways) != 1 or (self.organisation_type is not None) != (self.municipality_code is not None):
            raise ValueError("name exactly one of: organisation_id, service_id, organisation_type + municipality_code")
        return self


class LocalCodesIn(BaseModel):
    model_config = _STRICT
    system: str = Field(examples=["variant-behovskompassen"], description="A wheel variant's name")
    codes: list[str] = Field(min_length=1, max_length=50)


class ConcernIn(BaseModel):
    model_config = _STRICT
    dimensions: list[str] = Field(default=[], max_length=8, description="wellbeing-wheel codes", examples=[["healthy"]])
    local_codes: LocalCodesIn | None = Field(default=None, description="A local wheel's codes; translated and kept")
    trappan_step: int | None = Field(default=None, ge=0, le=3)
    text: str | None = Field(default=None, max_length=10_000, description="Free text; needs category concern-text")


class ReferralCreate(BaseModel):
    model_config = _STRICT
    kind: str = Field(examples=["remiss"], description="A referral-kinds code")
    target: TargetIn
    child: ProtectableChild
    concern: ConcernIn
    data_categories: list[str] = Field(min_length=1, examples=[["identity", "school-situation"]])
    information: dict[str, Any] = Field(
        default={}, description="Content per data category (keys: data-categories codes)"
    )
    legal_basis: Literal["consent", "report-of-concern", "necessary-disclosure"] | None = None
    basis_reference: str | None = Field(default=None, description="A consent id or necessity assessment id")


class DeliveryRead(BaseModel):
    kind: str
    recipient_organisation: str
    state: Literal["queued", "retrying", "delivered", "dead-lettered", "abandoned"]
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None


class EventRead(BaseModel):
    id: str
    seq: int
    type: str
    from_status: str | None
    to_status: str | None
    by_organisation: str | None = Field(description="null: the hub (delivery receipt, failure)")
    reason_code: str | None
    reason_text: str | None
    suggested_organisation: str | None
    suggested_service: str | None
    feedback: str | None
    occurred_at: datetime


class ReferralSummary(BaseModel):
    id: str
    status: str
    kind: str
    role: Literal["sender", "receiver"]
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
    delivery_state: Literal["queued", "retrying", "delivered", "dead-lettered", "abandoned"] = Field(
        description="The delivery of the referral itself, apart from its status: dead-lettered when the hub "
        "gave up (the sender was told by a delivery-failed event; an operator may queue it again)"
    )
    concern_answer: ConcernRead | None = Field(
        default=None, description="A report of concern: its answer, when due, overdue or not (null: another kind)"
    )


class ReferralRead(ReferralSummary):
    data_categories: list[str]
    basis_reference: str | None
    decision_id: str
    document: dict[str, Any] | None = Field(description="What you may read; null once purged after retention")
    events: list[EventRead]
    deliveries: list[DeliveryRead] = Field(description="Delivery state, separate from the business status")


class ReferralAccepted(BaseModel):
    id: str
    status: str
    href: str


class ReferralPage(BaseModel):
    items: list[ReferralSummary]
    next_cursor: str | None


class EventCreate(BaseModel):
    model_config = _STRICT
    type: Literal["status", "cancellation-requested"] = "status"
    status: str | None = Field(default=None, examples=["accepted"], description="The new status (type status)")
    reason_code: str | None = Field(default=None, description="For rejected: a rejection-reasons code")
    reason_text: str | None = Field(default=None, max_length=4000)
    suggested_organisation: str | None = None
    suggested_service: str | None = None
    feedback: str | None = Field(default=None, max_length=10_000, description="Required when completing")


@router.post(
    "/referrals",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReferralAccepted,
    summary="Send a referral (consent-checked, delivered through the receiver's adapter)",
    responses={403: {"description": "No legal basis: the reasons and what would make it lawful"}},
)
async def send(
    body: ReferralCreate,
    key: IdempotencyKey,
    principal: Party,
    request: Request,
    response: Response,
) -> ReferralAccepted:
    """The decision engine decides; an allowed referral is stored with its outbox entry in one transaction
    and answered 202. Retrying with the same Idempotency-Key and body returns the same referral."""
    runtime: Runtime = request.app.state.runtime  # as RuntimeDep reads it, without a dependency to resolve
    sent = await svc.send_referral(
        actor=actor_for(principal),
        draft=svc.ReferralDraft(
            kind=body.kind,
            target=svc.Target(**body.target.model_dump()),
            personal_identity_number=body.child.personal_identity_number,
            data_categories=body.data_categories,
            dimensions=body.concern.dimensions,
            local_codes=None
            if body.concern.local_codes is None
            else svc.LocalCodes(body.concern.local_codes.system, body.concern.local_codes.codes),
            trappan_step=body.concern.trappan_step,
            concern_text=body.concern.text,
            information=body.information,
            legal_basis=body.legal_basis,
            basis_reference=body.basis_reference,
            protected_identity=body.child.protected_identity,
        ),
        idempotency_key=key,
        runtime=runtime,
    )
    href = f"/v1/referrals/{sent.referral.id}"
    response.headers["Location"] = href
    if sent.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return ReferralAccepted(id=str(sent.referral.id), status=sent.referral.status, href=href)


@router.get("/referrals", response_model=ReferralPage, summary="Referrals your organisation sent or received")
async def list_referrals(
    principal: Party,
    session: Session,
    runtime: RuntimeDep,
    role: Annotated[Literal["sender", "receiver"] | None, Query(description="Only sent or only received")] = None,
    status_: Annotated[list[str], Query(alias="status")] = [],  # noqa: B006 (FastAPI copies defaults)
    kind: Annotated[list[str], Query()] = [],  # noqa: B006
    counterpart: Annotated[str | None, Query(description="The other organisation")] = None,
    created_from: Annotated[Instant | None, Query()] = None,
    created_to: Annotated[Instant | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReferralPage:
    """Metadata only (no identity, no free text): reading one referral's content is `GET /v1/referrals/{id}`."""
    page = await svc.list_referrals(
        session,
        organisation_id=principal.organisation_id,
        query=svc.ReferralQuery(
            role=role,
            statuses=status_,
            kinds=kind,
            counterpart=counterpart,
            created_from=created_from,
            created_to=created_to,
            cursor=cursor,
            limit=limit,
        ),
        at=concern_clock(runtime),
    )
    return ReferralPage(items=[ReferralSummary(**asdict(r)) for r in page.items], next_cursor=page.next_cursor)


@router.get("/referrals/{referral_id}", response_model=ReferralRead, summary="One referral (audited read)")
async def read(referral_id: str, principal: Party, runtime: RuntimeDep) -> ReferralRead:
    detail = await svc.read_referral(actor=actor_for(principal), referral_id=referral_id, runtime=runtime)
    return ReferralRead(
        **asdict(detail.referral),
        data_categories=detail.data_categories,
        basis_reference=detail.basis_reference,
        decision_id=detail.decision_id,
        document=detail.document,
        events=[EventRead(**asdict(e)) for e in detail.events],
        deliveries=[DeliveryRead(**asdict(d)) for d in detail.deliveries],
    )


@router.post(
    "/referrals/{referral_id}/events",
    status_code=status.HTTP_201_CREATED,
    response_model=EventRead,
    summary="Move a referral through its lifecycle (delivered to the other party)",
    responses={409: {"description": "Not a valid transition from the current status"}},
)
async def add_event(
    referral_id: str,
    body: EventCreate,
    principal: Party,
    runtime: RuntimeDep,
    key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> EventRead:
    event = await svc.record_event(
        actor=actor_for(principal),
        referral_id=referral_id,
        draft=svc.EventDraft(**body.model_dump()),
        idempotency_key=key,
        runtime=runtime,
    )
    return EventRead(**asdict(event))


# --- mailbox -------------------------------------------------------------------------------------------------


class MailboxItem(BaseModel):
    id: str
    kind: MessageKind
    body: dict[str, Any]
    fetch_count: int = Field(description="More than 1: fetched before and not acknowledged")
    created_at: datetime


class MailboxPage(BaseModel):
    items: list[MailboxItem]


@router.get("/mailbox", response_model=MailboxPage, tags=["mailbox"], summary="Fetch messages left for you")
async def fetch_mailbox(
    principal: System, runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> MailboxPage:
    """Each message returned is hidden for HUB_MAILBOX_VISIBILITY_SECONDS; acknowledge it or it comes back."""
    items = await mailbox_svc.fetch(actor=actor_for(principal), runtime=runtime, limit=limit)
    return MailboxPage(items=[MailboxItem(**m.__dict__) for m in items])


@router.post(
    "/mailbox/{message_id}/ack",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["mailbox"],
    summary="Acknowledge a message (idempotent)",
)
async def ack_mailbox(message_id: str, principal: System, runtime: RuntimeDep) -> Response:
    await mailbox_svc.acknowledge(actor=actor_for(principal), runtime=runtime, message_id=message_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
