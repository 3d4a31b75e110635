"""The rollups the triggers keep equal a computation from scratch over the raw referral tables."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, timedelta

import pytest
from sqlalchemy import text

from hub.db import flows as db
from hub.domain.disclosure import ADJUSTMENTS, DRAWS, adjustment, record_key
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
    ("groups", "measure"),
    [
        (("recipient_type", "month"), "sent"),
        (("municipality",), "lead:received"),
        (("sender_type", "kind"), "status:rejected"),
        (("kind",), "status:requested"),
    ],
)
async def test_a_cube_sums_its_base_cells_values_children_and_adjustments(county: Flows, groups, measure) -> None:  # type: ignore[no-untyped-def]
    """Every key and total is the sum over its base cells (rollup rows; requested referrals per cell) of
    their value, distinct children and adjustment, the adjustments computed here independently."""
    scope = db.Scope(week_from=date(2000, 1, 3), week_to=date(2100, 1, 4))
    async with county.runtime.sessions() as session:
        found = await db.cube(session, scope, groups=groups, measures=[measure])
    async with county.runtime.engine.connect() as conn:
        cells = [c for c in await workload.base_cells(conn) if c.measure == measure and c.dimension == "*"]
    month = {c.week: (date.fromisoformat(c.week) + timedelta(days=3)).isoformat()[:7] for c in cells}
    expected: dict[tuple[str, ...], list[int]] = {}
    for c in cells:
        values = [month[c.week] if g == "month" else getattr(c, g) for g in groups]
        for rolled in range(2 ** len(groups)):
            key = tuple(db.ALL if rolled & (1 << (len(groups) - 1 - i)) else v for i, v in enumerate(values))
            total = expected.setdefault(key, [0, 0, 0])
            total[0] += c.value
            total[1] += c.children
            total[2] += c.adjustment
    assert found, "the workload has referrals in this measure"
    assert {key: [a.value, a.children, a.noise] for key, a in found.items()} == expected


async def test_the_adjustments_follow_the_published_tables(county: Flows) -> None:
    """Over many cell keys the database's adjustment of a base cell draws each row of ADJUSTMENTS with its
    published probabilities, and is the disclosure module's adjustment of the same draw."""
    n = 20_000
    async with county.runtime.engine.connect() as conn:
        found = (
            await conn.execute(
                text(
                    f"""select c, (hashint8extended(k, c) & 2147483647) % 100,
                               {db.adjustment_sql("k", "c")}
                        from generate_series(1, :n) as k, (values (1), (2), (3), (7)) as children(c)"""
                ),
                {"n": n},
            )
        ).all()
    assert all(adjustment(c, draw) == adjusted for c, draw, adjusted in found)
    for children in (1, 2, 3, 7):
        drawn = Counter(adjusted for c, _, adjusted in found if c == children)
        table = Counter(ADJUSTMENTS[min(children, 3)])
        for value, share in table.items():
            assert abs(drawn[value] / n - share / DRAWS) < 0.015, (children, value)
        assert set(drawn) == set(table)
