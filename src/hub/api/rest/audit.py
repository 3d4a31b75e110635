"""``GET /v1/audit`` and ``POST /v1/audit/search`` for auditors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from hub.api.auth import require
from hub.api.deps import RuntimeDep, Session, actor_for
from hub.api.rest.schemas import ChildRef, Instant
from hub.domain.audit import AuditAction
from hub.domain.principal import Principal, Role
from hub.services import audit_log as svc

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Auditor = Annotated[Principal, Depends(require(Role.AUDITOR))]


class AuditEntryRead(BaseModel):
    id: int
    partition: str = Field(description="The hash chain the entry belongs to (the acting organisation)")
    seq: int
    hash: str = Field(description="sha256(previous hash || canonical content), hex")
    occurred_at: datetime
    action: str
    outcome: str = Field(description="FHIR AuditEvent outcome: 0 success, 4 refused")
    actor_subject: str
    actor_organisation: str
    actor_roles: list[str]
    counterpart_organisation: str | None
    child_pseudonym: str | None
    legal_basis: str | None
    decision_id: str | None
    request_id: str | None
    entity_type: str | None
    entity_id: str | None
    purpose: str | None
    details: dict[str, Any]


class AuditPageRead(BaseModel):
    items: list[AuditEntryRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")


class AuditSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    child: ChildRef
    since: Instant | None = None
    until: Instant | None = None
    cursor: str | None = None
    limit: int = Field(default=50, ge=1, le=200)


def _page(page: svc.AuditPage) -> AuditPageRead:
    return AuditPageRead(
        items=[AuditEntryRead(id=e.id, partition=e.partition, seq=e.seq, hash=e.hash, **e.content) for e in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("", response_model=AuditPageRead, summary="Audit entries, newest first (auditor role)")
async def list_entries(
    principal: Auditor,
    session: Session,
    runtime: RuntimeDep,
    organisation: Annotated[str | None, Query(description="Regional auditors: entries about one organisation")] = None,
    action: Annotated[AuditAction | None, Query()] = None,
    outcome: Annotated[str | None, Query(pattern="^(0|4)$")] = None,
    since: Annotated[Instant | None, Query()] = None,
    until: Annotated[Instant | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPageRead:
    page = await svc.read_audit(
        session,
        actor=actor_for(principal),
        pseudonymizer=runtime.pseudonymizer,
        query=svc.AuditQuery(
            organisation=organisation,
            action=action.value if action else None,
            outcome=outcome,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        ),
    )
    return _page(page)


@router.post("/search", response_model=AuditPageRead, summary="Audit entries about one child (auditor role)")
async def search_child(body: AuditSearch, principal: Auditor, session: Session, runtime: RuntimeDep) -> AuditPageRead:
    """A POST so the personal identity number travels in the body, never in a URL."""
    page = await svc.read_audit(
        session,
        actor=actor_for(principal),
        pseudonymizer=runtime.pseudonymizer,
        query=svc.AuditQuery(
            personal_identity_number=body.child.personal_identity_number,
            since=body.since,
            until=body.until,
            cursor=body.cursor,
            limit=body.limit,
        ),
    )
    return _page(page)
