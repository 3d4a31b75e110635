"""What the API layers (REST and GraphQL alike) show of a referral: views, never stored rows or ciphertext.

A party sees a referral as its side may: the receiver sees the concern's codes (dimensions, Trappan step)
only when the wellbeing assessment was permitted, as the delivered document carries them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.db import referrals as db
from hub.domain.concern import ConcernState
from hub.domain.referrals import WELLBEING, Side

PENDING_DELIVERY = ("queued", "retrying")


@dataclass(frozen=True)
class ReferralView:
    """A referral's metadata (no identity, no free text)."""

    id: str
    status: str
    kind: str
    role: Side
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
    # The delivery of the referral itself, apart from its status: queued, retrying, delivered,
    # dead-lettered (given up; the sender was told; an operator may queue it again), abandoned (not sent).
    delivery_state: str
    # A report of concern's answer: given or not, when due, overdue now (None: another kind of referral).
    concern_answer: ConcernState | None = None


@dataclass(frozen=True)
class EventView:
    id: str
    seq: int
    type: str
    from_status: str | None
    to_status: str | None
    by_organisation: str | None
    reason_code: str | None
    reason_text: str | None
    suggested_organisation: str | None
    suggested_service: str | None
    feedback: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class DeliveryView:
    kind: str
    recipient_organisation: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class ReferralDetail:
    """One referral as a party reads it: its metadata, what it may read of the document, its events and
    the deliveries that concern it."""

    referral: ReferralView
    data_categories: list[str]
    basis_reference: str | None
    decision_id: str
    document: dict[str, Any] | None
    events: list[EventView]
    deliveries: list[DeliveryView]


def referral_view(
    row: db.ReferralRow, side: Side, delivery_state: str | None, concern: ConcernState | None = None
) -> ReferralView:
    codes = side == "sender" or WELLBEING in row.permitted_categories
    return ReferralView(
        id=str(row.id),
        status=row.status,
        kind=row.kind,
        role=side,
        sender_organisation=row.sender_organisation,
        recipient_organisation=row.recipient_organisation,
        service_id=row.service_id,
        dimensions=list(row.dimensions) if codes else [],
        trappan_step=row.trappan_step if codes else None,
        permitted_categories=list(row.permitted_categories),
        legal_basis=row.legal_basis,
        cancellation_requested=row.cancellation_requested_at is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        delivery_state=delivery_state or ("delivered" if row.delivered_at else "queued"),
        concern_answer=concern,
    )


def event_view(event: db.EventRow, texts: Mapping[str, str]) -> EventView:
    return EventView(
        id=str(event.id),
        seq=event.seq,
        type=event.type,
        from_status=event.from_status,
        to_status=event.to_status,
        by_organisation=event.by_organisation,
        reason_code=event.reason_code,
        reason_text=texts.get("reason_text"),
        suggested_organisation=event.suggested_organisation,
        suggested_service=event.suggested_service,
        feedback=texts.get("feedback"),
        occurred_at=event.occurred_at,
    )


def delivery_view(entry: db.OutboxRow) -> DeliveryView:
    return DeliveryView(
        kind=entry.kind,
        recipient_organisation=entry.recipient_organisation,
        state=entry.state,
        attempts=entry.attempts,
        next_attempt_at=entry.next_attempt_at if entry.state in PENDING_DELIVERY else None,
        last_error=entry.last_error,
        delivered_at=entry.delivered_at,
    )
