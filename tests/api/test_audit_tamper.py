"""Tamper evidence: change the audit log behind the hub's back, as the tables' owner, and `hub audit verify`
finds it — against a checkpoint file kept outside the database even when every hash in the database was
recomputed to match."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from hub.config import Settings
from hub.domain.merkle import Frontier, leaf_hash
from hub.main import create_app
from hub.runtime import Runtime
from hub.services.audit_sealer import seal_all
from tests.api.test_lawful_sharing_http import ask, record_consent

HUB = Path(sys.executable).with_name("hub")


@pytest.fixture
async def client(db: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own (so sharing-limit counters of its own) with limits above what these tests ask:
    they ask about one child many times in a few seconds."""
    tuned = dataclasses.replace(db, settings=db.settings.model_copy(update={"sharing_limit_per_child": 10_000}))
    app = create_app(runtime=tuned)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            yield c


async def hub(settings: Settings, *args: str, dev_mode: bool = True) -> tuple[int, str]:
    """The real command line, as an operator runs it, as the hub's runtime role (it needs only to read,
    and to insert for a checkpoint)."""
    assert settings.database_url is not None
    env = {
        **os.environ,
        "HUB_DATABASE_URL": settings.database_url.get_secret_value(),
        "HUB_DATA_DIR": str(settings.data_dir),
        "HUB_DEV_MODE": str(dev_mode).lower(),  # the dev audit signing key in the data directory, as the hub uses
    }
    proc = await asyncio.create_subprocess_exec(
        str(HUB), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def behind_the_hubs_back(runtime: Runtime, *statements: str) -> None:
    # The append-only triggers refuse updates; the owner can switch triggers off — exactly the attack the
    # tree and the checkpoints exist to reveal.
    async with runtime.engine.begin() as conn:
        await conn.execute(text("set local session_replication_role = replica"))
        for statement in statements:
            await conn.execute(text(statement))


async def rebuild_log(owner: Runtime, order: list[int] | None = None) -> None:
    """What an attacker with the owner's rights does to hide a change: throw away the leaves, nodes and
    checkpoints and recompute them from the entries as they are now, in ``order`` (default: by id)."""
    async with owner.engine.begin() as conn:
        await conn.execute(text("set local session_replication_role = replica"))
        rows = await conn.execute(text("select id, canonical from audit_event"))
        content = {int(r[0]): str(r[1]) for r in rows}
        for table in ("audit_leaf", "audit_node", "audit_checkpoint", "audit_pending"):
            await conn.execute(text(f"delete from {table}"))
        tree = Frontier()
        for entry_id in sorted(content) if order is None else order:
            leaf = leaf_hash(entry_id, content[entry_id])
            await conn.execute(
                text("insert into audit_leaf values (:s, :e, :h)"), {"s": tree.size, "e": entry_id, "h": leaf}
            )
            for (level, index), h in tree.append(leaf):
                await conn.execute(text("insert into audit_node values (:l, :i, :h)"), {"l": level, "i": index, "h": h})


@pytest.fixture
async def audited(client, auth, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    from hub.devtools.demo import load_demo

    async with runtime.sessions() as session:
        await load_demo(session)
    await record_consent(client, auth)
    for _ in range(3):
        await ask(client, auth)
    await ask(client, auth, org="orebro-grundskola")
    await seal_all(runtime.engine, runtime.settings, checkpoint=True)


async def ids_in_log_order(runtime: Runtime) -> list[int]:
    async with runtime.engine.connect() as conn:
        return list((await conn.execute(text("select entry_id from audit_leaf order by seq"))).scalars())


UPDATES = {"audit_event": "outcome = outcome", "audit_leaf": "seq = seq", "audit_node": "hash = hash"}


@pytest.mark.parametrize("table", ["audit_event", "audit_leaf", "audit_node", "audit_checkpoint"])
async def test_triggers_refuse_updates_and_deletes(audited, owner_runtime: Runtime, table: str) -> None:
    """Even the tables' owner (the hub's own role may not try: tests/api/test_database_roles.py)."""
    for statement in (f"update {table} set {UPDATES.get(table, 'size = size')}", f"delete from {table}"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with owner_runtime.engine.begin() as conn:
                await conn.execute(text(statement))


UNQUEUED = (
    "insert into audit_event (partition, canonical, occurred_at, action, outcome, actor_organisation) values"
    ' (\'x\', \'{"occurred_at":"2026-01-01T00:00:00+00:00","action":"audit-read","outcome":"0",'
    "\"actor_organisation\":\"x\"}', '2026-01-01T00:00:00+00:00', 'audit-read', '0', 'x')"
)


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        (
            "update audit_event set canonical = canonical || ' ' where id = (select max(id) from audit_event)",
            "sealed leaf hash",
        ),
        ("update audit_event set outcome = '8' where id = (select max(id) from audit_event)", "column outcome"),
        ("delete from audit_event where id = (select min(id) + 1 from audit_event)", "is gone"),
        ("delete from audit_leaf where seq = 1", "position 1 of the log is missing"),
        ("delete from audit_node where level = 2 and index = 0", "node (2, 0) (level, index) of the stored"),
        # Nodes off the tree head's right edge: only the proofs made of them would fail.
        (
            "delete from audit_node where level = 1 and index = 1",
            "node (1, 1) (level, index) of the stored Merkle tree is missing",
        ),
        (
            "update audit_node set hash = sha256(hash) where level = 1 and index = 0",
            "node (1, 0) (level, index) of the stored Merkle tree does not match the entries it covers",
        ),
        (UNQUEUED, "neither sealed nor queued"),
    ],
    ids=[
        "content-rewritten",
        "indexed-column-edited",
        "entry-deleted",
        "position-deleted",
        "node-deleted",
        "interior-node-deleted",
        "interior-node-rewritten",
        "unqueued",
    ],
)
async def test_hub_audit_verify_finds_the_edited_row(
    audited, owner_runtime: Runtime, settings: Settings, statement: str, problem: str
) -> None:
    code, out = await hub(settings, "audit", "verify")
    assert code == 0 and "intact: 5 entries (5 sealed" in out, out

    await behind_the_hubs_back(owner_runtime, statement)

    code, out = await hub(settings, "audit", "verify")
    assert code == 1, out
    assert "BROKEN" in out and problem in out


async def _truncate(owner: Runtime) -> str:
    order = await ids_in_log_order(owner)
    await behind_the_hubs_back(owner, f"delete from audit_event where id in ({order[-2]}, {order[-1]})")
    await rebuild_log(owner, order[:-2])
    return "holds 3 sealed entries but the checkpoint of 5 entries"


async def _rehash(owner: Runtime) -> str:
    # A refused share turned into an allowed one, content and indexed column alike, every hash recomputed.
    await behind_the_hubs_back(
        owner,
        'update audit_event set outcome = \'0\', canonical = replace(canonical, \'"outcome":"4"\', \'"outcome":"0"\')'
        " where outcome = '4'",
    )
    await rebuild_log(owner)
    return "first 5 entries do not hash to the root of the checkpoint of 5 entries"


async def _reorder(owner: Runtime) -> str:
    order = await ids_in_log_order(owner)
    order[2], order[3] = order[3], order[2]
    await rebuild_log(owner, order)
    return "first 5 entries do not hash to the root of the checkpoint of 5 entries"


@pytest.mark.parametrize("attack", [_truncate, _rehash, _reorder], ids=["truncated", "rehashed", "reordered"])
async def test_a_checkpoint_kept_elsewhere_reveals_a_recomputed_log(
    audited, owner_runtime: Runtime, settings: Settings, tmp_path: Path, attack
) -> None:  # type: ignore[no-untyped-def]
    kept = tmp_path / "checkpoint.json"
    code, out = await hub(settings, "audit", "checkpoint", "--output", str(kept))
    assert code == 0, out
    assert json.loads(kept.read_text())["size"] == 5
    code, out = await hub(settings, "audit", "verify", "--checkpoint", str(kept))
    assert code == 0 and "intact" in out, out

    problem = await attack(owner_runtime)

    code, out = await hub(settings, "audit", "verify")
    assert code == 0, "the database alone is consistent again: " + out
    code, out = await hub(settings, "audit", "verify", "--checkpoint", str(kept))
    assert code == 1, out
    assert problem in out, out


async def test_a_forged_checkpoint_file_is_refused(audited, settings: Settings, tmp_path: Path) -> None:
    kept = tmp_path / "checkpoint.json"
    assert (await hub(settings, "audit", "checkpoint", "--output", str(kept)))[0] == 0
    checkpoint = json.loads(kept.read_text())
    checkpoint["body"] = checkpoint["body"].replace("\n5\n", "\n3\n")
    kept.write_text(json.dumps(checkpoint))
    code, out = await hub(settings, "audit", "verify", "--checkpoint", str(kept))
    assert code == 1 and "does not carry a valid signature" in out, out
    code, out = await hub(settings, "audit", "verify", "--checkpoint", str(kept), "--key-id", "0" * 16)
    assert code == 1 and "not " + "0" * 16 in out, out


DOC = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
VERIFIER = DOC.split("```python\n", 1)[1].split("```", 1)[0]
EXPORT = (
    "select l.seq, l.entry_id, e.canonical from audit_leaf l join audit_event e on e.id = l.entry_id order by l.seq"
)


async def documented_verifier(settings: Settings, directory: Path) -> tuple[int, str]:
    """docs/audit.md's export and its Python verifier, run as an external auditor would."""
    assert settings.database_url is not None
    dsn = settings.database_url.get_secret_value().replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_from_query(EXPORT, output=str(directory / "log.csv"), format="csv")
    finally:
        await conn.close()
    (directory / "verify_log.py").write_text(VERIFIER)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "verify_log.py",
        "checkpoint.json",
        "log.csv",
        cwd=directory,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


@pytest.mark.parametrize("attack", [_truncate, _rehash, _reorder], ids=["truncated", "rehashed", "reordered"])
async def test_the_documented_verifier_needs_no_hub_code(
    audited, runtime: Runtime, owner_runtime: Runtime, settings: Settings, tmp_path: Path, attack
) -> None:  # type: ignore[no-untyped-def]
    checkpoint = (await seal_all(runtime.engine, runtime.settings, checkpoint=True)).checkpoint
    assert checkpoint is not None
    (tmp_path / "checkpoint.json").write_text(json.dumps(checkpoint.to_json()))
    code, out = await documented_verifier(settings, tmp_path)
    assert code == 0 and out.strip() == "intact", out

    await attack(owner_runtime)
    code, out = await documented_verifier(settings, tmp_path)
    assert code == 1 and ("BROKEN" in out or "entries were removed" in out), out


async def test_a_checkpoint_without_a_signing_key_is_one_line_to_the_operator(
    audited, settings: Settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    kept = tmp_path / "checkpoint.json"
    code, out = await hub(settings, "audit", "checkpoint", "--output", str(kept), dev_mode=False)
    assert code == 2, out
    assert (
        out.strip()
        == "cannot sign a checkpoint: Set HUB_AUDIT_SIGNING_KEY (dev mode makes a key; production must not)."
    )
    assert not kept.exists()


async def test_every_stored_node_is_compared_whatever_the_walk_s_chunks(
    audited, owner_runtime: Runtime, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nodes are compared a stretch of leaves at a time: with stretches of two leaves, a node completed
    in the second stretch and one in the last, partial stretch are found as in one stretch."""
    from hub.services import audit_verify

    monkeypatch.setattr(audit_verify, "NODES_PER_CHECK", 2)
    report = await audit_verify.verify_log(runtime.engine)
    assert report.intact and report.sealed == 5, report.problems

    await behind_the_hubs_back(owner_runtime, "update audit_node set hash = sha256(hash) where level = 1 and index = 1")
    report = await audit_verify.verify_log(runtime.engine)
    assert report.problems == [
        "node (1, 1) (level, index) of the stored Merkle tree does not match the entries it covers"
    ]
