"""The dashboard's fixtures: the flow workload of ``tests/flows`` with some referrals stalled, the real app
on a loopback port over it, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from hub.api.auth import mint_dev_token
from hub.config import Settings
from hub.main import create_app
from hub.runtime import Runtime
from tests.conftest import dev_auth, empty_database
from tests.flows import workload
from tests.loopback import serve
from tests.referrals.helpers import ack, event, mailbox, worker_for

STALLED_FOR_DAYS = 40  # more than the hub's default stall_days (30)
MORE_CONCERNS = range(workload.CHILDREN, workload.CHILDREN + 7)  # children 8–14


@dataclass
class County:
    settings: Settings
    sent: workload.Workload

    def token(self, org: str = workload.COORDINATOR, role: str = "coordinator") -> str:
        return mint_dev_token(self.settings, organisation_id=org, roles=[role])


async def more_concerns(client: httpx.AsyncClient, auth: workload.Auth, runtime: Runtime) -> None:
    """Seven more children reported from Nora's school to social services at step 1, received, five of them
    accepted: so step 1, that flow and Nora's acceptance lead time rest on enough children to be shown."""
    sent = []
    for n in MORE_CONCERNS:
        body = {
            "kind": "orosanmalan",
            "target": {"organisation_id": workload.SOCIALTJANST},
            "child": {"personal_identity_number": workload.pin(n)},
            "concern": {"dimensions": ["safe", "nurtured"][: 1 + n % 2], "trappan_step": 1, "text": "Orosanmälan."},
            "data_categories": ["identity", "concern-text"],
            "information": {},
        }
        headers = {**auth(workload.GRUNDSKOLA, "system"), "Idempotency-Key": f"dashboard-c{n}"}
        r = await client.post("/v1/referrals", json=body, headers=headers)
        assert r.status_code == 202, r.text
        sent.append(r.json()["id"])
    async with httpx.AsyncClient() as http:
        await worker_for(runtime, http, delivery_backoff_base_seconds=0.001).run_until_idle()
    for message in await mailbox(client, auth, workload.SOCIALTJANST):
        await ack(client, auth, workload.SOCIALTJANST, message["id"])
    for referral in sent[:5]:
        r = await event(client, auth, workload.SOCIALTJANST, referral, status="accepted")
        assert r.status_code == 201, r.text


TEAM_CHILDREN = range(workload.CHILDREN + 7)  # children 0–14: Nora's school is their named person


async def teams(client: httpx.AsyncClient, auth: workload.Auth) -> None:
    """Nora's school names children 0–14 (born 2015: school until 2031) and offers the role to Nora's
    upper-secondary school for eight of them, none answered (backdated below): the teams panel shows
    children with a named person and unanswered handovers for Nora and the county."""
    for n in TEAM_CHILDREN:
        child = {"personal_identity_number": workload.pin(n)}
        named = {"child": child, "stage": "school"}
        r = await client.post("/v1/children/team/named-person", json=named, headers=auth(workload.GRUNDSKOLA))
        assert r.status_code == 201, r.text
        if n < 8:
            body = {"child": child, "to_organisation": "nora-gymnasieskola", "stage": "upper-secondary"}
            r = await client.post("/v1/children/team/offers", json=body, headers=auth(workload.GRUNDSKOLA))
            assert r.status_code == 201, r.text


@pytest.fixture(scope="package")
async def county(app: Any, runtime: Runtime, settings: Settings) -> AsyncIterator[County]:
    """The mixed workload of ``tests/flows/workload.py`` and seven more reports of concern, then 40 days
    pass without a transition, so the open referrals at step 2 count as stalled. Emptied afterwards: the
    flow tests' own fixture rebuilds its workload only when the number of referrals differs, and would
    otherwise see the moved clock."""

    auth = dev_auth(settings)
    await empty_database(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            sent = await workload.run(client, auth, runtime)
            await more_concerns(client, auth, runtime)
            await teams(client, auth)
    async with runtime.engine.begin() as conn:
        await conn.execute(text("select flow_fold(1000000)"))  # what is queued first (migration 0030)
        await conn.execute(
            text("update flow_referral set changed_at = changed_at - make_interval(days => :d)"),
            {"d": STALLED_FOR_DAYS},
        )
        await conn.execute(
            text("update team_offer set offered_at = offered_at - make_interval(days => :d)"), {"d": STALLED_FOR_DAYS}
        )
    yield County(settings, sent)
    await empty_database(runtime)


@pytest.fixture(scope="package")
def hub_url(county: County) -> Iterator[str]:
    """The real app on a loopback port. It opens its own runtime (engine, pool) in the server's thread and
    event loop, since asyncpg connections belong to the loop that made them; no worker (nothing to send)."""
    app = create_app(county.settings.model_copy(update={"serve_runs_worker": False}))
    with serve(app) as url:
        yield url


def no_browser(reason: str) -> None:
    """Skip on a developer's machine; fail under CI, where a skipped browser test would hide a broken page."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the dashboard's browser test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Any]:
    """Debian's chromium (`apt-get install chromium`; `make test` installs it), driven by Playwright's own
    driver. Never `playwright install`: no browser is downloaded."""
    executable = shutil.which("chromium")
    if executable is None:
        no_browser("chromium is not on PATH: apt-get install chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        no_browser("playwright is not installed: pip install -e '.[dev]'")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        await launched.close()
