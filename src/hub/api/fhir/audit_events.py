"""FHIR R4 AuditEvent: the audit trail for auditors, through the same service as ``/v1/audit``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from hub import fhir
from hub.api.auth import require
from hub.api.deps import RuntimeDep, Session, actor_for
from hub.api.fhir.common import (
    FHIR_JSON,
    NO_STORE,
    UNSUPPORTED,
    FHIRResponse,
    base_url,
    invalid,
    not_supported,
    search_url,
)
from hub.api.problems import PROBLEM_JSON
from hub.domain.errors import FieldError, NotFound
from hub.domain.principal import Principal, Role
from hub.fhir import audit as fhir_audit
from hub.fhir import search as fhir_search
from hub.services import audit_log

router = APIRouter()

Auditor = Annotated[Principal, Depends(require(Role.AUDITOR))]
_AUDIT_PARAMS = frozenset({"_id", "date", "agent", "agent:identifier", "type", "outcome", "_count", "_cursor"})
_AUDIT_ROUTE: dict[str, Any] = {
    "response_class": FHIRResponse,
    "responses": {
        200: {"content": {FHIR_JSON: {}}},
        **{status: {"content": {PROBLEM_JSON: {}}} for status in (401, 403, 404, 422)},
    },
}


def _token(value: str, system: str, param: str) -> str:
    """The code of a token search value, ``code`` or ``system|code``; another system is a 422."""
    given, bar, code = value.rpartition("|")
    if bar and given and given != system:
        raise invalid(param, f"{param} codes are from {system}, not {given}")
    return code


def _agent(agent: str | None, agent_identifier: str | None) -> str | None:
    """The organisation id from ``agent`` (``<id>`` or ``Organization/<id>``) and ``agent:identifier``."""
    orgs = set()
    if agent is not None:
        kind, _, org = agent.rpartition("/")
        if kind not in ("", "Organization"):
            raise invalid("agent", "agent is an organisation: <id> or Organization/<id>")
        orgs.add(org)
    if agent_identifier is not None:
        orgs.add(_token(agent_identifier, fhir_audit.ORGANISATION_SYSTEM, "agent:identifier"))
    if len(orgs) > 1:
        raise invalid("agent", "agent and agent:identifier name different organisations")
    return orgs.pop() if orgs else None


@router.get(
    "/AuditEvent",
    summary="Search AuditEvent (auditor role)",
    **{**_AUDIT_ROUTE, "responses": {**_AUDIT_ROUTE["responses"], **UNSUPPORTED}},
)
async def search_audit_events(
    request: Request,
    principal: Auditor,
    session: Session,
    runtime: RuntimeDep,
    id_: Annotated[str | None, Query(alias="_id", description="An entry's id")] = None,
    date: Annotated[list[str] | None, Query(description="`ge2026-01-01`, `lt2026-02-01T12:00Z`; repeatable")] = None,
    agent: Annotated[str | None, Query(description="An organisation id (or `Organization/<id>`)")] = None,
    agent_identifier: Annotated[str | None, Query(alias="agent:identifier")] = None,
    type_: Annotated[str | None, Query(alias="type", description="The hub's action, e.g. `sharing-decision`")] = None,
    outcome: Annotated[str | None, Query(description="`0` success, `4` refused")] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(alias="_cursor", description="From the Bundle's `next` link")] = None,
    prefer: Annotated[str | None, Header(description="`handling=lenient` ignores unsupported parameters")] = None,
) -> Response:
    """Audit entries as a searchset Bundle, newest first, paged by the `next` link. Scoped and audited
    exactly like `GET /v1/audit`; there is no child filter here (a personnummer never goes in a URL).
    An unsupported parameter is a 400 OperationOutcome unless `Prefer: handling=lenient` (strict by
    default here, so that a misspelt filter never silently widens a search of the audit trail)."""
    items = request.query_params.multi_items()
    unknown = fhir_search.unsupported(items, _AUDIT_PARAMS)
    if unknown and fhir_search.strict_handling(prefer, default=True):
        return not_supported(fhir_search.UnsupportedParameters(unknown))
    used = [(k, v) for k, v in items if k not in unknown]
    wanted = _audit_id(id_)
    if wanted is not None:  # continue just above the id, one entry: the read's one access-control path
        cursor, count = audit_log._encode_cursor(wanted + 1), 1
    page = await audit_log.read_audit(
        session,
        actor=actor_for(principal),
        pseudonymizer=runtime.pseudonymizer,
        query=_audit_query(date, _agent(agent, agent_identifier), type_, outcome, cursor, count),
    )
    found = [e for e in page.items if id_ is None or e.id == wanted]
    base = base_url(request, runtime)
    resources = [fhir_audit.audit_event(e) for e in found]
    bundle = fhir.searchset_bundle(resources, base, self_url=search_url(base, "AuditEvent", used))
    del bundle["total"]  # one page: how many match in all is not counted
    if page.next_cursor is not None and id_ is None:
        params = [(k, v) for k, v in used if k != "_cursor"]
        onward = search_url(base, "AuditEvent", [*params, ("_cursor", page.next_cursor)])
        bundle["link"].append({"relation": "next", "url": onward})
    return FHIRResponse(bundle, headers=NO_STORE)


def _audit_id(value: str | None) -> int | None:
    """The entry id an ``_id`` names; -1 (no entry) for one that is no entry id."""
    if value is None:
        return None
    return int(value) if re.fullmatch(r"[0-9]{1,18}", value) else -1


def _audit_query(
    date: list[str] | None,
    organisation: str | None,
    type_: str | None,
    outcome: str | None,
    cursor: str | None,
    count: int,
) -> audit_log.AuditQuery:
    try:
        since, until = fhir_audit.date_bounds(date or [])
    except ValueError as exc:
        raise invalid("date", str(exc)) from None
    action = _token(type_, fhir_audit.AUDIT_ACTION_SYSTEM, "type") if type_ is not None else None
    if action is not None and action not in {a.value for a in fhir_audit.ACTION_CODES}:
        raise invalid("type", f"{action!r} is not an action of {fhir_audit.AUDIT_ACTION_SYSTEM}")
    code = _token(outcome, fhir_audit.OUTCOME_SYSTEM, "outcome") if outcome is not None else None
    if code is not None and code not in fhir_audit.OUTCOME_CODES:
        raise invalid("outcome", f"outcome is one of {', '.join(fhir_audit.OUTCOME_CODES)}")
    return audit_log.AuditQuery(
        organisation=organisation, action=action, outcome=code, since=since, until=until, cursor=cursor, limit=count
    )


@router.get("/AuditEvent/{id}", summary="Read AuditEvent (auditor role)", **_AUDIT_ROUTE)
async def read_audit_event(
    principal: Auditor,
    session: Session,
    runtime: RuntimeDep,
    id: Annotated[str, Path(description="The audit entry's id")],
) -> Response:
    """One audit entry; 404 when there is none with this id that the caller may see (the read is audited)."""
    missing = NotFound(
        f"there is no AuditEvent with id {id!r} that you may see", errors=[FieldError("id", "unknown id")]
    )
    if not re.fullmatch(r"[0-9]{1,18}", id):
        raise missing
    wanted = int(id)
    # The one access-control path: read_audit, continued just above the id. (read_audit has no id
    # filter; the cursor is the service's own encoding of "entries before this id".)
    page = await audit_log.read_audit(
        session,
        actor=actor_for(principal),
        pseudonymizer=runtime.pseudonymizer,
        query=audit_log.AuditQuery(cursor=audit_log._encode_cursor(wanted + 1), limit=1),
    )
    found = [e for e in page.items if e.id == wanted]
    if not found:
        raise missing
    return FHIRResponse(fhir_audit.audit_event(found[0]), headers=NO_STORE)
