"""Each receiving organisation's circuit breaker, in PostgreSQL so that every worker shares it
(``delivery_breaker``, migration 0012), and what the outbox looks like for ``/metrics``.

A row exists while a receiver's deliveries are failing: ``consecutive_failures`` transient failures in a
row (any answer from the receiver deletes the row); at the threshold ``opened_at`` is set, and from then
on its pending entries are parked (``outbox.parked_at``, migration 0028): all of them when it opens, and the
ones that come later as the claim (``leases.CLAIM``) meets them; ``leases.CLAIM_PROBES`` sends it one entry at
a time when ``next_probe_at`` comes. Closing it releases them.

Nothing stays parked behind a breaker that is not open: what parks holds a lock on the open breaker row in
the same transaction (the failure's upsert here, the claim's ``for key share``), the deletion that closes it
waits for those transactions, and the release runs after the deletion, as a statement of its own that sees
what they parked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.engine import Statement

# A transient failure. ``:probe``: it was the probe's (the probe lease ends, the next one is due after
# ``:probe_delay``). ``probes_failed`` counts the failed probes of this outage.
_OPENS = "cast(:threshold as int)"
_NOW = "cast(:now as timestamptz)"
_PROBE = "cast(:probe as boolean)"
_NEXT = "cast(:now as timestamptz) + make_interval(secs => cast(:probe_delay as float8))"

FAILED = Statement(
    f"""
    insert into delivery_breaker as b (recipient_organisation, consecutive_failures, opened_at, next_probe_at,
                                       probe_lease_until, probes_failed, updated_at)
    values (:recipient, 1, case when {_OPENS} <= 1 then {_NOW} end, case when {_OPENS} <= 1 then {_NEXT} end,
            null, 0, {_NOW})
    on conflict (recipient_organisation) do update set
        consecutive_failures = b.consecutive_failures + 1,
        opened_at = coalesce(b.opened_at, case when b.consecutive_failures + 1 >= {_OPENS} then {_NOW} end),
        probes_failed = b.probes_failed + case when {_PROBE} then 1 else 0 end,
        next_probe_at = case
            when b.opened_at is null and b.consecutive_failures + 1 < {_OPENS} then null
            when b.opened_at is null or {_PROBE} then {_NEXT}
            else b.next_probe_at end,
        probe_lease_until = case when {_PROBE} then null else b.probe_lease_until end,
        updated_at = {_NOW}
    returning opened_at is not null, opened_at = {_NOW}
    """
)

# The breaker has just opened: every pending entry of the receiver that no worker holds is parked, due or
# not (the probes take the oldest of them). A walk of the unparked pending entries, once per outage.
PARK_QUEUE = Statement(
    """
    update outbox set parked_at = :now
    where recipient_organisation = :recipient and state in ('queued', 'retrying') and parked_at is null
      and (lease_until is null or lease_until < :now)
    """
)


# An answer from the receiver (delivered, or refused for good: it is up). Closed: the row goes; if it was
# open, everything of the receiver's that waits is due at once (the queue is released): its parked entries
# unparked (each keeping its place, oldest first) and any entry not parked waiting for a retry due now. Two
# statements: the release must see what was parked by transactions the deletion waited for. Entries in
# flight are left to their outcome (waiting for them could deadlock with a worker closing it too).
CLOSE = Statement("delete from delivery_breaker where recipient_organisation = :recipient returning opened_at")

RELEASE = Statement(
    """
    with waiting as (
        select id from outbox
        where recipient_organisation = :recipient and state in ('queued', 'retrying') and parked_at is not null
        union all
        select id from outbox
        where recipient_organisation = :recipient and state in ('queued', 'retrying') and parked_at is null
          and next_attempt_at > :now and (lease_until is null or lease_until < :now)
    )
    update outbox set parked_at = null, next_attempt_at = least(next_attempt_at, :now)
    where id = any(array(select id from waiting))
    returning 1
    """
)


async def failed(
    on: AsyncSession | Any, recipient: str, *, probe: bool, threshold: int, probe_delay: float, now: datetime
) -> bool:
    """Count a transient failure; True when the receiver's breaker is (now) open. When this failure opened
    it, the receiver's pending entries are parked."""
    params = {
        "recipient": recipient,
        "probe": probe,
        "threshold": threshold,
        "probe_delay": float(probe_delay),
        "now": now,
    }
    down, opened = await FAILED.fetchrow(on, params)
    if opened:
        await PARK_QUEUE.execute(on, {"recipient": recipient, "now": now})
    return bool(down)


async def answered(on: AsyncSession | Any, recipient: str, *, now: datetime) -> int:
    """The receiver answered: its breaker closes; returns how many waiting entries were released."""
    closed = await CLOSE.fetch(on, {"recipient": recipient})
    if not any(opened_at is not None for (opened_at,) in closed):
        return 0
    return len(await RELEASE.fetch(on, {"recipient": recipient, "now": now}))


async def troubled(on: AsyncSession | Any, recipients: list[str]) -> set[str]:
    rows = await _TROUBLED.fetch(on, {"recipients": recipients})
    return {r[0] for r in rows}


_TROUBLED = Statement(
    "select recipient_organisation from delivery_breaker where recipient_organisation = any(:recipients)"
)


# --- what /metrics shows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipientOutbox:
    """One receiving organisation's outbox: entries by state, the oldest pending one's queue time, the
    attempts its pending entries have made, and its breaker (``closed`` | ``failing`` | ``open``)."""

    recipient: str
    queued: int
    in_flight: int
    dead_lettered: int
    oldest_queued_at: datetime | None
    pending_attempts: int
    breaker: str
    consecutive_failures: int
    opened_at: datetime | None


_OUTBOX_STATE = Statement(
    """
    with pending as (
        select recipient_organisation as recipient,
               count(*) filter (where lease_until is null or lease_until < :now) as queued,
               count(*) filter (where lease_until >= :now) as in_flight,
               0 as dead, min(created_at) as oldest, sum(attempts) as attempts
        from outbox where state in ('queued', 'retrying') group by recipient_organisation
        union all
        select recipient_organisation, 0, 0, count(*), null, 0
        from outbox where state = 'dead-lettered' group by recipient_organisation
    ), per as (
        select recipient, sum(queued) as queued, sum(in_flight) as in_flight, sum(dead) as dead,
               min(oldest) as oldest, sum(attempts) as attempts
        from pending group by recipient
    )
    select coalesce(per.recipient, b.recipient_organisation), coalesce(per.queued, 0), coalesce(per.in_flight, 0),
           coalesce(per.dead, 0), per.oldest, coalesce(per.attempts, 0),
           case when b.opened_at is not null then 'open' when b.recipient_organisation is not null then 'failing'
                else 'closed' end,
           coalesce(b.consecutive_failures, 0), b.opened_at
    from per full join delivery_breaker b on b.recipient_organisation = per.recipient
    order by 1
    """
)


async def outbox_state(session: AsyncSession, *, now: datetime) -> list[RecipientOutbox]:
    """Per receiving organisation: what is pending, in flight, dead-lettered, and its breaker. Delivered
    and abandoned entries are not counted (they are most of the table and need no one's attention)."""
    rows = await _OUTBOX_STATE.fetch(session, {"now": now})
    return [
        RecipientOutbox(r[0], int(r[1]), int(r[2]), int(r[3]), r[4], int(r[5]), r[6], int(r[7]), r[8]) for r in rows
    ]


__all__ = ["RecipientOutbox", "answered", "failed", "outbox_state", "troubled"]
