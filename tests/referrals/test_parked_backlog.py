"""A receiver that is down has its queue parked (migration 0028): the claim's work does not grow with what
waits behind its open breaker, a later arrival is parked as the claim meets it, and closing the breaker
releases them all. The claim's work is counted in rows its plan reads (``EXPLAIN ANALYZE``), not timed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import referrals
from hub.db.referrals import breaker
from hub.db.referrals import outbox as outbox_db
from hub.runtime import Runtime
from tests.loopback import serve
from tests.referrals.helpers import RECEIVER, SENDER, Auth, referral, sent, set_endpoint, worker_for
from tests.referrals.test_delivery import county as county  # a fixture
from tests.referrals.test_delivery import outbox
from tests.referrals.test_delivery_outages import FAST, WEBHOOK, Scripted, breaker_open, until

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
DOWN, UP = "down-org", "other-org"

_ENTRIES = text(
    """
    insert into outbox (id, kind, recipient_organisation, idempotency_key, state, attempts, next_attempt_at,
                        created_at, updated_at)
    select gen_random_uuid(), 'referral', :to, :key || i, 'queued', 0, cast(:at as timestamptz) + i * interval '1 ms',
           :at, :at
    from generate_series(1, :n) as i
    """
)


async def _add(session: AsyncSession, to: str, key: str, n: int, at: datetime) -> None:
    await session.execute(_ENTRIES, {"to": to, "key": key, "n": n, "at": at})


async def _down_with_backlog(runtime: Runtime, owner: Runtime, held: int) -> None:
    """``held`` entries queued for DOWN an hour ago; its breaker opens (as a worker's failure opens it:
    that parks them); then ten entries due for UP, all younger than DOWN's."""
    async with owner.engine.begin() as conn:
        await conn.execute(text("truncate mailbox_message, outbox, delivery_breaker"))
    async with runtime.sessions() as session:
        await _add(session, DOWN, "down-", held, NOW - timedelta(hours=1))
        await breaker.failed(session, DOWN, probe=False, threshold=1, probe_delay=0.5, now=NOW - timedelta(minutes=1))
        await _add(session, UP, "up-", 10, NOW - timedelta(minutes=1))
        await session.commit()
    async with owner.engine.begin() as conn:
        await conn.execute(text("analyze outbox, delivery_breaker"))


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows every node of the plan produced or filtered out, over all its loops."""
    loops = plan.get("Actual Loops", 1)
    own = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
    return int(own + sum(_rows_read(p) for p in plan.get("Plans", [])))


async def _reads(runtime: Runtime, sql: str, params: dict[str, Any]) -> int:
    """What one run of ``sql`` reads (run, and rolled back)."""
    async with runtime.sessions() as session:
        rows = await session.execute(text("explain (analyze, format json) " + sql), params)
        found = rows.scalar_one()
        plan = json.loads(found) if isinstance(found, str) else found
        await session.rollback()
    return _rows_read(plan[0]["Plan"])


async def _claim_reads(runtime: Runtime) -> int:
    """What one claim of five entries reads."""
    return await _reads(runtime, referrals.CLAIM.sql, {"now": NOW, "lease": 60.0, "limit": 5})


async def test_a_claim_reads_as_much_with_twenty_thousand_entries_held_behind_an_open_breaker_as_with_two_thousand(
    db: Runtime, owner_runtime: Runtime
) -> None:
    reads = {}
    for held in (2_000, 20_000):
        await _down_with_backlog(db, owner_runtime, held)
        await _claim_reads(db)  # the first walk after parking marks the entries it left behind as gone
        reads[held] = await _claim_reads(db)
    assert reads[20_000] == reads[2_000], reads
    assert reads[2_000] < 100, reads
    async with db.sessions() as session:
        claimed = await db_claim(session)
    assert [c.entry.idempotency_key for c in claimed] == [f"up-{i}" for i in range(1, 6)] + ["down-1"]
    assert [c.probe for c in claimed] == [False] * 5 + [True]


async def db_claim(session: AsyncSession, limit: int = 5) -> list[referrals.Claimed]:
    claimed = await referrals.claim_due(session, now=NOW, lease_seconds=60, limit=limit, probe_lease_seconds=90)
    await session.commit()
    return claimed


async def _parked(runtime: Runtime) -> dict[str, int]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select recipient_organisation, count(*) from outbox "
                "where state in ('queued', 'retrying') and parked_at is not null group by 1"
            )
        )
        return dict(rows.all())  # type: ignore[arg-type]


async def test_entries_arriving_behind_an_open_breaker_are_parked_by_the_claim_that_meets_them(
    db: Runtime, owner_runtime: Runtime
) -> None:
    await _down_with_backlog(db, owner_runtime, 20)
    assert await _parked(db) == {DOWN: 20}
    async with db.sessions() as session:
        # Arrivals for DOWN older than UP's entries: the claim parks them on its way, and still claims five.
        await _add(session, DOWN, "late-", 12, NOW - timedelta(minutes=30))
        await session.commit()
        claimed = await referrals.claim_due(session, now=NOW, lease_seconds=60, limit=5)
        await session.commit()
    assert [c.entry.idempotency_key for c in claimed] == [f"up-{i}" for i in range(1, 6)]
    assert await _parked(db) == {DOWN: 32}


async def test_closing_the_breaker_releases_every_parked_entry_in_its_place_and_nothing_parks_after(
    db: Runtime, owner_runtime: Runtime
) -> None:
    await _down_with_backlog(db, owner_runtime, 30)
    async with db.sessions() as session:
        released = await breaker.answered(session, DOWN, now=NOW)
        await session.commit()
    assert released == 30
    assert await _parked(db) == {}
    async with db.sessions() as session:
        await _add(session, DOWN, "after-", 3, NOW - timedelta(minutes=30))
        await session.commit()
        claimed = [c.entry.idempotency_key for c in await db_claim(session, limit=40)]
    # Oldest first, as queued: DOWN's backlog (an hour old), the later ones, then UP's.
    assert claimed == [f"down-{i}" for i in range(1, 31)] + [f"after-{i}" for i in range(1, 4)] + [
        f"up-{i}" for i in range(1, 8)
    ]
    assert await _parked(db) == {}


async def test_a_down_receivers_queue_is_held_what_arrives_meanwhile_too_and_all_go_once_when_it_is_back(
    client: httpx.AsyncClient, auth: Auth, county: Runtime
) -> None:
    receiver = Scripted(status=503)
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url, **WEBHOOK})
        ids = [await sent(client, auth) for _ in range(3)]
        async with httpx.AsyncClient() as http:
            worker = worker_for(county, http, **FAST, delivery_breaker_threshold=2, delivery_breaker_probe_seconds=0.02)
            await until(lambda: breaker_open(county), between=worker.run_once)
            for _ in range(3):  # probes go, fail, and their entries are parked again
                await worker.run_once()
            assert await _parked(county) == {RECEIVER: 3}

            late = await sent(client, auth)  # arrives while the receiver is down: the next claim parks it
            await worker.run_once()
            assert await _parked(county) == {RECEIVER: 4}
            [entry] = [e for e in await outbox(county) if str(e.referral_id) == late]
            assert entry.attempts == 0, "never sent to a receiver that is down"
            assert (await referral(client, auth, SENDER, late))["delivery_state"] == "queued"
            metrics = (await client.get("/metrics")).text
            assert f'hub_outbox_queued{{recipient="{RECEIVER}"}} 4.0' in metrics
            assert f'hub_outbox_oldest_queued_age_seconds{{recipient="{RECEIVER}"}}' in metrics

            receiver.status = 200  # back: the next probe closes the breaker and releases the queue

            async def drained() -> bool:
                return all(e.state == "delivered" for e in await outbox(county))

            await until(drained, between=worker.run_until_idle)
    assert len(receiver.stored) == 4, "each delivered once"
    assert await _parked(county) == {}
    for rid in [*ids, late]:
        row = await referral(client, auth, SENDER, rid)
        assert (row["status"], row["delivery_state"]) == ("received", "delivered")


async def test_a_claim_parking_and_a_worker_closing_the_breaker_at_once_leave_nothing_parked(
    db: Runtime, owner_runtime: Runtime
) -> None:
    # A claim that parks holds the open breaker until it commits: closing it waits, then releases all.
    await _down_with_backlog(db, owner_runtime, 3)
    async with db.sessions() as claiming, db.sessions() as closing:
        await _add(claiming, DOWN, "late-", 2, NOW - timedelta(minutes=30))
        await claiming.commit()
        assert len(await referrals.claim_due(claiming, now=NOW, lease_seconds=60, limit=5)) == 5
        await closing.execute(text("set local lock_timeout = '200ms'"))
        with pytest.raises(DBAPIError, match="lock timeout"):
            await breaker.answered(closing, DOWN, now=NOW)
        await closing.rollback()
        await claiming.commit()
        assert await breaker.answered(closing, DOWN, now=NOW) == 5
        await closing.commit()
    assert await _parked(db) == {}

    # A breaker being closed is taken as closed: the claim does not wait for it, and claims what it meets.
    await _down_with_backlog(db, owner_runtime, 3)
    async with db.sessions() as claiming, db.sessions() as closing:
        await _add(claiming, DOWN, "late-", 2, NOW - timedelta(minutes=30))
        await claiming.commit()
        await breaker.CLOSE.fetch(closing, {"recipient": DOWN})
        await claiming.execute(text("set local lock_timeout = '200ms'"))
        claimed = await referrals.claim_due(claiming, now=NOW, lease_seconds=60, limit=5)
        assert [c.entry.idempotency_key for c in claimed] == ["late-1", "late-2", "up-1", "up-2", "up-3"]
        await claiming.commit()
        await breaker.RELEASE.fetch(closing, {"recipient": DOWN, "now": NOW})
        await closing.commit()
    assert await _parked(db) == {}


async def _expiry_reads(runtime: Runtime) -> int:
    """What one expiry of DOWN's entries past a 72-hour horizon reads (none is that old)."""
    params = {"recipient": DOWN, "now": NOW, "horizon_start": NOW - timedelta(hours=72)}
    return await _reads(runtime, outbox_db.EXPIRE_PENDING.sql, params)


async def test_the_expiry_on_each_failed_probe_reads_what_it_expires_not_the_whole_held_backlog(
    db: Runtime, owner_runtime: Runtime
) -> None:
    """Each failed probe of a down receiver gives up what waits past the retry horizon: twice a second, over
    an outage that holds the queue for days."""
    reads = {}
    for held in (2_000, 20_000):
        await _down_with_backlog(db, owner_runtime, held)
        reads[held] = await _expiry_reads(db)
    assert reads[20_000] == reads[2_000], reads
    assert reads[2_000] < 100, reads
    async with db.sessions() as session:  # and what is past the horizon, parked or not, is given up
        await _add(session, DOWN, "unparked-", 3, NOW - timedelta(hours=2))
        expired = await outbox_db.expire_pending(session, DOWN, now=NOW, horizon_start=NOW - timedelta(minutes=30))
        await session.commit()
    assert len(expired) == 20_003
    assert await _parked(db) == {}
