"""The unit of work: one use case's access to the database and its one commit.

A use case opens a unit of work (``async with UnitOfWork.of(runtime.sessions) as uow``, or receives one
from the API), reads and writes through the stores with ``uow.session``, and ends with ``await
uow.commit()``: once. Stores and repositories never commit. A block left without that commit (an error,
a refusal) rolls everything back when the session closes.

The hot paths write with a single statement that commits by itself (sending a referral, a delivery's
outcome): ``uow.statement()`` hands out the driver connection for that, with no transaction of the
session's open, so the statement's commit is the use case's one commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hub.db.engine import driver, pooled_driver


class UnitOfWork:
    """``session`` is made when first used: the fast path, whose one statement runs on a pooled driver
    connection, never makes one (an unused session cost ~90 µs to make and close, 3 % of a referral's CPU)."""

    def __init__(
        self, session: AsyncSession | None = None, *, sessions: async_sessionmaker[AsyncSession] | None = None
    ):
        if session is None and sessions is None:
            raise TypeError("a unit of work needs a session or a sessionmaker")
        self._session = session
        self._sessions = sessions
        self.committed = False

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            assert self._sessions is not None
            self._session = self._sessions()
        return self._session

    @classmethod
    @asynccontextmanager
    async def of(cls, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[UnitOfWork]:
        """A unit of work on a new session of ``sessions``, closed (and, uncommitted, rolled back) when the
        block ends."""
        uow = cls(sessions=sessions)
        try:
            yield uow
        finally:
            if uow._session is not None:
                await uow._session.__aexit__(None, None, None)  # as ``async with session`` closes it

    async def commit(self) -> None:
        """The use case's one commit."""
        if self.committed:
            raise RuntimeError("a unit of work commits once: one use case, one transaction")
        await self.session.commit()
        self.committed = True

    async def end_reads(self) -> None:
        """Close the transaction the use case's reads opened (they wrote nothing), before a statement
        that commits by itself (``statement``)."""
        if self._session is not None:
            await self._session.rollback()

    def statement(self) -> AbstractAsyncContextManager[Any]:
        """A driver connection for single statements that commit by themselves (``hub.db.engine.driver``
        with its own transaction): the fast path's write is the use case's commit."""
        engine = None if self._sessions is None else self._sessions.kw.get("bind")
        if self._session is None and isinstance(engine, AsyncEngine):
            return pooled_driver(engine)
        return driver(self.session, own_transaction=True)
