"""The sealer: entries appended at once by many requests of one organisation are all sealed, each exactly
once, in one order; a sealer process killed mid-batch loses nothing; one sealer at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import text

from hub.config import Settings
from hub.db import audit_tree
from hub.keys import audit_signer
from hub.main import create_app
from hub.runtime import Runtime
from hub.services.audit_sealer import running_sealer, seal_all, seal_round
from hub.services.audit_verify import verify_log
from tests.api.test_lawful_sharing_http import ask, record_consent

Auth = Callable[..., dict[str, str]]


@pytest.fixture
async def demo(db: Runtime) -> None:
    from hub.devtools.demo import load_demo

    async with db.sessions() as session:
        await load_demo(session)


@pytest.fixture
async def client(demo: None, runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """Its own runtime object, so its own sharing-limit counters, with limits above what these tests ask."""
    tuned = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"sharing_limit_per_child": 10_000})
    )
    app = create_app(runtime=tuned)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            yield c


async def log_state(runtime: Runtime) -> tuple[int, list[int], list[int], int]:
    """Entries; the log's positions; the entry ids at them; entries still queued."""
    async with runtime.engine.connect() as conn:
        entries = int(await conn.scalar(text("select count(*) from audit_event")) or 0)
        rows = (await conn.execute(text("select seq, entry_id from audit_leaf order by seq"))).all()
        queued = int(await conn.scalar(text("select count(*) from audit_pending")) or 0)
    return entries, [int(r[0]) for r in rows], [int(r[1]) for r in rows], queued


async def test_concurrent_appends_of_one_organisation_are_sealed_exactly_once(
    client: httpx.AsyncClient, auth: Auth, demo: None, runtime: Runtime
) -> None:
    await record_consent(client, auth)
    # The sealer runs while the requests do, sealing whatever has committed each round.
    eager = runtime.settings.model_copy(
        update={"audit_sealer": True, "audit_seal_interval_seconds": 0.01, "audit_seal_batch_size": 7}
    )
    async with running_sealer(runtime.engine, eager):
        await asyncio.gather(*(ask(client, auth) for _ in range(60)))
    await seal_all(runtime.engine, runtime.settings, checkpoint=True)

    entries, positions, ids, queued = await log_state(runtime)
    assert entries == 61 and queued == 0
    assert positions == list(range(entries))  # one order, no gaps
    assert len(set(ids)) == entries  # each entry once
    report = await verify_log(runtime.engine)
    assert report.intact and report.sealed == entries, report.problems


SEALER_DIES = """
import asyncio, sys
from sqlalchemy.ext.asyncio import create_async_engine
from hub.db import audit_tree

async def main():
    engine = create_async_engine(sys.argv[1])
    async with engine.connect() as conn:
        await conn.begin()
        assert await audit_tree.try_lock(conn)
        sealed = await audit_tree.seal_batch(conn, limit=1000)
        print("sealed", sealed.entries, flush=True)
        await asyncio.sleep(3600)  # killed here, before the commit

asyncio.run(main())
"""


async def test_a_sealer_killed_mid_batch_loses_nothing(
    client: httpx.AsyncClient, auth: Auth, demo: None, runtime: Runtime, settings: Settings
) -> None:
    await record_consent(client, auth)
    for _ in range(5):
        await ask(client, auth)
    assert settings.database_url is not None
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SEALER_DIES,
        settings.database_url.get_secret_value().replace("postgresql://", "postgresql+asyncpg://", 1),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.decode().split() == ["sealed", "6"]

    # While it holds the lock, no other sealer seals.
    skipped = await seal_round(runtime.engine, audit_signer(runtime.settings), runtime.settings)
    assert not skipped.locked
    proc.send_signal(signal.SIGKILL)
    await proc.wait()

    entries, positions, _, queued = await log_state(runtime)
    assert (entries, positions, queued) == (6, [], 6)  # its batch rolled back with it
    await seal_all(runtime.engine, runtime.settings)  # waits for PostgreSQL to notice the death
    entries, positions, ids, queued = await log_state(runtime)
    assert positions == list(range(6)) and len(set(ids)) == 6 and queued == 0


async def test_a_batch_is_the_queues_lowest_ids_in_order_and_a_sealed_entry_is_not_sealed_again(
    db: Runtime,
) -> None:
    """The claim (``hub.db.audit_tree._CLAIM``) takes the ``limit`` lowest queued ids whatever order they
    were queued in, seals them in id order, leaves the rest queued, and dequeues an entry that is queued
    again after it was sealed without giving it a second leaf. Its plan is made on an empty queue first (as
    the sealer mostly leaves it), then run on a long one."""
    from datetime import UTC, datetime

    from hub.db import audit as audit_db
    from hub.db import audit_tree
    from hub.domain.audit import AuditAction, AuditOutcome, AuditRecord

    async with db.engine.begin() as conn:
        assert (await audit_tree.seal_batch(conn, limit=5)).entries == 0
    async with db.sessions() as session:
        ids = []
        for n in range(12):
            record = AuditRecord(
                occurred_at=datetime(2026, 12, 6, 10, n, tzinfo=UTC),
                action=AuditAction.SHARING_DECISION,
                outcome=AuditOutcome.SUCCESS,
                actor_subject="system",
                actor_organisation="nora-elevhalsa",
                actor_roles=("system",),
                request_id=f"req-{n}",
            )
            ids.append(await audit_db.append(session, record))
        await session.commit()
    async with db.engine.begin() as conn:
        # Queued in another order than the ids' (concurrent appends commit in any order).
        await conn.execute(text("delete from audit_pending"))
        for entry_id in reversed(ids):
            await conn.execute(text("insert into audit_pending (entry_id) values (:id)"), {"id": entry_id})
        sealed = await audit_tree.seal_batch(conn, limit=5)
    assert (sealed.entries, sealed.size) == (5, 5)
    entries, positions, sealed_ids, queued = await log_state(db)
    assert (entries, positions, sealed_ids, queued) == (12, list(range(5)), ids[:5], 7)

    async with db.engine.begin() as conn:  # the first, sealed, queued again: dequeued, not sealed twice
        await conn.execute(text("insert into audit_pending (entry_id) values (:id)"), {"id": ids[0]})
        again = await audit_tree.seal_batch(conn, limit=3)
    assert (again.entries, again.size) == (2, 7)  # ids[0] (dequeued), ids[5], ids[6]
    await seal_all(db.engine, db.settings)
    entries, positions, sealed_ids, queued = await log_state(db)
    assert (positions, sealed_ids, queued) == (list(range(12)), ids, 0)
    report = await verify_log(db.engine)
    assert report.intact and report.sealed == 12, report.problems


async def _sealed_tree(runtime: Runtime, *, limit: int, chunk: int, keep: bool) -> tuple[int, list[tuple], bytes]:
    """Seal in one transaction with ``chunk``-entry statements: entries sealed, the leaves and nodes
    stored, the root; rolled back unless ``keep``."""
    async with runtime.engine.connect() as conn:
        await conn.begin()
        assert await audit_tree.try_lock(conn)
        sealed = await audit_tree.seal_batch(conn, limit=limit, chunk=chunk)
        leaves = (await conn.execute(text("select seq, entry_id, leaf_hash from audit_leaf order by seq"))).all()
        nodes = (await conn.execute(text("select level, index, hash from audit_node order by level, index"))).all()
        root = await audit_tree.tree_root(conn, sealed.size)
        await (conn.commit() if keep else conn.rollback())
    return sealed.entries, [tuple(r) for r in leaves] + [tuple(n) for n in nodes], root


async def test_sealing_in_chunks_builds_the_same_tree_as_one_statement(
    client: httpx.AsyncClient, auth: Auth, demo: None, runtime: Runtime
) -> None:
    await record_consent(client, auth)
    for _ in range(9):
        await ask(client, auth)
    # Part of the log sealed already, so that the chunks continue a tree that has a right edge.
    assert (await _sealed_tree(runtime, limit=3, chunk=2, keep=True))[0] == 3
    whole = await _sealed_tree(runtime, limit=100, chunk=100, keep=False)
    chunked = await _sealed_tree(runtime, limit=100, chunk=2, keep=False)
    assert whole[0] == chunked[0] == 7
    assert chunked == whole  # the same leaves at the same positions, the same nodes, the same root

    # A batch stops at its limit, whatever the chunk; the next one continues where it stopped.
    assert (await _sealed_tree(runtime, limit=5, chunk=2, keep=True))[0] == 5
    assert (await _sealed_tree(runtime, limit=5, chunk=2, keep=True))[0] == 2
    _, stored, root = await _sealed_tree(runtime, limit=5, chunk=2, keep=False)
    assert stored == whole[1] and root == whole[2]
    signed = await seal_all(runtime.engine, runtime.settings, checkpoint=True)
    assert signed.checkpoint is not None and signed.checkpoint.head.root == whole[2]
    report = await verify_log(runtime.engine)
    assert report.intact and report.sealed == 10, report.problems
