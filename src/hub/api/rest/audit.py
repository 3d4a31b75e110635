"""``GET /v1/audit`` and ``POST /v1/audit/search`` for auditors; the audit log's checkpoints and proofs
(docs/audit.md)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from hub.api.auth import require
from hub.api.deps import RuntimeDep, Session, actor_for
from hub.api.rest.schemas import ChildRef, Instant
from hub.api.routing import Router
from hub.domain.audit import AuditAction
from hub.domain.checkpoint import Checkpoint
from hub.domain.principal import Principal, Role
from hub.services import audit_log as svc

router = Router(prefix="/v1/audit", tags=["audit"])
Auditor = Annotated[Principal, Depends(require(Role.AUDITOR))]
CheckpointReader = Annotated[Principal, Depends(require(Role.AUDITOR, Role.COORDINATOR))]


class AuditEntryRead(BaseModel):
    id: int
    partition: str = Field(description="The acting organisation")
    sealed: bool = Field(description="Whether the sealer has placed the entry in the audit log yet (within seconds)")
    seq: int | None = Field(description="The entry's position in the audit log (its leaf index); null until sealed")
    hash: str | None = Field(description="Its leaf hash, sha256(0x00 || id as 8 bytes || canonical content), hex")
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
        items=[
            AuditEntryRead(id=e.id, partition=e.partition, sealed=e.sealed, seq=e.seq, hash=e.hash, **e.content)
            for e in page.items
        ],
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


class CheckpointRead(BaseModel):
    format: str = Field(description="hub-audit-checkpoint/1")
    origin: str
    size: int = Field(description="How many entries of the log the checkpoint covers")
    root_hash: str = Field(description="The RFC 9162 Merkle tree hash of those entries, hex")
    signed_at: str
    body: str = Field(description="The signed text: origin, size, base64 root hash, time; a line each")
    key_id: str = Field(description="First 8 bytes of sha256(public key), hex")
    public_key: str = Field(description="The hub's Ed25519 public key, base64 (raw 32 bytes)")
    signature: str = Field(description="Ed25519 signature over body, base64")


def _checkpoint(cp: Checkpoint) -> CheckpointRead:
    return CheckpointRead(**cp.to_json())


@router.get("/checkpoints", response_model=list[CheckpointRead], summary="The audit log's signed checkpoints")
async def checkpoints(
    principal: CheckpointReader,
    session: Session,
    size: Annotated[int | None, Query(ge=0, description="Only the checkpoints of this size")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[CheckpointRead]:
    """Newest first. Each is also a file `hub audit verify --checkpoint FILE` takes (docs/audit.md)."""
    found = await svc.list_checkpoints(session, actor=actor_for(principal), limit=limit, size=size)
    return [_checkpoint(cp) for cp in found]


class ConsistencyRead(BaseModel):
    first: CheckpointRead
    second: CheckpointRead
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64 hashes")


@router.get(
    "/checkpoints/consistency", response_model=ConsistencyRead, summary="Proof that one checkpoint extends another"
)
async def consistency(
    principal: CheckpointReader,
    session: Session,
    first: Annotated[int, Query(ge=1, description="The earlier checkpoint's size")],
    second: Annotated[int, Query(ge=1, description="The later checkpoint's size")],
) -> ConsistencyRead:
    found = await svc.consistency_proof(session, actor=actor_for(principal), first=first, second=second)
    return ConsistencyRead(
        first=_checkpoint(found.first),
        second=_checkpoint(found.second),
        proof=[base64.b64encode(h).decode() for h in found.path],
    )


class InclusionRead(BaseModel):
    entry_id: int
    leaf_index: int
    leaf_hash: str = Field(description="hex")
    canonical: str = Field(description="The entry's canonical content, which the leaf hash covers")
    tree_size: int
    audit_path: list[str] = Field(description="RFC 9162 inclusion proof, base64 hashes, leaf end first")
    checkpoint: CheckpointRead


@router.get("/{entry_id}/proof", response_model=InclusionRead, summary="Proof that an entry is in a checkpoint")
async def inclusion(
    entry_id: int,
    principal: Auditor,
    session: Session,
    checkpoint: Annotated[int | None, Query(ge=1, description="The checkpoint's size (default: the newest)")] = None,
) -> InclusionRead:
    """Only auditors who may read the entry (its organisations', a regional auditor) learn it exists."""
    actor = actor_for(principal)
    proof = await svc.inclusion_proof(session, actor=actor, entry_id=entry_id, checkpoint_size=checkpoint)
    return InclusionRead(
        entry_id=proof.entry_id,
        leaf_index=proof.leaf_index,
        leaf_hash=proof.leaf_hash.hex(),
        canonical=proof.canonical,
        tree_size=proof.checkpoint.head.size,
        audit_path=[base64.b64encode(h).decode() for h in proof.path],
        checkpoint=_checkpoint(proof.checkpoint),
    )
