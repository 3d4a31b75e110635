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

# Reserve due entries for one worker: rows other workers hold are skipped, not waited for, and so are the
# receivers whose circuit breaker is open (only their probe goes, below). The locked pick is a materialized
# CTE, run once: as ``id in (select ... limit ... for update skip locked)`` a plan could re-run it for every
# outbox row, each run skipping the rows this statement had already updated, which claimed every due entry
# (not ``limit``) at a cost of outbox rows times batch. Returned oldest first.
CLAIM = Statement(
    f"""
    with picked as materialized (
        select id from outbox
        where state in ('queued', 'retrying') and next_attempt_at <= :now
          and (lease_until is null or lease_until < :now)
          and not exists (select 1 from delivery_breaker b
                          where b.recipient_organisation = outbox.recipient_organisation and b.opened_at is not null)
        order by next_attempt_at
        limit :limit
        for update skip locked
    ), claimed as (
        update outbox set lease_until = :now + make_interval(secs => :lease), attempts = attempts + 1,
                          updated_at = :now
        where id = any(array(select id from picked))
        returning {_CLAIMED}
    )
    select {_fields(OutboxRow)}, checked_outcome, since from claimed order by next_attempt_at, id
    """
)

# One probe per open breaker whose time has come and that has no probe out: the breaker row is leased
# (``probe_lease_until``) so that across every worker one probe at a time goes to a receiver that is down.
# The probe is the receiver's oldest pending entry, due or not. The entries are fetched by id (``= any``)
# rather than joined, which a plan may do by reading all of outbox.
CLAIM_PROBES = Statement(
    f"""
    with due as (
        select recipient_organisation from delivery_breaker
        where opened_at is not null and next_probe_at <= :now
          and (probe_lease_until is null or probe_lease_until < :now)
        for update skip locked
    ), picked as (
        select (select o.id from outbox o
                where o.recipient_organisation = due.recipient_organisation
                  and o.state in ('queued', 'retrying') and (o.lease_until is null or o.lease_until < :now)
                order by o.next_attempt_at limit 1 for update skip locked) as id,
               due.recipient_organisation
        from due
    ), leased as (
        update delivery_breaker b set probe_lease_until = :now + make_interval(secs => :probe_lease)
        from picked where b.recipient_organisation = picked.recipient_organisation and picked.id is not null
    )
    update outbox set lease_until = :now + make_interval(secs => :lease), attempts = attempts + 1, updated_at = :now
    where id = any(array(select id from picked where id is not null))
    returning {_CLAIMED}
    """
)


async def claim_due(
    session: AsyncSession, *, now: datetime, lease_seconds: float, limit: int, probe_lease_seconds: float = 0.0
) -> list[Claimed]:
    """Reserve up to ``limit`` due entries for this worker, and one probe for each receiver whose breaker
    is open and due a probe (``probe_lease_seconds`` > 0). Rows other workers hold are skipped, not
    waited for; a reservation (lease) that outlives its worker expires and the entry is claimed again."""
    params = {"now": now, "lease": float(lease_seconds), "limit": limit}
    async with planned_per_call(session):  # linear in what is claimed whatever the outbox was when planned
        rows = await CLAIM.fetch(session, params)
        claimed = [_claimed(r) for r in rows]
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
