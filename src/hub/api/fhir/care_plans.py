"""FHIR R4 CarePlan: one per version of the child's plan, with only the sections the reader may see (each
an extension carrying its section code, data category and JSON content), the withheld ones listed with
their category and reason. Read by id or searched (``status``, ``_count``) for the child named in the
``Child-Personal-Identity-Number`` header (never in the URL), by current members of the child's team;
everyone else: a read is 404 and a search finds nothing. Valid by ``fhir.resources`` R4B."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request

from hub.api.deps import RuntimeDep, actor_for
from hub.api.fhir.care_teams import FHIR_ROUTE, PIN_HEADER, Reader, organisation_reference, require_party
from hub.api.fhir.common import NO_STORE, PREFIX, FHIRResponse, base_url
from hub.domain.errors import NotFound
from hub.domain.vocabulary import CANONICAL_BASE
from hub.fhir.audit import CHILD_PSEUDONYM_SYSTEM
from hub.services import plans as svc
from hub.services.plans import PlanView

router = APIRouter()
SECTION = f"{CANONICAL_BASE}/StructureDefinition/child-plan-section"
WITHHELD = f"{CANONICAL_BASE}/StructureDefinition/child-plan-section-withheld"
CATEGORIES = f"{CANONICAL_BASE}/CodeSystem/data-categories"


def _section(code: str, content: Any) -> dict[str, Any]:
    return {
        "url": SECTION,
        "extension": [
            {"url": "code", "valueCode": code},
            {"url": "content", "valueString": json.dumps(content, ensure_ascii=False, sort_keys=True)},
        ],
    }


def _withheld(w: dict[str, str]) -> dict[str, Any]:
    return {
        "url": WITHHELD,
        "extension": [
            {"url": "code", "valueCode": w["section"]},
            {"url": "dataCategory", "valueCoding": {"system": CATEGORIES, "code": w["data_category"]}},
            {"url": "reason", "valueCode": w["reason"]},
        ],
    }


def care_plan(view: PlanView) -> dict[str, Any]:
    """The current version is ``active``; a replaced one ``revoked`` (no longer in force). Purged content
    leaves the resource without sections (its metadata remains)."""
    plan = view.plan or {}
    body: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": view.id,
        "meta": {"versionId": str(view.version), "lastUpdated": view.created_at.isoformat()},
        "status": "active" if view.current else "revoked",
        "intent": "plan",
        "title": f"Child's plan, version {view.version}",
        "subject": {"identifier": {"system": CHILD_PSEUDONYM_SYSTEM, "value": view.child_pseudonym}},
        "created": view.created_at.isoformat(),
        "author": organisation_reference(view.author),
        "careTeam": [{"reference": f"CareTeam/{view.team_id}"}],
        "identifier": [{"system": f"{CANONICAL_BASE}/child-plan-version", "value": f"{view.team_id}/{view.version}"}],
    }
    extensions = [_section(code, plan[code]) for code in view.sections if code in plan]
    extensions += [_withheld(w) for w in view.withheld]
    if extensions:
        body["extension"] = extensions
    return body


def capability_resource() -> dict[str, Any]:
    return {
        "type": "CarePlan",
        "profile": "http://hl7.org/fhir/StructureDefinition/CarePlan",
        "documentation": (
            "The child's plan, one CarePlan per version, for the current members of the child's team, with only "
            f"the sections the reader's legal basis covers. Search names the child in the {PIN_HEADER} header, "
            "never in the URL (parameters: status, _count); a read by id is 404 for anyone but a member. "
            "Every read is audited with its basis."
        ),
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            {"name": "status", "type": "token"},
            {"name": "_count", "type": "number"},
        ],
        "versioning": "no-version",
        "readHistory": False,
    }


@router.get("/CarePlan/{plan_id}", summary="Read a CarePlan (a version of the child's plan)", **FHIR_ROUTE)
async def read_care_plan(
    plan_id: Annotated[str, Path(max_length=64)], principal: Reader, runtime: RuntimeDep
) -> FHIRResponse:
    require_party(principal)
    view = await svc.read_plan_by_id(runtime, actor_for(principal), plan_id)
    return FHIRResponse(care_plan(view), headers=NO_STORE)


@router.get(
    "/CarePlan", summary="Search CarePlan: the child in the Child-Personal-Identity-Number header", **FHIR_ROUTE
)
async def search_care_plans(
    request: Request,
    principal: Reader,
    runtime: RuntimeDep,
    pin: Annotated[str, Header(alias=PIN_HEADER, min_length=10, max_length=13)],
    status: Annotated[Literal["active", "revoked"] | None, Query()] = None,
    count: Annotated[int, Query(alias="_count", ge=0, le=100)] = 20,
) -> FHIRResponse:
    """The versions of the child's plan, newest first: for a member; none for anyone else."""
    views: list[PlanView] = []
    total = 0
    try:
        require_party(principal)
        current = None if status is None else status == "active"
        views, total = await svc.search_plans(
            runtime, actor_for(principal), pin=pin, pointer=PIN_HEADER, current=current, limit=count
        )
    except NotFound:
        pass
    base = base_url(request, runtime)
    entries = [
        {"fullUrl": f"{base}{PREFIX}/CarePlan/{v.id}", "resource": care_plan(v), "search": {"mode": "match"}}
        for v in views
    ]
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": total, "entry": entries}
    return FHIRResponse(bundle, headers=NO_STORE)
