"""FHIR referrals in: a transaction Bundle (ServiceRequest + Task) sends a referral through the same use
case as ``POST /v1/referrals``; Tasks are read, searched and moved through the lifecycle; Organizations
are found by HSA-id. Errors are OperationOutcome (``outcome``). Rendering and parsing: ``hub.fhir``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from hub import fhir
from hub.api.auth import Caller, require
from hub.api.deps import RuntimeDep, Session, actor_for
from hub.api.fhir.common import FHIR_JSON, NO_STORE, PREFIX, FHIRResponse, base_url, search_url
from hub.api.fhir.outcome import OutcomeRoute
from hub.api.routing import Router
from hub.domain.errors import FieldError, InvalidInput
from hub.domain.hsa import HSA_ID_SYSTEM
from hub.domain.principal import Principal, Role
from hub.fhir import referral_bundle as rb
from hub.fhir import tasks as fhir_tasks
from hub.services import fhir_tasks as svc
from hub.services import referrals as referrals_svc
from hub.services import registry as registry_svc

router = Router(prefix=PREFIX, tags=["fhir"], route_class=OutcomeRoute)
Party = Annotated[Principal, Depends(require(Role.SYSTEM, Role.PROFESSIONAL))]
_FHIR_BODY: dict[str, Any] = {"requestBody": {"content": {FHIR_JSON: {"schema": {"type": "object"}}}}}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    code: {"description": "OperationOutcome", "content": {FHIR_JSON: {}}} for code in (401, 403, 404, 409, 422)
}


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise InvalidInput("The body is not JSON.", errors=[FieldError("/", "send FHIR JSON")]) from None


def _transaction_response(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


async def _task(session: Session, organisation_id: str, referral_id: str) -> dict[str, Any]:
    view = await svc.task_view(session, organisation_id=organisation_id, referral_id=referral_id)
    orgs = await svc.organisations(session, (view.sender_organisation, view.recipient_organisation))
    return fhir_tasks.task_resource(view, orgs)


@router.post("/", include_in_schema=False)  # the base with a slash, as FHIR clients write it
@router.post(
    "",
    summary="A transaction Bundle (ServiceRequest + Task) sends a referral",
    openapi_extra=_FHIR_BODY,
    responses=_ANSWERS,
)
async def transaction(request: Request, principal: Party, runtime: RuntimeDep, session: Session) -> Response:
    """As ``POST /v1/referrals``: decided, audited, delivered; idempotent on ``Bundle.identifier`` (or the
    Task's ``ifNoneExist``). Answers a ``transaction-response`` Bundle; the Task's id is the referral's."""
    wanted = rb.parse_referral_bundle(await _json(request))
    organisation_id, service_id = wanted.organisation_id, wanted.service_id
    if wanted.recipient_hsa_id is not None:
        org = await svc.organisation_for_identifier(
            session,
            system=HSA_ID_SYSTEM,
            value=wanted.recipient_hsa_id,
            pointer="Task.owner",
            hub_system=rb.ORGANISATION_SYSTEM,
        )
        if org is None:
            raise InvalidInput(
                "No organisation in the registry carries the recipient's HSA-id.",
                errors=[
                    FieldError(
                        "Task.owner.identifier", "no registered organisation has this HSA-id", "unknown-organisation"
                    )
                ],
            )
        organisation_id = org.id
    await session.close()  # the use case opens its own unit of work
    draft = referrals_svc.ReferralDraft(
        kind=wanted.kind,
        target=referrals_svc.Target(organisation_id=organisation_id, service_id=service_id),
        personal_identity_number=wanted.personal_identity_number,
        data_categories=wanted.data_categories,
        dimensions=wanted.dimensions,
        local_codes=None
        if wanted.local_system is None
        else referrals_svc.LocalCodes(wanted.local_system, wanted.local_codes),
        trappan_step=wanted.trappan_step,
        concern_text=wanted.concern_text,
        information=wanted.information,
        legal_basis=wanted.legal_basis,
        basis_reference=wanted.basis_reference,
        protected_identity=wanted.protected_identity,
    )
    sent = await referrals_svc.send_referral(
        actor=actor_for(principal), draft=draft, idempotency_key=wanted.idempotency_key, runtime=runtime
    )
    referral_id = str(sent.referral.id)
    status = "200 OK" if sent.replayed else "201 Created"
    entries = [
        {"response": {"status": status, "location": f"ServiceRequest/{referral_id}"}},
        {"response": {"status": status, "location": f"Task/{referral_id}/_history/1"}},
    ]
    if "identity" in wanted.data_categories:  # the Patient: matched by pseudonym, never stored as a resource
        entries.insert(0, {"response": {"status": "200 OK"}})
    headers = {**NO_STORE, "Location": f"{base_url(request, runtime)}{PREFIX}/Task/{referral_id}"}
    if sent.replayed:
        headers["Idempotent-Replayed"] = "true"
    return FHIRResponse(_transaction_response(entries), headers=headers)


@router.get(
    "/Task/{task_id}", summary="One referral the caller's organisation sent or received, as a Task", responses=_ANSWERS
)
async def read_task(task_id: str, principal: Party, session: Session) -> Response:
    return FHIRResponse(await _task(session, principal.organisation_id, task_id), headers=NO_STORE)


def _instant(param: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            "Not a date.", errors=[FieldError(param, "an ISO 8601 instant with prefix ge/gt/le/lt")]
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput("Give a time zone.", errors=[FieldError(param, "an instant with its offset, e.g. Z")])
    return parsed


async def _org_param(session: Session, params: list[tuple[str, str]], name: str) -> tuple[str | None, bool]:
    """The organisation id ``name`` (or ``name:identifier``) asks for; False when it names none."""
    for key, value in params:
        if key == name:
            return value.removeprefix("Organization/"), True
        if key == f"{name}:identifier":
            system, _, ident = value.rpartition("|")
            org = await svc.organisation_for_identifier(
                session, system=system or None, value=ident, pointer=key, hub_system=rb.ORGANISATION_SYSTEM
            )
            return (org.id, True) if org else (None, False)
    return None, True


@router.get("/Task", summary="Search the Tasks (referrals) of the caller's organisation", responses=_ANSWERS)
async def search_tasks(request: Request, principal: Party, session: Session, runtime: RuntimeDep) -> Response:
    """``_id``, ``status`` (comma: any of), ``owner``/``requester`` (an organisation id or
    ``Organization/<id>``; ``owner:identifier=<system>|<value>`` by HSA-id), ``_lastUpdated`` (``ge``/``gt``/
    ``le``/``lt`` + instant, repeatable), ``_count`` (at most 200), ``_cursor`` (from a ``next`` link). Newest
    first, a page at a time: the Bundle's ``next`` link reads on, and ``total`` is given only when the whole
    result is one page."""
    params = list(request.query_params.multi_items())
    ids = tuple(v for k, v in params if k == "_id" for v in v.split(","))
    statuses = [s for k, v in params if k == "status" for s in v.split(",")]
    owner, owner_found = await _org_param(session, params, "owner")
    requester, requester_found = await _org_param(session, params, "requester")
    updated_from = updated_to = None
    for key, value in params:
        if key == "_lastUpdated":
            prefix, rest = (value[:2], value[2:]) if value[:2] in ("ge", "gt", "le", "lt") else ("eq", value)
            when = _instant("_lastUpdated", rest)
            if prefix in ("ge", "gt"):
                updated_from = when
            elif prefix in ("le", "lt"):
                updated_to = when
            else:
                raise InvalidInput(
                    "Bound _lastUpdated.", errors=[FieldError("_lastUpdated", "prefix ge, gt, le or lt")]
                )
    count = next((v for k, v in params if k == "_count"), "50")
    if not count.isdigit() or not 1 <= int(count) <= 200:
        raise InvalidInput("_count is 1 to 200.", errors=[FieldError("_count", "1 to 200")])
    query = svc.TaskQuery(
        ids=ids,
        statuses=tuple(fhir_tasks.referral_statuses_for(statuses)) if statuses else (),
        owner=owner,
        requester=requester,
        updated_from=updated_from,
        updated_to=updated_to,
        count=int(count),
        cursor=next((v for k, v in params if k == "_cursor"), None),
    )
    page = (
        svc.TaskPage([], None)
        if not (owner_found and requester_found)
        else await svc.search_tasks(session, organisation_id=principal.organisation_id, q=query)
    )
    orgs = await svc.organisations(
        session, (o for v in page.items for o in (v.sender_organisation, v.recipient_organisation))
    )
    base = base_url(request, runtime)
    tasks = [fhir_tasks.task_resource(v, orgs) for v in page.items]
    bundle = fhir.searchset_bundle(tasks, base, self_url=search_url(base, "Task", params))
    if page.next_cursor is not None:
        onward = [(k, v) for k, v in params if k != "_cursor"] + [("_cursor", page.next_cursor)]
        bundle["link"].append({"relation": "next", "url": search_url(base, "Task", onward)})
    if page.next_cursor is not None or query.cursor is not None:
        del bundle["total"]  # a page of several: how many match in all is not counted
    return FHIRResponse(bundle, headers=NO_STORE)


async def _move(
    request: Request, task_id: str, principal: Principal, runtime: RuntimeDep, session: Session, *, patch: bool
) -> Response:
    change = fhir_tasks.task_change(await _json(request), patch=patch)
    await session.close()
    draft = referrals_svc.EventDraft(
        type="status",
        status=change.status,
        reason_code=change.reason_code,
        reason_text=change.reason_text,
        feedback=change.feedback,
    )
    await referrals_svc.record_event(
        actor=actor_for(principal), referral_id=task_id, draft=draft, idempotency_key=None, runtime=runtime
    )
    async with runtime.sessions() as fresh:
        return FHIRResponse(await _task(fresh, principal.organisation_id, task_id), headers=NO_STORE)


@router.put(
    "/Task/{task_id}",
    summary="Move a referral: Task.status (+ statusReason, note as feedback)",
    openapi_extra=_FHIR_BODY,
    responses=_ANSWERS,
)
async def put_task(task_id: str, request: Request, principal: Party, runtime: RuntimeDep, session: Session) -> Response:
    """Only ``status``, ``statusReason`` and ``note`` are read; the change goes through the referral's
    lifecycle as ``POST /v1/referrals/{id}/events`` (a transition it does not allow is a 409)."""
    return await _move(request, task_id, principal, runtime, session, patch=False)


@router.patch(
    "/Task/{task_id}",
    summary="Move a referral: JSON Patch or a partial Task",
    openapi_extra=_FHIR_BODY,
    responses=_ANSWERS,
)
async def patch_task(
    task_id: str, request: Request, principal: Party, runtime: RuntimeDep, session: Session
) -> Response:
    return await _move(request, task_id, principal, runtime, session, patch=True)


@router.get(
    "/Organization/{organisation_id}", summary="A registry organisation (HL7 Sweden identifiers)", responses=_ANSWERS
)
async def read_organization(organisation_id: str, principal: Caller, session: Session) -> Response:
    org = await registry_svc.get_registered_organisation(session, organisation_id=organisation_id)
    return FHIRResponse(fhir_tasks.organization_resource(org), headers=NO_STORE)


@router.get(
    "/Organization", summary="Find organisations: identifier=<system>|<value> (HSA-id), _id", responses=_ANSWERS
)
async def search_organizations(request: Request, principal: Caller, session: Session, runtime: RuntimeDep) -> Response:
    """Every criterion must hold (``identifier`` by HSA-id or the hub's id, ``_id``): at most one match."""
    matches: set[str] | None = None
    by_id: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key == "identifier":
            system, _, ident = value.rpartition("|")
            org = await svc.organisation_for_identifier(
                session, system=system or None, value=ident, pointer="identifier", hub_system=rb.ORGANISATION_SYSTEM
            )
        elif key == "_id":
            org = (await svc.organisations(session, [value])).get(value)
        else:
            continue
        ids = {org.id} if org is not None else set()
        by_id |= {org.id: org} if org is not None else {}
        matches = ids if matches is None else matches & ids
    found = [fhir_tasks.organization_resource(by_id[i]) for i in sorted(matches or ())]
    return FHIRResponse(fhir.searchset_bundle(found, base_url(request, runtime)), headers=NO_STORE)
