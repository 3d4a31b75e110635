"""RFC 9457 problem details: the one mapping from errors to HTTP.

Every 4xx and 5xx the hub sends is ``application/problem+json`` with a stable ``type`` (a relative URI
``/problems/<code>``, documented at that address on every hub), a ``title``, the ``status``, a human
``detail``, the ``request_id`` and, where fields are at fault, ``errors``: JSON pointers into the request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.api.context import request_id_var
from hub.domain import errors as e

log = logging.getLogger("hub.api")

PROBLEM_JSON = "application/problem+json"


class BodyTooLarge(Exception):
    """Raised while streaming a request body past the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body exceeds the limit of {limit} bytes.")
        self.detail = str(self)


@dataclass(frozen=True)
class ProblemType:
    code: str
    status: int
    title: str

    @property
    def uri(self) -> str:
        return f"/problems/{self.code}"


def _t(code: str, status: int, title: str) -> ProblemType:
    return ProblemType(code, status, title)


# The one table: error class -> problem type. Order matters only for subclasses (most specific first).
DOMAIN_PROBLEMS: list[tuple[type[e.HubError], ProblemType]] = [
    (e.SharingDenied, _t("sharing-denied", 403, "No legal basis allows this share")),
    (e.InvalidInput, _t("invalid-input", 422, "The request is not valid")),
    (e.Unauthenticated, _t("unauthenticated", 401, "Authentication required")),
    (e.NotPermitted, _t("forbidden", 403, "Not permitted")),
    (e.NotFound, _t("not-found", 404, "Not found")),
    (e.PreconditionFailed, _t("precondition-failed", 412, "The version changed; send the current ETag")),
    (e.PreconditionRequired, _t("precondition-required", 428, "A precondition header is required")),
    (e.Conflict, _t("conflict", 409, "Conflict with the current state")),
    (e.Gone, _t("gone", 410, "No longer available")),
    (e.RateLimited, _t("rate-limited", 429, "Too many requests")),
    (e.Unavailable, _t("unavailable", 503, "Temporarily unavailable")),
]

HTTP_PROBLEMS: dict[int, ProblemType] = {
    400: _t("malformed-request", 400, "The request could not be read"),
    401: _t("unauthenticated", 401, "Authentication required"),
    403: _t("forbidden", 403, "Not permitted"),
    404: _t("not-found", 404, "Not found"),
    405: _t("method-not-allowed", 405, "Method not allowed"),
    406: _t("not-acceptable", 406, "Not acceptable"),
    409: _t("conflict", 409, "Conflict with the current state"),
    413: _t("body-too-large", 413, "The request body is too large"),
    415: _t("unsupported-media-type", 415, "Unsupported media type"),
    422: _t("invalid-input", 422, "The request is not valid"),
    428: _t("precondition-required", 428, "A precondition header is required"),
    500: _t("internal-error", 500, "Internal error"),
    503: _t("unavailable", 503, "Temporarily unavailable"),
}

# Not a domain error: the database went away under a request (see ``hub.database_availability``).
DATABASE_UNAVAILABLE = _t("database-unavailable", 503, "The database is unavailable")
# A commit whose answer was lost may have happened: the same Idempotency-Key makes the retry safe.
DATABASE_UNAVAILABLE_DETAIL = (
    "The hub cannot reach its database just now. Retry later; a retry with the same Idempotency-Key is carried "
    "out at most once."
)

ALL_PROBLEM_TYPES: dict[str, ProblemType] = {
    p.code: p for p in [*(p for _, p in DOMAIN_PROBLEMS), *HTTP_PROBLEMS.values(), DATABASE_UNAVAILABLE]
}


def problem_body(ptype: ProblemType, detail: str, **extensions: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": ptype.uri,
        "title": ptype.title,
        "status": ptype.status,
        "detail": detail,
        "request_id": request_id_var.get(),
    }
    body.update({k: v for k, v in extensions.items() if v is not None})
    return body


def problem_response(
    ptype: ProblemType, detail: str, *, headers: dict[str, str] | None = None, **extensions: Any
) -> JSONResponse:
    return JSONResponse(
        problem_body(ptype, detail, **extensions),
        status_code=ptype.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def problem_for(exc: e.HubError) -> ProblemType:
    for cls, ptype in DOMAIN_PROBLEMS:
        if isinstance(exc, cls):
            return ptype
    return HTTP_PROBLEMS[500]


def _field_errors(errors: list[e.FieldError]) -> list[dict[str, str]] | None:
    if not errors:
        return None
    return [{"pointer": f.pointer, "detail": f.message, "code": f.code} for f in errors]


def hub_error_response(exc: e.HubError) -> JSONResponse:
    ptype = problem_for(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="hub"'} if ptype.status == 401 else None
    if isinstance(exc, e.RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    extensions: dict[str, Any] = {"errors": _field_errors(exc.errors)}
    if isinstance(exc, e.SharingDenied):
        extensions["reasons"] = [r.__dict__ for r in exc.reasons]
        extensions["remedies"] = [r.__dict__ for r in exc.remedies]
        extensions["decision_id"] = exc.decision_id
    if isinstance(exc, e.InvalidTransition):
        extensions["allowed_transitions"] = exc.allowed_transitions
    if isinstance(exc, e.StateConflict):
        extensions["current"] = exc.current
    if isinstance(exc, e.PreconditionFailed) and "etag" in exc.current:
        headers = {"ETag": str(exc.current["etag"])}
    return problem_response(ptype, exc.detail, headers=headers, **extensions)


def pointer_from_loc(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """FastAPI's ``("body", "child", "pin")`` → ``/child/pin``; query and header params keep their name."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
        return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    if parts and parts[0] in ("query", "path", "header", "cookie"):
        return ".".join(str(p) for p in parts[1:])
    return "/" + "/".join(str(p) for p in parts)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    errs = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errs):
        return problem_response(HTTP_PROBLEMS[400], "The request body is not valid JSON.")
    fields = [
        {
            "pointer": pointer_from_loc(err.get("loc", ())),
            "detail": err.get("msg", "invalid"),
            "code": err.get("type", "invalid"),
        }
        for err in errs
    ]
    count = len(fields)
    detail = f"{count} field{'s' if count != 1 else ''} failed validation: " + ", ".join(
        f["pointer"] or "(body)" for f in fields[:10]
    )
    return problem_response(HTTP_PROBLEMS[422], detail, errors=fields)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    @app.exception_handler(e.HubError)
    async def _hub(_: Request, exc: e.HubError) -> JSONResponse:
        return hub_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps body-read failures in a 400
            return problem_response(HTTP_PROBLEMS[413], exc.__cause__.detail)
        ptype = HTTP_PROBLEMS.get(exc.status_code) or ProblemType(
            f"http-{exc.status_code}", exc.status_code, "HTTP error"
        )
        detail = (
            exc.detail
            if isinstance(exc.detail, str) and exc.status_code != 404
            else ("There is nothing at this address." if exc.status_code == 404 else ptype.title)
        )
        return problem_response(ptype, detail, headers=getattr(exc, "headers", None))

    # Unexpected exceptions are answered by the request middleware (``internal_error_response``), inside
    # which the request id is still known: Starlette's handler for ``Exception`` runs outside every
    # middleware, where the id and the X-Request-ID header are gone.


def database_unavailable_response(exc: BaseException, *, retry_after: int) -> JSONResponse:
    """The 503 for a request the database's absence stopped. Logged by class name only, as a warning:
    an outage to alert on (``/readyz``), not a bug."""
    log.warning("database unavailable", extra={"error_class": type(exc).__name__})
    return problem_response(
        DATABASE_UNAVAILABLE, DATABASE_UNAVAILABLE_DETAIL, headers={"Retry-After": str(retry_after)}
    )


def internal_error_response(exc: BaseException) -> JSONResponse:
    """The 500 for an exception nothing else handled. Logs the class name only: messages can hold data
    (SQL parameters, say), and tracebacks go nowhere a client sees."""
    log.error("unhandled error", extra={"error_class": type(exc).__name__})
    return problem_response(HTTP_PROBLEMS[500], "The hub failed to handle this request; it has been logged.")


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details. `type` is stable; `errors` points at the offending fields.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference", "examples": ["/problems/invalid-input"]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pointer", "detail"],
                "properties": {
                    "pointer": {"type": "string", "description": "JSON pointer into the body, or a parameter name"},
                    "detail": {"type": "string"},
                    "code": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the generated OpenAPI tell the truth about errors: every operation answers 4XX/5XX with a
    Problem, and FastAPI's default 422 body (``HTTPValidationError``) is replaced by it."""
    problem = {"content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for operations in schema.get("paths", {}).values():
        for op in operations.values():
            responses = op.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "The request is not valid", **problem}
            responses.setdefault("4XX", {"description": "Client error (problem+json)", **problem})
            responses.setdefault("5XX", {"description": "Server error (problem+json)", **problem})
    return schema
