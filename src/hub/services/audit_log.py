"""Reading the audit trail (auditors): its entries, the log's checkpoints, and proofs about both."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import audit as audit_db
from hub.db import audit_tree
from hub.db.repositories import OrganisationRepository
from hub.domain.audit import AuditAction
from hub.domain.checkpoint import Checkpoint
from hub.domain.errors import Conflict, FieldError, InvalidInput, NotFound, NotPermitted
from hub.domain.identity import Pseudonymizer
from hub.domain.merkle import consistency_ranges, inclusion_ranges
from hub.domain.principal import Role
from hub.services.auditing import audit
from hub.services.children import identify_child
from hub.services.context import Actor

REGIONAL_AUDITOR_TYPE = "regional-samordning"


@dataclass(frozen=True)
class AuditQuery:
    organisation: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    personal_identity_number: str | None = None
    cursor: str | None = None
    limit: int = 50


@dataclass(frozen=True)
class AuditEntry:
    id: int
    partition: str
    seq: int | None  # the entry's position in the hub's audit log; None until sealed (within about a second)
    hash: str | None  # its leaf hash, hex; None until sealed
    content: dict[str, Any]

    @property
    def sealed(self) -> bool:
        return self.seq is not None


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEntry]
    next_cursor: str | None


def _decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("before:"))
    except ValueError:
        raise InvalidInput(
            "The cursor is not one this hub issued.", errors=[FieldError("cursor", "invalid cursor")]
        ) from None


def _encode_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"before:{entry_id}".encode()).decode()


async def _regional(session: AsyncSession, actor: Actor) -> bool:
    """Whether ``actor`` is an auditor who sees every organisation's entries (else only its own's)."""
    if not actor.principal.has_any(Role.AUDITOR):
        raise NotPermitted("Reading the audit trail needs the auditor role.")
    org = await OrganisationRepository(session).get(actor.organisation_id)
    return org is not None and org.type == REGIONAL_AUDITOR_TYPE


async def read_audit(
    session: AsyncSession, *, actor: Actor, query: AuditQuery, pseudonymizer: Pseudonymizer
) -> AuditPage:
    """An organisation's auditor sees entries about its own organisation; a regional auditor sees all."""
    regional = await _regional(session, actor)
    scope = query.organisation if regional else actor.organisation_id
    if not regional and query.organisation not in (None, actor.organisation_id):
        raise NotPermitted("An organisation's auditor sees only entries about its own organisation.")
    children: tuple[str, ...] = ()
    child_pseudonym: str | None = None
    if query.personal_identity_number is not None:
        child = identify_child(
            query.personal_identity_number,
            pseudonymizer=pseudonymizer,
            today=actor.today,
            pointer="/child/personal_identity_number",
        )
        children, child_pseudonym = child.candidates, child.pseudonym
    flt = audit_db.AuditFilter(
        organisation=scope,
        disclosures_only_as_counterpart=not regional,
        action=query.action,
        outcome=query.outcome,
        since=query.since,
        until=query.until,
        child_pseudonyms=children,
        before_id=_decode_cursor(query.cursor) if query.cursor else None,
    )
    rows = await audit_db.search(session, flt, limit=query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    # A search about one child is itself a look at that child's data: it is in the child's trail too.
    await audit(
        session,
        actor,
        AuditAction.AUDIT_READ,
        child_pseudonym=child_pseudonym,
        details={"count": len(rows), "scope": scope or "all"},
    )
    await session.commit()
    return AuditPage(
        items=[
            AuditEntry(r.id, r.partition, r.seq, r.leaf_hash.hex() if r.leaf_hash else None, json.loads(r.canonical))
            for r in rows
        ],
        next_cursor=_encode_cursor(rows[-1].id) if more and rows else None,
    )


def _may_read_checkpoints(actor: Actor) -> None:
    # A checkpoint tells only the log's size and root hash: every auditor (to check its own entries'
    # proofs) and coordinators (who answer for the hub's operation) may read them.
    if not actor.principal.has_any(Role.AUDITOR, Role.COORDINATOR):
        raise NotPermitted("Reading the audit log's checkpoints needs the auditor or coordinator role.")


async def list_checkpoints(
    session: AsyncSession, *, actor: Actor, limit: int, size: int | None = None
) -> list[Checkpoint]:
    """The newest checkpoints first (``size``: only those of that tree size)."""
    _may_read_checkpoints(actor)
    return await audit_tree.checkpoints(await session.connection(), limit=limit, size=size)


async def _checkpoint(session: AsyncSession, size: int | None, field: str) -> Checkpoint:
    found = await audit_tree.checkpoints(await session.connection(), limit=1, size=size)
    if not found:
        raise NotFound("No such checkpoint.", errors=[FieldError(field, "no checkpoint of this size")])
    return found[0]


@dataclass(frozen=True)
class InclusionProof:
    entry_id: int
    leaf_index: int
    leaf_hash: bytes
    canonical: str  # the leaf data is the entry id (8 bytes, big-endian) and this text in UTF-8
    path: list[bytes]
    checkpoint: Checkpoint


async def inclusion_proof(
    session: AsyncSession, *, actor: Actor, entry_id: int, checkpoint_size: int | None
) -> InclusionProof:
    """The RFC 9162 audit path of an entry in a checkpoint (the newest if no size is given). Only those
    who may read the entry learn it exists: any other caller gets 404."""
    regional = await _regional(session, actor)
    flt = audit_db.AuditFilter(
        organisation=None if regional else actor.organisation_id,
        disclosures_only_as_counterpart=not regional,
        before_id=entry_id + 1,
    )
    found = await audit_db.search(session, flt, limit=1)
    if not found or found[0].id != entry_id:
        raise NotFound("No such audit entry.")
    entry = found[0]
    checkpoint = await _checkpoint(session, checkpoint_size, "checkpoint")
    size = checkpoint.head.size
    if entry.seq is None or entry.seq >= size:
        raise Conflict(
            "The entry was sealed after this checkpoint (or not yet): ask for a later checkpoint.",
            errors=[FieldError("checkpoint", "the entry is not in this checkpoint", "not-in-checkpoint")],
        )
    assert entry.leaf_hash is not None
    path = await audit_tree.range_hashes(await session.connection(), inclusion_ranges(entry.seq, size))
    await audit(session, actor, AuditAction.AUDIT_READ, details={"count": 1, "proof": entry_id})
    await session.commit()
    return InclusionProof(entry_id, entry.seq, entry.leaf_hash, entry.canonical, path, checkpoint)


@dataclass(frozen=True)
class ConsistencyProof:
    first: Checkpoint
    second: Checkpoint
    path: list[bytes]


async def consistency_proof(session: AsyncSession, *, actor: Actor, first: int, second: int) -> ConsistencyProof:
    """The RFC 9162 proof that checkpoint ``first`` (a tree size) is a prefix of checkpoint ``second``."""
    _may_read_checkpoints(actor)
    if not 0 < first <= second:
        raise InvalidInput(
            "A consistency proof goes from a smaller checkpoint to a larger one.",
            errors=[FieldError("first", "must be above 0 and at most second")],
        )
    old = await _checkpoint(session, first, "first")
    new = await _checkpoint(session, second, "second")
    ranges = consistency_ranges(first, second) if first < second else []
    return ConsistencyProof(old, new, await audit_tree.range_hashes(await session.connection(), ranges))
