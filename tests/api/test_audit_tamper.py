"""Tamper evidence: edit one audit row behind the hub's back and `hub audit verify` finds it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from hub.runtime import Runtime
from tests.api.test_lawful_sharing_http import ask, record_consent

HUB = Path(sys.executable).with_name("hub")


async def hub_audit_verify(pg_url: str, data_dir: Path) -> tuple[int, str]:
    """The real command line, as an operator runs it, against the test database."""
    env = {**os.environ, "HUB_DATABASE_URL": pg_url, "HUB_DATA_DIR": str(data_dir)}
    proc = await asyncio.create_subprocess_exec(
        str(HUB), "audit", "verify", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def behind_the_hubs_back(runtime: Runtime, statement: str) -> None:
    # The append-only trigger refuses updates; a superuser can switch triggers off — exactly the attack
    # the hash chain exists to reveal.
    async with runtime.engine.begin() as conn:
        await conn.execute(text("set local session_replication_role = replica"))
        await conn.execute(text(statement))


@pytest.fixture
async def audited(client, auth, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    from hub.devtools.demo import load_demo

    async with runtime.sessions() as session:
        await load_demo(session)
    await record_consent(client, auth)
    for _ in range(3):
        await ask(client, auth)
    await ask(client, auth, org="orebro-grundskola")


async def test_the_trigger_refuses_updates_and_deletes(audited, owner_runtime: Runtime) -> None:
    """Even the tables' owner (the hub's own role may not try: tests/api/test_database_roles.py)."""
    from sqlalchemy.exc import DBAPIError

    for statement in ("update audit_event set outcome = '0'", "delete from audit_event"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with owner_runtime.engine.begin() as conn:
                await conn.execute(text(statement))


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        (
            'update audit_event set canonical = replace(canonical, \'"outcome":"4"\', \'"outcome":"0"\')'
            " where partition = 'orebro-grundskola' and seq = 1",
            "hash",
        ),
        ("update audit_event set outcome = '0' where partition = 'orebro-grundskola' and seq = 1", "outcome"),
        ("delete from audit_event where partition = 'nora-elevhalsa' and seq = 2", ""),
    ],
    ids=["content-rewritten", "indexed-column-edited", "entry-deleted"],
)
async def test_hub_audit_verify_finds_the_edited_row(
    audited, owner_runtime: Runtime, pg_url: str, data_dir: Path, statement: str, problem: str
) -> None:
    code, out = await hub_audit_verify(pg_url, data_dir)
    assert code == 0, out
    assert "intact" in out

    await behind_the_hubs_back(owner_runtime, statement)

    code, out = await hub_audit_verify(pg_url, data_dir)
    assert code == 1, out
    assert "BROKEN" in out and problem in out
    partition = "orebro-grundskola" if "orebro" in statement else "nora-elevhalsa"
    assert f"chain '{partition}'" in out
