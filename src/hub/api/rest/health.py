"""Liveness, readiness, metrics and the problem-type documentation."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from hub.adapters.registry import load_problems
from hub.api.deps import RuntimeDep
from hub.api.problems import ALL_PROBLEM_TYPES
from hub.config import Settings
from hub.database_availability import is_database_unavailable
from hub.domain.errors import NotFound, Unauthenticated
from hub.services.delivery.metrics import outbox_metrics
from hub.services.flow_folder import folder_metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers and its schema is at the current migration",
    responses={503: {"description": "Not ready; the body says which check failed"}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        # A server that accepted the connection but does not answer (frozen, cut off) must not hang the probe.
        async with asyncio.timeout(runtime.settings.database_connect_timeout):
            revision = await runtime.current_revision()
        checks["database"] = "ok"
        checks["migrations"] = "ok" if revision == runtime.head_revision else "behind"
    except Exception as exc:  # which failures mean "unreachable" is decided just below
        if not isinstance(exc, SQLAlchemyError | OSError) and not is_database_unavailable(exc):
            raise
        checks["database"] = "unreachable"
        checks["migrations"] = "unknown"
    # Only an app built around a runtime opened elsewhere gets here with an adapter that did not load:
    # ``hub serve`` and ``open_runtime`` refuse to start then (hub.adapters.registry).
    problems = load_problems()
    checks["adapters"] = "ok" if not problems else "not loaded: " + "; ".join(problems)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not-ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics (with the bearer token HUB_METRICS_TOKEN; in dev mode without)",
    response_class=PlainTextResponse,
    responses={
        401: {"description": "The metrics token is missing or wrong"},
        404: {"description": "Metrics are off: no HUB_METRICS_TOKEN outside dev mode"},
    },
)
async def metrics(runtime: RuntimeDep, authorization: Annotated[str, Header()] = "") -> Response:
    """The process's metrics, the outbox's and the flows' queue (all workers', from the database): see operations.md."""
    _admit_scraper(runtime.settings, authorization)
    try:
        async with asyncio.timeout(runtime.settings.database_connect_timeout):
            outbox = await outbox_metrics(runtime) + await folder_metrics(runtime.engine)
    except Exception as exc:  # the database is away: /readyz says so; the process's own metrics still answer
        if not isinstance(exc, SQLAlchemyError | OSError) and not is_database_unavailable(exc):
            raise
        outbox = b"# the outbox: database unavailable\n"
    return Response(generate_latest() + outbox, media_type=CONTENT_TYPE_LATEST)


def _admit_scraper(settings: Settings, authorization: str) -> None:
    """The outbox's series name organisations and their queues: only the operators' scraper reads them."""
    token = settings.metrics_token
    if token is None:
        if settings.dev_mode:
            return
        raise NotFound("Metrics are off: the operator sets HUB_METRICS_TOKEN to scrape them.")
    expected = f"Bearer {token.get_secret_value()}".encode()
    if not hmac.compare_digest(authorization.encode("utf-8", "surrogateescape"), expected):
        raise Unauthenticated("Present the metrics token: Authorization: Bearer <HUB_METRICS_TOKEN>.")


@router.get("/problems/{code}", summary="What a problem type means", tags=["operations"])
async def problem_type(code: str) -> dict[str, object]:
    ptype = ALL_PROBLEM_TYPES.get(code)
    if ptype is None:
        raise NotFound("No such problem type.")
    return {"type": ptype.uri, "title": ptype.title, "status": ptype.status}
