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

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.engine import driver


class UnitOfWork:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.committed = False

    @classmethod
    @asynccontextmanager
    async def of(cls, sessions: Callable[[], AbstractAsyncContextManager[AsyncSession]]) -> AsyncIterator[UnitOfWork]:
        """A unit of work on a new session of ``sessions`` (a sessionmaker), closed (and, uncommitted,
        rolled back) when the block ends."""
        async with sessions() as session:
            yield cls(session)

    async def commit(self) -> None:
        """The use case's one commit."""
        if self.committed:
            raise RuntimeError("a unit of work commits once: one use case, one transaction")
        await self.session.commit()
        self.committed = True

    async def end_reads(self) -> None:
        """Close the transaction the use case's reads opened (they wrote nothing), before a statement
        that commits by itself (``statement``)."""
        await self.session.rollback()

    def statement(self) -> AbstractAsyncContextManager[Any]:
        """A driver connection for single statements that commit by themselves (``hub.db.engine.driver``
        with its own transaction): the fast path's write is the use case's commit."""
        return driver(self.session, own_transaction=True)
