"""``hub synth``: the counts it promises, the same history for the same seed, bulk equal to the use
cases, and the coordinators' endpoints answering over it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import httpx
from sqlalchemy import text

from hub.devtools.synth import synth
from hub.devtools.synth_plan import Planner, child_pin
from hub.domain.identity import parse_personal_identity_number
from hub.runtime import Runtime
from tests.synth.test_rebuild_bulk import snapshot

UNTIL = datetime(2026, 3, 2, 12, tzinfo=UTC)
HISTORY = "select kind, sender_organisation, recipient_organisation, status, child_pseudonym, created_at from referral"


async def _history(runtime: Runtime) -> list[tuple[Any, ...]]:
    async with runtime.engine.connect() as conn:
        return sorted(tuple(r) for r in (await conn.execute(text(HISTORY))).all())


async def _empty(runtime: Runtime) -> None:
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "truncate referral, referral_event, consent, outbox, flow_referral, flow_rollup, flow_rollup_month, "
                "flow_child, flow_suggestion, flow_pending, audit_event, audit_chain_head, sharing_decision cascade"
            )
        )


def test_the_plan_is_deterministic_and_follows_the_lifecycle() -> None:
    first = list(Planner(seed=3, weeks=52, until=UNTIL).referrals(2000))
    again = list(Planner(seed=3, weeks=52, until=UNTIL).referrals(2000))
    other = list(Planner(seed=4, weeks=52, until=UNTIL).referrals(2000))
    assert first == again and first != other
    assert len(first) == 2000
    assert [r.created_at for r in first] == sorted(r.created_at for r in first)
    municipalities = [r.sender.split("-")[0] for r in first if not r.sender.startswith(("polis", "region"))]
    assert max(set(municipalities), key=municipalities.count) == "orebro"
    assert len(set(municipalities)) == 12
    statuses = {r.status for r in first}
    assert {"completed", "rejected", "accepted", "in-progress", "received", "failed", "cancelled"} <= statuses
    assert len({r.child for r in first}) < len(first), "some children have several referrals"
    steps = [r.trappan_step for r in first]
    assert steps.count(1) + steps.count(2) > 0.7 * len(steps)
    allowed = {("requested", "received"), ("requested", "failed"), ("requested", "cancelled"),
               ("received", "accepted"), ("received", "rejected"), ("received", "cancelled"),
               ("accepted", "in-progress"), ("in-progress", "on-hold"), ("on-hold", "in-progress"),
               ("in-progress", "completed"), ("received", "received")}  # fmt: skip
    for r in first:
        assert r.events[0].from_status is None and r.events[0].to_status == "requested"
        assert all((e.from_status, e.to_status) in allowed for e in r.events[1:])
        assert all(a.at < b.at for a, b in zip(r.events, r.events[1:], strict=False))
        assert all(e.at < UNTIL for e in r.events)


def test_children_have_valid_personal_identity_numbers() -> None:
    born = [
        parse_personal_identity_number(child_pin(n), today=date(2026, 3, 1)).birth_date for n in range(0, 700_000, 997)
    ]
    assert min(born) >= date(2008, 1, 1) and max(born) <= date(2024, 12, 31)
    assert len({child_pin(n) for n in range(20_000)}) == 20_000


async def test_bulk_writes_the_counts_and_the_same_rollups_as_the_use_cases(
    db: Runtime, owner_runtime: Runtime
) -> None:
    bulk = await synth(owner_runtime, referrals=120, seed=11, weeks=20, until=UNTIL)
    assert bulk.referrals == 120 and bulk.events > 2 * 120 and 0 < bulk.children <= 120
    async with db.engine.connect() as conn:
        counts = [
            await conn.scalar(text(f"select count(*) from {t}")) for t in ("referral", "referral_event", "consent")
        ]
        purged = await conn.scalar(
            text("select count(*) from referral where payload is null and payload_purged_at is not null")
        )
        kept = await conn.scalar(text("select count(*) from referral where payload is not null"))
        bulk_rollups = (await snapshot(conn))["flow_rollup"]
    assert counts == [120, bulk.events, bulk.children]
    assert purged > 0 and kept > 0 and purged + kept == 120, "old payloads purged, recent ones encrypted"
    bulk_history = await _history(db)

    await _empty(owner_runtime)
    api = await synth(db, referrals=120, seed=11, weeks=20, until=UNTIL, through_api=True)
    assert (api.referrals, api.events) == (bulk.referrals, bulk.events)
    assert await _history(db) == bulk_history, "the same seed writes the same history either way"
    async with db.engine.connect() as conn:
        assert (await snapshot(conn))["flow_rollup"] == bulk_rollups
        queued = await conn.scalar(text("select count(*) from outbox where state in ('queued', 'retrying')"))
    assert queued == 0, "synthetic history is never delivered"


async def test_the_flow_endpoints_answer_over_synthetic_history(
    client: httpx.AsyncClient, db: Runtime, owner_runtime: Runtime, auth: Callable[..., dict[str, str]]
) -> None:
    await synth(owner_runtime, referrals=400, seed=5, weeks=26, until=UNTIL)
    year = {"from": "2025-09-01", "to": "2026-03-01"}
    headers = auth("region-samordning", "coordinator")
    matrix = await client.get("/v1/flows/matrix", params={"level": "type", **year}, headers=headers)
    assert matrix.status_code == 200, matrix.text
    rows = matrix.json()["rows"]
    total = next(r for r in rows if r["key"] == {"sender_type": "*", "recipient_type": "*"})
    assert 300 <= total["values"]["sent"] <= 500  # published with cell-key noise around 400
    lead = await client.get("/v1/flows/lead-times", params={"by": "recipient_type", **year}, headers=headers)
    assert lead.status_code == 200, lead.text
    bup = next(r for r in lead.json()["rows"] if r["key"] == {"recipient_type": "bup"})
    assert bup["values"]["accepted_median_days"] > 7, "BUP's wait is weeks, not days"


def test_hub_synth_refuses_outside_dev_mode() -> None:
    """Fictional history must never reach a production database: the command stops before connecting."""
    from typer.testing import CliRunner

    from hub.cli import app

    result = CliRunner().invoke(
        app,
        ["synth", "--referrals", "10"],
        env={"HUB_DEV_MODE": "false", "HUB_DATABASE_URL": "postgresql+asyncpg://nowhere.invalid/x"},
    )
    assert result.exit_code == 2
    assert "only in dev mode" in result.output
