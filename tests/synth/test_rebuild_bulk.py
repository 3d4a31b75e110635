"""The set-based rebuild (migration 0006) writes the five flow tables exactly as the triggers do."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.runtime import Runtime
from hub.services.synth import synth

UNTIL = datetime(2026, 3, 2, 12, tzinfo=UTC)
# Every column of every flow table, in a stable order (arrays as they are: their order is part of it).
SNAPSHOTS = {
    "flow_referral": "select * from flow_referral order by referral_id",
    "flow_rollup": "select * from flow_rollup order by measure, dimension, week, cell",
    "flow_child": "select * from flow_child order by child_key",
    "flow_suggestion": "select * from flow_suggestion order by referral_id",
    "flow_state": "select inner_pad, outer_pad, max_child_referrals from flow_state",
}


async def snapshot(conn: AsyncConnection) -> dict[str, list[tuple[Any, ...]]]:
    """The tables' rows; a rollup's histogram as bucket -> count (the triggers append its elements in the
    order events happened to arrive, the rebuild by bucket: the same histogram)."""
    tables = {name: [tuple(r) for r in (await conn.execute(text(sql))).all()] for name, sql in SNAPSHOTS.items()}
    tables["flow_rollup"] = [
        (*r[:-1], {e >> 32: e & 0xFFFFFFFF for e in r[-1]} if r[-1] else r[-1]) for r in tables["flow_rollup"]
    ]
    return tables


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
    assert by_triggers["flow_state"][0][2] > 1
