"""Apply and inspect alembic migrations from code (``hub db upgrade``, start-up, tests, /readyz)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config(url: str, migrations_dir: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.attributes["url"] = url
    return cfg


def head_revision(migrations_dir: Path) -> str | None:
    return ScriptDirectory.from_config(alembic_config("", migrations_dir)).get_current_head()


def upgrade(url: str, migrations_dir: Path) -> None:
    """Upgrade to head. Runs in its own event loop: call it from sync code or a worker thread."""
    command.upgrade(alembic_config(url, migrations_dir), "head")


async def upgrade_async(url: str, migrations_dir: Path) -> None:
    await asyncio.to_thread(upgrade, url, migrations_dir)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        exists = await conn.scalar(text("select to_regclass('alembic_version') is not null"))
        if not exists:
            return None
        version = await conn.scalar(text("select version_num from alembic_version"))
        return None if version is None else str(version)
