"""A base cell spread over slots (migration 0025): referrals of one cell written by overlapping transactions
go to different rows and do not wait for each other, and every flow figure is still its base cells' sums,
exactly what one row per cell (a rebuild) gives. Runs after the other flow tests: it adds referrals."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.services.delivery.polling import fold_flow_slots
from tests.flows import workload
from tests.flows.conftest import Flows
from tests.referrals.helpers import ack, event, mailbox, worker_for

SLOT_LOCK = 7274223  # flow_slot()'s advisory lock: (SLOT_LOCK, slot) is held by the transaction writing it
ANSWERS: list[tuple[str, dict[str, Any]]] = [
    ("counts", {"by": ["status", "kind"]}),
    ("counts", {"by": "dimension"}),
    ("counts", {"by": ["recipient_type", "week"]}),
    ("matrix", {"level": "municipality"}),
    ("lead-times", {"by": ["municipality", "month"]}),
    ("lead-times", {"by": ["recipient_type", "week"]}),
    ("rejections", {}),
    ("trends", {"by_municipality": "true", "period": "week"}),
]


async def _send(county: Flows, n: int, key: str) -> str:
    body = workload._remiss(n, step=2, dimensions=["healthy"])
    return await workload._send(county.client, county.auth, workload.ELEVHALSA, body, key)


async def _answers(county: Flows) -> list[Any]:
    found = []
    for endpoint, params in ANSWERS:
        r = await county.client.get(f"/v1/flows/{endpoint}", params=params, headers=county.coordinator())
        assert r.status_code == 200, r.text
        found.append(r.json())
    return found


_MONTH_CELL = "measure, dimension, month::text, municipality, sender_type, recipient_type, kind, trappan_step"


async def _month_cells(conn: AsyncConnection) -> dict[tuple[Any, ...], tuple[int, int, int, dict[int, int]]]:
    """``flow_rollup_month``'s base cells, each the sum of its slots (as ``workload.rollups`` the weeks')."""
    rows = await conn.execute(text(f"select {_MONTH_CELL}, value, children, cell_key, hist from flow_rollup_month"))
    cells: dict[tuple[Any, ...], tuple[int, int, int, Counter[int]]] = {}
    for *key, value, children, cell_key, hist in rows.all():
        v, c, k, h = cells.get(tuple(key), (0, 0, 0, Counter()))
        h.update({e >> 32: e & 0xFFFFFFFF for e in hist or []})  # one element per bucket in a row
        cells[tuple(key)] = (v + value, c + children, (k + cell_key) % 2**32, h)
    return {key: (v, c, k, dict(h)) for key, (v, c, k, h) in cells.items() if v or c or k or +h}


async def _slots(conn: AsyncConnection, table: str) -> set[int]:
    return set((await conn.execute(text(f"select distinct slot from {table}"))).scalars())


@asynccontextmanager
async def _slots_taken(county: Flows, *slots: int) -> AsyncIterator[None]:
    """Another transaction writing the rollups in ``slots`` (it holds their locks) for the duration."""
    async with county.runtime.engine.connect() as conn:
        async with conn.begin():
            for slot in slots:
                await conn.execute(text("select pg_advisory_xact_lock(:k, :s)"), {"k": SLOT_LOCK, "s": slot})
            yield


async def test_a_referral_does_not_wait_for_another_in_the_same_cell(county: Flows) -> None:
    first = await _send(county, 0, "slot-first")
    async with county.runtime.engine.connect() as conn:
        async with conn.begin() as open_:
            # A second referral of the same cell (sender, recipient, kind, step, dimension, week), entered
            # by the trigger and not committed: it holds its slot's rollup rows until it ends.
            await conn.execute(
                text(
                    """insert into referral
                       select gen_random_uuid(), sender_organisation, recipient_organisation, service_id, kind,
                              'requested', null, null, child_pseudonym, dimensions, trappan_step, data_categories,
                              permitted_categories, legal_basis, basis_reference, decision_id,
                              'slot-open', request_hash, payload, payload_key_id, payload_purged_at, now(), now()
                       from referral where id = :id"""
                ),
                {"id": first},
            )
            held = await conn.scalar(text("select current_setting('hub.flow_rollup_slot')"))
            # Before slots this waited for the open transaction's commit; now it takes another slot.
            await asyncio.wait_for(_send(county, 1, "slot-beside"), timeout=30)
            await open_.commit()
    async with county.runtime.engine.connect() as conn:
        slots = set(
            (
                await conn.execute(
                    text(
                        """select f.slot from flow_rollup f join flow_referral r on r.cell = f.cell
                           where r.referral_id = :id and f.measure = 'sent' and f.dimension = 'healthy'"""
                    ),
                    {"id": first},
                )
            ).scalars()
        )
        assert len(slots) >= 2 and int(held) in slots
        assert await workload.rollups(conn) == await workload.from_scratch(conn)


async def test_the_answers_over_many_slots_are_the_answers_of_one_row_per_cell(county: Flows) -> None:
    """Referrals sent at once from several connections, received while slots 0 and 1 are taken and accepted
    with nothing taken (a cell's status rows then hold +1 in one slot and -1 in another): the base cells,
    every answer, its hidden cells and its adjustments are those of the rebuilt rollups, one row per cell."""
    ids = await asyncio.gather(*(_send(county, n % 8, f"slots-{n}") for n in range(24)))
    async with httpx.AsyncClient() as http:
        worker = worker_for(county.runtime, http, delivery_backoff_base_seconds=0.001)
        await worker.run_until_idle()
        async with _slots_taken(county, 0, 1):
            while messages := await mailbox(county.client, county.auth, workload.BUP):  # a page at a time
                for message in messages:
                    await ack(county.client, county.auth, workload.BUP, message["id"])
        moves = [event(county.client, county.auth, workload.BUP, rid, status="accepted") for rid in ids[::2]]
        assert all(r.status_code == 201 for r in await asyncio.gather(*moves))
    async with county.runtime.engine.connect() as conn:
        assert {0, 2} <= await _slots(conn, "flow_rollup")
        assert {2} <= await _slots(conn, "flow_rollup_month"), "lead times in another slot"
        negative = await conn.scalar(text("select count(*) from flow_rollup where value < 0"))
        assert negative > 0, "a status left in another slot than it was entered in"
        spread = await workload.rollups(conn)
        assert spread == await workload.from_scratch(conn)
        months = await _month_cells(conn)
    answers = await _answers(county)

    # The worker's hourly housekeeping folds only weeks before last week: this week's rows stay spread.
    await fold_flow_slots(county.runtime)
    async with county.runtime.engine.connect() as conn:
        assert {0, 2} <= await _slots(conn, "flow_rollup")
    # Rows a running transaction holds are skipped, not waited for (no writer can deadlock with the fold).
    async with county.runtime.engine.connect() as holder, holder.begin():
        await holder.execute(text("select from flow_rollup where slot = 2 for update"))
        async with county.runtime.engine.begin() as conn:
            fold = conn.scalar(text("select flow_compact(:before)"), {"before": date(2100, 1, 1)})
            assert await asyncio.wait_for(fold, timeout=30) > 0
        async with county.runtime.engine.connect() as conn:
            assert await _slots(conn, "flow_rollup") == {0, 2}
    # Folded (migration 0027): one row per base cell, every figure and answer as it was.
    async with county.runtime.engine.begin() as conn:
        removed = await conn.scalar(text("select flow_compact(:before)"), {"before": date(2100, 1, 1)})
    async with county.runtime.engine.connect() as conn:
        assert removed > 0
        assert await _slots(conn, "flow_rollup") == {0} and await _slots(conn, "flow_rollup_month") == {0}
        assert await workload.rollups(conn) == spread
        assert await _month_cells(conn) == months
    assert await _answers(county) == answers

    for rebuild in ("flow_rebuild", "flow_rebuild_bulk"):
        async with county.runtime.engine.begin() as conn:
            await conn.execute(text(f"select {rebuild}()"))
        async with county.runtime.engine.connect() as conn:
            assert await _slots(conn, "flow_rollup") == {0} and await _slots(conn, "flow_rollup_month") == {0}
            assert await workload.rollups(conn) == spread, rebuild
            assert await _month_cells(conn) == months, rebuild
        assert await _answers(county) == answers, rebuild
