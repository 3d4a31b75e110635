"""The flows' fold (migration 0030): the triggers queue, ``flow_fold`` applies the queue in batches (set-based
for most referrals), and every figure is what the triggers wrote row by row, what the rebuilds make and what
a computation from scratch gives; readers count every committed referral; two folders fold each row once; a
row the fold cannot apply stays queued and the readers still answer."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import flow_fold
from hub.runtime import Runtime
from hub.services.flow_folder import fold_all, running_folder
from tests.flows import workload
from tests.flows.conftest import Flows
from tests.synth.test_rebuild_bulk import snapshot

# 0027's trigger functions: each referral and event written to the flow tables in its own transaction.
PER_ROW = [
    """create or replace function flow_on_referral() returns trigger language plpgsql as $$
       begin perform flow_enter(new, new.status); return null; end $$""",
    """create or replace function flow_on_referral_event() returns trigger language plpgsql as $$
       begin perform flow_event(new); return null; end $$""",
]
NEXT = {  # the lifecycle's moves (hub.domain.referrals), as the hub makes them
    "requested": ["received", "received", "received", "cancelled", "failed"],
    "received": ["accepted", "accepted", "rejected", "rejected", "cancelled"],
    "accepted": ["in-progress", "cancelled", "entered-in-error"],
    "in-progress": ["completed", "on-hold"],
    "on-hold": ["in-progress", "cancelled"],
}
SENDERS = [workload.ELEVHALSA, workload.GRUNDSKOLA]
RECIPIENTS = [workload.BUP, workload.FORSTA_LINJEN, workload.SOCIALTJANST]
DIMENSIONS = ["healthy", "safe", "achieving", "included"]


@dataclass
class Sent:
    id: uuid.UUID
    child: str
    recipient: str
    status: str
    events: int = 1


@dataclass
class Story:
    """A deterministic sequence of referrals and status events, with folds of random sizes between them."""

    seed: int
    template: uuid.UUID
    kinds: list[str]
    sent: list[Sent] = field(default_factory=list)
    steps: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


_REFERRAL = """
insert into referral
select :id, :sender, :recipient, service_id, :kind, :status, null, null, :child, cast(:dims as text[]), :step,
       data_categories, permitted_categories, legal_basis, basis_reference, decision_id, :key, request_hash, payload,
       payload_key_id, payload_purged_at, :at, :at
from referral where id = :template"""
_EVENT = """
insert into referral_event (id, referral_id, seq, type, from_status, to_status, by_organisation, by_subject,
                            reason_code, suggested_organisation, suggested_service, details, details_key_id,
                            idempotency_key, occurred_at)
values (:id, :referral, :seq, :type, :from_status, :to_status, null, null, :reason, :suggested, null, null, null,
        null, :at)"""


def story(seed: int, template: uuid.UUID, kinds: list[str]) -> Story:
    """Several referrals per child, in one cell and in others, with none, one or several dimensions, some
    not in their initial status when sent; deliveries, acceptances, cancellations, rejections with and
    without a suggestion, then referrals to the suggested organisation; folds of 1 to 8 rows in between."""
    rng = random.Random(seed)
    s = Story(seed, template, kinds)
    at = datetime(2026, 11, 2, 8, tzinfo=UTC) + timedelta(days=rng.randrange(14))
    children = [f"fold-{seed}-{n}" for n in range(6)]
    for n in range(60):
        at += timedelta(minutes=rng.randrange(1, 400))
        movable = [x for x in s.sent if x.status in NEXT]
        if movable and rng.random() < 0.5:
            s.steps.append(("event", _move(rng, rng.choice(movable), at)))
        else:
            s.steps.append(("referral", _referral(rng, s, children, n, at)))
        if rng.random() < 0.3:
            s.steps.append(("fold", {"n": rng.randrange(1, 9)}))
    return s


def _referral(rng: random.Random, s: Story, children: list[str], n: int, at: datetime) -> dict[str, Any]:
    suggested = [e for e in s.steps if e[0] == "event" and e[1]["suggested"]]
    recipient = rng.choice(RECIPIENTS)
    if suggested and rng.random() < 0.4:  # to the organisation a rejection suggested, for the same child
        recipient = suggested[-1][1]["suggested"]
        child = suggested[-1][1]["child"]
    else:
        child = rng.choice(children)
    status = "received" if rng.random() < 0.1 else "requested"
    sent = Sent(uuid.UUID(int=rng.getrandbits(128)), child, recipient, status)
    s.sent.append(sent)
    return {
        "id": sent.id,
        "sender": rng.choice(SENDERS),
        "recipient": recipient,
        "kind": s.kinds[int(rng.random() * len(s.kinds))],  # one draw whatever the kinds
        "status": status,
        "child": child,
        "dims": rng.sample(DIMENSIONS, rng.choice([0, 1, 1, 2, 3])),
        "step": rng.choice([None, 1, 2]),
        "key": f"fold-{s.seed}-{n}",
        "template": s.template,
        "at": at,
    }


def _move(rng: random.Random, x: Sent, at: datetime) -> dict[str, Any]:
    to = rng.choice(NEXT[x.status])
    others = [r for r in RECIPIENTS if r != x.recipient]
    suggested = rng.choice(others) if to == "rejected" and rng.random() < 0.6 else None
    x.events += 1
    move = {
        "id": uuid.UUID(int=rng.getrandbits(128)),
        "referral": x.id,
        "seq": x.events,
        "type": "status",
        "from_status": x.status,
        "to_status": to,
        "reason": rng.choice(["no-capacity", "wrong-recipient"]) if to == "rejected" else None,
        "suggested": suggested,
        "at": at,
        "child": x.child,  # the story's, not a column
    }
    x.status = to
    return move


async def _play(conn: AsyncConnection, s: Story, *, fold: bool) -> None:
    for kind, params in s.steps:
        if kind == "referral":  # with its first event, as the hub writes it (no status moved: not queued)
            await conn.execute(text(_REFERRAL), params)
            first = {"id": uuid.uuid5(params["id"], "first"), "referral": params["id"], "seq": 1, "type": "status"}
            first |= {"from_status": None, "to_status": params["status"], "reason": None, "suggested": None}
            await conn.execute(text(_EVENT), first | {"at": params["at"]})
        elif kind == "event":
            await conn.execute(text(_EVENT), {k: v for k, v in params.items() if k != "child"})
            moved = {"s": params["to_status"], "id": params["referral"]}
            await conn.execute(text("update referral set status = :s where id = :id"), moved)
        elif fold:
            await conn.execute(text("select flow_fold(:n)"), params)
    if fold:
        await conn.execute(text("select flow_fold(1000000)"))


async def _by_triggers(conn: AsyncConnection, s: Story) -> dict[str, list[tuple[Any, ...]]]:
    """The flow tables after ``s`` written by 0027's per-row triggers (in a savepoint, rolled back)."""
    per_row = await conn.begin_nested()
    for statement in PER_ROW:
        await conn.execute(text(statement))
    await _play(conn, s, fold=False)
    written = await snapshot(conn)
    await per_row.rollback()
    return written


async def _template(conn: AsyncConnection) -> tuple[uuid.UUID, list[str]]:
    template = await conn.scalar(text("select id from referral order by created_at limit 1"))
    kinds = list((await conn.execute(text("select distinct kind from referral order by kind"))).scalars())
    return template, kinds


@pytest.mark.parametrize("seed", [1, 2, 3, 5])
async def test_folding_gives_what_the_triggers_wrote_and_the_rebuilds_make(
    county: Flows, owner_runtime: Runtime, seed: int
) -> None:
    """The same story written by 0027's per-row triggers and by queue and folds (in one transaction, rolled
    back): the same flow rows, rollups and month rollups; equal to a computation from scratch; and the
    rebuilds make them again and leave the queue empty."""
    async with owner_runtime.engine.connect() as conn:
        outer = await conn.begin()
        await conn.execute(text("select flow_fold(1000000)"))
        s = story(seed, *await _template(conn))
        assert sum(1 for k, e in s.steps if k == "event" and e["suggested"]), "a rejection suggests"
        by_triggers = await _by_triggers(conn, s)

        await _play(conn, s, fold=True)
        assert await conn.scalar(text("select count(*) from flow_pending")) == 0
        folded = await snapshot(conn)
        assert folded == by_triggers
        assert any(r[15] for r in folded["flow_referral"]), "a referral redirected"
        assert await workload.rollups(conn) == await workload.from_scratch(conn)
        for rebuild in ("flow_rebuild", "flow_rebuild_bulk"):
            await conn.execute(text(f"select {rebuild}()"))
            assert await snapshot(conn) == folded, rebuild
        await outer.rollback()


async def test_the_fast_path_counts_a_child_once_per_row(county: Flows, owner_runtime: Runtime) -> None:
    """A child's referrals in one cell, one folded before and three in one batch (dimensions shared, new and
    none) beside another child's: the set-based path enters them all, and counts each child once per rollup
    row, as the per-row triggers did."""
    async with owner_runtime.engine.connect() as conn:
        outer = await conn.begin()
        await conn.execute(text("select flow_fold(1000000)"))
        s = Story(0, *await _template(conn))
        at = datetime(2026, 11, 3, 9, tzinfo=UTC)
        for n, (child, dims) in enumerate([("x", ["safe"]), ("x", ["safe", "healthy"]), ("x", []), ("y", ["safe"])]):
            one = {"id": uuid.UUID(int=n + 1), "sender": workload.ELEVHALSA, "recipient": workload.BUP}
            one |= {"kind": s.kinds[0], "status": "requested", "child": f"fast-{child}", "dims": dims, "step": 2}
            s.steps.append(("referral", one | {"key": f"fast-{n}", "template": s.template, "at": at + timedelta(n)}))
        by_triggers = await _by_triggers(conn, s)

        first, rest = Story(0, s.template, s.kinds, steps=s.steps[:1]), Story(0, s.template, s.kinds, steps=s.steps[1:])
        await _play(conn, first, fold=True)
        await _play(conn, rest, fold=False)
        batch = list((await conn.execute(text("select seq from flow_pending order by seq"))).scalars())
        entered = await conn.scalar(text("select flow_fold_new(cast(:b as bigint[]))"), {"b": batch})
        assert sorted(entered) == batch, "every referral set-based"
        await conn.execute(text("delete from flow_pending"))
        folded = await snapshot(conn)
        assert folded == by_triggers
        children = await conn.scalar(
            text(
                """select sum(children) from flow_rollup
                   where measure = 'sent' and dimension = 'safe' and cell = (
                       select cell from flow_referral where referral_id = cast(:id as uuid))"""
            ),
            {"id": uuid.UUID(int=1)},
        )
        assert children == 2  # x and y, whatever x's three referrals there hold
        await outer.rollback()


async def _queued(runtime: Runtime) -> int:
    async with runtime.engine.connect() as conn:
        return await flow_fold.pending(conn)


async def _entered(runtime: Runtime, referral_id: str) -> bool:
    async with runtime.engine.connect() as conn:
        found = await conn.scalar(
            text("select count(*) from flow_referral where referral_id = :id"), {"id": referral_id}
        )
    return found == 1


@pytest.mark.parametrize("how", ["rest", "graphql"])
async def test_a_referral_answered_202_is_in_the_next_flows_read(county: Flows, how: str) -> None:
    """No folder runs here (the test app has none): the read itself folds what the 202 left queued."""
    body = workload._remiss(3, step=2, dimensions=["healthy"])
    sent = await workload._send(county.client, county.auth, workload.ELEVHALSA, body, f"read-your-writes-{how}")
    assert await _queued(county.runtime) >= 1 and not await _entered(county.runtime, sent)
    if how == "rest":
        r = await county.client.get("/v1/flows/counts", params={"by": "kind"}, headers=county.coordinator())
        assert r.status_code == 200, r.text
    else:
        query = '{ flowCounts(by: ["kind"]) { __typename } }'
        r = await county.client.post("/graphql", json={"query": query}, headers=county.coordinator())
        assert r.status_code == 200 and "errors" not in r.json(), r.text
    assert await _queued(county.runtime) == 0 and await _entered(county.runtime, sent)
    async with county.runtime.engine.connect() as conn:
        assert await workload.rollups(conn) == await workload.from_scratch(conn)


async def test_the_folder_folds_in_the_background(county: Flows) -> None:
    body = workload._remiss(2, step=2, dimensions=["included"])
    sent = await workload._send(county.client, county.auth, workload.ELEVHALSA, body, "background-fold")
    queued = await _queued(county.runtime)
    assert queued >= 1
    assert f"hub_flow_pending {float(queued)}" in (await county.client.get("/metrics")).text  # operators see it
    on = county.runtime.settings.model_copy(update={"flow_folder": True, "flow_fold_interval_seconds": 0.01})
    async with running_folder(county.runtime.engine, on):
        for _ in range(3000):
            if await _queued(county.runtime) == 0:
                break
            await asyncio.sleep(0.01)
    assert await _queued(county.runtime) == 0 and await _entered(county.runtime, sent)
    assert "hub_flow_pending 0.0" in (await county.client.get("/metrics")).text


async def test_two_folders_at_once_fold_each_row_once(county: Flows) -> None:
    for n in range(12):
        body = workload._remiss(n % 5, step=1, dimensions=["safe"])
        await workload._send(county.client, county.auth, workload.ELEVHALSA, body, f"two-folders-{n}")
    queued = await _queued(county.runtime)
    assert queued >= 12
    done = await asyncio.gather(*(fold_all(county.runtime.engine, batch=2) for _ in range(3)))
    assert sum(done) == queued and await _queued(county.runtime) == 0
    async with county.runtime.engine.connect() as conn:
        assert await workload.rollups(conn) == await workload.from_scratch(conn)


async def test_a_row_the_fold_cannot_apply_stays_queued_and_the_readers_answer(
    county: Flows, owner_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """A referral in a status the rollups refuse (a constraint added here): every fold fails on it and rolls
    back, the row and every row after it stay queued, the folder logs the failure (its class, no content),
    and the coordinators' reads answer from what was folded. Once the cause is gone the next fold counts it."""
    async with owner_runtime.engine.begin() as conn:
        await conn.execute(text("alter table flow_rollup add constraint poison check (measure <> 'status:poison')"))
        template, _ = await _template(conn)
        poisoned = await conn.scalar(
            text(
                """insert into referral
                   select gen_random_uuid(), sender_organisation, recipient_organisation, service_id, kind,
                          'poison', null, null, child_pseudonym, dimensions, trappan_step, data_categories,
                          permitted_categories, legal_basis, basis_reference, decision_id, 'poisoned', request_hash,
                          payload, payload_key_id, payload_purged_at, now(), now()
                   from referral where id = :id returning id"""
            ),
            {"id": template},
        )
    try:
        body = workload._remiss(4, step=2, dimensions=["safe"])
        after = await workload._send(county.client, county.auth, workload.ELEVHALSA, body, "after-the-poison")
        with caplog.at_level(logging.ERROR, logger="hub.flows"):
            r = await county.client.get("/v1/flows/counts", params={"by": "kind"}, headers=county.coordinator())
        assert r.status_code == 200, r.text
        assert any("flow fold" in m for m in caplog.messages)
        assert "poison" not in caplog.text
        assert await _queued(county.runtime) >= 2 and not await _entered(county.runtime, after)
    finally:
        async with owner_runtime.engine.begin() as conn:
            await conn.execute(text("alter table flow_rollup drop constraint poison"))
    await fold_all(county.runtime.engine, batch=100)
    assert await _entered(county.runtime, str(poisoned)) and await _entered(county.runtime, after)
