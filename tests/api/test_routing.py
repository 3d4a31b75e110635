"""``hub.api.routing.Router``: a router skipped at once for paths outside its prefix must still route
every path inside it exactly as FastAPI's own does (trailing-slash redirects, 404, 405 included)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.routing import Match

from hub.api.routing import Router


def _app(router_class: type[APIRouter]) -> FastAPI:
    app = FastAPI()
    first = router_class(prefix="/v1/things")
    second = router_class(prefix="/v1")

    @first.get("/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    @second.get("/things/{thing_id}/parts")  # outside the first router's routes, inside its prefix
    async def parts(thing_id: str) -> dict[str, str]:
        return {"parts of": thing_id}

    @second.post("/other")
    async def other() -> dict[str, str]:
        return {"other": "yes"}

    app.include_router(first)
    app.include_router(second)
    return app


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/things/a"),
        ("GET", "/v1/things/a/parts"),
        ("GET", "/v1/things/a/"),  # redirected without the slash
        ("POST", "/v1/other"),
        ("GET", "/v1/other"),  # 405
        ("GET", "/v2/things/a"),  # 404
        ("GET", "/v1/thingsx"),
    ],
)
async def test_routes_as_fastapi_does(method: str, path: str) -> None:
    answers = []
    for router_class in (APIRouter, Router):
        transport = httpx.ASGITransport(app=_app(router_class))
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            response = await client.request(method, path)
        answers.append((response.status_code, response.headers.get("location"), response.text))
    assert answers[0] == answers[1]


def test_a_path_outside_the_prefix_is_not_matched_against_the_routes() -> None:
    router = Router(prefix="/v1/things")
    tried = []

    @router.get("/{thing_id}")
    async def thing(thing_id: str) -> None: ...

    original = router.routes[0].matches
    router.routes[0].matches = lambda scope: tried.append(scope["path"]) or original(scope)  # type: ignore[method-assign]
    app = FastAPI()
    app.include_router(router)
    included = next(r for r in app.router.routes if getattr(r, "original_router", None) is router)
    scope = {"type": "http", "method": "GET", "path": "/v2/x", "root_path": "", "headers": [], "query_string": b""}
    assert included.matches(scope)[0] == Match.NONE
    assert tried == []
    assert included.matches({**scope, "path": "/v1/things/x"})[0] == Match.FULL
