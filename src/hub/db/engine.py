"""Engine and session factory. One engine per process; sessions are units of work."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from hub.config import Settings
from hub.db.embedded import start_embedded


def database_url(settings: Settings) -> str:
    """The asyncpg URL to use: ``HUB_DATABASE_URL`` if set, else the embedded server (started here)."""
    if settings.database_url is None:
        return start_embedded(settings.data_dir.resolve() / "pg")
    url = settings.database_url.get_secret_value()
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def make_engine(url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=True,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
