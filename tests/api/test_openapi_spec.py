"""The committed OpenAPI document is what the app generates, so integrators never read a stale contract."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_spec_matches_the_app(app: FastAPI) -> None:
    committed = json.loads(SPEC.read_text(encoding="utf-8"))
    generated = json.loads(json.dumps(app.openapi()))
    assert committed == generated, "openapi/openapi.json is stale: run `make openapi` and commit the result"


def test_every_operation_documents_problem_responses(app: FastAPI) -> None:
    """Integrators generate clients from the spec; the error shape must be in it, not only in prose."""
    spec = app.openapi()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method, op in operations.items()
        if not any("application/problem+json" in r.get("content", {}) for r in op.get("responses", {}).values())
    ]
    assert missing == []
