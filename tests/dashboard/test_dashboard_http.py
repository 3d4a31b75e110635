"""The dashboard over plain HTTP: an HTML page with a strict Content-Security-Policy, its scripts served
from the hub (no CDN), nothing else reachable through the static route, and no trace in the API schema."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    # The page and its files need no database: no lifespan, no emptied tables.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
        yield client


async def test_the_page_is_html_with_a_strict_policy(http: httpx.AsyncClient) -> None:
    r = await http.get("/dashboard")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = dict(part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";"))
    assert csp["script-src"] == "'self'" and csp["frame-ancestors"] == "'none'"
    assert csp["default-src"] == "'none'" and csp["connect-src"] == "'self'"
    assert r.headers["x-frame-options"] == "DENY"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", r.text, flags=re.S)
    assert scripts and all('src="/dashboard/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert "http://" not in r.text and "https://" not in r.text, "nothing loaded from elsewhere"


@pytest.mark.parametrize("name", ["dashboard.js", "echarts.min.js", "dashboard.css"])
async def test_its_files_are_served_by_the_hub(http: httpx.AsyncClient, name: str) -> None:
    r = await http.get(f"/dashboard/static/{name}")
    assert r.status_code == 200 and len(r.content) > 1000
    assert r.headers["content-type"].startswith("text/css" if name.endswith(".css") else "text/javascript")
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", ["dashboard.html", "VENDORED.md", "..%2F..%2Fconfig.py", "nope.js"])
async def test_nothing_else_is_reachable(http: httpx.AsyncClient, name: str) -> None:
    r = await http.get(f"/dashboard/static/{name}")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_the_page_is_not_part_of_the_api_schema(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith("/dashboard")]
