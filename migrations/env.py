"""Alembic environment: async, URL from the hub's settings (or the caller's config attribute)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config


def _url() -> str:
    url = config.attributes.get("url")
    if url:
        return str(url)
    from hub.config import Settings
    from hub.db.engine import migrations_database_url

    return migrations_database_url(Settings())  # the tables' owner migrates, never the runtime role


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    # Replicas starting together must not migrate at the same time.
    connection.exec_driver_sql("select pg_advisory_lock(7274201)")
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_main())
