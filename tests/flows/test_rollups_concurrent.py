"""Concurrent writers keep the rollups right (runs after the other flow tests: it adds referrals)."""

from __future__ import annotations

import asyncio

import httpx

from tests.flows import workload
from tests.flows.conftest import Flows
from tests.referrals.helpers import event, worker_for


async def test_concurrent_referrals_and_events_keep_the_rollups_exact(county: Flows) -> None:
    async def send(n: int, key: str) -> str:
        body = workload._remiss(n, step=2, dimensions=["healthy"])
        return await workload._send(county.client, county.auth, workload.ELEVHALSA, body, key)

    # The same children twice each, at once: the same cells, the same children, the same sender.
    ids = await asyncio.gather(*(send(n % 4, f"concurrent-{n}") for n in range(8)))
    assert len(set(ids)) == 8
    async with httpx.AsyncClient() as http:
        await worker_for(county.runtime, http, delivery_backoff_base_seconds=0.001).run_until_idle()
    await workload._receive(county.client, county.auth, workload.BUP)
    moves = [event(county.client, county.auth, workload.BUP, rid, status="accepted") for rid in ids]
    assert all(r.status_code == 201 for r in await asyncio.gather(*moves))
    async with county.runtime.engine.connect() as conn:
        assert await workload.rollups(conn) == await workload.from_scratch(conn)
