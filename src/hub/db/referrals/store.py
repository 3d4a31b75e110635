"""Referrals and their events in PostgreSQL (plain SQL: these are hot paths). Nothing here commits but the
single statements that are a use case's commit (``store_sent``)."""

from __future__ import annotations

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
from hub.db.referrals.rows import EventRow, OutboxRow, ReferralRow, _fields
from hub.domain.audit import AuditRecord
from hub.domain.referrals import Purge


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
# and "referral sent") go in with one statement that commits by itself. The audit entries are plain inserts,
# queued for the sealer (hub.db.audit): nothing here locks a row another request of the same organisation
# needs, so one sending organisation is as fast as many.

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
    with decision as (
        insert into sharing_decision (id, requested_by, from_organisation, to_organisation,
            child_pseudonym, purpose, allowed, legal_basis, basis_reference, permitted_categories,
            denied_categories, explanation, dry_run)
        values (:d_id, :d_by, :d_from, :d_to, :d_child, :d_purpose, true, :d_legal_basis, :d_basis_reference,
                :d_permitted, :d_denied, cast(:d_explanation as jsonb), false)
    ), referral as (
        insert into referral ({_fields(ReferralRow)}) values ({_REFERRAL_VALUES})
    ), event as (
        insert into referral_event ({_fields(EventRow)}) values ({_EVENT_VALUES})
    ), outbox as (
        insert into outbox ({_fields(OutboxRow)}) values ({_OUTBOX_VALUES})
    ), {lawful.MARK_CTE.format(child=":mark", at=":r_created_at")}, entries as (
        insert into audit_event (partition, canonical, occurred_at, action, outcome,
                                 actor_organisation, counterpart_organisation, child_pseudonym,
                                 legal_basis, decision_id, request_id)
        select :partition, e.canonical, e.occurred_at, e.action, e.outcome, e.actor_organisation,
               e.counterpart_organisation, e.child_pseudonym, e.legal_basis, e.decision_id, e.request_id
        from (values {_entry_values("a1_", 1)}, {_entry_values("a2_", 2)})
            as e(n, canonical, occurred_at, action, outcome, actor_organisation, counterpart_organisation,
                 child_pseudonym, legal_basis, decision_id, request_id)
        order by e.n
        returning id
    ), queued as (
        insert into audit_pending (entry_id) select id from entries
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
    mark_protected: bool = False,
) -> bool:
    """Write an allowed referral whole, in one statement that commits by itself (``connection``: a driver
    connection with no transaction open). False, with nothing written, when the sender's Idempotency-Key was
    taken meanwhile by a concurrent request (``referral_idempotency``); the caller answers with that one.
    ``mark_protected``: the sender marked the child's identity protected; the mark is kept (sticky)."""
    first, second = entries
    params: dict[str, Any] = {
        "mark": decision.child_pseudonym if mark_protected else None,
        "partition": first.partition,
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
    if first.partition != second.partition:
        raise ValueError("both audit entries are the sender's")
    for prefix, row in (("r_", referral), ("e_", event), ("o_", outbox)):
        params.update({prefix + k: v for k, v in row.__dict__.items()})
    for prefix, record in (("a1_", first), ("a2_", second)):
        params.update({prefix + k: v for k, v in audit_db.append_params(record).items() if k != "partition"})
    try:
        await _STORE_SENT.fetchval(connection, params)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "referral_idempotency":
            return False
        raise
    return True


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


async def purge_payloads(session: AsyncSession, purge: Purge) -> int:
    """Apply the domain's retention rule (``hub.domain.referrals.Purge``: which referrals, what purging
    drops and records) to every referral it names, set-wise: the rule's statuses and cut-off are parameters,
    nothing here knows a status. Returns how many referrals were purged."""
    result = await session.execute(
        text(
            "update referral set payload = null, payload_purged_at = :at "
            "where payload is not null and updated_at < :before and status = any(:statuses)"
        ),
        {"before": purge.before, "at": purge.at, "statuses": sorted(purge.statuses)},
    )
    await session.execute(
        text(
            "update referral_event e set details = null from referral r "
            "where e.referral_id = r.id and e.details is not null and r.payload_purged_at is not null"
        )
    )
    await session.execute(
        text("delete from mailbox_message where acknowledged_at is not null and acknowledged_at < :before"),
        {"before": purge.before},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def open_received(
    session: AsyncSession, organisation_id: str, terminal: Sequence[str]
) -> list[tuple[uuid.UUID, str | None, str]]:
    """Delivered, unfinished referrals an organisation received: (id, the receiver's id for it, status);
    ``terminal``: the lifecycle's final statuses (``Lifecycle.terminal``)."""
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
