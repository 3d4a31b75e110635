"""FHIR R4 CareTeam: the team around the child for its members, read by id or searched for the child named
in the ``Child-Personal-Identity-Number`` header (never in the URL). Everyone else: a read is 404 and a
search finds nothing — the same as for a child with no team. Rendered from the same view as REST and
GraphQL (valid by ``fhir.resources`` R4B): organisations and roles with their periods, never case content."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request

from hub.api.auth import require
from hub.api.deps import RuntimeDep, actor_for
from hub.api.fhir.common import FHIR_JSON, NO_STORE, PREFIX, FHIRResponse, base_url
from hub.api.problems import PROBLEM_JSON
from hub.domain.errors import NotFound
from hub.domain.hsa import HSA_ID_SYSTEM
from hub.domain.principal import Principal, Role
from hub.domain.vocabulary import CANONICAL_BASE
from hub.fhir.audit import CHILD_PSEUDONYM_SYSTEM, ORGANISATION_SYSTEM
from hub.services import teams as svc
from hub.services.teams import AssignmentView, MembershipView, OrganisationRef, TeamView

router = APIRouter()
Reader = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL, Role.COORDINATOR))]
PIN_HEADER = "Child-Personal-Identity-Number"
FHIR_ROUTE: dict[str, Any] = {
    "response_class": FHIRResponse,
    "responses": {
        200: {"content": {FHIR_JSON: {}}},
        **{s: {"content": {PROBLEM_JSON: {}}} for s in (401, 403, 404, 422)},
    },
}


# --- rendering: the same view REST and GraphQL show, the child only as its pseudonym ---------------------
LIFE_STAGES = f"{CANONICAL_BASE}/CodeSystem/life-stages"
ROLE_TEXT = {"named-person": "Named person", "lead-professional": "Lead professional", "participant": "Participant"}


def _instant(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _period(start: datetime, end: datetime | None) -> dict[str, str]:
    return {k: v for k, v in (("start", _instant(start)), ("end", _instant(end))) if v}


def organisation_reference(org: OrganisationRef) -> dict[str, Any]:
    """By HSA-id (HL7 Sweden's system) when the registry has one, else by the hub's id."""
    identifier = (
        {"system": HSA_ID_SYSTEM, "value": org.hsa_id}
        if org.hsa_id
        else {"system": ORGANISATION_SYSTEM, "value": org.organisation_id}
    )
    ref: dict[str, Any] = {"type": "Organization", "identifier": identifier}
    if org.name:
        ref["display"] = org.name
    return ref


def _assignment(a: AssignmentView) -> dict[str, Any]:
    role: dict[str, Any] = {"text": ROLE_TEXT[a.role]}
    if a.stage:
        role["coding"] = [{"system": LIFE_STAGES, "code": a.stage}]
    return {
        "role": [role],
        "member": organisation_reference(a.organisation),
        "period": _period(a.period_start, a.period_end),
    }


def _membership(m: MembershipView) -> dict[str, Any]:
    return {
        "role": [{"text": f"{ROLE_TEXT['participant']} ({m.join_reason})"}],
        "member": organisation_reference(m.organisation),
        "period": _period(m.period_start, m.period_end),
    }


def care_team(view: TeamView, child_pseudonym: str) -> dict[str, Any]:
    """Every assignment and membership, past ones with their ended periods; the responsible organisation
    as ``managingOrganization``; a note when responsibility has returned to the named person."""
    body: dict[str, Any] = {
        "resourceType": "CareTeam",
        "id": view.id,
        "status": "active",
        "name": "Team around the child",
        "subject": {"identifier": {"system": CHILD_PSEUDONYM_SYSTEM, "value": child_pseudonym}},
        "participant": [*map(_assignment, view.assignments), *map(_membership, view.memberships)],
        "meta": {"lastUpdated": _instant(view.updated_at)},
    }
    if view.responsible.organisation is not None:
        body["managingOrganization"] = [organisation_reference(view.responsible.organisation)]
    if view.responsible.note_en:
        body["note"] = [{"text": view.responsible.note_en}]
    return body


def capability_resource() -> dict[str, Any]:
    """The CapabilityStatement ``rest.resource`` entry for CareTeam (members; read and search)."""
    return {
        "type": "CareTeam",
        "profile": "http://hl7.org/fhir/StructureDefinition/CareTeam",
        "documentation": (
            "The team around the child, for its current members (bearer token, role system or professional). "
            f"Search names the child in the {PIN_HEADER} header, never in the URL: one entry for a member, "
            "none for anyone else; a read by id is 404 for anyone but a member. Every read is audited."
        ),
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
    }


def require_party(principal: Principal) -> None:
    if not principal.has_any(Role.SYSTEM, Role.PROFESSIONAL):  # a coordinator learns what outsiders learn
        raise NotFound(svc.NOT_ON_TEAM)


@router.get("/CareTeam/{team_id}", summary="Read a CareTeam (its members)", **FHIR_ROUTE)
async def read_care_team(
    team_id: Annotated[str, Path(max_length=64)], principal: Reader, runtime: RuntimeDep
) -> FHIRResponse:
    require_party(principal)
    view, pseudonym = await svc.read_team_by_id(runtime, actor_for(principal), team_id)
    return FHIRResponse(care_team(view, pseudonym), headers=NO_STORE)


@router.get(
    "/CareTeam", summary="Search CareTeam: the child in the Child-Personal-Identity-Number header", **FHIR_ROUTE
)
async def search_care_teams(
    request: Request,
    principal: Reader,
    runtime: RuntimeDep,
    pin: Annotated[str, Header(alias=PIN_HEADER, min_length=10, max_length=13)],
) -> FHIRResponse:
    """A searchset of the child's CareTeam: one entry for a member, none for anyone else."""
    entries = []
    try:
        require_party(principal)
        view, pseudonym = await svc.read_team_of_child(runtime, actor_for(principal), pin=pin, pointer=PIN_HEADER)
        resource = care_team(view, pseudonym)
        base = base_url(request, runtime)
        entries.append(
            {"fullUrl": f"{base}{PREFIX}/CareTeam/{view.id}", "resource": resource, "search": {"mode": "match"}}
        )
    except NotFound:
        pass
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
    return FHIRResponse(bundle, headers=NO_STORE)
