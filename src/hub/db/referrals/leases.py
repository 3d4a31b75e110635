"""Claiming outbox entries and holding them: the lease a claim takes, the heartbeat that extends it, the
fencing token (the claim's attempt number) an outcome must still match, and giving back what a stopping
worker had not started."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.engine import Statement, planned_per_call
from hub.db.referrals.rows import OutboxRow, _fields


@dataclass(frozen=True)
class Claimed:
    """An entry a worker holds. ``entry.attempts`` (counted up by the claim) is the fencing token: an
    outcome is recorded only while the entry still has that number of attempts and is pending, so a worker
    whose lease ran out and whose entry another worker claimed again cannot overwrite that one's outcome.
    ``checked_outcome``: the send-time re-check outcome last recorded for it; ``since``: when its retry
    horizon started; ``probe``: claimed as the one probe of a receiver whose breaker is open."""

    entry: OutboxRow
    checked_outcome: str | None
    since: datetime
    probe: bool = False


_CLAIMED = f"{_fields(OutboxRow)}, checked_outcome, coalesce(requeued_at, created_at) as since"
_PENDING = "state in ('queued', 'retrying')"

# Reserve due entries for one worker, oldest first: rows other workers hold are skipped, not waited for.
# The entries of a receiver whose circuit breaker is open are parked (``parked_at``, migration 0028: out of
# ``outbox_due``) instead of claimed, so a claim meets each of them once, and never walks a down receiver's
# held backlog again (only its probe goes, below). The breaker is locked ``for key share``: its deletion
# (``breaker.CLOSE``), which then releases what is parked, waits for this statement's transaction, so nothing
# is parked behind a breaker that closed; ``skip locked``: a breaker being closed is taken as closed, never
# waited for. The locked pick is a materialized CTE, run once: as ``id in (select ... limit ... for update skip
# locked)`` a plan could re-run it for every outbox row, each run skipping the rows this statement had already
# updated, which claimed every due entry (not ``limit``) at a cost of outbox rows times batch. The last column
# says whether the row was parked rather than claimed.
CLAIM = Statement(
    f"""
    with picked as materialized (
        select id, recipient_organisation from outbox
        where {_PENDING} and parked_at is null and next_attempt_at <= :now
          and (lease_until is null or lease_until < :now)
        order by next_attempt_at
        limit :limit
        for update skip locked
    ), down as materialized (
        select recipient_organisation from delivery_breaker
        where opened_at is not null
          and recipient_organisation = any(array(select distinct recipient_organisation from picked))
        for key share skip locked
    ), parked as (
        update outbox set parked_at = :now
        where id = any(array(select id from picked join down using (recipient_organisation)))
        returning {_CLAIMED}
    ), claimed as (
        update outbox set lease_until = :now + make_interval(secs => :lease), attempts = attempts + 1,
                          updated_at = :now
        where id = any(array(select id from picked
                             where recipient_organisation not in (select recipient_organisation from down)))
        returning {_CLAIMED}
    )
    select {_fields(OutboxRow)}, checked_outcome, since, false from claimed
    union all
    select {_fields(OutboxRow)}, checked_outcome, since, true from parked
    order by next_attempt_at, id
    """
)

# One probe per open breaker whose time has come and that has no probe out: the breaker row is leased
# (``probe_lease_until``) so that across every worker one probe at a time goes to a receiver that is down.
# The probe is the receiver's oldest pending entry, due or not: its oldest parked one (``outbox_parked``), or
# when it has none parked, its oldest one not parked. The probe is unparked while it is out (a leased entry is
# never parked: releasing a closed breaker's queue waits for no delivery in flight); its failure parks it
# again (``hub.services.delivery.outcomes.failed``). The breaker is locked ``for no key update``, which
# ``CLAIM``'s ``for key share`` does not wait for. The entries are fetched by id (``= any``) rather than
# joined, which a plan may do by reading all of outbox.
CLAIM_PROBES = Statement(
    f"""
    with due as (
        select recipient_organisation from delivery_breaker
        where opened_at is not null and next_probe_at <= :now
          and (probe_lease_until is null or probe_lease_until < :now)
        for no key update skip locked
    ), picked as (
        select coalesce(
                   (select o.id from outbox o
                    where o.recipient_organisation = due.recipient_organisation and o.{_PENDING}
                      and o.parked_at is not null and (o.lease_until is null or o.lease_until < :now)
                    order by o.next_attempt_at limit 1 for update skip locked),
                   (select o.id from outbox o
                    where o.recipient_organisation = due.recipient_organisation and o.{_PENDING}
                      and o.parked_at is null and (o.lease_until is null or o.lease_until < :now)
                    order by o.next_attempt_at limit 1 for update skip locked)) as id,
               due.recipient_organisation
        from due
    ), leased as (
        update delivery_breaker b set probe_lease_until = :now + make_interval(secs => :probe_lease)
        from picked where b.recipient_organisation = picked.recipient_organisation and picked.id is not null
    )
    update outbox set lease_until = :now + make_interval(secs => :lease), attempts = attempts + 1, updated_at = :now,
                      parked_at = null
    where id = any(array(select id from picked where id is not null))
    returning {_CLAIMED}
    """
)


async def claim_due(
    session: AsyncSession, *, now: datetime, lease_seconds: float, limit: int, probe_lease_seconds: float = 0.0
) -> list[Claimed]:
    """Reserve up to ``limit`` due entries for this worker, and one probe for each receiver whose breaker
    is open and due a probe (``probe_lease_seconds`` > 0). Rows other workers hold are skipped, not
    waited for; a reservation (lease) that outlives its worker expires and the entry is claimed again.
    Entries of receivers that are down are parked on the way, and the claim goes on for the rest of the
    batch: each of them is met once."""
    params = {"now": now, "lease": float(lease_seconds), "limit": limit}
    claimed: list[Claimed] = []
    async with planned_per_call(session):  # linear in what is claimed whatever the outbox was when planned
        while True:
            rows = await CLAIM.fetch(session, params | {"limit": limit - len(claimed)})
            claimed += [_claimed(r) for r in rows if not r[-1]]
            if len(claimed) >= limit or all(not r[-1] for r in rows):
                break
        if probe_lease_seconds > 0:
            probes = await CLAIM_PROBES.fetch(session, params | {"probe_lease": float(probe_lease_seconds)})
            claimed += [_claimed(r, probe=True) for r in probes]
    return claimed


def _claimed(r: Sequence[Any], *, probe: bool = False) -> Claimed:
    n = len(OutboxRow.__dataclass_fields__)
    return Claimed(OutboxRow(*r[:n]), r[n], r[n + 1], probe)


# Fencing: an outcome is recorded only by the worker that still holds the entry (same attempt, pending).
HELD = "id = :id and attempts = :attempt and state in ('queued', 'retrying')"

HEARTBEAT = Statement(
    """
    update outbox set lease_until = cast(:now as timestamptz) + make_interval(secs => :lease)
    from unnest(cast(:ids as uuid[]), cast(:attempts as int[])) as held(id, attempts)
    where outbox.id = held.id and outbox.attempts = held.attempts and outbox.state in ('queued', 'retrying')
    """
)


async def extend_leases(
    session: AsyncSession, held: Sequence[tuple[uuid.UUID, int]], *, now: datetime, lease_seconds: float
) -> None:
    """The heartbeat: the leases of the entries this worker is still delivering run on (fenced as above)."""
    params = {"ids": [i for i, _ in held], "attempts": [a for _, a in held], "now": now, "lease": float(lease_seconds)}
    await session.execute(HEARTBEAT.clause, params)


async def release(session: AsyncSession, held: Sequence[tuple[uuid.UUID, int]]) -> None:
    """Give back entries claimed but not started (a worker stopping): due again at once, the attempt not
    counted."""
    for outbox_id, attempt in held:
        await session.execute(
            text(f"update outbox set lease_until = null, attempts = attempts - 1 where {HELD}"),
            {"id": outbox_id, "attempt": attempt},
        )
