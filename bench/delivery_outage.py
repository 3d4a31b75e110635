"""Benchmark: a receiver down for N seconds, then back (``python -m bench delivery --outage N``).

One hub (``bench.server.HubUnderTest``), one receiving server (``bench.delivery``'s), ``--workers`` ``hub
worker`` processes with the default retry and circuit-breaker settings. Three phases on the same database:

1. Full speed: ``--referrals`` referrals preloaded through the API, then delivered with the receiver up.
   The time from the first delivery to the last is what the queue needs at full speed.
2. Outage: as many again preloaded; the receiver stopped; the workers started; after N seconds the
   receiver starts again on the same port. Measured: the attempts made while it was down (the breaker
   should bound them: a few failures, then one probe about every ``HUB_DELIVERY_BREAKER_PROBE_SECONDS``),
   and the time from the receiver's return to the last referral delivered.
3. Full speed again, as in 1, on the database as phase 2 left it.

Target (issue #11): drain after the return ≤ 1.2 × the full-speed time of the same queue. The full-speed
time is the mean of phases 1 and 3: the drain runs on a database larger than phase 1's and smaller than
phase 3's, and a machine's speed drifts over a run (both spans are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.delivery import SECRET_REF, ReceiverProcess, preload, start_workers, stop_workers
from bench.referrals import RECEIVER, SENDERS, asyncpg_dsn, set_endpoints
from bench.server import HubUnderTest

DRAIN_FACTOR = 1.2


async def _state(url: str, since: datetime) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await conn.fetchrow(
            """
            select count(*) as referrals,
                   count(*) filter (where state = 'delivered') as delivered,
                   count(*) filter (where state = 'dead-lettered') as dead,
                   coalesce(sum(attempts), 0) as attempts,
                   min(delivered_at) as first_at, max(delivered_at) as last_at
            from outbox where kind = 'referral' and created_at >= $1
            """,
            since,
        )
        breakers = await conn.fetchval("select count(*) from delivery_breaker where opened_at is not null")
        pending = await conn.fetchval("select count(*) from outbox where state in ('queued', 'retrying')")
        return {**dict(row), "open_breakers": breakers, "pending": pending}
    finally:
        await conn.close()


def state(hub: HubUnderTest, since: datetime) -> dict[str, Any]:
    return asyncio.run(_state(hub.url, since))


def _until_delivered(hub: HubUnderTest, since: datetime, count: int, timeout: float) -> dict[str, Any]:
    """Until every referral queued since ``since`` is delivered (or given up), then until nothing at all is
    pending (their status events back to the senders), so the next phase starts from an empty queue."""
    deadline = time.perf_counter() + timeout
    now = state(hub, since)
    while now["delivered"] + now["dead"] < count and time.perf_counter() < deadline:
        time.sleep(0.1)
        now = state(hub, since)
    done = now
    while now["pending"] and time.perf_counter() < deadline:
        time.sleep(0.1)
        now = state(hub, since)
    return done


def run_outage(args: argparse.Namespace, settings: dict[str, str]) -> int:
    """Both phases (module docstring); exit status 1 if the target is missed."""
    count = args.referrals
    print(
        f"a receiver down {args.outage:.0f} s: {count:,} referrals at full speed, then {count:,} more with the "
        f"receiver stopped; {args.workers} `hub worker` process(es), default retry and breaker settings"
    )
    receiver = ReceiverProcess(verify=not args.no_verify)
    port = receiver.port
    try:
        env = {"HUB_SERVE_RUNS_WORKER": "false", "HUB_DATABASE_POOL_SIZE": str(args.pool_size)}
        with HubUnderTest(workers=2, extra_env=env) as hub:
            senders = SENDERS[: args.senders]
            url = f"http://127.0.0.1:{port}"
            endpoints = {RECEIVER: ("webhook", {"url": f"{url}/bup", "secret_ref": SECRET_REF})}
            endpoints |= {s: ("webhook", {"url": f"{url}/{s}", "secret_ref": SECRET_REF}) for s in senders}
            set_endpoints(hub, endpoints)

            before = _full_speed(hub, senders, args, settings, "before the outage")

            since = datetime.now(UTC)
            preload(hub, senders, count, args.children)
            receiver.close()
            workers = start_workers(hub, args.workers, settings)
            try:
                time.sleep(args.outage)
                down = state(hub, since)
                receiver = ReceiverProcess(verify=not args.no_verify, port=port)
                back_at = datetime.now(UTC)
                after = _until_delivered(hub, since, count, args.timeout)
            finally:
                stop_workers(workers)
            full_span = (before + _full_speed(hub, senders, args, settings, "after the outage phase")) / 2
    finally:
        receiver.close()
    return _report(args, count, full_span, down, back_at, after)


def _full_speed(
    hub: HubUnderTest, senders: list[str], args: argparse.Namespace, settings: dict[str, str], label: str
) -> float:
    """Phase 1 (and 3): ``--referrals`` preloaded, then delivered with the receiver up; seconds from the first
    delivery to the last."""
    count = args.referrals
    since = datetime.now(UTC)
    preload(hub, senders, count, args.children)
    workers = start_workers(hub, args.workers, settings)
    try:
        full = _until_delivered(hub, since, count, args.timeout)
    finally:
        stop_workers(workers)
    span: float = (full["last_at"] - full["first_at"]).total_seconds()
    print(f"full speed, {label}: {count:,} delivered in {span:.2f} s (first to last), {count / span:,.0f}/s")
    return span


def _report(
    args: argparse.Namespace,
    count: int,
    full_span: float,
    down: dict[str, Any],
    back_at: datetime,
    after: dict[str, Any],
) -> int:
    attempts = int(down["attempts"])
    print(
        f"while down ({args.outage:.0f} s): {attempts:,} attempts in all, {attempts / count:.3f} per referral; "
        f"breakers open: {down['open_breakers']}; {down['dead']} dead-lettered"
    )
    drain = (after["last_at"] - back_at).total_seconds() if after["last_at"] else float("inf")
    found = (after["first_at"] - back_at).total_seconds() if after["first_at"] else float("inf")
    span = (after["last_at"] - after["first_at"]).total_seconds() if after["last_at"] else float("inf")
    print(
        f"the first delivery {found:.2f} s after its return (a probe found it back), then {count:,} in "
        f"{span:.2f} s ({count / span:,.0f}/s)"
    )
    print(
        f"after it came back: {after['delivered']:,} of {count:,} delivered ({after['dead']} dead-lettered), "
        f"the last {drain:.2f} s after its return; full speed needed {full_span:.2f} s (mean of before and after) "
        f"({drain / full_span:.2f}×)"
    )
    met = after["delivered"] == count and drain <= DRAIN_FACTOR * full_span
    print(f"  target: drain ≤ {DRAIN_FACTOR} × the full-speed time: {'met' if met else 'NOT met'}")
    return 0 if met else 1
