"""The API's routers: FastAPI's, told to answer "not mine" at once for a path outside their prefix."""

from __future__ import annotations

from fastapi import APIRouter
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import Scope


class Router(APIRouter):
    """An ``APIRouter`` that a request outside its ``prefix`` skips without trying its routes.

    FastAPI (0.165) finds a request's route by trying every route of every router included before the one
    that serves it, a path pattern and some bookkeeping each: ~40 µs before ``POST /v1/referrals`` is
    found, ~200 µs before a FHIR request's, on every request. A prefix no route of the router can fall
    outside of (FastAPI prepends it to each) settles most of those at once. Only for a router included
    without a prefix of the include's own (``app.include_router(router)``, as ``hub.main`` does)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self.prefix and not get_route_path(scope).startswith(self.prefix):
            return Match.NONE, {}
        return super().matches(scope)
