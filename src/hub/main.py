"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from hub import __version__
from hub.api import dashboard, problems
from hub.api.auth import TokenVerifier
from hub.api.fhir import router as fhir_router
from hub.api.fhir.referrals import router as fhir_referrals_router
from hub.api.graphql import graphql_router
from hub.api.middleware import RequestContextMiddleware
from hub.api.rest import (
    audit,
    concern_reports,
    consent_requests,
    consents,
    flows,
    health,
    me,
    plans,
    referrals,
    registry,
    sharing,
    sip,
    teams,
    vocabulary,
)
from hub.config import Settings
from hub.runtime import Runtime, open_runtime

DESCRIPTION = """\
The regional interoperability hub for early, coordinated support for children (GIRFEC, TSI, TABB).

It publishes the **shared vocabulary** (wellbeing wheel, variants with crosswalks, intervention levels,
the child's plan, organisation types, referral kinds) and routes consent-checked referrals between
municipal and regional systems.

Every error is RFC 9457 `application/problem+json`; the `type` is a stable relative URI
(`/problems/<code>`) documented at that address.
"""


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. The database is opened in the lifespan (or taken from ``runtime`` in tests)."""
    settings = settings or (runtime.settings if runtime else Settings())
    app = FastAPI(
        title="hub",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(settings, runtime),
        openapi_url="/openapi.json",
        docs_url="/docs" if settings.dev_mode else None,  # Swagger UI loads its scripts from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings, sessions=lambda: app.state.runtime.sessions)  # opened in lifespan
    problems.install(app)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        database_retry_after=settings.database_retry_after_seconds,
    )
    _include_routers(app, settings)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problems.document_problems(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _lifespan(settings: Settings, runtime: Runtime | None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: ``runtime`` as given (tests), or one opened from ``settings`` with its sealer, its
    flows' folder and, when the settings say so, the in-process delivery worker."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            app.state.runtime = runtime
            yield
            return
        async with open_runtime(settings) as rt:
            app.state.runtime = rt
            # What start-up made (modules, vocabulary, schemas, policy) lives as long as the process: kept out
            # of the collector's sight, a full collection walks only what requests leave behind, so its
            # pauses on requests stay short (bench/RESULTS.md, issue #9).
            gc.freeze()
            # The audit log's sealer: every process runs one, the database lets one at a time seal.
            from hub.services.audit_sealer import running_sealer
            from hub.services.flow_folder import running_folder

            async with running_sealer(rt.engine, settings), running_folder(rt.engine, settings):
                if not settings.runs_worker_in_serve:
                    yield
                    return
                # Dev and single-node setups deliver in-process; production runs `hub worker` separately.
                from hub.services.delivery import running_worker

                async with running_worker(rt):
                    yield

    return lifespan


def _include_routers(app: FastAPI, settings: Settings) -> None:
    app.include_router(health.router)
    app.include_router(me.router)
    app.include_router(vocabulary.router)
    app.include_router(consents.router)
    app.include_router(consent_requests.router)
    app.include_router(sharing.router)
    app.include_router(referrals.router)
    app.include_router(teams.router)
    app.include_router(plans.router)
    app.include_router(concern_reports.router)
    app.include_router(sip.router)
    app.include_router(audit.router)
    app.include_router(registry.router)
    app.include_router(flows.router)
    app.include_router(graphql_router(settings))
    app.include_router(fhir_router)
    app.include_router(fhir_referrals_router)  # FHIR referrals in: Bundle, Task, Organization
    app.include_router(dashboard.router)
