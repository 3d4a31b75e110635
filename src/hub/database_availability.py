"""Is the database away? One answer for every layer that must tell an outage from a fault.

The API answers such a request 503 (``hub.api.problems``), and the delivery worker waits instead of
counting a failed attempt or blaming the receiver's adapter. Neither layer may import the other, and the
API imports no ``hub.db`` module, so the classifier lives here, beside ``hub.keys``: it depends only on the
drivers.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

# Errors that say the database is not there (stopped, restarting, unreachable, out of connections), not
# that the request or the hub is wrong: the same request may succeed once it is back.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and a connection closed under a statement
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down, in recovery
    asyncpg.AdminShutdownError,  # 57P01: stopped (pg_ctl stop -m fast), or the connection terminated
    asyncpg.CrashShutdownError,  # 57P02: another server process crashed
    asyncpg.TooManyConnectionsError,  # 53300
    # A pooled connection the outage left mid-statement ("another operation is in progress"): it is
    # discarded (hub.db.engine), and the same request succeeds on a fresh one.
    asyncpg.InternalClientError,
    sa.OperationalError,  # a connection attempt that failed (hub.db.engine makes every one an OperationalError)
    AsyncAdapt_asyncpg_dbapi.OperationalError,  # the same, from a connection taken straight from the pool
    sa.TimeoutError,  # no pooled connection came free in time
    sa.DisconnectionError,
)


def is_database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says the database is unreachable rather than that something is
    wrong with the request or the hub. Walks the chain of causes: SQLAlchemy wraps the driver's errors,
    which wrap the socket's."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        link = todo.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        if isinstance(link, _UNAVAILABLE):
            return True
        if isinstance(link, sa.DBAPIError) and link.connection_invalidated:
            return True
        if isinstance(link, asyncpg.InterfaceError) and "connection is closed" in str(link):
            return True
        todo += [link.__cause__, link.__context__, getattr(link, "orig", None)]
    return False
