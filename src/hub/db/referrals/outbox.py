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
from hub.db.referrals.leases import HELD, Claimed
from hub.db.referrals.rows import EventRow, OutboxRow, ReferralRow, _fields
from hub.domain.referrals import RECEIVED

TERMINAL_DELIVERY = ("delivered", "dead-lettered", "abandoned")


async def enqueue(session: AsyncSession, row: OutboxRow) -> None:
    await enqueue_all(session, [row])


async def enqueue_all(session: AsyncSession, rows: Sequence[OutboxRow]) -> None:
    """Queue ``rows`` in one round trip (an executemany for several)."""
    if not rows:
        return
    params = [row.__dict__ for row in rows]
    await session.execute(
        text(
            f"insert into outbox ({_fields(OutboxRow)}) "
            f"values ({', '.join(':' + n for n in OutboxRow.__dataclass_fields__)})"
        ),
        params[0] if len(params) == 1 else params,
    )


def queued_entry(
    referral_id: uuid.UUID, recipient: str, idempotency_key: str, at: datetime, *, event_id: uuid.UUID | None = None
) -> OutboxRow:
    """A new outbox entry, due now: the referral itself to its recipient, or (``event_id``) an event."""
    kind = "referral" if event_id is None else "status-event"
    return OutboxRow.queued(kind, recipient, idempotency_key, at, referral_id=referral_id, event_id=event_id)


def status_event_entry(referral_id: uuid.UUID, event_id: uuid.UUID, recipient: str, at: datetime) -> OutboxRow:
    """The outbox entry that tells ``recipient`` of an event."""
    return queued_entry(referral_id, recipient, f"event:{event_id}", at, event_id=event_id)


async def finish(session: AsyncSession, held: Claimed | OutboxRow, **values: Any) -> bool:
    """Record an outcome other than delivered (retrying, dead-lettered, abandoned) for an entry this worker
    holds; False (nothing written) when it no longer does (fenced: see ``Claimed``)."""
    entry = held.entry if isinstance(held, Claimed) else held
    values.setdefault("lease_until", None)
    sets = ", ".join(f"{k} = :{k}" for k in values)
    result = await session.execute(
        text(f"update outbox set {sets} where {HELD}"), {"id": entry.id, "attempt": entry.attempts, **values}
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class BatchFacts:
    """What delivering a claimed batch reads, once for the batch: its referrals and events by id, the active
    endpoint (adapter, config) of each recipient, and the organisations and services messages name."""

    referrals: dict[uuid.UUID, ReferralRow]
    events: dict[uuid.UUID, EventRow]
    endpoints: dict[str, tuple[str, dict[str, Any]]]
    organisations: dict[str, dict[str, Any]]
    services: dict[str, dict[str, Any]]
    troubled: frozenset[str] = frozenset()  # recipients with a breaker row: failing lately, or down


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
           array(select json_build_object('id', id, 'name', name)::text from service where id = any(:services)),
           array(select recipient_organisation from delivery_breaker where recipient_organisation = any(:recipients))
    """
)


async def batch_facts(connection: Any, claimed: Sequence[Claimed]) -> BatchFacts:
    """Three round trips for the whole batch, on a driver connection (``hub.db.engine.driver``)."""
    entries = [c.entry for c in claimed]
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
    orgs, endpoints, found, troubled = await _BATCH_PARTIES.fetchrow(
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
        troubled=frozenset(troubled),
    )


_DELIVERED_SET = """state = 'delivered', adapter = :adapter, remote_id = :remote_id, delivered_at = :now,
                      last_error = null, updated_at = :now, lease_until = null,
                      checked_outcome = coalesce(:checked_outcome, checked_outcome),
                      checked_decision_id = coalesce(:checked_decision_id, checked_decision_id)"""

DELIVERED = Statement(
    f"""
    update outbox set {_DELIVERED_SET}
    where id = :outbox_id and attempts = :attempt and state in ('queued', 'retrying')
    returning 1, 0
    """
)


# A referral handed over: the entry delivered, the referral delivered, and, when the receiver's system
# acknowledged it, the hub's transition to received (its event, with the next sequence number, and that event
# queued for the sender), as ``hub.services.referrals.persist`` writes it. Whether a receipt moves the
# referral is the domain's rule (``hub.domain.referrals.Referral.receipt``); the domain gives its answer for
# every status at once (``:received_from``, from ``received_from``) and the status it moves to (``:received``,
# ``RECEIVED``), so the statement only applies it to the status it finds under the row lock. ``r`` locks the
# referral first (everything else reads from it), as the event's number needs. Fenced: nothing but the
# referral's lock happens unless this worker still holds the entry (``delivered`` is empty otherwise).
REFERRAL_DELIVERED = Statement(
    f"""
    with r as (
        select id, status, sender_organisation from referral where id = :referral_id for update
    ), delivered as (
        update outbox set {_DELIVERED_SET}
        where id = :outbox_id and attempts = :attempt and state in ('queued', 'retrying')
        returning id
    ), received as (
        select r.id, r.status, r.sender_organisation from r
        where r.status = any(:received_from) and exists (select 1 from delivered)
    ), moved as (
        update referral set delivered_at = :now, updated_at = :now,
                            status = case when received.id is null then referral.status else :received end
        from r left join received on true
        where referral.id = r.id and exists (select 1 from delivered)
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
    select (select count(*) from delivered), (select count(*) from received)
    """
)


@dataclass(frozen=True)
class Checked:
    """The send-time re-check to remember on the entry (``outbox.checked_*``); None fields: unchanged."""

    outcome: str | None = None
    decision_id: uuid.UUID | None = None


async def record_delivered(
    connection: Any,
    entry: OutboxRow,
    *,
    adapter: str,
    remote_id: str | None,
    received_from: Sequence[str],
    now: datetime,
    checked: Checked | None = None,
    received: str = RECEIVED,
) -> tuple[bool, bool]:
    """Record a successful hand-over in one statement that commits by itself (``connection``: a driver
    connection with no transaction open). For a referral also what its delivery changes (see above):
    ``received_from`` the statuses the domain moves to ``received`` on this receipt (empty: not acknowledged).
    Returns (recorded, received): recorded False when this worker no longer held the entry (fenced: the
    outcome is refused), received True when the delivery made the referral received."""
    params: dict[str, Any] = {
        "outbox_id": entry.id,
        "attempt": entry.attempts,
        "adapter": adapter,
        "remote_id": remote_id,
        "now": now,
        "checked_outcome": checked.outcome if checked else None,
        "checked_decision_id": checked.decision_id if checked else None,
    }
    if entry.kind != "referral":
        row = await DELIVERED.fetchrow(connection, params)
        return row is not None, False
    event_id = uuid.uuid4()
    params |= {
        "referral_id": entry.referral_id,
        "received_from": list(received_from),
        "received": received,
        "event_id": event_id,
        "event_outbox_id": uuid.uuid4(),
        "event_key": f"event:{event_id}",
    }
    recorded, received = await REFERRAL_DELIVERED.fetchrow(connection, params)
    return bool(recorded), bool(received)


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


async def retry_dead(
    session: AsyncSession, outbox_ids: Sequence[uuid.UUID] | None, now: datetime
) -> list[tuple[uuid.UUID, str, uuid.UUID]]:
    """Put dead-lettered entries back in the queue (all of them when ``outbox_ids`` is None): their
    attempts and their retry horizon start over. Returns (entry id, kind, referral id) of each."""
    where = "state = 'dead-lettered'" + ("" if outbox_ids is None else " and id = any(:ids)")
    result = await session.execute(
        text(
            f"update outbox set state = 'queued', attempts = 0, next_attempt_at = :now, lease_until = null, "
            f"parked_at = null, requeued_at = :now, updated_at = :now where {where} returning id, kind, referral_id"
        ),
        {"now": now, "ids": list(outbox_ids or [])},
    )
    return [(r[0], r[1], r[2]) for r in result.all()]


# The pending entries of a receiver that is down (its breaker open) whose retry horizon has passed: they
# will not be claimed while it is down, so its probes' failures give them up. Parked ones through
# ``outbox_parked_since`` (migration 0029: only those past the horizon are read, however long the backlog),
# the few a claim has not parked yet through ``outbox_due``; fetched by id rather than matched in one scan,
# which would read every pending entry.
EXPIRE_PENDING = Statement(
    f"""
    update outbox set state = 'dead-lettered', lease_until = null, updated_at = :now,
                      last_error = left('retry horizon passed; last: ' || coalesce(last_error, ''), 500)
    where id = any(array(
            select id from outbox
            where recipient_organisation = :recipient and state in ('queued', 'retrying') and parked_at is not null
              and coalesce(requeued_at, created_at) < :horizon_start
            union all
            select id from outbox
            where recipient_organisation = :recipient and state in ('queued', 'retrying') and parked_at is null
              and coalesce(requeued_at, created_at) < :horizon_start))
      and state in ('queued', 'retrying') and (lease_until is null or lease_until < :now)
    returning {_fields(OutboxRow)}
    """
)


async def expire_pending(
    session: AsyncSession, recipient: str, *, now: datetime, horizon_start: datetime
) -> list[OutboxRow]:
    rows = await EXPIRE_PENDING.fetch(session, {"recipient": recipient, "now": now, "horizon_start": horizon_start})
    return [OutboxRow(*r) for r in rows]


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


async def delivery_states(session: AsyncSession, referral_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Each referral's delivery state: the state of its outbox entry (queued, retrying, delivered,
    dead-lettered, abandoned), separate from its business status."""
    rows = await session.execute(
        text("select referral_id, state from outbox where kind = 'referral' and referral_id = any(:ids)"),
        {"ids": list(referral_ids)},
    )
    return {r[0]: r[1] for r in rows.all()}


async def outbox_entries_by_id(session: AsyncSession, outbox_id: uuid.UUID) -> OutboxRow | None:
    row = (
        await session.execute(text(f"select {_fields(OutboxRow)} from outbox where id = :id"), {"id": outbox_id})
    ).first()
    return None if row is None else OutboxRow(*row)


async def active_endpoints(session: AsyncSession) -> list[tuple[str, str, dict[str, Any]]]:
    rows = await session.execute(text("select organisation_id, adapter, config from endpoint where active"))
    return [(r[0], r[1], dict(r[2])) for r in rows.all()]
