"""The rows of referrals, their events and their outbox entries, as stored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ReferralRow:
    id: uuid.UUID
    sender_organisation: str
    recipient_organisation: str
    service_id: str | None
    kind: str
    status: str
    cancellation_requested_at: datetime | None
    delivered_at: datetime | None
    child_pseudonym: str
    dimensions: list[str]
    trappan_step: int | None
    data_categories: list[str]
    permitted_categories: list[str]
    legal_basis: str
    basis_reference: str | None
    decision_id: uuid.UUID
    idempotency_key: str
    request_hash: str
    payload: bytes | None
    payload_key_id: str | None
    payload_purged_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class EventRow:
    id: uuid.UUID
    referral_id: uuid.UUID
    seq: int
    type: str
    from_status: str | None
    to_status: str | None
    by_organisation: str | None
    by_subject: str | None
    reason_code: str | None
    suggested_organisation: str | None
    suggested_service: str | None
    details: bytes | None
    details_key_id: str | None
    idempotency_key: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class OutboxRow:
    """An outbox entry: a referral or its status event (``referral_id``), or a team offer's news
    (``team_offer_id``, kind ``team-offer``), or a child's plan's (``plan_share_id``: kinds ``plan-version``
    and ``plan-notice``; ``plan_review_id``: kind ``plan-review``), or a SIP meeting's news
    (``sip_event_id``, kinds ``sip-invitation`` and ``sip-answer``)."""

    id: uuid.UUID
    referral_id: uuid.UUID | None
    event_id: uuid.UUID | None
    kind: str
    recipient_organisation: str
    idempotency_key: str
    state: str
    attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    last_error: str | None
    adapter: str | None
    remote_id: str | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime
    team_offer_id: uuid.UUID | None = None
    plan_share_id: uuid.UUID | None = None
    plan_review_id: uuid.UUID | None = None
    sip_event_id: uuid.UUID | None = None

    @classmethod
    def queued(cls, kind: str, recipient: str, idempotency_key: str, at: datetime, **links: Any) -> OutboxRow:
        """A new entry of ``kind`` for ``recipient``, due at ``at``; ``links``: what it carries (``referral_id``,
        ``event_id``, ``team_offer_id``, ``plan_share_id``, ``plan_review_id``, ``sip_event_id``)."""
        return cls(
            id=uuid.uuid4(),
            referral_id=links.pop("referral_id", None),
            event_id=links.pop("event_id", None),
            kind=kind,
            recipient_organisation=recipient,
            idempotency_key=idempotency_key,
            state="queued",
            attempts=0,
            next_attempt_at=at,
            lease_until=None,
            last_error=None,
            adapter=None,
            remote_id=None,
            delivered_at=None,
            created_at=at,
            updated_at=at,
            **links,
        )


def _fields(cls: Any) -> str:
    return ", ".join(cls.__dataclass_fields__)
