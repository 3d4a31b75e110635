"""Referrals, their events, the outbox and the mailbox in PostgreSQL (plain SQL: these are hot paths)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import audit as audit_db
from hub.db import lawful
from hub.db.engine import Statement
from hub.domain.audit import AuditRecord, genesis_hash

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


def _fields(cls: Any) -> str:
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


_BY_KEY = Statement(
    f"select {_fields(ReferralRow)} from referral where sender_organisation = :sender and idempotency_key = :key"
)


async def referral_by_key_on(connection: Any, sender: str, key: str) -> ReferralRow | None:
    """As :func:`referral_by_key`, on a driver connection (``hub.db.engine.driver``)."""
    row = await _BY_KEY.fetchrow(connection, {"sender": sender, "key": key})
    return None if row is None else ReferralRow(*row)


# A send's one read: the sharing facts (hub.db.lawful.FACTS) and the referral that already holds the key.
_FACTS_AND_KEY = Statement(
    f"""
    select f.*, r.* from ({lawful.FACTS.sql}) as f
    left join lateral ({_BY_KEY.sql}) as r on true
    """
)


async def facts_and_key_on(
    connection: Any, *, sender: str, recipient: str, candidates: Sequence[str], key: str
) -> tuple[lawful.SharingFacts, ReferralRow | None]:
    """What sending a referral reads, in one round trip on a driver connection: the sharing facts as
    :func:`hub.db.lawful.sharing_facts` gives them, and the sender's referral with this Idempotency-Key
    (``None``: a new request)."""
    row = await _FACTS_AND_KEY.fetchrow(
        connection, {"sender": sender, "recipient": recipient, "children": list(candidates), "key": key}
    )
    assert row is not None
    existing = row[lawful.FACTS_COLUMNS :]
    return lawful.facts_of(row), None if existing[0] is None else ReferralRow(*existing)


# --- sending: everything a sent referral writes, in one statement ------------------------------------------
#
# The sharing decision, the referral, its first event, its outbox entry and two audit entries (the decision's
# and "referral sent", consecutive in the sender's chain) go in with one statement that commits by itself.
# So the chain head's row lock, which serialises every write of the sending organisation, is held while
# PostgreSQL runs that statement and commits it: never across a round trip to the application and back,
# which under load means waiting for the event loop to come round to the request again.
#
# The two entries advance the head by two at once. ``prev`` locks the head row first (in READ COMMITTED a
# row locked FOR UPDATE is the latest committed version), and the upsert only advances a head still at that
# sequence number: the one case it is not (the organisation's very first entries, written by two requests
# at the same time, when there was no row to lock) writes nothing at all, and the caller runs the statement
# again. Everything else is inserted from ``chain``, so it is written exactly when the head advanced.

_REFERRAL_VALUES = ", ".join(":r_" + n for n in ReferralRow.__dataclass_fields__)
_EVENT_VALUES = ", ".join(":e_" + n for n in EventRow.__dataclass_fields__)
_OUTBOX_VALUES = ", ".join(":o_" + n for n in OutboxRow.__dataclass_fields__)


def _entry_values(prefix: str, n: int) -> str:
    return (
        f"({n}, cast(:{prefix}canonical as text), cast(:{prefix}occurred_at as timestamptz), "
        f"cast(:{prefix}action as text), cast(:{prefix}outcome as text), cast(:{prefix}actor_organisation as text), "
        f"cast(:{prefix}counterpart_organisation as text), cast(:{prefix}child_pseudonym as text), "
        f"cast(:{prefix}legal_basis as text), cast(:{prefix}decision_id as text), cast(:{prefix}request_id as text))"
    )


_STORE_SENT = Statement(
    f"""
    with prev as (
        select seq, hash from audit_chain_head where partition = :partition for update
    ), base as (
        select coalesce((select seq from prev), 0) as seq, coalesce((select hash from prev), :genesis) as hash
    ), head as (
        insert into audit_chain_head as h (partition, seq, hash)
        select :partition, base.seq + 2,
               sha256(sha256(base.hash || convert_to(:a1_canonical, 'UTF8')) || convert_to(:a2_canonical, 'UTF8'))
        from base
        on conflict (partition) do update set seq = excluded.seq, hash = excluded.hash
            where h.seq = excluded.seq - 2
        returning seq, hash
    ), chain as (
        select head.seq, head.hash, sha256(base.hash || convert_to(:a1_canonical, 'UTF8')) as first_hash
        from head, base
    ), decision as (
        insert into sharing_decision (id, requested_by, from_organisation, to_organisation,
            child_pseudonym, purpose, allowed, legal_basis, basis_reference, permitted_categories,
            denied_categories, explanation, dry_run)
        select :d_id, :d_by, :d_from, :d_to, :d_child, :d_purpose, true, :d_legal_basis, :d_basis_reference,
               :d_permitted, :d_denied, cast(:d_explanation as jsonb), false
        from chain
    ), referral as (
        insert into referral ({_fields(ReferralRow)}) select {_REFERRAL_VALUES} from chain
    ), event as (
        insert into referral_event ({_fields(EventRow)}) select {_EVENT_VALUES} from chain
    ), outbox as (
        insert into outbox ({_fields(OutboxRow)}) select {_OUTBOX_VALUES} from chain
    ), entries as (
        insert into audit_event (partition, seq, hash, canonical, occurred_at, action, outcome,
                                 actor_organisation, counterpart_organisation, child_pseudonym,
                                 legal_basis, decision_id, request_id)
        select :partition, chain.seq - 2 + e.n, case e.n when 1 then chain.first_hash else chain.hash end,
               e.canonical, e.occurred_at, e.action, e.outcome, e.actor_organisation, e.counterpart_organisation,
               e.child_pseudonym, e.legal_basis, e.decision_id, e.request_id
        from chain, (values {_entry_values("a1_", 1)}, {_entry_values("a2_", 2)})
            as e(n, canonical, occurred_at, action, outcome, actor_organisation, counterpart_organisation,
                 child_pseudonym, legal_basis, decision_id, request_id)
        order by e.n
        returning id
    )
    select count(*) from entries
    """
)


@dataclass(frozen=True)
class DecisionValues:
    """The ``sharing_decision`` row of an allowed referral (as ``hub.db.lawful.record_decision`` writes)."""

    id: uuid.UUID
    requested_by: str
    from_organisation: str
    to_organisation: str
    child_pseudonym: str
    purpose: str
    legal_basis: str | None
    basis_reference: str | None
    permitted_categories: list[str]
    denied_categories: list[str]
    explanation: str  # JSON


async def store_sent(
    connection: Any,
    *,
    decision: DecisionValues,
    referral: ReferralRow,
    event: EventRow,
    outbox: OutboxRow,
    entries: tuple[AuditRecord, AuditRecord],
) -> bool:
    """Write an allowed referral whole, in one statement that commits by itself (``connection``: a driver
    connection with no transaction open). False, with nothing written, when the sender's Idempotency-Key was
    taken meanwhile by a concurrent request (``referral_idempotency``); the caller answers with that one."""
    first, second = entries
    if first.partition != second.partition:
        raise ValueError("both audit entries belong to the sender's chain")
    params: dict[str, Any] = {
        "partition": first.partition,
        "genesis": genesis_hash(first.partition),
        "d_id": decision.id,
        "d_by": decision.requested_by,
        "d_from": decision.from_organisation,
        "d_to": decision.to_organisation,
        "d_child": decision.child_pseudonym,
        "d_purpose": decision.purpose,
        "d_legal_basis": decision.legal_basis,
        "d_basis_reference": decision.basis_reference,
        "d_permitted": decision.permitted_categories,
        "d_denied": decision.denied_categories,
        "d_explanation": decision.explanation,
    }
    for prefix, row in (("r_", referral), ("e_", event), ("o_", outbox)):
        params.update({prefix + k: v for k, v in row.__dict__.items()})
    for prefix, record in (("a1_", first), ("a2_", second)):
        params.update({prefix + k: v for k, v in audit_db.append_params(record).items() if k != "genesis"})
    for _ in range(5):  # a miss waited for the head row's first writer to commit: the next try sees it
        try:
            written = await _STORE_SENT.fetchval(connection, params)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "referral_idempotency":
                return False
            raise
        if written:
            return True
    raise RuntimeError(f"the audit chain head of {first.partition} kept moving; nothing was written")


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


def status_event_entry(referral_id: uuid.UUID, event_id: uuid.UUID, recipient: str, at: datetime) -> OutboxRow:
    """The outbox entry that tells ``recipient`` of an event."""
    return OutboxRow(
        id=uuid.uuid4(),
        referral_id=referral_id,
        event_id=event_id,
        kind="status-event",
        recipient_organisation=recipient,
        idempotency_key=f"event:{event_id}",
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


# --- delivering: what a batch of claimed entries needs, and each outcome in one statement ---------------------


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
# every status at once (``:received_from``, from ``received_from``), so the statement only applies it to the
# status it finds under the row lock. ``r`` locks the referral first (everything else reads from it), as the
# event's number needs.
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
                            status = case when received.id is null then referral.status else 'received' end
        from r left join received on true
        where referral.id = r.id
    ), event as (
        insert into referral_event (id, referral_id, seq, type, from_status, to_status, by_organisation,
                                    by_subject, reason_code, suggested_organisation, suggested_service, details,
                                    details_key_id, idempotency_key, occurred_at)
        select :event_id, received.id,
               (select coalesce(max(seq), 0) + 1 from referral_event where referral_id = received.id),
               'status', received.status, 'received', null, null, null, null, null, null, null, null, :now
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
) -> bool:
    """Record a successful hand-over in one statement that commits by itself (``connection``: a driver
    connection with no transaction open). For a referral also what its delivery changes (see above):
    ``received_from`` the statuses the domain moves to received on this receipt (empty: not acknowledged).
    True when that made it received."""
    params: dict[str, Any] = {"outbox_id": entry.id, "adapter": adapter, "remote_id": remote_id, "now": now}
    if entry.kind != "referral":
        await DELIVERED.fetchrow(connection, params)
        return False
    event_id = uuid.uuid4()
    params |= {
        "referral_id": entry.referral_id,
        "received_from": list(received_from),
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
    assert isinstance(stored, uuid.UUID)
    return stored


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
