"""A reference receiver: an in-memory stand-in for Nordjournal's API, enough to run the conformance kit
and to develop against. Run it with::

    NORDJOURNAL_API_KEY=dev-key uvicorn --factory hub_nordjournal.receiver:create_app --port 8081

It behaves as the real system must: it checks the API key, stores each referral once per ``X-Request-Key``
(a replay gets the same case back, with 200 instead of 201), refuses malformed documents with an RFC 9457
problem (422) and confirms a sender's cancellation by moving the case to WITHDRAWN.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse


def problem(status: int, title: str) -> JSONResponse:
    # Title only: never echo the request back (it carries personal data).
    return JSONResponse({"type": "about:blank", "title": title, "status": status}, status_code=status,
                        media_type="application/problem+json")  # fmt: skip


class Journal:
    """The stored cases and events, and the request keys already seen."""

    def __init__(self) -> None:
        self.cases: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.seen: dict[str, tuple[str, str]] = {}  # X-Request-Key → (collection, id)
        self.lock = threading.Lock()

    def store(self, key: str, collection: str, make: Any) -> tuple[dict[str, Any], bool]:
        with self.lock:
            if key in self.seen:
                kind, ident = self.seen[key]
                return getattr(self, kind)[ident], False
            record = make(len(getattr(self, collection)) + 1)
            ident = record["caseId"] if collection == "cases" else record["eventId"]
            getattr(self, collection)[ident] = record
            self.seen[key] = (collection, ident)
            return record, True


def create_app(api_key: str | None = None, journal: Journal | None = None) -> FastAPI:
    key = api_key or os.environ.get("NORDJOURNAL_API_KEY", "dev-key")
    store = journal or Journal()
    app = FastAPI(title="Nordjournal (reference receiver)")
    app.state.journal = store

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        if request.url.path != "/api/v2/health" and request.headers.get("authorization") != f"Bearer {key}":
            return problem(401, "Missing or wrong API key")
        return await call_next(request)

    @app.get("/api/v2/health")
    async def health() -> dict[str, str]:
        return {"status": "UP"}

    @app.post("/api/v2/inbound-referrals")
    async def new_case(request: Request, x_request_key: str = Header()) -> JSONResponse:
        document = await request.json()
        if not isinstance(document, dict) or not document.get("externalId") or not document.get("type"):
            return problem(422, "externalId and type are required")

        def make(n: int) -> dict[str, Any]:
            return {
                "caseId": f"NJ-{n:06d}",
                "externalId": document["externalId"],
                "state": "RECEIVED",
                "stateChangedAt": _now(),
                "document": document,
            }

        case, created = store.store(x_request_key, "cases", make)
        return JSONResponse(_public(case), status_code=201 if created else 200)

    @app.post("/api/v2/referral-events")
    async def new_event(request: Request, x_request_key: str = Header()) -> JSONResponse:
        document = await request.json()
        if not isinstance(document, dict) or not document.get("externalId") or not document.get("status"):
            return problem(422, "externalId and status are required")

        def make(n: int) -> dict[str, Any]:
            return {"eventId": f"NJE-{n:06d}", **document}

        event, created = store.store(x_request_key, "events", make)
        # The sender asks to cancel: this stand-in confirms at once (a real journal asks a person first).
        if created and (document.get("type") == "cancellation-requested" or document["status"] == "cancelled"):
            with store.lock:
                for case in store.cases.values():
                    if case["externalId"] == document["externalId"] and case["state"] not in ("CLOSED", "DECLINED"):
                        case.update(state="WITHDRAWN", stateChangedAt=_now(), stateReason=document.get("reason"))
        return JSONResponse({"eventId": event["eventId"]}, status_code=202 if created else 200)

    @app.get("/api/v2/inbound-referrals/{case_id}")
    async def get_case(case_id: str) -> JSONResponse:
        case = store.cases.get(case_id)
        return JSONResponse(_public(case)) if case else problem(404, "No such case")

    @app.get("/api/v2/inbound-referrals")
    async def find_cases(external_id: str = Query(alias="externalId")) -> list[dict[str, Any]]:
        return [_public(c) for c in store.cases.values() if c["externalId"] == external_id]

    return app


def _public(case: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in case.items() if k != "document"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
