"""The set-based rebuild (migration 0006) writes the flow tables exactly as the triggers do; the monthly
lead-time rollup (0007) is the weekly one summed, and answers as it would."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import flows as flows_db
from hub.devtools.synth import synth
from hub.runtime import Runtime

UNTIL = datetime(2026, 3, 2, 12, tzinfo=UTC)
# Every column of every flow table, in a stable order (arrays as they are: their order is part of it).
SNAPSHOTS = {
    "flow_referral": "select * from flow_referral order by referral_id",
    "flow_rollup": "select * from flow_rollup order by measure, dimension, week, cell, slot",
    "flow_rollup_month": """select * from flow_rollup_month
                            order by measure, dimension, month, municipality, sender_type, recipient_type, kind,
                                     trappan_step, slot""",
    "flow_child": "select * from flow_child order by child_key",
    "flow_suggestion": "select * from flow_suggestion order by referral_id",
    "flow_state": "select inner_pad, outer_pad from flow_state",
}


async def snapshot(conn: AsyncConnection) -> dict[str, list[tuple[Any, ...]]]:
    """The tables' rows; a rollup's base cells, each its slots' rows summed (migration 0025: the triggers
    spread a cell over slots when transactions overlap, the rebuild writes one), with its histogram as
    bucket -> count (the triggers append its elements in the order events happened to arrive, the rebuild
    by bucket: the same histogram). What is queued is folded first (migration 0030), in ``conn``'s transaction."""
    await conn.execute(text("select flow_fold(100000000)"))
    tables = {name: [tuple(r) for r in (await conn.execute(text(sql))).all()] for name, sql in SNAPSHOTS.items()}
    for name in ("flow_rollup", "flow_rollup_month"):
        tables[name] = _cells(tables[name])
    return tables


def _cells(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows ending in value, children, cell key, histogram and slot, summed per the columns before them."""
    cells: dict[tuple[Any, ...], list[Any]] = {}
    for *key, value, children, cell_key, hist, _slot in rows:
        cell = cells.setdefault(tuple(key), [0, 0, 0, None])
        cell[0] += value
        cell[1] += children
        cell[2] = (cell[2] + cell_key) % flows_db.MODULUS
        if hist is not None:
            cell[3] = cell[3] or Counter()
            for e in hist:
                cell[3][e >> 32] += e & 0xFFFFFFFF
    return [(*key, v, c, k, dict(h) if h is not None else None) for key, (v, c, k, h) in cells.items()]


async def test_the_bulk_rebuild_equals_what_the_triggers_wrote(db: Runtime) -> None:
    await synth(db, referrals=160, seed=7, weeks=26, through_api=True, until=UNTIL)
    async with db.engine.begin() as conn:
        by_triggers = await snapshot(conn)
        await conn.execute(text("select flow_rebuild_bulk()"))
        rebuilt = await snapshot(conn)
    for name in SNAPSHOTS:
        assert rebuilt[name] == by_triggers[name], name
    rollup = by_triggers["flow_rollup"]
    measures = {row[0] for row in rollup}
    # The history exercises every kind of row: redirections, reasons, lead times, statuses left at zero.
    assert {"sent", "suggested", "redirected", "lead:completed", "status:on-hold"} <= measures
    assert any(m.startswith("rejected:") for m in measures)
    assert any(row[11] == 0 for row in rollup), "statuses left behind keep their row at zero"
    assert any(row[12] < row[11] for row in rollup), "a child counted once in a row with two of its referrals"
    assert max(referrals for _, referrals in by_triggers["flow_child"]) > 1, "a child with several referrals"


def _by_month(weekly: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[int, int, int, dict[int, int]]]:
    """flow_rollup's lead rows summed as flow_rollup_month keeps them: per month of the week's Thursday,
    without the sender's and recipient's municipality."""
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for measure, dimension, week, _cell, m, _sm, st, _rm, rt, kind, step, value, children, key, hist in weekly:
        if not measure.startswith("lead:"):
            continue
        month = (week + timedelta(days=3)).replace(day=1)
        total = sums.setdefault((measure, dimension, month, m, st, rt, kind, step), [0, 0, 0, Counter()])
        total[0] += value
        total[1] += children
        total[2] = (total[2] + key) % flows_db.MODULUS
        total[3].update(hist or {})
    return {k: (v, c, key, dict(h) or None) for k, (v, c, key, h) in sums.items()}  # type: ignore[misc]


async def test_the_monthly_rollup_is_the_weekly_one_summed_and_answers_the_same(db: Runtime) -> None:
    runtime = db
    await synth(runtime, referrals=160, seed=11, weeks=26, through_api=True, until=UNTIL)
    async with runtime.engine.begin() as conn:  # the fold committed, for the reads below
        tables = await snapshot(conn)
    monthly = {tuple(r[:8]): tuple(r[8:]) for r in tables["flow_rollup_month"]}
    assert monthly == _by_month(tables["flow_rollup"])
    assert len({k[2] for k in monthly}) >= 6, "the history spans months"

    # Whole months from flow_rollup_month and the weeks at either end from flow_rollup: the totals of a
    # grouping by month equal those of a grouping by week (read from flow_rollup alone).
    scope = flows_db.Scope(week_from=date(2025, 10, 13), week_to=date(2026, 2, 16))  # mid-October to mid-February
    assert flows_db.whole_months(scope) == (date(2025, 11, 1), date(2026, 1, 1))
    async with runtime.sessions() as session:
        for measure in ("lead:received", "lead:accepted", "lead:completed"):
            by_month = await flows_db.cube(
                session, scope, groups=("recipient_type", "month"), measures=[measure], histogram=True
            )
            by_week = await flows_db.cube(
                session, scope, groups=("recipient_type", "week"), measures=[measure], histogram=True
            )
            # The same sums (a monthly row's adjustment is its own: only statistics' thresholds use it).
            totals = {key: (a.value, a.children, a.histogram) for key, a in by_week.items() if key[1] == flows_db.ALL}
            assert totals, measure
            monthly = {key: (a.value, a.children, a.histogram) for key, a in by_month.items() if key[1] == flows_db.ALL}
            assert monthly == totals, measure
            months = {key[1] for key in by_month} - {flows_db.ALL}
            assert {"2025-11", "2026-01"} <= months, measure
