"""One mixed workload for the flow tests, built once per package (about a hundred requests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import text

from hub.api.auth import mint_dev_token
from hub.config import Settings
from hub.runtime import Runtime
from tests.conftest import KEEP_TABLES
from tests.flows import workload


@dataclass
class Flows:
    client: httpx.AsyncClient
    auth: Callable[..., dict[str, str]]
    runtime: Runtime
    sent: workload.Workload

    def coordinator(self) -> dict[str, str]:
        return self.auth(workload.COORDINATOR, "coordinator")


async def _empty(runtime: Runtime) -> None:
    async with runtime.engine.begin() as conn:
        names = (await conn.execute(text("select tablename from pg_tables where schemaname = 'public'"))).scalars()
        tables = [n for n in names if n not in KEEP_TABLES]
        await conn.execute(text(f"truncate {', '.join(tables)} restart identity cascade"))


@pytest.fixture(scope="package")
async def flows(app, runtime: Runtime, settings: Settings) -> AsyncIterator[Flows]:  # type: ignore[no-untyped-def]
    def auth(org: str, *roles: str) -> dict[str, str]:
        token = mint_dev_token(settings, organisation_id=org, roles=list(roles or ("system",)))
        return {"Authorization": f"Bearer {token}"}

    await _empty(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            sent = await workload.run(client, auth, runtime)
            yield Flows(client, auth, runtime, sent)


@pytest.fixture
async def county(flows: Flows) -> Flows:
    """The workload, rebuilt if a test of another package emptied the database in between (xdist)."""
    async with flows.runtime.engine.connect() as conn:
        present = await conn.scalar(text("select count(*) from referral"))
    if present != len(flows.sent.remiss) + len(flows.sent.concern) + 2:
        await _empty(flows.runtime)
        flows.sent = await workload.run(flows.client, flows.auth, flows.runtime)
    return flows
