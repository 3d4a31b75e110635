"""Migration 0016 moves the entries of the per-organisation hash chains into the audit log: they become
its first leaves, in id order, their old chains still verify, and new entries follow them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import NullPool, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from hub.config import Settings
from hub.db import audit as audit_db
from hub.db import audit_tree
from hub.db.migrate import alembic_config
from hub.domain.audit import AuditAction, AuditOutcome, AuditRecord, genesis_hash, next_hash
from hub.domain.merkle import Frontier, leaf_hash
from hub.services.audit_sealer import seal_all
from hub.services.audit_verify import verify_log

PARTITIONS = ("nora-elevhalsa", "orebro-grundskola", "region-bup")


def _record(org: str, n: int) -> AuditRecord:
    return AuditRecord(
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=n),
        action=AuditAction.SHARING_DECISION,
        outcome=AuditOutcome.REFUSED if n % 3 else AuditOutcome.SUCCESS,
        actor_subject="system",
        actor_organisation=org,
        actor_roles=("system",),
        request_id=f"req-{n}",
    )


async def test_chained_entries_become_the_logs_first_leaves(pg_url: str, settings: Settings) -> None:
    name = f"hub_audit_migration_{uuid.uuid4().hex[:8]}"
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    admin = create_async_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"create database {name}"))
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        config = alembic_config(url, settings.migrations_dir)
        await asyncio.to_thread(command.upgrade, config, "0009")
        heads = {p: (0, genesis_hash(p)) for p in PARTITIONS}
        async with engine.begin() as conn:  # the chains as 0002's statements wrote them
            for n in range(13):
                record = _record(PARTITIONS[n % 3], n)
                seq, previous = heads[record.partition]
                heads[record.partition] = (seq + 1, next_hash(previous, record.canonical()))
                await conn.execute(
                    text(
                        "insert into audit_event (partition, seq, hash, canonical, occurred_at, action, outcome,"
                        " actor_organisation, request_id) values (:p, :s, :h, :c, :at, :a, :o, :p, :r)"
                    ),
                    {
                        "p": record.partition,
                        "s": seq + 1,
                        "h": heads[record.partition][1],
                        "c": record.canonical(),
                        "at": record.occurred_at,
                        "a": record.action.value,
                        "o": record.outcome.value,
                        "r": record.request_id,
                    },
                )
            for partition, (seq, hashed) in heads.items():
                await conn.execute(
                    text("insert into audit_chain_head values (:p, :s, :h)"), {"p": partition, "s": seq, "h": hashed}
                )
            old = (await conn.execute(text("select id, canonical from audit_event order by id"))).all()

        await asyncio.to_thread(command.upgrade, config, "head")

        expected = Frontier()
        for entry_id, canonical in old:
            expected.append(leaf_hash(entry_id, canonical))
        async with engine.connect() as conn:
            assert await audit_tree.sealed_size(conn) == 13
            assert await audit_tree.tree_root(conn, 13) == expected.root()
        report = await verify_log(engine)
        assert report.intact and (report.sealed, report.chain_entries) == (13, 13), report.problems

        # A new entry joins the log after them; the checkpoint covers old and new alike.
        async with engine.begin() as conn:
            await conn.execute(
                text("with " + audit_db.APPEND_CTES + audit_db.APPEND_INSERT),
                audit_db.append_params(_record("region-bup", 99)),
            )
        result = await seal_all(engine, settings, checkpoint=True)
        assert result.checkpoint is not None and result.checkpoint.head.size == 14
        report = await verify_log(engine, external=result.checkpoint)
        assert report.intact and (report.sealed, report.chain_entries) == (14, 13), report.problems

        async with engine.begin() as conn:  # an old chain's newest entry removed: the chain check still finds it
            await conn.execute(text("set local session_replication_role = replica"))
            await conn.execute(text("delete from audit_event where partition = 'region-bup' and seq = 4"))
        report = await verify_log(engine)
        assert any("chain 'region-bup'" in p for p in report.problems), report.problems
    finally:
        await engine.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f"drop database if exists {name} with (force)"))
        await admin.dispose()
