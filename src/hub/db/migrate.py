"""Apply and inspect alembic migrations from code (``hub db upgrade``, start-up, tests, /readyz).

Migrations run as the tables' owner. After them, the owner writes the domain's status classes (the flows'
status rules, ``hub.db.referrals.status_classes``) and grants the runtime role (the role of
``HUB_DATABASE_URL``) what the hub needs and nothing more (:func:`grant_runtime_role`), every time, so a
table a later migration adds is covered too. The runtime role may read and write the hub's tables but
never change the audit trail: on ``audit_event`` and the log's tables (``audit_leaf``, ``audit_node``,
``audit_checkpoint``, and the pre-0016 ``audit_chain_head``) it may only insert and select; on the
sealer's queue ``audit_pending`` also delete (sealing takes entries off it). It owns nothing, so it can
neither alter, drop nor truncate the audit tables, and it may not create objects in the schema.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import NullPool, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from hub.db.referrals.status_classes import write_status_classes
from hub.domain.referrals import StatusClass

log = logging.getLogger("hub.db")

# Per table: the privileges the runtime role must not hold (it is granted all others of GRANTABLE).
APPEND_ONLY = {
    "audit_event": ("update", "delete", "truncate"),
    "audit_chain_head": ("update", "delete", "truncate"),
    "audit_leaf": ("update", "delete", "truncate"),
    "audit_node": ("update", "delete", "truncate"),
    "audit_checkpoint": ("update", "delete", "truncate"),
    "audit_pending": ("update", "truncate"),
    "alembic_version": ("insert", "update", "delete", "truncate"),
}
GRANTABLE = ("select", "insert", "update", "delete", "truncate")


def alembic_config(url: str, migrations_dir: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.attributes["url"] = url
    return cfg


def head_revision(migrations_dir: Path) -> str | None:
    return ScriptDirectory.from_config(alembic_config("", migrations_dir)).get_current_head()


def upgrade(
    url: str,
    migrations_dir: Path,
    *,
    runtime_url: str | None = None,
    status_classes: Sequence[StatusClass] | None = None,
) -> None:
    """Upgrade to head as the owner (``url``), then grant ``runtime_url``'s role its privileges and write
    the domain's ``status_classes`` (``Lifecycle.classes``: the flows' status rules). Runs in its own event
    loop: call it from sync code or a worker thread."""
    command.upgrade(alembic_config(url, migrations_dir), "head")
    if runtime_url is not None:
        asyncio.run(grant_runtime_role(url, runtime_url))
    if status_classes is not None:
        asyncio.run(_write_status_classes(url, status_classes))


async def upgrade_async(
    url: str,
    migrations_dir: Path,
    *,
    runtime_url: str | None = None,
    status_classes: Sequence[StatusClass] | None = None,
) -> None:
    await asyncio.to_thread(upgrade, url, migrations_dir, runtime_url=runtime_url, status_classes=status_classes)


async def _write_status_classes(owner_url: str, classes: Sequence[StatusClass]) -> None:
    engine = create_async_engine(owner_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("select pg_advisory_xact_lock(7274201)"))  # the lock migrations take
            await write_status_classes(conn, classes)
    finally:
        await engine.dispose()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _one(url: str, sql: str) -> tuple[object, ...]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return tuple((await conn.execute(text(sql))).one())
    finally:
        await engine.dispose()


async def grant_runtime_role(owner_url: str, runtime_url: str) -> None:
    """As the owner, grant the runtime role what the hub needs (see the module). Warns, and grants
    nothing, when the runtime connects as the owner itself; warns when it is a superuser."""
    role, superuser = await _one(runtime_url, "select rolname, rolsuper from pg_roles where rolname = current_user")
    engine = create_async_engine(owner_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            # Replicas starting together: concurrent GRANTs on one table fail ("tuple concurrently updated").
            await conn.execute(text("select pg_advisory_xact_lock(7274201)"))  # the lock migrations take
            owner = await conn.scalar(text("select current_user"))
            if role == owner:
                log.warning(
                    "the hub runs as the tables' owner, which could alter the audit trail: set "
                    "HUB_MIGRATIONS_DATABASE_URL to the owner and HUB_DATABASE_URL to a role of its own"
                )
                return
            await _grant(conn, str(role))
            can_create = await conn.scalar(text("select has_schema_privilege(:r, 'public', 'CREATE')"), {"r": role})
    finally:
        await engine.dispose()
    if superuser:
        log.warning("the hub's runtime role is a superuser: grants do not bind it; give it a role of its own")
    elif can_create:
        log.warning("the hub's runtime role may create objects in schema public: REVOKE CREATE ON SCHEMA public")


async def _grant(conn: AsyncConnection, role: str) -> None:
    who = _ident(role)
    maintain = int(str(await conn.scalar(text("show server_version_num")))) >= 170000  # PostgreSQL 17+
    privileges = (*GRANTABLE, "maintain") if maintain else GRANTABLE
    await conn.execute(text(f"grant usage on schema public to {who}"))
    await conn.execute(text(f"revoke create on schema public from {who}"))
    await conn.execute(text(f"grant {', '.join(privileges)} on all tables in schema public to {who}"))
    await conn.execute(text(f"grant usage, select on all sequences in schema public to {who}"))
    await conn.execute(text(f"grant execute on all functions in schema public to {who}"))
    tables = set((await conn.execute(text("select tablename from pg_tables where schemaname = 'public'"))).scalars())
    for table, denied in APPEND_ONLY.items():
        if table in tables:
            revoked = (*denied, "maintain") if maintain else denied
            await conn.execute(text(f"revoke {', '.join(revoked)} on {table} from {who}"))


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        exists = await conn.scalar(text("select to_regclass('alembic_version') is not null"))
        if not exists:
            return None
        version = await conn.scalar(text("select version_num from alembic_version"))
        return None if version is None else str(version)
