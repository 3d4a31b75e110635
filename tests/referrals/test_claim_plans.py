"""The delivery worker's claims (``hub.db.referrals.leases``) and the mailbox's fetch take the same entries in
the same order whatever plan PostgreSQL holds for them: one made while the tables were empty and analysed,
kept for the connection and then run on full tables, or one made for each call. A generic plan made on the
empty outbox re-ran ``id in (select ... limit ... for update skip locked)`` for every row and claimed every
due entry at once."""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import referrals as db
from hub.runtime import Runtime

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ORG, OTHER = "nora-elevhalsa", "region-bup"

_ENTRY = text(
    """
    insert into outbox (id, kind, recipient_organisation, idempotency_key, state, attempts, next_attempt_at,
                        lease_until, created_at, updated_at)
    values (:id, 'referral', :to, :key, :state, 1, :at, :lease, :at, :at)
    """
)
_MESSAGE = text(
    """
    insert into mailbox_message (id, organisation_id, outbox_id, kind, body, body_key_id, visible_at,
                                 acknowledged_at, created_at)
    values (:id, :org, :outbox, :key, '\\x00', 'k', :visible, :acked, :at)
    """
)


async def _empty_and_analysed(db_: Runtime, owner: Runtime) -> None:
    """Empty tables whose statistics say so (relpages 0): what a plan made now is made for."""
    async with owner.engine.begin() as conn:
        await conn.execute(text("truncate mailbox_message, outbox, delivery_breaker"))
    async with owner.engine.begin() as conn:
        await conn.execute(text("analyze mailbox_message, outbox, delivery_breaker"))


async def _entry(
    session: AsyncSession, key: str, to: str, state: str, at: datetime, lease: datetime | None = None
) -> uuid.UUID:
    entry_id = uuid.uuid4()
    await session.execute(_ENTRY, {"id": entry_id, "to": to, "key": key, "state": state, "at": at, "lease": lease})
    return entry_id


async def _outbox(db_: Runtime) -> None:
    """300 delivered; 12 due (queued or retrying), inserted out of order; 2 due but leased by another
    worker; 3 due for a receiver whose breaker is open (the oldest: only its probe goes); 2 not due yet."""
    due = list(range(12))
    random.Random(7).shuffle(due)
    async with db_.sessions() as session:
        for i in range(300):
            await _entry(session, f"done-{i}", ORG, "delivered", NOW - timedelta(days=1, seconds=-i))
        for i in due:
            at = NOW - timedelta(minutes=30 - i)
            await _entry(session, f"due-{i:02}", (ORG, OTHER)[i % 2], ("queued", "retrying")[i % 3 == 0], at)
        for i in range(2):
            await _entry(session, f"held-{i}", ORG, "queued", NOW - timedelta(hours=1), lease=NOW + timedelta(hours=1))
        for i in range(3):
            await _entry(session, f"down-{i}", "down-org", "queued", NOW - timedelta(hours=2, seconds=-i))
        for i in range(2):
            await _entry(session, f"later-{i}", OTHER, "retrying", NOW + timedelta(minutes=5 + i))
        await session.execute(
            text(
                "insert into delivery_breaker (recipient_organisation, consecutive_failures, opened_at, "
                "next_probe_at, updated_at) values ('down-org', 5, :now, :now, :now)"
            ),
            {"now": NOW - timedelta(minutes=1)},
        )
        await session.commit()


async def _claims(session: AsyncSession) -> list[list[tuple[str, int, bool]]]:
    batches = []
    for _ in range(4):
        claimed = await db.claim_due(session, now=NOW, lease_seconds=60, limit=5, probe_lease_seconds=90)
        await session.commit()
        batches.append([(c.entry.idempotency_key, c.entry.attempts, c.probe) for c in claimed])
    return batches


async def _mailbox(db_: Runtime) -> None:
    """For ORG: 200 acknowledged, 8 visible (created out of order), 2 handed out and not yet visible again;
    4 visible for another organisation."""
    rows = [(ORG, NOW - timedelta(days=2, seconds=-i), NOW - timedelta(days=1), f"acked-{i}") for i in range(200)]
    rows += [(ORG, None, NOW - timedelta(minutes=1), f"m-{i}") for i in (5, 1, 7, 0, 3, 6, 2, 4)]
    rows += [(ORG, None, NOW + timedelta(minutes=1), f"hidden-{i}") for i in range(2)]
    rows += [(OTHER, None, NOW - timedelta(minutes=1), f"other-{i}") for i in range(4)]
    async with db_.sessions() as session:
        for org, acked, visible, key in rows:
            outbox = await _entry(session, key, org, "delivered", NOW - timedelta(days=3))
            order = int(key.split("-")[1])
            at = NOW - timedelta(hours=1, seconds=-order) if acked is None else NOW - timedelta(days=3, seconds=-order)
            params = {"id": uuid.uuid4(), "org": org, "outbox": outbox, "key": key, "visible": visible}
            params |= {"acked": acked, "at": at}
            await session.execute(_MESSAGE, params)
        await session.commit()


async def _fetches(session: AsyncSession) -> list[list[tuple[str, int]]]:
    batches = []
    for _ in range(4):
        rows = await db.mailbox_fetch(session, organisation_id=ORG, now=NOW, visibility_seconds=60, limit=3)
        await session.commit()
        batches.append([(r.kind, r.fetch_count) for r in rows])  # the kind column holds the test's name
    return batches


async def _in_plan_state(
    db_: Runtime,
    owner: Runtime,
    fill: Callable[[Runtime], Awaitable[None]],
    run: Callable[[AsyncSession], Awaitable[list[object]]],
    *,
    planned_on_empty: bool,
) -> list[object]:
    await _empty_and_analysed(db_, owner)
    async with db_.engine.connect() as conn:
        session = AsyncSession(bind=conn, expire_on_commit=False)
        if planned_on_empty:
            # This connection's prepared statements get their generic plan now, for the empty tables, and
            # keep it: nothing below changes the tables' statistics.
            await session.execute(text("set plan_cache_mode = force_generic_plan"))
            await run(session)
        await fill(db_)
        return await run(session)


async def test_claims_take_the_oldest_due_entries_whatever_plan_they_run_with(
    db: Runtime, owner_runtime: Runtime
) -> None:
    expected = [
        [(f"due-{i:02}", 2, False) for i in range(5)] + [("down-0", 2, True)],
        [(f"due-{i:02}", 2, False) for i in range(5, 10)],  # the probe's breaker is leased: no second probe
        [(f"due-{i:02}", 2, False) for i in range(10, 12)],
        [],
    ]
    for planned_on_empty in (True, False):
        batches = await _in_plan_state(db, owner_runtime, _outbox, _claims, planned_on_empty=planned_on_empty)
        assert batches == expected, planned_on_empty


async def test_the_mailbox_hands_out_the_oldest_visible_messages_whatever_plan_it_runs_with(
    db: Runtime, owner_runtime: Runtime
) -> None:
    from hub.devtools.demo import load_demo

    async with db.sessions() as session:
        await load_demo(session)
        await session.commit()
    expected = [
        [(f"m-{i}", 1) for i in range(3)],
        [(f"m-{i}", 1) for i in range(3, 6)],
        [(f"m-{i}", 1) for i in (6, 7)],
        [],
    ]
    for planned_on_empty in (True, False):
        batches = await _in_plan_state(db, owner_runtime, _mailbox, _fetches, planned_on_empty=planned_on_empty)
        assert batches == expected, planned_on_empty
