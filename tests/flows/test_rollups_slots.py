"""A base cell spread over slots (migration 0025; since 0030 only the rows written before it): every flow
figure is still its base cells' sums, exactly what one row per cell (a rebuild) gives. And referrals of one
cell do not wait for each other: the trigger only queues (0030). Runs after the other flow tests: it adds
referrals."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.services.delivery.polling import fold_flow_slots
from tests.flows import workload
from tests.flows.conftest import Flows
from tests.referrals.helpers import ack, event, mailbox, worker_for

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


async def test_a_referral_of_a_transaction_still_open_is_folded_once_it_commits(county: Flows) -> None:
    """The trigger only queues (migration 0030): a referral of an open transaction holds no rollup row, so
    another of the same cell does not wait for it; a fold (a read's) leaves its queued row, which it
    cannot see, and the next fold after the commit counts it."""
    first = await _send(county, 0, "slot-first")
    async with county.runtime.engine.connect() as conn:
        async with conn.begin() as open_:
            # A second referral of the same cell (sender, recipient, kind, step, dimension, week), queued by
            # the trigger and not committed.
            opened = await conn.scalar(
                text(
                    """insert into referral
                       select gen_random_uuid(), sender_organisation, recipient_organisation, service_id, kind,
                              'requested', null, null, child_pseudonym, dimensions, trappan_step, data_categories,
                              permitted_categories, legal_basis, basis_reference, decision_id,
                              'slot-open', request_hash, payload, payload_key_id, payload_purged_at, now(), now()
                       from referral where id = :id returning id"""
                ),
                {"id": first},
            )
            await asyncio.wait_for(_send(county, 1, "slot-beside"), timeout=30)
            await _answers(county)  # each read folds what is committed
            async with county.runtime.engine.connect() as other:
                entered = "select count(*) from flow_referral where referral_id = :id"
                assert await other.scalar(text(entered), {"id": opened}) == 0
                assert await other.scalar(text("select count(*) from flow_pending")) == 0, "invisible to it"
            await open_.commit()
    async with county.runtime.engine.connect() as conn:
        assert await conn.scalar(text("select count(*) from flow_pending")) == 1
        assert await workload.rollups(conn) == await workload.from_scratch(conn)  # folds first


# Each base cell of this week split over slots 0 and 2, as overlapping trigger writers left them before
# migration 0030 (and as the rows already spread stay): +1 referral, child and cell key 5 in slot 2, the rest
# in slot 0, which may then hold a negative value.
_SPREAD = [
    """insert into flow_rollup (measure, dimension, week, cell, municipality, sender_municipality, sender_type,
           recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key, hist, slot)
       select measure, dimension, week, cell, municipality, sender_municipality, sender_type,
              recipient_municipality, recipient_type, kind, trappan_step, 1, 1, 5, null, 2
       from flow_rollup where slot = 0 and week >= current_date - 7""",
    """update flow_rollup set value = value - 1, children = children - 1,
              cell_key = (cell_key + 4294967291) % 4294967296
       where slot = 0 and week >= current_date - 7""",
    """insert into flow_rollup_month (measure, dimension, month, municipality, sender_type, recipient_type, kind,
           trappan_step, value, children, cell_key, hist, slot)
       select measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step, 1, 1, 5,
              null, 2
       from flow_rollup_month where slot = 0 and month >= current_date - 40""",
    """update flow_rollup_month set value = value - 1, children = children - 1,
              cell_key = (cell_key + 4294967291) % 4294967296
       where slot = 0 and month >= current_date - 40""",
]


async def test_the_answers_over_many_slots_are_the_answers_of_one_row_per_cell(county: Flows) -> None:
    """Referrals sent at once from several connections, received and accepted, then their base cells spread
    over two slots (a cell's rows then hold +1 in one slot and less, perhaps below zero, in another): the
    base cells, every answer, its hidden cells and its adjustments are those of the rebuilt rollups, one
    row per cell; the compaction and the rebuilds give them back."""
    ids = await asyncio.gather(*(_send(county, n % 8, f"slots-{n}") for n in range(24)))
    async with httpx.AsyncClient() as http:
        worker = worker_for(county.runtime, http, delivery_backoff_base_seconds=0.001)
        await worker.run_until_idle()
        while messages := await mailbox(county.client, county.auth, workload.BUP):  # a page at a time
            for message in messages:
                await ack(county.client, county.auth, workload.BUP, message["id"])
        moves = [event(county.client, county.auth, workload.BUP, rid, status="accepted") for rid in ids[::2]]
        assert all(r.status_code == 201 for r in await asyncio.gather(*moves))
    await _answers(county)  # folds
    async with county.runtime.engine.begin() as conn:
        for statement in _SPREAD:
            await conn.execute(text(statement))
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
        await holder.execute(text("select from flow_rollup where slot = 2 and measure = 'sent' for update"))
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
