"""Engine and session factory. One engine per process; sessions are units of work.

Also :class:`Statement`, for the few hot-path statements that run on the driver (asyncpg) connection
instead of through SQLAlchemy's execution machinery.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import greenlet_spawn

from hub.config import Settings
from hub.db.embedded import runtime_role_url, start_embedded

# A pooled connection unused for this long is pinged before it is handed out (see make_engine).
PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_SINCE = "hub_idle_since"


def database_url(settings: Settings) -> str:
    """The asyncpg URL the hub runs with: ``HUB_DATABASE_URL`` if set, else the embedded server (started
    here) as its runtime role."""
    if settings.database_url is None:
        return runtime_role_url(start_embedded(settings.data_dir.resolve() / "pg"))
    return _asyncpg_url(settings.database_url.get_secret_value())


def migrations_database_url(settings: Settings) -> str:
    """The asyncpg URL of the tables' owner, which migrates: ``HUB_MIGRATIONS_DATABASE_URL`` if set, else
    the embedded server's superuser, else ``HUB_DATABASE_URL`` (whose role then owns the tables)."""
    if settings.migrations_database_url is not None:
        return _asyncpg_url(settings.migrations_database_url.get_secret_value())
    if settings.database_url is None:
        return start_embedded(settings.data_dir.resolve() / "pg")
    return database_url(settings)


def flows_database_url(settings: Settings) -> str | None:
    """The asyncpg URL coordinators' flow queries read from (``HUB_FLOWS_DATABASE_URL``), if set."""
    return None if settings.flows_database_url is None else _asyncpg_url(settings.flows_database_url.get_secret_value())


def _asyncpg_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def make_engine(url: str, settings: Settings, *, read_only: bool = False) -> AsyncEngine:
    """The pool checks a connection before handing it out, as ``pool_pre_ping`` would, but cheaply: a
    connection the driver already knows is closed is replaced, and one idle for more than
    ``PING_AFTER_IDLE_SECONDS`` is pinged first. ``pool_pre_ping`` itself costs three round trips
    (BEGIN, ping, ROLLBACK with asyncpg) on every checkout, which was a third of a sharing decision's.

    ``read_only``: every transaction on its connections is read-only (PostgreSQL refuses a write), as
    on a replica, whatever the server is."""
    server_settings = {"default_transaction_read_only": "on"} if read_only else {}
    engine = create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        # asyncpg waits 60 s for a server that does not answer: a request would hang that long.
        connect_args={"server_settings": server_settings, "timeout": settings.database_connect_timeout},
    )
    _check_on_checkout(engine)
    _connect_failures_are_operational(engine)
    _connection_errors_are_disconnects(engine)
    return engine


def _connection_errors_are_disconnects(engine: AsyncEngine) -> None:
    """SQLAlchemy's asyncpg dialect calls an error a disconnect only once the driver has noticed the socket
    closed; a statement the server ended (``pg_ctl stop`` sends each backend "terminating connection due
    to administrator command" before it closes the socket) may fail before that, and the dead connection
    would go back to the pool. Marked a disconnect, the connection is discarded, and the pool with it:
    every connection older than the error is replaced before it is next used (a restarted server)."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _handle_error(context: Any) -> None:
        if not context.is_disconnect and _ends_the_connection(context.original_exception):
            context.is_disconnect = True


def _connect_failures_are_operational(engine: AsyncEngine) -> None:
    """A server that refuses, is not there or does not answer in time fails the connection attempt with
    the DBAPI's ``OperationalError``, as every other driver does (psycopg, say), instead of the bare
    ``ConnectionRefusedError``, ``FileNotFoundError`` (a unix socket gone) or ``TimeoutError`` asyncpg
    raises: the API answers it as "database unavailable" (``hub.api.problems.database_unavailable``)
    without mistaking an unrelated ``OSError`` for one. The message names the class only."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except (OSError, TimeoutError) as error:
            unreachable = dialect.loaded_dbapi.OperationalError
            raise unreachable(f"could not connect to the database ({type(error).__name__})", error) from error


def _check_on_checkout(engine: AsyncEngine) -> None:
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        is_closed = getattr(driver, "is_closed", None)
        if is_closed is not None and is_closed():
            raise exc.DisconnectionError("the connection was closed")  # the pool replaces it
        idle_since = record.info.get(_IDLE_SINCE)  # None: a new connection (info is per DBAPI connection)
        if idle_since is not None and time.monotonic() - idle_since > PING_AFTER_IDLE_SECONDS:
            try:
                dialect.do_ping(dbapi_connection)
            except Exception as error:
                raise exc.DisconnectionError("the connection failed its ping") from error


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Statement:
    """A SQL statement with ``:name`` binds that runs either through SQLAlchemy (on an ``AsyncSession``)
    or directly on an asyncpg connection (see :func:`driver`), skipping SQLAlchemy's per-statement work.
    Same SQL, same parameters, same type codecs either way."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.clause = text(sql)
        names: list[str] = []

        def positional(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.native_sql = _BIND.sub(positional, sql)
        self.names = tuple(names)

    async def fetchrow(self, on: AsyncSession | Any, params: Mapping[str, Any]) -> Any:
        """The first row (indexable by position) or None, on a session or a driver connection."""
        if isinstance(on, AsyncSession):
            return (await on.execute(self.clause, params)).first()
        return await on.fetchrow(self.native_sql, *[params[name] for name in self.names])

    async def fetch(self, on: AsyncSession | Any, params: Mapping[str, Any]) -> list[Any]:
        """Every row (each indexable by position), on a session or a driver connection."""
        if isinstance(on, AsyncSession):
            return list((await on.execute(self.clause, params)).all())
        rows: list[Any] = await on.fetch(self.native_sql, *[params[name] for name in self.names])
        return rows

    async def execute(self, on: AsyncSession | Any, params: Mapping[str, Any]) -> None:
        """Run it for its effect, on a session or a driver connection."""
        if isinstance(on, AsyncSession):
            await on.execute(self.clause, params)
            return
        await on.execute(self.native_sql, *[params[name] for name in self.names])

    async def fetchval(self, on: AsyncSession | Any, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        row = await self.fetchrow(on, params)
        return None if row is None else row[0]


@asynccontextmanager
async def driver(session: AsyncSession, *, own_transaction: bool = False) -> AsyncIterator[Any]:
    """An asyncpg connection for :class:`Statement`: the session's own, so statements join the
    transaction the session has open (or, if it has none yet, run and commit one by one).

    ``own_transaction``: a caller whose statements commit by themselves anyway gets, while the session
    has no transaction open, a connection straight from the engine's pool instead, returned on exit:
    opening and committing the ORM session around it costs more than a statement. It is discarded if
    the block ends in cancellation or a connection error, when a statement may still be in flight.

    Either way a connection the server closed or broke under a statement (``_broken``) is invalidated:
    SQLAlchemy sees only the errors raised through it, and would hand the dead connection to the next
    request (whose first statement then fails as "another operation is in progress")."""
    engine = session.bind
    if not own_transaction or session.in_transaction() or not isinstance(engine, AsyncEngine):
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        try:
            yield raw
        except Exception as error:
            if _broken(raw, error):
                await connection.invalidate()
            raise
        return
    async with pooled_driver(engine) as own:
        yield own


@asynccontextmanager
async def pooled_driver(engine: AsyncEngine) -> AsyncIterator[Any]:
    """A driver connection straight from ``engine``'s pool, returned on exit (``driver``'s own
    transaction); discarded if the block ends in cancellation or a connection error."""
    pooled = await engine.raw_connection()
    own = pooled.driver_connection
    assert own is not None  # a connection just checked out of the pool
    try:
        yield own
    except BaseException as error:
        # An error of the caller's, between statements, leaves the connection fit to reuse. Anything else
        # (cancellation, KeyboardInterrupt, SystemExit, GeneratorExit) may leave a statement in flight.
        if isinstance(error, Exception) and not _broken(own, error):
            await greenlet_spawn(pooled.close)
        else:
            own.terminate()
            await greenlet_spawn(pooled.invalidate)
        raise
    else:
        await greenlet_spawn(pooled.close)


# The setting in force and, for the rest of the transaction, custom plans; then the setting put back.
_PLAN_PER_CALL = text(
    """
    with before as materialized (select current_setting('plan_cache_mode') as mode)
    select mode, set_config('plan_cache_mode', 'force_custom_plan', true) from before
    """
)
_PLAN_RESTORE = text("select set_config('plan_cache_mode', :mode, true)")


@asynccontextmanager
async def planned_per_call(session: AsyncSession) -> AsyncIterator[None]:
    """Statements run inside are planned at each execution for the tables as they are then, never with the
    generic plan PostgreSQL keeps for a prepared statement (made at its sixth execution for the tables as
    they were then, kept until their statistics change). For queue claims, which poll empty tables: one
    made while the statistics said the table was empty (an ANALYZE of it empty, as a deploy's of a new
    database) reads the whole table, every finished row included, on every call until the next ANALYZE,
    whatever the statement's shape. Planning per call costs about 0.3 ms and two round trips."""
    mode = (await session.execute(_PLAN_PER_CALL)).scalar_one()
    yield
    await session.execute(_PLAN_RESTORE, {"mode": mode})


# Errors after which the connection cannot be reused: the server ended it (stopped, crashed, terminated the
# backend), the socket failed, or the protocol was left mid-operation.
_CONNECTION_ERRORS = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    OSError,
    TimeoutError,
)


def _ends_the_connection(error: BaseException | None) -> bool:
    """``error``, or the driver's error it was translated from, is one of ``_CONNECTION_ERRORS``."""
    while error is not None:
        if isinstance(error, _CONNECTION_ERRORS):
            return True
        error = error.__cause__
    return False


def _broken(connection: Any, error: BaseException) -> bool:
    return _ends_the_connection(error) or bool(connection is None or connection.is_closed())
