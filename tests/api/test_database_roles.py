"""The hub's runtime connects as a role that cannot alter the audit trail: an attacker who gets SQL
through the hub (or its credentials) can add entries, as the hub does, but not rewrite, delete, truncate,
unprotect or drop them. The migrations run as the tables' owner. The whole test suite runs the hub as
that runtime role (tests/conftest.py), which shows the hub works normally with it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from hub.config import Settings
from hub.db.embedded import RUNTIME_ROLE, runtime_role_url
from hub.db.engine import database_url, migrations_database_url
from hub.main import create_app
from hub.runtime import Runtime, open_runtime
from tests.api.test_lawful_sharing_http import ask, record_consent

Auth = Callable[..., dict[str, str]]
HUB = Path(sys.executable).with_name("hub")
NO_OP = "returns trigger language plpgsql as $$ begin return new; end $$"

ATTACKS = [
    ("update audit_event set outcome = '0'", "permission denied for table audit_event"),
    ("delete from audit_event", "permission denied for table audit_event"),
    ("truncate audit_event", "permission denied for table audit_event"),
    ("delete from audit_chain_head", "permission denied for table audit_chain_head"),
    ("update audit_chain_head set seq = 0", "permission denied for table audit_chain_head"),
    ("update audit_leaf set seq = seq + 1", "permission denied for table audit_leaf"),
    ("delete from audit_leaf", "permission denied for table audit_leaf"),
    ("truncate audit_leaf", "permission denied for table audit_leaf"),
    ("update audit_node set hash = hash", "permission denied for table audit_node"),
    ("delete from audit_node", "permission denied for table audit_node"),
    ("update audit_checkpoint set size = 0", "permission denied for table audit_checkpoint"),
    ("delete from audit_checkpoint", "permission denied for table audit_checkpoint"),
    ("truncate audit_checkpoint", "permission denied for table audit_checkpoint"),
    ("truncate audit_pending", "permission denied for table audit_pending"),
    ("alter table audit_leaf disable trigger audit_leaf_no_update", "must be owner of table audit_leaf"),
    ("truncate audit_chain_head", "permission denied for table audit_chain_head"),
    ("alter table audit_event disable trigger audit_event_no_update", "must be owner of table audit_event"),
    ("drop trigger audit_event_no_update on audit_event", "must be owner of"),
    ("alter table audit_event drop column hash", "must be owner of table audit_event"),
    ("drop table audit_event", "must be owner of table audit_event"),
    ("drop table audit_chain_head", "must be owner of table audit_chain_head"),
    (f"create or replace function audit_event_append_only() {NO_OP}", "permission denied for schema public"),
    ("create table audit_copy (like audit_event)", "permission denied for schema public"),
    ("set session_replication_role = replica", "permission denied to set parameter"),
    ("update alembic_version set version_num = 'x'", "permission denied for table alembic_version"),
]


@pytest.fixture
async def audited(client: httpx.AsyncClient, auth: Auth, runtime: Runtime) -> int:
    """A few audited decisions, through the API as the runtime role; how many audit entries there are."""
    from hub.devtools.demo import load_demo
    from hub.services.audit_sealer import seal_all

    async with runtime.sessions() as session:
        await load_demo(session)
    await record_consent(client, auth)
    await ask(client, auth)
    await ask(client, auth, org="orebro-grundskola")
    # Sealed and checkpointed by the runtime role, as `hub serve` does: rows in every audit table.
    await seal_all(runtime.engine, runtime.settings, checkpoint=True)
    await ask(client, auth)  # and one queued
    async with runtime.engine.connect() as conn:
        return int(await conn.scalar(text("select count(*) from audit_event")) or 0)


async def test_the_hub_runs_as_an_ordinary_role(runtime: Runtime) -> None:
    async with runtime.engine.connect() as conn:
        role, superuser = (
            await conn.execute(text("select rolname, rolsuper from pg_roles where rolname = current_user"))
        ).one()
    assert (role, superuser) == (RUNTIME_ROLE, False)


@pytest.mark.parametrize(("statement", "refusal"), ATTACKS, ids=[a[0][:48] for a in ATTACKS])
async def test_the_runtime_role_cannot_alter_the_audit_trail(
    audited: int, runtime: Runtime, statement: str, refusal: str
) -> None:
    with pytest.raises(DBAPIError, match=refusal):
        async with runtime.engine.begin() as conn:
            await conn.execute(text(statement))
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(text("select count(*) from audit_event")) == audited


async def test_the_audit_trail_stays_verifiable_by_the_runtime_role(audited: int, settings: Settings) -> None:
    """``hub audit verify`` needs only to read: it runs as the runtime role, as operators will run it."""
    assert settings.database_url is not None
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url.get_secret_value()}
    proc = await asyncio.create_subprocess_exec(
        str(HUB), "audit", "verify", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and f"intact: {audited} entries" in out.decode(), out


async def test_flow_queries_read_a_replica_as_the_runtime_role(
    audited: int, settings: Settings, pg_url: str, auth: Auth
) -> None:
    """HUB_FLOWS_DATABASE_URL as the runtime role (a replica carries the primary's grants)."""
    replica = settings.model_copy(update={"flows_database_url": SecretStr(runtime_role_url(pg_url))})
    async with open_runtime(replica) as runtime:
        app = create_app(runtime=runtime)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
                r = await client.get("/v1/flows/matrix", headers=auth("region-samordning", "coordinator"))
    assert r.status_code == 200, r.text


def test_embedded_mode_migrates_as_the_owner_and_runs_as_the_runtime_role(data_dir: Path) -> None:
    embedded = Settings(data_dir=data_dir)  # no HUB_DATABASE_URL: the test run's embedded server
    assert make_url(database_url(embedded)).username == RUNTIME_ROLE
    assert make_url(migrations_database_url(embedded)).username == "postgres"
