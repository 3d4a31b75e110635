"""A small FHIR R4 server for adapter tests, run for real on loopback (``tests.loopback.serve(server)``).

Resources live in memory. It answers: ``GET /metadata``; a ``transaction`` Bundle at ``POST /`` with
conditional create (``request.ifNoneExist``) and ``urn:uuid`` references rewritten to the stored ids;
``POST /{type}`` (with ``If-None-Exist``); ``GET /{type}/{id}``; ``GET /{type}?identifier=system|value``;
``PUT`` and ``PATCH`` (JSON Patch) ``/Task/{id}``. Every resource it is sent is validated with
``fhir.resources`` (R4B models; for the resources used here R4 and R4B agree) plus the required code
bindings the models do not check; an invalid one is a 400 with an OperationOutcome, and is kept in
``invalid`` so a test can fail loudly. Every request is recorded raw in ``requests``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from tests.loopback import Recorded

FHIR_JSON = "application/fhir+json"

# Required bindings the models leave as free codes.
_CODES = {
    ("Task", "status"): set(
        "draft requested received accepted rejected ready cancelled in-progress on-hold failed completed "
        "entered-in-error".split()
    ),
    ("Task", "intent"): set(
        "unknown proposal plan order original-order reflex-order filler-order instance-order option".split()
    ),
    ("ServiceRequest", "status"): set("draft active on-hold revoked completed entered-in-error unknown".split()),
    ("ServiceRequest", "intent"): set(
        "proposal plan directive order original-order reflex-order filler-order instance-order option".split()
    ),
    ("Communication", "status"): set(
        "preparation in-progress not-done on-hold stopped completed entered-in-error unknown".split()
    ),
}


class Invalid(ValueError):
    pass


def validate(resource: dict[str, Any]) -> None:
    """Raise ``Invalid`` unless ``resource`` is a valid FHIR resource (model + required code bindings)."""
    kind = resource.get("resourceType")
    try:
        get_fhir_model_class(str(kind)).model_validate(resource)
    except Exception as error:  # pydantic's ValidationError, or an unknown resourceType
        raise Invalid(f"{kind}: {error}") from None
    for (rtype, element), allowed in _CODES.items():
        if rtype == kind and resource.get(element) not in allowed:
            raise Invalid(f"{kind}.{element} {resource.get(element)!r} is not in its required value set")
    for system in _systems(resource):
        if ":" not in system:
            raise Invalid(f"{kind}: system {system!r} is not an absolute URI")


def _systems(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "system" and isinstance(item, str):
                yield item
            else:
                yield from _systems(item)
    elif isinstance(value, list):
        for item in value:
            yield from _systems(item)


def _references(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _outcome(status: int, code: str, text: str) -> JSONResponse:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


class FhirServer:
    """An ASGI app: ``with serve(FhirServer()) as base_url: ...``."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, dict[str, Any]]] = {}
        self.requests: list[Recorded] = []
        self.invalid: list[str] = []
        self._next = 0
        self.app = self._routes()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        self.requests.append(
            Recorded(
                method=scope["method"],
                path=scope["path"],
                query=scope.get("query_string", b"").decode("latin-1"),
                headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
                body=body,
            )
        )
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                message: dict[str, Any] = await receive()  # after the body: wait for the disconnect
                return message
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    # --- the store -------------------------------------------------------------------------------------------

    def resources(self, kind: str) -> list[dict[str, Any]]:
        return list(self.store.get(kind, {}).values())

    def search(self, kind: str, query: str) -> list[dict[str, Any]]:
        params = parse_qs(query)
        found = self.resources(kind)
        for token in params.get("identifier", []):
            system, _, value = token.rpartition("|")
            found = [
                r
                for r in found
                if any(
                    (not system or i.get("system") == system) and i.get("value") == value
                    for i in r.get("identifier", [])
                )
            ]
        return found

    def _new_id(self) -> str:
        self._next += 1
        return str(self._next)

    def _put(self, kind: str, rid: str, resource: dict[str, Any]) -> dict[str, Any]:
        previous = self.store.get(kind, {}).get(rid)
        version = int(previous["meta"]["versionId"]) + 1 if previous else 1
        stored = {
            **resource,
            "id": rid,
            # As FHIR servers do: the server sets the version and time, and keeps the client's security labels.
            "meta": {
                **resource.get("meta", {}),
                "versionId": str(version),
                "lastUpdated": datetime.now(UTC).isoformat(),
            },
        }
        self.store.setdefault(kind, {})[rid] = stored
        return stored

    # --- HTTP --------------------------------------------------------------------------------------------------

    def _routes(self) -> FastAPI:
        app = FastAPI()

        @app.get("/metadata")
        async def metadata() -> Response:
            body = {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "date": "2026-01-01",
                "kind": "instance",
                "fhirVersion": "4.0.1",
                "format": ["json"],
                "rest": [{"mode": "server", "interaction": [{"code": "transaction"}]}],
            }
            return JSONResponse(body, media_type=FHIR_JSON)

        @app.post("/")
        async def transaction(request: Request) -> Response:
            bundle = json.loads(await request.body())
            try:
                try:
                    Bundle.model_validate(bundle)
                except Exception as error:
                    raise Invalid(f"Bundle: {error}") from None
                if bundle.get("type") != "transaction":
                    raise Invalid("only transaction Bundles are handled")
                for entry in bundle.get("entry", []):
                    validate(entry["resource"])
                return self._transaction(bundle)
            except Invalid as error:
                self.invalid.append(str(error))
                return _outcome(400, "invalid", str(error))

        @app.post("/{kind}")
        async def create(kind: str, request: Request) -> Response:
            resource = json.loads(await request.body())
            try:
                validate(resource)
                if resource["resourceType"] != kind:
                    raise Invalid("resourceType does not match the URL")
            except Invalid as error:
                self.invalid.append(str(error))
                return _outcome(400, "invalid", str(error))
            if_none = request.headers.get("if-none-exist")
            matches = self.search(kind, if_none) if if_none else []
            if len(matches) > 1:
                return _outcome(412, "duplicate", "more than one match")
            stored, status = (matches[0], 200) if matches else (self._put(kind, self._new_id(), resource), 201)
            location = f"{kind}/{stored['id']}/_history/{stored['meta']['versionId']}"
            return JSONResponse(stored, status_code=status, media_type=FHIR_JSON, headers={"Location": location})

        @app.get("/{kind}")
        async def search(kind: str, request: Request) -> Response:
            entries = [{"resource": r} for r in self.search(kind, request.url.query)]
            body = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
            return JSONResponse(body, media_type=FHIR_JSON)

        @app.get("/{kind}/{rid}")
        async def read(kind: str, rid: str) -> Response:
            found = self.store.get(kind, {}).get(rid)
            if found is None:
                return _outcome(404, "not-found", f"{kind}/{rid}")
            return JSONResponse(found, media_type=FHIR_JSON)

        @app.put("/Task/{rid}")
        async def update(rid: str, request: Request) -> Response:
            resource = json.loads(await request.body())
            try:
                validate(resource)
            except Invalid as error:
                return _outcome(400, "invalid", str(error))
            return JSONResponse(self._put("Task", rid, resource), media_type=FHIR_JSON)

        @app.patch("/Task/{rid}")
        async def patch(rid: str, request: Request) -> Response:
            found = self.store.get("Task", {}).get(rid)
            if found is None:
                return _outcome(404, "not-found", f"Task/{rid}")
            resource = {k: v for k, v in found.items() if k not in ("id", "meta")}
            for op in json.loads(await request.body()):  # JSON Patch, top-level paths only
                key = op["path"].strip("/")
                if op["op"] in ("add", "replace"):
                    resource[key] = op["value"]
                elif op["op"] == "remove":
                    resource.pop(key, None)
            try:
                validate(resource)
            except Invalid as error:
                return _outcome(422, "invalid", str(error))
            return JSONResponse(self._put("Task", rid, resource), media_type=FHIR_JSON)

        return app

    def _transaction(self, bundle: dict[str, Any]) -> Response:
        entries = bundle.get("entry", [])
        resolved: dict[str, str] = {}  # fullUrl → Type/id
        plan: list[tuple[dict[str, Any], str, bool]] = []
        for entry in entries:
            resource, request = entry["resource"], entry["request"]
            if request["method"] != "POST" or request["url"] != resource["resourceType"]:
                raise Invalid("only POST [type] entries are handled")
            kind = resource["resourceType"]
            matches = self.search(kind, request["ifNoneExist"]) if request.get("ifNoneExist") else []
            if len(matches) > 1:
                raise Invalid("ifNoneExist matched more than one resource")
            rid, new = (matches[0]["id"], False) if matches else (self._new_id(), True)
            resolved[entry["fullUrl"]] = f"{kind}/{rid}"
            plan.append((resource, rid, new))
        for resource, _, _ in plan:
            for reference in _references(resource):
                target = reference["reference"]
                if target.startswith("urn:uuid:"):
                    if target not in resolved:
                        raise Invalid(f"{target} is not an entry of the Bundle")
                    reference["reference"] = resolved[target]
        response_entries = []
        for resource, rid, new in plan:
            kind = resource["resourceType"]
            stored = self._put(kind, rid, resource) if new else self.store[kind][rid]
            location = f"{kind}/{rid}/_history/{stored['meta']['versionId']}"
            response_entries.append({"response": {"status": "201 Created" if new else "200 OK", "location": location}})
        body = {"resourceType": "Bundle", "type": "transaction-response", "entry": response_entries}
        return JSONResponse(body, media_type=FHIR_JSON)
