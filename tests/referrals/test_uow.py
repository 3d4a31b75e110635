"""The unit of work: a use case commits once; what it did not commit is rolled back."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from hub.db.uow import UnitOfWork
from hub.runtime import Runtime

INSERT = text("insert into organisation (id, name, type, region_code) values (:id, 'Prov', 'skola', '18')")


async def _present(runtime: Runtime, ids: list[str]) -> set[str]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(text("select id from organisation where id = any(:ids)"), {"ids": ids})
        return {r[0] for r in rows}


async def test_one_commit_and_nothing_without_it(runtime: Runtime) -> None:
    committed, failed, forgotten = (f"uow-{n}-{uuid.uuid4().hex[:8]}" for n in ("a", "b", "c"))
    async with UnitOfWork.of(runtime.sessions) as uow:
        await uow.session.execute(INSERT, {"id": committed})
        await uow.commit()
        with pytest.raises(RuntimeError):
            await uow.commit()
    with pytest.raises(ZeroDivisionError):
        async with UnitOfWork.of(runtime.sessions) as uow:
            await uow.session.execute(INSERT, {"id": failed})
            _ = 1 / 0
    async with UnitOfWork.of(runtime.sessions) as uow:
        await uow.session.execute(INSERT, {"id": forgotten})  # left without its commit
    assert await _present(runtime, [committed, failed, forgotten]) == {committed}
    async with runtime.engine.begin() as conn:
        await conn.execute(text("delete from organisation where id = :id"), {"id": committed})


async def test_the_fast_path_makes_no_session_and_a_used_session_is_closed(runtime: Runtime) -> None:
    pool = runtime.engine.pool
    out = pool.checkedout()  # type: ignore[attr-defined]
    async with UnitOfWork.of(runtime.sessions) as uow:
        async with uow.statement() as connection:
            assert await connection.fetchval("select 1") == 1
            assert pool.checkedout() == out + 1  # type: ignore[attr-defined]
        await uow.end_reads()  # nothing read: nothing to end
    assert uow._session is None and pool.checkedout() == out  # type: ignore[attr-defined]

    async with UnitOfWork.of(runtime.sessions) as uow:
        assert await uow.session.scalar(text("select 1")) == 1
        session = uow.session
        assert session.in_transaction() and pool.checkedout() == out + 1  # type: ignore[attr-defined]
        await uow.end_reads()
        async with uow.statement() as connection:  # after the reads: a pooled connection of its own
            assert await connection.fetchval("select 2") == 2
    assert uow.session is session and not session.in_transaction()
    assert pool.checkedout() == out  # type: ignore[attr-defined]
