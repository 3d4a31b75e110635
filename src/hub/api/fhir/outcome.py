"""Errors of the FHIR referral surface as ``OperationOutcome``: a FHIR client reads them where it expects
them, with the same status and the same problem code as the REST API (``details.coding`` in the hub's
problems system), one issue per offending field (its code, message and where: ``expression``).

Routes opt in with :class:`OutcomeRoute`; the terminology and AuditEvent routes keep problem+json.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from hub.api.context import request_id_var
from hub.api.fhir.common import FHIRResponse
from hub.api.problems import HTTP_PROBLEMS, hub_error_response, pointer_from_loc, problem_for
from hub.domain import errors as e
from hub.domain.vocabulary import CANONICAL_BASE

PROBLEMS_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/hub-problems"
# The FHIR issue-type for each HTTP status the hub answers with.
_ISSUE_TYPE = {400: "structure", 401: "login", 403: "forbidden", 404: "not-found", 409: "conflict"}
_ISSUE_TYPE |= {422: "invalid", 429: "throttled", 503: "transient"}


def _issue(code: str, problem: str, text: str, where: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": "error",
        "code": code,
        "details": {"coding": [{"system": PROBLEMS_SYSTEM, "code": problem}], "text": text},
    }
    if where:
        issue["expression"] = [where]
    return issue


def outcome(status: int, problem: str, detail: str, fields: list[e.FieldError]) -> dict[str, Any]:
    code = _ISSUE_TYPE.get(status, "exception")
    issues = [_issue(code, problem, detail)]
    issues += [_issue(code, f.code, f.message, f.pointer) for f in fields]
    return {"resourceType": "OperationOutcome", "id": request_id_var.get(), "issue": issues}


def outcome_response(exc: e.HubError) -> Response:
    ptype = problem_for(exc)
    body = outcome(ptype.status, ptype.code, exc.detail, exc.errors)
    if isinstance(exc, e.SharingDenied):  # the engine's reasons, as the REST problem lists them
        body["issue"] += [_issue("forbidden", r.code, r.en) for r in exc.reasons]
    if isinstance(exc, e.InvalidTransition):
        allowed = ", ".join(exc.allowed_transitions) or "none: the status is final"
        body["issue"].append(_issue("business-rule", "allowed-transitions", allowed, "Task.status"))
    headers = {k: v for k, v in hub_error_response(exc).headers.items() if k in ("www-authenticate", "retry-after")}
    return FHIRResponse(body, status_code=ptype.status, headers=headers)


class OutcomeRoute(APIRoute):
    """A route whose hub errors (its dependencies' too: authentication) are answered as OperationOutcome."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except e.HubError as exc:
                return outcome_response(exc)
            except RequestValidationError as exc:
                fields = [
                    e.FieldError(pointer_from_loc(err.get("loc", ())), err.get("msg", "invalid"))
                    for err in exc.errors()
                ]
                ptype = HTTP_PROBLEMS[422]
                return FHIRResponse(outcome(422, ptype.code, "The request is not valid.", fields), status_code=422)

        return answer
