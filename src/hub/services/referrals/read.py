"""Reading referrals: which a party may see, the list, one referral (an audited read)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import referrals as db
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import FieldError, InvalidInput, NotFound
from hub.domain.referrals import Side
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.concern_states import ConcernClock, clock, states
from hub.services.context import Actor
from hub.services.protected_identity import protect_read
from hub.services.referrals.views import ReferralDetail, ReferralView, delivery_view, event_view, referral_view


def side_of(row: db.ReferralRow, organisation_id: str) -> Side | None:
    if organisation_id == row.sender_organisation:
        return "sender"
    if organisation_id == row.recipient_organisation and row.delivered_at is not None:
        return "receiver"
    return None


async def visible_referral(
    session: AsyncSession, referral_id: str, organisation_id: str, *, lock: bool = False
) -> tuple[db.ReferralRow, Side]:
    """The referral if the organisation sent it or received it; otherwise 404 (its existence is not told)."""
    try:
        rid = uuid.UUID(referral_id)
    except ValueError:
        raise NotFound("No such referral.") from None
    row = await db.referral(session, rid, lock=lock)
    side = None if row is None else side_of(row, organisation_id)
    if row is None or side is None:
        raise NotFound("No such referral.")
    return row, side


@dataclass(frozen=True)
class ReferralQuery:
    role: str | None = None
    statuses: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    counterpart: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    cursor: str | None = None
    limit: int = 50


@dataclass(frozen=True)
class ReferralListPage:
    items: list[ReferralView]
    next_cursor: str | None


def cursor_after(created_at: datetime, referral_id: uuid.UUID | str) -> str:
    """The cursor of the listing (newest first) right after this referral."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{referral_id}".encode()).decode()


def _cursor(row: db.ReferralRow) -> str:
    return cursor_after(row.created_at, row.id)


def position_of(cursor: str | None, field: str = "cursor") -> tuple[datetime, uuid.UUID] | None:
    """Where ``cursor`` (a listing's ``next_cursor``) points; a 422 at ``field`` for anything else."""
    if cursor is None:
        return None
    try:
        at, rid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(at), uuid.UUID(rid)
    except ValueError:
        raise InvalidInput(
            "The cursor is not valid.", errors=[FieldError(field, "not a cursor from this API")]
        ) from None


async def list_referrals(
    session: AsyncSession, *, organisation_id: str, query: ReferralQuery, at: ConcernClock | None = None
) -> ReferralListPage:
    """What the organisation sent, and what it received once delivered; metadata only, newest first; with
    ``at``, each report of concern's answer as it stands then (overdue or not)."""
    rows = await db.list_referrals(
        session,
        db.ReferralFilter(
            organisation=organisation_id,
            role=query.role,
            statuses=query.statuses,
            kinds=query.kinds,
            counterpart=query.counterpart,
            created_from=query.created_from,
            created_to=query.created_to,
            after=position_of(query.cursor),
            limit=query.limit + 1,
        ),
    )
    page = rows[: query.limit]
    delivery = await db.delivery_states(session, [r.id for r in page])
    concerns = {} if at is None else await states(session, page, at)
    return ReferralListPage(
        items=[
            referral_view(r, side_of(r, organisation_id) or "sender", delivery.get(r.id), concerns.get(str(r.id)))
            for r in page
        ],
        next_cursor=_cursor(page[-1]) if len(rows) > query.limit else None,
    )


def event_texts(event: db.EventRow, cipher: Any) -> Mapping[str, str]:
    if event.details is None or event.details_key_id is None:
        return {}
    return cipher.decrypt(event.details, event.details_key_id, bound_to=str(event.id))  # type: ignore[no-any-return]


def document_for(row: db.ReferralRow, side: Side, cipher: Any) -> dict[str, Any] | None:
    """What the party may read: the sender its whole referral, the receiver what was permitted."""
    from hub.domain.referrals import strip_to

    if row.payload is None or row.payload_key_id is None:
        return None  # purged after the retention period
    document = cipher.decrypt(row.payload, row.payload_key_id, bound_to=str(row.id))
    return document if side == "sender" else strip_to(document, row.permitted_categories)


def _categories(row: db.ReferralRow, side: Side) -> list[str]:
    return row.permitted_categories if side == "receiver" else row.data_categories


async def audit_read(
    session: AsyncSession,
    actor: Actor,
    row: db.ReferralRow,
    side: Side,
    categories: list[str] | None = None,
    **details: object,
) -> None:
    """The audit entry of a party's read of the referral's content: its legal basis, the categories that
    party sees, and ``details`` saying how it read (e.g. ``via="mailbox"``)."""
    await audit(
        session,
        actor,
        AuditAction.REFERRAL_READ,
        child_pseudonym=row.child_pseudonym,
        legal_basis=row.legal_basis,
        decision_id=str(row.decision_id),
        counterpart_organisation=row.recipient_organisation if side == "sender" else row.sender_organisation,
        entity_type="Referral",
        entity_id=str(row.id),
        purpose=row.kind,
        details={
            "side": side,
            **details,
            "categories": sorted(categories if categories is not None else _categories(row, side)),
        },
    )


async def read_referral(*, actor: Actor, referral_id: str, runtime: Runtime) -> ReferralDetail:
    """An audited read: the answer leaves only once its audit entry is committed."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        read = await _read(uow.session, actor=actor, referral_id=referral_id, runtime=runtime)
        await uow.commit()
        return read


async def _read(session: AsyncSession, *, actor: Actor, referral_id: str, runtime: Runtime) -> ReferralDetail:
    row, side = await visible_referral(session, referral_id, actor.organisation_id)
    document = document_for(row, side, runtime.cipher)
    categories = row.data_categories
    if side == "receiver":  # a protected child's identity is withheld at every read too
        document, categories = await protect_read(session, row, document, runtime=runtime, actor=actor)
    await audit_read(session, actor, row, side, categories)
    events = await db.events(session, row.id)
    deliveries = await db.outbox_entries(session, referral_id=row.id)
    state = next((d.state for d in deliveries if d.kind == "referral"), None)
    concern = (await states(session, [row], clock(runtime, actor.now))).get(str(row.id))
    return ReferralDetail(
        referral=referral_view(row, side, state, concern),
        data_categories=categories,
        basis_reference=row.basis_reference,
        decision_id=str(row.decision_id),
        document=document,
        events=[event_view(e, event_texts(e, runtime.cipher)) for e in events],
        deliveries=[
            delivery_view(d)
            for d in deliveries
            if side == "sender" or d.recipient_organisation == actor.organisation_id
        ],
    )
