"""Referrals, their events, the outbox and the mailbox in PostgreSQL (plain SQL: these are hot paths)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

TERMINAL_DELIVERY = ("delivered", "dead-lettered", "abandoned")


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
    id: uuid.UUID
    referral_id: uuid.UUID
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


def _fields(cls: type) -> str:
    return ", ".join(cls.__dataclass_fields__)


async def insert_referral(session: AsyncSession, row: ReferralRow) -> None:
    names = _fields(ReferralRow)
    await session.execute(
        text(f"insert into referral ({names}) values ({', '.join(':' + n for n in ReferralRow.__dataclass_fields__)})"),
        row.__dict__,
    )


async def referral_by_key(session: AsyncSession, sender: str, key: str) -> ReferralRow | None:
    row = (
        await session.execute(
            text(
                f"select {_fields(ReferralRow)} from referral where sender_organisation = :s and idempotency_key = :k"
            ),
            {"s": sender, "k": key},
        )
    ).first()
    return None if row is None else ReferralRow(*row)


async def referral(session: AsyncSession, referral_id: uuid.UUID, *, lock: bool = False) -> ReferralRow | None:
    sql = f"select {_fields(ReferralRow)} from referral where id = :id" + (" for update" if lock else "")
    row = (await session.execute(text(sql), {"id": referral_id})).first()
    return None if row is None else ReferralRow(*row)


async def update_referral(session: AsyncSession, referral_id: uuid.UUID, **values: Any) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in values)
    await session.execute(text(f"update referral set {sets} where id = :id"), {"id": referral_id, **values})


@dataclass(frozen=True)
class ReferralFilter:
    organisation: str
    role: str | None = None  # "sender" | "receiver" | None for both
    statuses: Sequence[str] = ()
    kinds: Sequence[str] = ()
    counterpart: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    after: tuple[datetime, uuid.UUID] | None = None  # cursor: (created_at, id) of the last item seen
    limit: int = 50


async def list_referrals(session: AsyncSession, f: ReferralFilter) -> list[ReferralRow]:
    """Newest first. A receiver sees a referral only once it has been delivered."""
    sent = "sender_organisation = :org"
    received = "(recipient_organisation = :org and delivered_at is not null)"
    where = [{"sender": sent, "receiver": received}.get(f.role or "", f"({sent} or {received})")]
    params: dict[str, Any] = {"org": f.organisation, "limit": f.limit}
    if f.statuses:
        where.append("status = any(:statuses)")
        params["statuses"] = list(f.statuses)
    if f.kinds:
        where.append("kind = any(:kinds)")
        params["kinds"] = list(f.kinds)
    if f.counterpart:
        where.append(
            "((sender_organisation = :org and recipient_organisation = :cp) or "
            "(recipient_organisation = :org and sender_organisation = :cp))"
        )
        params["cp"] = f.counterpart
    if f.created_from:
        where.append("created_at >= :created_from")
        params["created_from"] = f.created_from
    if f.created_to:
        where.append("created_at < :created_to")
        params["created_to"] = f.created_to
    if f.after:
        where.append("(created_at, id) < (:after_at, :after_id)")
        params["after_at"], params["after_id"] = f.after
    sql = (
        f"select {_fields(ReferralRow)} from referral where {' and '.join(where)} "
        "order by created_at desc, id desc limit :limit"
    )
    return [ReferralRow(*r) for r in (await session.execute(text(sql), params)).all()]


async def insert_event(session: AsyncSession, row: EventRow) -> None:
    await session.execute(
        text(
            f"insert into referral_event ({_fields(EventRow)}) "
            f"values ({', '.join(':' + n for n in EventRow.__dataclass_fields__)})"
        ),
        row.__dict__,
    )


async def next_event_seq(session: AsyncSession, referral_id: uuid.UUID) -> int:
    # Called with the referral row locked, so no two transactions take the same number.
    value = await session.scalar(
        text("select coalesce(max(seq), 0) + 1 from referral_event where referral_id = :id"), {"id": referral_id}
    )
    return int(value or 1)


async def events(session: AsyncSession, referral_id: uuid.UUID) -> list[EventRow]:
    rows = await session.execute(
        text(f"select {_fields(EventRow)} from referral_event where referral_id = :id order by seq"),
        {"id": referral_id},
    )
    return [EventRow(*r) for r in rows.all()]


async def event(session: AsyncSession, event_id: uuid.UUID) -> EventRow | None:
    row = (
        await session.execute(text(f"select {_fields(EventRow)} from referral_event where id = :id"), {"id": event_id})
    ).first()
    return None if row is None else EventRow(*row)


async def event_by_key(session: AsyncSession, referral_id: uuid.UUID, organisation: str, key: str) -> EventRow | None:
    row = (
        await session.execute(
            text(
                f"select {_fields(EventRow)} from referral_event "
                "where referral_id = :r and by_organisation = :o and idempotency_key = :k"
            ),
            {"r": referral_id, "o": organisation, "k": key},
        )
    ).first()
    return None if row is None else EventRow(*row)


# --- outbox -------------------------------------------------------------------------------------------------


async def enqueue(session: AsyncSession, row: OutboxRow) -> None:
    await session.execute(
        text(
            f"insert into outbox ({_fields(OutboxRow)}) "
            f"values ({', '.join(':' + n for n in OutboxRow.__dataclass_fields__)})"
        ),
        row.__dict__,
    )


async def claim_due(session: AsyncSession, *, now: datetime, lease_seconds: float, limit: int) -> list[OutboxRow]:
    """Reserve up to ``limit`` due entries for this worker. Rows other workers hold are skipped, not
    waited for; a reservation (lease) that outlives its worker expires and the entry is claimed again."""
    rows = await session.execute(
        text(
            f"""
            update outbox set lease_until = :now + make_interval(secs => :lease), attempts = attempts + 1,
                              updated_at = :now
            where id in (
                select id from outbox
                where state in ('queued', 'retrying') and next_attempt_at <= :now
                  and (lease_until is null or lease_until < :now)
                order by next_attempt_at
                limit :limit
                for update skip locked
            )
            returning {_fields(OutboxRow)}
            """
        ),
        {"now": now, "lease": lease_seconds, "limit": limit},
    )
    return [OutboxRow(*r) for r in rows.all()]


async def finish(session: AsyncSession, outbox_id: uuid.UUID, **values: Any) -> None:
    values.setdefault("lease_until", None)
    sets = ", ".join(f"{k} = :{k}" for k in values)
    await session.execute(text(f"update outbox set {sets} where id = :id"), {"id": outbox_id, **values})


async def outbox_entries(
    session: AsyncSession, *, states: Sequence[str] = (), referral_id: uuid.UUID | None = None, limit: int = 100
) -> list[OutboxRow]:
    where, params = ["true"], {"limit": limit}  # type: ignore[dict-item]
    if states:
        where.append("state = any(:states)")
        params["states"] = list(states)  # type: ignore[assignment]
    if referral_id:
        where.append("referral_id = :rid")
        params["rid"] = referral_id  # type: ignore[assignment]
    rows = await session.execute(
        text(f"select {_fields(OutboxRow)} from outbox where {' and '.join(where)} order by created_at limit :limit"),
        params,
    )
    return [OutboxRow(*r) for r in rows.all()]


async def retry_dead(session: AsyncSession, outbox_ids: Sequence[uuid.UUID] | None, now: datetime) -> int:
    """Put dead-lettered entries back in the queue (all of them when ``outbox_ids`` is None)."""
    where = "state = 'dead-lettered'" + ("" if outbox_ids is None else " and id = any(:ids)")
    result = await session.execute(
        text(
            f"update outbox set state = 'queued', attempts = 0, next_attempt_at = :now, lease_until = null, "
            f"updated_at = :now where {where}"
        ),
        {"now": now, "ids": list(outbox_ids or [])},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def abandon_pending(session: AsyncSession, referral_id: uuid.UUID, now: datetime, why: str) -> None:
    """Nothing still queued for this referral is sent (it was cancelled before delivery)."""
    await session.execute(
        text(
            "update outbox set state = 'abandoned', last_error = :why, updated_at = :now, lease_until = null "
            "where referral_id = :rid and kind = 'referral' and state in ('queued', 'retrying')"
        ),
        {"rid": referral_id, "now": now, "why": why},
    )


# --- mailbox ------------------------------------------------------------------------------------------------


async def mailbox_put(
    session: AsyncSession,
    *,
    organisation_id: str,
    outbox_id: uuid.UUID,
    kind: str,
    body: bytes,
    key_id: str,
    now: datetime,
    created_at: datetime,
) -> uuid.UUID:
    """Store once per outbox entry: a redelivered entry finds its message already there."""
    new_id = uuid.uuid4()
    stored = await session.scalar(
        text(
            """
            insert into mailbox_message (id, organisation_id, outbox_id, kind, body, body_key_id, visible_at,
                                         created_at)
            values (:id, :org, :outbox, :kind, :body, :kid, :now, :created_at)
            on conflict (outbox_id) do update set outbox_id = excluded.outbox_id
            returning id
            """
        ),
        {
            "id": new_id,
            "org": organisation_id,
            "outbox": outbox_id,
            "kind": kind,
            "body": body,
            "kid": key_id,
            "now": now,
            "created_at": created_at,
        },
    )
    return stored  # type: ignore[return-value]


@dataclass(frozen=True)
class MailboxRow:
    id: uuid.UUID
    outbox_id: uuid.UUID
    kind: str
    body: bytes
    body_key_id: str
    fetch_count: int
    created_at: datetime


async def mailbox_fetch(
    session: AsyncSession, *, organisation_id: str, now: datetime, visibility_seconds: float, limit: int
) -> list[MailboxRow]:
    """Messages due for the organisation; each becomes invisible for ``visibility_seconds`` and comes back
    unless acknowledged (at-least-once, like NHS MESH)."""
    rows = await session.execute(
        text(
            """
            update mailbox_message set visible_at = :now + make_interval(secs => :vis), fetch_count = fetch_count + 1
            where id in (
                select id from mailbox_message
                where organisation_id = :org and acknowledged_at is null and visible_at <= :now
                order by created_at limit :limit for update skip locked
            )
            returning id, outbox_id, kind, body, body_key_id, fetch_count, created_at
            """
        ),
        {"org": organisation_id, "now": now, "vis": visibility_seconds, "limit": limit},
    )
    return sorted((MailboxRow(*r) for r in rows.all()), key=lambda m: m.created_at)


async def mailbox_ack(
    session: AsyncSession, *, organisation_id: str, message_id: uuid.UUID, now: datetime
) -> tuple[uuid.UUID, bool] | None:
    """(outbox id, first acknowledgement?) or None when the organisation has no such message."""
    row = (
        await session.execute(
            text(
                "select outbox_id, acknowledged_at from mailbox_message where id = :id and organisation_id = :org "
                "for update"
            ),
            {"id": message_id, "org": organisation_id},
        )
    ).first()
    if row is None:
        return None
    if row[1] is None:
        await session.execute(
            text("update mailbox_message set acknowledged_at = :now where id = :id"), {"id": message_id, "now": now}
        )
    return row[0], row[1] is None


async def purge_payloads(session: AsyncSession, *, before: datetime, now: datetime, terminal: Sequence[str]) -> int:
    """Drop personal data of referrals finished before ``before``; metadata stays for follow-up."""
    result = await session.execute(
        text(
            "update referral set payload = null, payload_purged_at = :now "
            "where payload is not null and updated_at < :before and status = any(:terminal)"
        ),
        {"before": before, "now": now, "terminal": list(terminal)},
    )
    await session.execute(
        text(
            "update referral_event e set details = null from referral r "
            "where e.referral_id = r.id and e.details is not null and r.payload_purged_at is not null"
        )
    )
    await session.execute(
        text("delete from mailbox_message where acknowledged_at is not null and acknowledged_at < :before"),
        {"before": before},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def outbox_entries_by_id(session: AsyncSession, outbox_id: uuid.UUID) -> OutboxRow | None:
    row = (
        await session.execute(text(f"select {_fields(OutboxRow)} from outbox where id = :id"), {"id": outbox_id})
    ).first()
    return None if row is None else OutboxRow(*row)


async def active_endpoints(session: AsyncSession) -> list[tuple[str, str, dict[str, Any]]]:
    rows = await session.execute(text("select organisation_id, adapter, config from endpoint where active"))
    return [(r[0], r[1], dict(r[2])) for r in rows.all()]


async def open_received(
    session: AsyncSession, organisation_id: str, terminal: Sequence[str]
) -> list[tuple[uuid.UUID, str | None, str]]:
    """Delivered, unfinished referrals an organisation received: (id, the receiver's id for it, status)."""
    rows = await session.execute(
        text(
            """
            select r.id, o.remote_id, r.status from referral r
            join outbox o on o.referral_id = r.id and o.kind = 'referral' and o.state = 'delivered'
            where r.recipient_organisation = :org and r.delivered_at is not null and not (r.status = any(:terminal))
            order by r.created_at
            """
        ),
        {"org": organisation_id, "terminal": list(terminal)},
    )
    return [(r[0], r[1], r[2]) for r in rows.all()]
