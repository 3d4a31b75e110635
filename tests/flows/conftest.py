"""One mixed workload for the flow tests, built once per package (about a hundred requests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import text

from hub.config import Settings
from hub.runtime import Runtime
from tests.conftest import dev_auth, empty_database
from tests.flows import workload


@dataclass
class Flows:
    client: httpx.AsyncClient
    auth: Callable[..., dict[str, str]]
    runtime: Runtime
    sent: workload.Workload

    def coordinator(self) -> dict[str, str]:
        return self.auth(workload.COORDINATOR, "coordinator")


@pytest.fixture(scope="package")
async def flows(app, runtime: Runtime, settings: Settings) -> AsyncIterator[Flows]:  # type: ignore[no-untyped-def]
    auth = dev_auth(settings)
    await empty_database(runtime)
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
        await empty_database(flows.runtime)
        flows.sent = await workload.run(flows.client, flows.auth, flows.runtime)
    return flows
