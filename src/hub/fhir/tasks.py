"""A referral as an R4 ``Task`` (what the caller's organisation sent or received: metadata only, as
``GET /v1/referrals`` lists it), and a ``Task`` update read back as a lifecycle change.

The referral statuses are Task statuses already (requested, received, accepted, rejected, in-progress,
on-hold, completed, cancelled, failed, entered-in-error); ``ready`` is read as ``accepted`` (accepted
and ready, nothing started). Organisations are named by HSA-id (HL7 Sweden's system) when the registry
has one, else by the hub's organisation id. Pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from hub.domain.errors import FieldError, InvalidInput
from hub.domain.hsa import HSA_ID_SYSTEM, ORGANISATION_NUMBER_SYSTEM
from hub.domain.vocabulary import CANONICAL_BASE
from hub.fhir.referral_bundle import ORGANISATION_SYSTEM, REFERRAL_ID_SYSTEM, REFERRAL_KINDS

__all__ = [
    "TaskChange",
    "declare_referrals",
    "organisation_reference",
    "organization_resource",
    "referral_statuses_for",
    "task_change",
    "task_resource",
]

REFERRAL_STATUSES = f"{CANONICAL_BASE}/CodeSystem/referral-statuses"
REJECTION_REASONS = f"{CANONICAL_BASE}/CodeSystem/rejection-reasons"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
_TASK_TO_REFERRAL = {"ready": "accepted"}
TASK_STATUSES = (
    "draft requested received accepted rejected ready cancelled in-progress on-hold failed completed entered-in-error"
).split()


class OrganisationLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def hsa_id(self) -> str | None: ...
    @property
    def organisation_number(self) -> str | None: ...
    @property
    def active(self) -> bool: ...


class ReferralLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def sender_organisation(self) -> str: ...
    @property
    def recipient_organisation(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


def organisation_reference(org_id: str, orgs: Mapping[str, OrganisationLike]) -> dict[str, Any]:
    """A logical reference to an organisation: its HSA-id when it has one, else the hub's id."""
    org = orgs.get(org_id)
    if org is not None and org.hsa_id:
        return {
            "type": "Organization",
            "identifier": {"system": HSA_ID_SYSTEM, "value": org.hsa_id},
            "display": org.name,
        }
    reference: dict[str, Any] = {"type": "Organization", "identifier": {"system": ORGANISATION_SYSTEM, "value": org_id}}
    if org is not None:
        reference["display"] = org.name
    return reference


def organization_resource(org: OrganisationLike) -> dict[str, Any]:
    """A registry organisation as an R4 ``Organization`` (HL7 Sweden's identifier systems)."""
    identifiers = [{"system": ORGANISATION_SYSTEM, "value": org.id}]
    if org.hsa_id:
        identifiers.append({"use": "official", "system": HSA_ID_SYSTEM, "value": org.hsa_id})
    if org.organisation_number:
        identifiers.append({"system": ORGANISATION_NUMBER_SYSTEM, "value": org.organisation_number})
    return {
        "resourceType": "Organization",
        "id": org.id,
        "meta": {"profile": ["http://hl7.se/fhir/ig/base/StructureDefinition/SEBaseOrganization"]},
        "identifier": identifiers,
        "active": org.active,
        "name": org.name,
    }


def _instant(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def task_resource(referral: ReferralLike, orgs: Mapping[str, OrganisationLike]) -> dict[str, Any]:
    """The referral as a Task: id, status, who asked whom, when. No identity, no free text."""
    return {
        "resourceType": "Task",
        "id": referral.id,
        "meta": {"lastUpdated": _instant(referral.updated_at)},
        "identifier": [{"system": REFERRAL_ID_SYSTEM, "value": referral.id}],
        "status": referral.status,
        "businessStatus": {"coding": [{"system": REFERRAL_STATUSES, "code": referral.status}]},
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill"}]},
        "description": referral.kind,
        "reasonCode": {"coding": [{"system": REFERRAL_KINDS, "code": referral.kind}]},
        "authoredOn": _instant(referral.created_at),
        "lastModified": _instant(referral.updated_at),
        "requester": organisation_reference(referral.sender_organisation, orgs),
        "owner": organisation_reference(referral.recipient_organisation, orgs),
    }


def referral_statuses_for(task_statuses: list[str]) -> list[str]:
    """The referral statuses a ``status`` search asks for (``ready`` is accepted)."""
    unknown = [s for s in task_statuses if s not in TASK_STATUSES]
    if unknown:
        raise InvalidInput("Unknown Task status.", errors=[FieldError("status", f"one of {', '.join(TASK_STATUSES)}")])
    return sorted({_TASK_TO_REFERRAL.get(s, s) for s in task_statuses})


@dataclass(frozen=True)
class TaskChange:
    """A Task update as a lifecycle change: the new status and what the change carries."""

    status: str
    reason_code: str | None = None
    reason_text: str | None = None
    feedback: str | None = None


def _patched(body: Any) -> dict[str, Any]:
    """A PATCH body as the Task fields it sets: a JSON Patch (``replace``/``add`` of ``/status``,
    ``/statusReason``, ``/note``) or a partial Task (merge patch, as fhirpy sends)."""
    if isinstance(body, dict):
        return body
    fields: dict[str, Any] = {}
    for i, op in enumerate(body if isinstance(body, list) else [None]):
        if not isinstance(op, dict) or op.get("op") not in ("replace", "add") or not isinstance(op.get("path"), str):
            raise InvalidInput(
                "Only replace/add of Task.status, statusReason and note can be patched.",
                errors=[FieldError(f"/{i}", "a JSON Patch replace or add operation")],
            )
        name = op["path"].strip("/").split("/")[0]
        fields[name] = op.get("value")
    return fields


def task_change(body: Any, *, patch: bool) -> TaskChange:
    """The lifecycle change a PUT (a whole Task) or PATCH asks for; Task.status is required.

    ``statusReason``: a rejection-reasons coding is the reason code, its text the reason text;
    ``note[0].text`` (or ``output[0].valueString``) is the feedback a completion carries."""
    fields = _patched(body) if patch else body
    if not isinstance(fields, dict) or (not patch and fields.get("resourceType") != "Task"):
        raise InvalidInput("Send a Task.", errors=[FieldError("Task", "a FHIR Task resource")])
    status = fields.get("status")
    if not isinstance(status, str) or status not in TASK_STATUSES:
        raise InvalidInput("Task.status is required.", errors=[FieldError("Task.status", "a Task status code")])
    reason = fields.get("statusReason")
    reason_code, reason_text = None, None
    if isinstance(reason, dict):
        coding = reason.get("coding")
        codings: list[Any] = coding if isinstance(coding, list) else []
        reason_code = next(
            (str(c["code"]) for c in codings if isinstance(c, dict) and c.get("system") == REJECTION_REASONS), None
        )
        reason_text = reason.get("text") if isinstance(reason.get("text"), str) else None
    feedback = None
    notes, outputs = fields.get("note"), fields.get("output")
    if isinstance(notes, list) and notes and isinstance(notes[0], dict):
        feedback = notes[0].get("text") if isinstance(notes[0].get("text"), str) else None
    elif isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
        feedback = outputs[0].get("valueString") if isinstance(outputs[0].get("valueString"), str) else None
    return TaskChange(_TASK_TO_REFERRAL.get(status, status), reason_code, reason_text, feedback)


def _search(name: str, kind: str, documentation: str) -> dict[str, Any]:
    return {"name": name, "type": kind, "documentation": documentation}


def declare_referrals(statement: Mapping[str, Any]) -> dict[str, Any]:
    """``statement`` with the referral surface declared: the transaction, Task and Organization."""
    body: dict[str, Any] = json.loads(json.dumps(statement))
    rest = body["rest"][0]
    task = {
        "type": "Task",
        "profile": "http://hl7.org/fhir/StructureDefinition/Task",
        "documentation": "A referral the caller's organisation sent or received (metadata). Update: Task.status "
        "(+ statusReason, note as feedback) moves the referral through its lifecycle.",
        "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "update"}, {"code": "patch"}],
        "versioning": "no-version",
        "updateCreate": False,
        "searchParam": [
            _search("_id", "token", "The referral's id"),
            _search("status", "token", "Task status; comma: any of"),
            _search("owner", "reference", "The recipient: an organisation id; owner:identifier by HSA-id"),
            _search("requester", "reference", "The sender: an organisation id; requester:identifier by HSA-id"),
            _search("_lastUpdated", "date", "ge/gt/le/lt and an instant"),
            _search("_count", "number", "At most 200 (one page)"),
        ],
    }
    organization = {
        "type": "Organization",
        "profile": "http://hl7.org/fhir/StructureDefinition/Organization",
        "supportedProfile": ["http://hl7.se/fhir/ig/base/StructureDefinition/SEBaseOrganization"],
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            _search("identifier", "token", f"{HSA_ID_SYSTEM}|<HSA-id> or the hub's organisation id"),
            _search("_id", "token", "The hub's organisation id"),
        ],
    }
    rest["resource"] += [task, organization]
    rest["interaction"] = [
        {
            "code": "transaction",
            "documentation": "A Bundle of Patient, ServiceRequest and Task sends a referral, as POST /v1/referrals "
            "(idempotent on Bundle.identifier or the Task's ifNoneExist). Errors: OperationOutcome.",
        }
    ]
    security = rest.setdefault("security", {})
    security["description"] = (
        security.get("description", "") + " The transaction, Task and Organization need a bearer token; Task and "
        "the transaction the role system or professional."
    ).strip()
    return body
