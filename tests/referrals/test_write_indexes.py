"""Migration 0024 narrowed two unique constraints to the rows that can collide and dropped an index no query
reads: the uniqueness they keep is what it was (a status change's key once per referral and organisation; an
old chain's position once per partition), and rows without a key or a position are as free as before."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import NullPool, TextClause, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from hub.db.engine import migrations_database_url
from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.referrals.helpers import SENDER, record_consent, sent

pytestmark = pytest.mark.usefixtures("db")

_EVENT = text(
    "insert into referral_event (id, referral_id, seq, type, by_organisation, idempotency_key, occurred_at) "
    "values (:id, :r, :seq, 'note', :org, :key, now())"
)
_ENTRY = text(
    "insert into audit_event (partition, seq, canonical, occurred_at, action, outcome, actor_organisation) "
    "values (:p, :seq, '{}', now(), 'test', 'ok', :p)"
)


async def _as_owner(runtime: Runtime, sql: TextClause, rows: list[dict[str, object]]) -> None:
    """Insert ``rows`` in one transaction as the tables' owner (the runtime role may not write ``seq``)."""
    engine = create_async_engine(migrations_database_url(runtime.settings), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            for row in rows:
                await conn.execute(sql, row)
    finally:
        await engine.dispose()


async def test_a_status_changes_key_is_still_unique_per_referral_and_organisation(
    client: httpx.AsyncClient, auth, runtime: Runtime
) -> None:
    async with runtime.sessions() as session:
        await load_demo(session)
    await record_consent(client, auth)
    rid = uuid.UUID(await sent(client, auth))

    def event(seq: int, key: str | None, org: str = SENDER) -> dict[str, object]:
        return {"id": uuid.uuid4(), "r": rid, "seq": seq, "org": org, "key": key}

    # Without a key (the first event, the hub's own), as many as there are: as before.
    await _as_owner(runtime, _EVENT, [event(2, None), event(3, None)])
    # With one: once per referral and organisation.
    await _as_owner(runtime, _EVENT, [event(4, "k"), event(5, "k", org="region-bup")])
    with pytest.raises(IntegrityError, match="referral_event_idempotency"):
        await _as_owner(runtime, _EVENT, [event(6, "k")])


async def test_an_old_chains_position_is_still_unique_and_new_entries_need_none(runtime: Runtime) -> None:
    await _as_owner(runtime, _ENTRY, [{"p": "nora-elevhalsa", "seq": None}, {"p": "nora-elevhalsa", "seq": None}])
    await _as_owner(runtime, _ENTRY, [{"p": "nora-elevhalsa", "seq": 1}, {"p": "region-bup", "seq": 1}])
    with pytest.raises(IntegrityError, match="audit_event_partition_seq"):
        await _as_owner(runtime, _ENTRY, [{"p": "nora-elevhalsa", "seq": 1}])
