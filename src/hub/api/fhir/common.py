"""What the FHIR routers share: the media type, the response class, the base url, the errors."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from hub.api.deps import RuntimeDep
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


class FHIRResponse(JSONResponse):
    media_type = FHIR_JSON


def base_url(request: Request, runtime: RuntimeDep) -> str:
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


def invalid(pointer: str, message: str) -> InvalidInput:
    return InvalidInput(message, errors=[FieldError(pointer, message)])


def not_supported(exc: fhir_search.UnsupportedParameters) -> Response:
    """The one FHIR answer that is not problem+json: strict handling's 400 OperationOutcome."""
    return FHIRResponse(fhir_search.operation_outcome(exc.names), status_code=400, headers=NO_STORE)
