"""The flows' status rules are the domain's: the hub writes ``referral_status_class`` from
``Lifecycle.classes`` after migrating, the flow functions and queries read it, and no SQL the hub runs
(its modules, the live flow functions) names a status of its own."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from hub.db.referrals.status_classes import status_classes, write_status_classes
from hub.devtools.demo import load_demo
from hub.domain.referrals import StatusClass
from hub.runtime import Runtime
from hub.services.referrals import lifecycle
from hub.vocabulary import load_vocabulary
from tests.referrals.helpers import RECEIVER, SENDER, record_consent, sent, set_endpoint

LIFE = lifecycle(load_vocabulary())
STATUS_LITERAL = re.compile(r"'(" + "|".join(map(re.escape, sorted({s for pair in LIFE.rules for s in pair}))) + r")'")


@pytest.fixture
async def county(client: httpx.AsyncClient, runtime: Runtime) -> AsyncIterator[Runtime]:
    async with runtime.sessions() as session:
        await load_demo(session)
    for org in (SENDER, RECEIVER):
        await set_endpoint(runtime, org, "mailbox", {})
    yield runtime
    await _write(runtime, LIFE.classes())  # whatever a test changed


async def _write(runtime: Runtime, classes: Sequence[StatusClass]) -> None:
    async with runtime.engine.begin() as conn:
        await write_status_classes(conn, classes)


async def _measures(runtime: Runtime) -> set[str]:
    async with runtime.engine.begin() as conn:
        await conn.execute(text("select flow_fold(1000000)"))  # what is queued, as a reader (migration 0030)
        return set((await conn.execute(text("select distinct measure from flow_rollup"))).scalars())


async def test_the_hub_writes_the_domains_classes_when_it_migrates(runtime: Runtime) -> None:
    async with runtime.engine.connect() as conn:
        assert await status_classes(conn) == LIFE.classes()


async def test_the_flows_count_by_the_classes_the_hub_wrote(client, auth, county: Runtime) -> None:
    """With the published classes a new referral's initial status is not rolled up (flow_referral holds
    it); tell the table that no status is initial and the same sending rolls up ``status:requested``."""
    await record_consent(client, auth)
    await sent(client, auth)
    assert "sent" in await _measures(county) and "status:requested" not in await _measures(county)
    await _write(county, [replace(c, initial=False) for c in LIFE.classes()])
    await sent(client, auth)
    assert "status:requested" in await _measures(county)


def test_no_sql_in_the_db_modules_names_a_status() -> None:
    root = Path(__file__).resolve().parents[2] / "src" / "hub" / "db"
    found = [
        f"{path.relative_to(root)}:{m.group(0)}"
        for path in sorted(root.rglob("*.py"))
        for m in STATUS_LITERAL.finditer(path.read_text())
    ]
    assert found == []


async def test_no_live_function_or_index_names_a_status(runtime: Runtime) -> None:
    """What the migrations left in the database: the latest definitions, however many revisions made them."""
    async with runtime.engine.connect() as conn:
        definitions = await conn.execute(
            text(
                "select p.proname, pg_get_functiondef(p.oid) from pg_proc p join pg_namespace n "
                "on n.oid = p.pronamespace where n.nspname = 'public' and p.prokind = 'f' "
                "union all select indexname, indexdef from pg_indexes where schemaname = 'public'"
            )
        )
        found = {name: STATUS_LITERAL.findall(sql) for name, sql in definitions.all() if STATUS_LITERAL.search(sql)}
    assert found == {}
