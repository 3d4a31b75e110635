"""One mixed workload for the flow tests, built once per package (about a hundred requests)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from hub.config import Settings
from hub.main import create_app
from hub.runtime import Runtime, open_runtime
from hub.services.flow_folder import fold_all
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


PSEUDONYM_KEY = "flows:" + base64.b64encode(bytes(range(32))).decode()


async def _empty(runtime: Runtime) -> None:
    await empty_database(runtime)
    async with runtime.engine.begin() as conn:
        await workload.fix_secret(conn)


@pytest.fixture(scope="package")
async def flows(settings: Settings, pg_url: str) -> AsyncIterator[Flows]:
    """A hub whose coordinators' queries read through HUB_FLOWS_DATABASE_URL, here the same database on
    read-only connections, as a replica would be: a flow query that wrote there would fail. Its pseudonym
    key and record-key secret are fixed, so every run counts the same base cells with the same adjustments."""
    fixed = {"flows_database_url": SecretStr(pg_url), "pseudonym_keys": SecretStr(PSEUDONYM_KEY)}
    replica = settings.model_copy(update=fixed)
    auth = dev_auth(replica)
    async with open_runtime(replica) as runtime:
        assert runtime.flows_sessions is not runtime.sessions
        app = create_app(runtime=runtime)
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
    await fold_all(flows.runtime.engine, batch=1000)  # the tests read the flow tables themselves too
    return flows
