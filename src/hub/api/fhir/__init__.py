"""The FHIR R4 terminology endpoint (``/fhir/r4``)."""

from hub.api.fhir.router import router

__all__ = ["router"]
