"""What the FHIR routers share: the media type, the response class, the base url, the errors."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Header, Path, Request, Response
from fastapi.responses import JSONResponse

from hub.api.deps import RuntimeDep
from hub.api.problems import PROBLEM_JSON
from hub.domain.errors import FieldError, InvalidInput
from hub.fhir import search as fhir_search

PREFIX = "/fhir/r4"
FHIR_JSON = "application/fhir+json"
NO_STORE = {"Cache-Control": "no-store"}
UNSUPPORTED: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "OperationOutcome: unsupported search parameters (strict handling)",
        "content": {FHIR_JSON: {}},
    }
}

FHIR_OK: dict[int | str, dict[str, Any]] = {
    200: {"content": {FHIR_JSON: {}}},
    304: {"description": "Not modified"},
}
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"content": {PROBLEM_JSON: {}}},
    422: {"content": {PROBLEM_JSON: {}}},
}

AcceptLanguage = Annotated[
    str | None, Header(description="`sv` (default) or `en`: the language of displays and titles")
]
IdPath = Annotated[str, Path(description="The id: the vocabulary's name, e.g. `wellbeing-wheel`")]


class FHIRResponse(JSONResponse):
    media_type = FHIR_JSON


# The route options of a terminology read or $translate: FHIR JSON, or problem+json for 404 and 422.
ROUTE: dict[str, Any] = {"response_class": FHIRResponse, "responses": {**FHIR_OK, **_PROBLEMS}}


def base_url(request: Request, runtime: RuntimeDep) -> str:
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


def search_url(base: str, resource_type: str, params: list[tuple[str, str]]) -> str:
    """A search's URL on this hub (a Bundle's ``self`` and ``next`` links)."""
    query = urlencode(params, safe=":|/")
    return f"{base}{PREFIX}/{resource_type}" + (f"?{query}" if query else "")


def invalid(pointer: str, message: str) -> InvalidInput:
    return InvalidInput(message, errors=[FieldError(pointer, message)])


def not_supported(exc: fhir_search.UnsupportedParameters) -> Response:
    """The one FHIR answer that is not problem+json: strict handling's 400 OperationOutcome."""
    return FHIRResponse(fhir_search.operation_outcome(exc.names), status_code=400, headers=NO_STORE)
