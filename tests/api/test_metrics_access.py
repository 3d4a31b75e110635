"""/metrics names receiving organisations with their queues and breakers, small counts included: only the
operators' scraper may read it (HUB_METRICS_TOKEN), never an organisation's token, a coordinator or no one."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from hub.api.auth import _public_pem, load_or_create_dev_key
from hub.config import Settings
from hub.devtools.demo import load_demo
from hub.main import create_app
from hub.runtime import Runtime
from tests.api.test_auth_and_problems import assert_problem

METRICS_TOKEN = "scrape-me-0f3a"


@pytest.fixture
def keys(settings: Settings, tmp_path: Path) -> Path:
    """The dev key's public half, for a hub out of dev mode to trust (so organisations' tokens are valid)."""
    path = tmp_path / "keys.pem"
    path.write_bytes(_public_pem(load_or_create_dev_key(settings)))
    return path


async def _client(runtime: Runtime, keys: Path, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    update = {"dev_mode": False, "jwt_public_key_file": keys, **settings}
    app = create_app(runtime=dataclasses.replace(runtime, settings=runtime.settings.model_copy(update=update)))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            yield c


@pytest.fixture
async def production(db: Runtime, keys: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A hub out of dev mode, with a metrics token, and the demo county registered."""
    async with db.sessions() as session:
        await load_demo(session)
    async for c in _client(db, keys, metrics_token=SecretStr(METRICS_TOKEN)):
        yield c


@pytest.fixture
async def unconfigured(db: Runtime, keys: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A hub out of dev mode that was given no metrics token."""
    async for c in _client(db, keys, metrics_token=None):
        yield c


async def test_the_scraper_with_the_token_reads_the_metrics(production: httpx.AsyncClient) -> None:
    r = await production.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and "hub_http_requests_total" in r.text


@pytest.mark.parametrize("who", ["nobody", "organisation", "coordinator", "wrong token", "token without Bearer"])
async def test_anyone_else_is_refused_and_learns_nothing(
    production: httpx.AsyncClient, auth: Callable[..., dict[str, str]], who: str
) -> None:
    headers = {
        "nobody": {},
        "organisation": auth("region-bup", "system"),
        "coordinator": auth("region-samordning", "coordinator"),
        "wrong token": {"authorization": f"Bearer {METRICS_TOKEN}x"},
        "token without Bearer": {"authorization": METRICS_TOKEN},
    }[who]
    if who in ("organisation", "coordinator"):
        me = await production.get("/v1/me", headers=headers)
        assert me.status_code == 200, me.text  # a valid token elsewhere
    r = await production.get("/metrics", headers=headers)
    body = assert_problem(r, 401, "unauthenticated")
    assert "hub_" not in r.text and METRICS_TOKEN not in body["detail"]


async def test_without_a_token_configured_the_metrics_are_off(unconfigured: httpx.AsyncClient) -> None:
    r = await unconfigured.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert_problem(r, 404, "not-found")
    assert "hub_" not in r.text
