"""The outbox: what is queued for delivery, claimed by workers, and each delivery's outcome."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.engine import Statement
from hub.db.referrals.rows import EventRow, OutboxRow, ReferralRow, _fields
from hub.domain.referrals import RECEIVED

TERMINAL_DELIVERY = ("delivered", "dead-lettered", "abandoned")


async def enqueue(session: AsyncSession, row: OutboxRow) -> None:
    await session.execute(
        text(
            f"insert into outbox ({_fields(OutboxRow)}) "
            f"values ({', '.join(':' + n for n in OutboxRow.__dataclass_fields__)})"
        ),
        row.__dict__,
    )


def queued_entry(
    referral_id: uuid.UUID, recipient: str, idempotency_key: str, at: datetime, *, event_id: uuid.UUID | None = None
) -> OutboxRow:
    """A new outbox entry, due now: the referral itself to its recipient, or (``event_id``) an event."""
    return OutboxRow(
        id=uuid.uuid4(),
        referral_id=referral_id,
        event_id=event_id,
        kind="referral" if event_id is None else "status-event",
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
    )


def status_event_entry(referral_id: uuid.UUID, event_id: uuid.UUID, recipient: str, at: datetime) -> OutboxRow:
    """The outbox entry that tells ``recipient`` of an event."""
    return queued_entry(referral_id, recipient, f"event:{event_id}", at, event_id=event_id)


# Reserve due entries for one worker: rows other workers hold are skipped, not waited for.
CLAIM = Statement(
    f"""
    update outbox set lease_until = :now + make_interval(secs => :lease), attempts = attempts + 1, updated_at = :now
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
)


async def claim_due(session: AsyncSession, *, now: datetime, lease_seconds: float, limit: int) -> list[OutboxRow]:
    """Reserve up to ``limit`` due entries for this worker. Rows other workers hold are skipped, not
    waited for; a reservation (lease) that outlives its worker expires and the entry is claimed again."""
    rows = await CLAIM.fetch(session, {"now": now, "lease": float(lease_seconds), "limit": limit})
    return [OutboxRow(*r) for r in rows]


async def finish(session: AsyncSession, outbox_id: uuid.UUID, **values: Any) -> None:
    values.setdefault("lease_until", None)
    sets = ", ".join(f"{k} = :{k}" for k in values)
    await session.execute(text(f"update outbox set {sets} where id = :id"), {"id": outbox_id, **values})


@dataclass(frozen=True)
class BatchFacts:
    """What delivering a claimed batch reads, once for the batch: its referrals and events by id, the active
    endpoint (adapter, config) of each recipient, and the organisations and services messages name."""

    referrals: dict[uuid.UUID, ReferralRow]
    events: dict[uuid.UUID, EventRow]
    endpoints: dict[str, tuple[str, dict[str, Any]]]
    organisations: dict[str, dict[str, Any]]
    services: dict[str, dict[str, Any]]


_BATCH_REFERRALS = Statement(f"select {_fields(ReferralRow)} from referral where id = any(:ids)")


_BATCH_EVENTS = Statement(f"select {_fields(EventRow)} from referral_event where id = any(:ids)")


_BATCH_PARTIES = Statement(
    """
    select array(select json_build_object('organisation_id', id, 'name', name, 'type', type,
                                          'municipality_code', municipality_code, 'hsa_id', hsa_id)::text
                 from organisation where id = any(:organisations)),
           array(select json_build_object('organisation_id', organisation_id, 'adapter', adapter,
                                          'config', config)::text
                 from endpoint where active and organisation_id = any(:recipients)),
           array(select json_build_object('id', id, 'name', name)::text from service where id = any(:services))
    """
)


async def batch_facts(connection: Any, entries: Sequence[OutboxRow]) -> BatchFacts:
    """Three round trips for the whole batch, on a driver connection (``hub.db.engine.driver``)."""
    referrals = {
        r[0]: ReferralRow(*r)
        for r in await connection.fetch(_BATCH_REFERRALS.native_sql, list({e.referral_id for e in entries}))
    }
    event_ids = list({e.event_id for e in entries if e.event_id is not None})
    events = (
        {r[0]: EventRow(*r) for r in await connection.fetch(_BATCH_EVENTS.native_sql, event_ids)} if event_ids else {}
    )
    organisations = {o for r in referrals.values() for o in (r.sender_organisation, r.recipient_organisation)}
    services = {r.service_id for r in referrals.values() if r.service_id is not None}
    orgs, endpoints, found = await _BATCH_PARTIES.fetchrow(
        connection,
        {
            "organisations": sorted(organisations),
            "recipients": sorted({e.recipient_organisation for e in entries}),
            "services": sorted(services),
        },
    )
    by_org = [json.loads(o) for o in endpoints]
    return BatchFacts(
        referrals=referrals,
        events=events,
        endpoints={e["organisation_id"]: (e["adapter"], dict(e["config"])) for e in by_org},
        organisations={o["organisation_id"]: o for o in map(json.loads, orgs)},
        services={s["id"]: s for s in map(json.loads, found)},
    )


DELIVERED = Statement(
    """
    update outbox set state = 'delivered', adapter = :adapter, remote_id = :remote_id, delivered_at = :now,
                      last_error = null, updated_at = :now, lease_until = null
    where id = :outbox_id
    """
)


# A referral handed over: the entry delivered, the referral delivered, and, when the receiver's system
# acknowledged it, the hub's transition to received (its event, with the next sequence number, and that event
# queued for the sender), as ``hub.services.referrals.persist`` writes it. Whether a receipt moves the
# referral is the domain's rule (``hub.domain.referrals.Referral.receipt``); the domain gives its answer for
# every status at once (``:received_from``, from ``received_from``) and the status it moves to (``:received``,
# ``RECEIVED``), so the statement only applies it to the status it finds under the row lock. ``r`` locks the
# referral first (everything else reads from it), as the event's number needs.
REFERRAL_DELIVERED = Statement(
    """
    with r as (
        select id, status, sender_organisation from referral where id = :referral_id for update
    ), delivered as (
        update outbox set state = 'delivered', adapter = :adapter, remote_id = :remote_id, delivered_at = :now,
                          last_error = null, updated_at = :now, lease_until = null
        where id = :outbox_id
    ), received as (
        select r.id, r.status, r.sender_organisation from r where r.status = any(:received_from)
    ), moved as (
        update referral set delivered_at = :now, updated_at = :now,
                            status = case when received.id is null then referral.status else :received end
        from r left join received on true
        where referral.id = r.id
    ), event as (
        insert into referral_event (id, referral_id, seq, type, from_status, to_status, by_organisation,
                                    by_subject, reason_code, suggested_organisation, suggested_service, details,
                                    details_key_id, idempotency_key, occurred_at)
        select :event_id, received.id,
               (select coalesce(max(seq), 0) + 1 from referral_event where referral_id = received.id),
               'status', received.status, :received, null, null, null, null, null, null, null, null, :now
        from received
    ), queued as (
        insert into outbox (id, referral_id, event_id, kind, recipient_organisation, idempotency_key, state,
                            attempts, next_attempt_at, lease_until, last_error, adapter, remote_id, delivered_at,
                            created_at, updated_at)
        select :event_outbox_id, received.id, :event_id, 'status-event', received.sender_organisation,
               :event_key, 'queued', 0, :now, null, null, null, null, null, :now, :now
        from received
    )
    select count(*) from received
    """
)


async def record_delivered(
    connection: Any,
    entry: OutboxRow,
    *,
    adapter: str,
    remote_id: str | None,
    received_from: Sequence[str],
    now: datetime,
    received: str = RECEIVED,
) -> bool:
    """Record a successful hand-over in one statement that commits by itself (``connection``: a driver
    connection with no transaction open). For a referral also what its delivery changes (see above):
    ``received_from`` the statuses the domain moves to ``received`` on this receipt (empty: not acknowledged).
    True when that made it received."""
    params: dict[str, Any] = {"outbox_id": entry.id, "adapter": adapter, "remote_id": remote_id, "now": now}
    if entry.kind != "referral":
        await DELIVERED.fetchrow(connection, params)
        return False
    event_id = uuid.uuid4()
    params |= {
        "referral_id": entry.referral_id,
        "received_from": list(received_from),
        "received": received,
        "event_id": event_id,
        "event_outbox_id": uuid.uuid4(),
        "event_key": f"event:{event_id}",
    }
    return bool(await REFERRAL_DELIVERED.fetchval(connection, params))


async def outbox_entries(
    session: AsyncSession, *, states: Sequence[str] = (), referral_id: uuid.UUID | None = None, limit: int = 100
) -> list[OutboxRow]:
    where: list[str] = ["true"]
    params: dict[str, object] = {"limit": limit}
    if states:
        where.append("state = any(:states)")
        params["states"] = list(states)
    if referral_id:
        where.append("referral_id = :rid")
        params["rid"] = referral_id
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
    """Nothing still queued to deliver this referral itself is sent: the domain decided so
    (``Decided.abandon_delivery``: it ended before delivery) and ``why`` is its reason."""
    await session.execute(
        text(
            "update outbox set state = 'abandoned', last_error = :why, updated_at = :now, lease_until = null "
            "where referral_id = :rid and kind = 'referral' and state in ('queued', 'retrying')"
        ),
        {"rid": referral_id, "now": now, "why": why},
    )


async def outbox_entries_by_id(session: AsyncSession, outbox_id: uuid.UUID) -> OutboxRow | None:
    row = (
        await session.execute(text(f"select {_fields(OutboxRow)} from outbox where id = :id"), {"id": outbox_id})
    ).first()
    return None if row is None else OutboxRow(*row)


async def active_endpoints(session: AsyncSession) -> list[tuple[str, str, dict[str, Any]]]:
    rows = await session.execute(text("select organisation_id, adapter, config from endpoint where active"))
    return [(r[0], r[1], dict(r[2])) for r in rows.all()]
