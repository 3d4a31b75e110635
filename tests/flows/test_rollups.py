"""The rollups the triggers keep equal a computation from scratch over the raw referral tables."""

from __future__ import annotations

import math
from datetime import date

import pytest
from sqlalchemy import text

from hub.db import flows as db
from hub.domain.disclosure import record_key
from hub.services.flows import bucket_bounds
from tests.flows import workload
from tests.flows.conftest import Flows


async def test_the_rollups_equal_a_computation_from_scratch(county: Flows) -> None:
    async with county.runtime.engine.connect() as conn:
        stored = await workload.rollups(conn)
        expected = await workload.from_scratch(conn)
    assert stored == expected
    measures = {k[0] for k in stored}
    assert {
        "sent",
        "status:completed",
        "lead:completed",
        "rejected:wrong-recipient",
        "suggested",
        "redirected",
    } <= measures
    assert stored[next(k for k in stored if k[0] == "redirected" and k[1] == "*")][0] == 1, "c4 went where suggested"


async def test_a_rebuild_from_the_raw_events_gives_the_same_rollups(county: Flows) -> None:
    async with county.runtime.engine.begin() as conn:
        before = await workload.rollups(conn)
        await conn.execute(text("select flow_rebuild()"))
        assert await workload.rollups(conn) == before


async def test_record_keys_are_the_disclosure_modules(county: Flows) -> None:
    async with county.runtime.engine.connect() as conn:
        secret = await workload.secret(conn)
        rows = (
            await conn.execute(
                text(
                    """select r.child_pseudonym, f.child_key from referral r
                       join flow_referral f on f.referral_id = r.id"""
                )
            )
        ).all()
    assert rows and all(record_key(secret, pseudonym) == key for pseudonym, key in rows)


async def test_the_histogram_buckets_are_the_ones_the_service_reads(county: Flows) -> None:
    seconds = [0, 1, 59.9, 60, 61, 3600, 86_400, 86_400 * 30.5, 86_400 * 365 * 3, 1e12]
    async with county.runtime.engine.connect() as conn:
        buckets = [await conn.scalar(text("select flow_bucket(:s)"), {"s": s}) for s in seconds]
    assert buckets == [workload.bucket(s) for s in seconds]
    for s, b in zip(seconds, buckets, strict=True):
        low, high = bucket_bounds(b)
        assert low <= s < high or (math.isinf(high) and s >= low)


@pytest.mark.parametrize("status", ["accepted", "in-progress"])
async def test_status_rows_follow_the_referrals(county: Flows, status: str) -> None:
    async with county.runtime.engine.connect() as conn:
        stored = await conn.scalar(
            text("select coalesce(sum(value), 0) from flow_rollup where measure = :m and dimension = '*'"),
            {"m": f"status:{status}"},
        )
        actual = await conn.scalar(text("select count(*) from referral where status = :s"), {"s": status})
    assert stored == actual > 0


@pytest.mark.parametrize(
    ("groups", "measure", "columns"),
    [
        (("recipient_type", "month"), "sent", ("recipient_type", "to_char(week + 3, 'YYYY-MM')")),
        (("municipality",), "lead:received", ("municipality",)),
        (("sender_type", "kind"), "status:rejected", ("sender_type", "kind")),
    ],
)
async def test_children_under_the_cap_are_counted_exactly(county: Flows, groups, measure, columns) -> None:  # type: ignore[no-untyped-def]
    """With a cap above every count, every key is counted from the referrals of its cells: the same
    distinct children as a count over all referrals, for every key and total."""
    scope = db.Scope(week_from=date(2000, 1, 3), week_to=date(2100, 1, 4))
    async with county.runtime.sessions() as session:
        found = await db.cube(session, scope, groups=groups, measures=[measure], cap=10_000)
        used = ", ".join(columns)
        keys = ", ".join(f"({c})" for c in columns)
        sets = [f"({used})", *([f"({c})" for c in columns] if len(columns) == 2 else []), "()"]
        truth = await session.execute(
            text(
                f"""select grouping({keys}), {used}, count(distinct child_key) from flow_referral f
                    where flow_in(f, :measure) group by grouping sets ({", ".join(sets)})"""
            ),
            {"measure": measure},
        )
        expected = {}
        for bits, *values, children in truth:
            key = tuple(db.ALL if bits & (1 << (len(columns) - 1 - i)) else str(v) for i, v in enumerate(values))
            expected[key] = children
    assert found, "the workload has referrals in this measure"
    assert {key: agg.children for key, agg in found.items()} == expected
