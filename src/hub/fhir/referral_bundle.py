"""A referral sent in FHIR: the transaction ``Bundle`` of ``ServiceRequest`` + ``Task`` (and the child's
``Patient``), the shape the ``fhir-r4`` adapter delivers, read back into what ``POST /v1/referrals`` takes.

Pure: :func:`parse_referral_bundle` returns a :class:`BundledReferral` or raises ``InvalidInput`` whose
field pointers are FHIRPath expressions into the bundle (``Bundle.entry[1].resource.code``). Reading:

- kind: ``ServiceRequest.code`` in ``referral-kinds``; the recipient: ``Task.owner`` (else the first
  ``ServiceRequest.performer``) by HSA-id (``urn:oid:1.2.752.29.4.19``) or the hub's organisation id, and a
  ``HealthcareService`` performer by the hub's service id;
- the child: the ``Patient`` the ``ServiceRequest.subject`` references, by personnummer or samordningsnummer
  (HL7 Sweden's systems);
- the concern: ``reasonCode`` (wellbeing-wheel codes, or a wheel variant's), the Trappan step
  (``category`` step-N in intervention-levels), ``note`` (free text);
- what is shared: every ``Task.input`` typed by a data-categories code carries that category's content;
  the categories are those inputs, ``identity`` (a Patient is sent) and ``concern-text`` (a note is sent);
- the legal basis: a ``Task.input`` typed by a legal-bases code whose ``valueIdentifier`` names the consent
  or necessity assessment, or a ``Consent`` in ``ServiceRequest.supportingInfo``;
- idempotency: ``Bundle.identifier`` (``system|value``), else the ``Task``'s hub idempotency-key
  identifier, else the ``Task`` entry's ``request.ifNoneExist``; one of them is required.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hub.domain.errors import FieldError, InvalidInput
from hub.domain.hsa import (
    HSA_ID_SYSTEM,
    PERSONNUMMER_SYSTEM,
    SAMORDNINGSNUMMER_SYSTEM,
    InvalidHsaId,
    parse_hsa_id,
)
from hub.domain.vocabulary import CANONICAL_BASE

__all__ = [
    "DATA_CATEGORIES",
    "IDEMPOTENCY_KEY_SYSTEM",
    "ORGANISATION_SYSTEM",
    "REFERRAL_ID_SYSTEM",
    "BundledReferral",
    "parse_referral_bundle",
]

ORGANISATION_SYSTEM = f"{CANONICAL_BASE}/sid/organisation"
SERVICE_SYSTEM = f"{CANONICAL_BASE}/sid/service"
REFERRAL_ID_SYSTEM = f"{CANONICAL_BASE}/sid/referral"
IDEMPOTENCY_KEY_SYSTEM = f"{CANONICAL_BASE}/sid/idempotency-key"
CONSENT_SYSTEM = f"{CANONICAL_BASE}/sid/consent"
SHARING_DECISION_SYSTEM = f"{CANONICAL_BASE}/sid/sharing-decision"
REFERRAL_KINDS = f"{CANONICAL_BASE}/CodeSystem/referral-kinds"
WELLBEING_WHEEL = f"{CANONICAL_BASE}/CodeSystem/wellbeing-wheel"
INTERVENTION_LEVELS = f"{CANONICAL_BASE}/CodeSystem/intervention-levels"
LEGAL_BASES = f"{CANONICAL_BASE}/CodeSystem/legal-bases"
DATA_CATEGORIES = f"{CANONICAL_BASE}/CodeSystem/data-categories"
_CODE_SYSTEM_PREFIX = f"{CANONICAL_BASE}/CodeSystem/"
_PIN_SYSTEMS = (PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM)


@dataclass(frozen=True)
class BundledReferral:
    """What the bundle asks for, in the terms of ``POST /v1/referrals``. The recipient is exactly one of
    ``recipient_hsa_id``, ``organisation_id`` and ``service_id``."""

    kind: str
    personal_identity_number: str
    data_categories: list[str]
    idempotency_key: str
    recipient_hsa_id: str | None = None
    organisation_id: str | None = None
    service_id: str | None = None
    dimensions: list[str] = field(default_factory=list)
    local_system: str | None = None
    local_codes: list[str] = field(default_factory=list)
    trappan_step: int | None = None
    concern_text: str | None = None
    information: dict[str, Any] = field(default_factory=dict)
    legal_basis: str | None = None
    protected_identity: bool = False  # the Patient is labelled restricted (meta.security R or V)
    basis_reference: str | None = None


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, where: str, message: str, code: str = "invalid") -> None:
        self.items.append(FieldError(where, message, code))


def _entries(bundle: Any, errors: _Errors) -> dict[str, tuple[int, dict[str, Any], dict[str, Any]]]:
    """resourceType → (index, resource, entry) for the one Patient, ServiceRequest and Task."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        errors.add("Bundle", "send a FHIR Bundle")
        return {}
    if bundle.get("type") != "transaction":
        errors.add("Bundle.type", "a referral is sent as a transaction Bundle")
    found: dict[str, tuple[int, dict[str, Any], dict[str, Any]]] = {}
    entries = bundle.get("entry")
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if rtype not in ("Patient", "ServiceRequest", "Task") or rtype in found:
            errors.add(f"Bundle.entry[{i}]", "one Patient, one ServiceRequest and one Task, nothing else")
            continue
        assert isinstance(resource, dict) and isinstance(entry, dict)
        found[rtype] = (i, resource, entry)
    for needed in ("ServiceRequest", "Task"):
        if needed not in found:
            errors.add("Bundle.entry", f"the bundle has no {needed}")
    return found


def _codings(concept: Any) -> list[dict[str, Any]]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []


def _code_in(concept: Any, system: str) -> str | None:
    return next((str(c["code"]) for c in _codings(concept) if c.get("system") == system and c.get("code")), None)


def _identifier(value: Any) -> tuple[str, str] | None:
    if isinstance(value, dict) and isinstance(value.get("system"), str) and isinstance(value.get("value"), str):
        return value["system"], value["value"]
    return None


def _recipient(sr: tuple[int, dict[str, Any]], task: tuple[int, dict[str, Any]], errors: _Errors) -> dict[str, str]:
    """``recipient_hsa_id``, ``organisation_id`` or ``service_id`` from Task.owner / the performers."""
    (si, service_request), (ti, task_resource) = sr, task
    performers = service_request.get("performer")
    performers = performers if isinstance(performers, list) else []
    for performer in performers:
        ident = _identifier(performer.get("identifier") if isinstance(performer, dict) else None)
        if ident is not None and ident[0] == SERVICE_SYSTEM:
            return {"service_id": ident[1]}
    candidates = [(f"Bundle.entry[{ti}].resource.owner", task_resource.get("owner"))]
    candidates += [(f"Bundle.entry[{si}].resource.performer[{i}]", p) for i, p in enumerate(performers)]
    for where, reference in candidates:
        ident = _identifier(reference.get("identifier") if isinstance(reference, dict) else None)
        if ident is None:
            continue
        system, value = ident
        if system == HSA_ID_SYSTEM:
            try:
                parse_hsa_id(value)
            except InvalidHsaId as exc:
                errors.add(f"{where}.identifier.value", exc.message, f"hsa-id-{exc.reason}")
                return {}
            return {"recipient_hsa_id": value}
        if system == ORGANISATION_SYSTEM:
            return {"organisation_id": value}
        errors.add(f"{where}.identifier.system", f"name the recipient by HSA-id ({HSA_ID_SYSTEM}) or hub id")
        return {}
    errors.add(f"Bundle.entry[{ti}].resource.owner", "the Task names no recipient (owner) by identifier")
    return {}


_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


def _protected(found: dict[str, tuple[int, dict[str, Any], dict[str, Any]]]) -> bool:
    """Whether the sender labels the Patient restricted or very restricted (``meta.security`` R or V, HL7's
    confidentiality codes): the child's identity is protected, as ``child.protected_identity`` in REST."""
    if "Patient" not in found:
        return False
    meta = found["Patient"][1].get("meta")
    labels = meta.get("security") if isinstance(meta, dict) else None
    return any(
        isinstance(label, dict) and label.get("system") == _CONFIDENTIALITY and label.get("code") in ("R", "V")
        for label in (labels if isinstance(labels, list) else [])
    )


def _child(found: dict[str, tuple[int, dict[str, Any], dict[str, Any]]], errors: _Errors) -> str:
    if "Patient" not in found:
        errors.add("Bundle.entry", "the bundle has no Patient: the child is identified by personnummer")
        return ""
    pi, patient, _ = found["Patient"]
    identifiers = patient.get("identifier")
    for identifier in identifiers if isinstance(identifiers, list) else []:
        ident = _identifier(identifier)
        if ident is not None and ident[0] in _PIN_SYSTEMS:
            return ident[1]
    errors.add(f"Bundle.entry[{pi}].resource.identifier", "a personnummer or samordningsnummer (HL7 Sweden's systems)")
    return ""


def _idempotency_key(bundle: dict[str, Any], task: tuple[int, dict[str, Any], dict[str, Any]], errors: _Errors) -> str:
    ident = _identifier(bundle.get("identifier"))
    if ident is not None:
        return f"fhir-bundle:{ident[0]}|{ident[1]}"
    _, task_resource, entry = task
    identifiers = task_resource.get("identifier")
    for identifier in identifiers if isinstance(identifiers, list) else []:
        ident = _identifier(identifier)
        if ident is not None and ident[0] == IDEMPOTENCY_KEY_SYSTEM:
            return ident[1]
    request = entry.get("request")
    if isinstance(request, dict) and isinstance(request.get("ifNoneExist"), str) and request["ifNoneExist"]:
        return f"fhir-if-none-exist:{request['ifNoneExist']}"
    errors.add("Bundle.identifier", "a Bundle.identifier or the Task entry's ifNoneExist makes the send idempotent")
    return ""


def _concern(si: int, service_request: dict[str, Any], out: dict[str, Any], errors: _Errors) -> None:
    reasons = service_request.get("reasonCode")
    for ri, reason in enumerate(reasons if isinstance(reasons, list) else []):
        for coding in _codings(reason):
            system, code = coding.get("system"), coding.get("code")
            if system == WELLBEING_WHEEL:
                out["dimensions"].append(str(code))
            elif isinstance(system, str) and system.startswith(_CODE_SYSTEM_PREFIX) and code:
                name = system.removeprefix(_CODE_SYSTEM_PREFIX)
                if out["local_system"] not in (None, name):
                    errors.add(f"Bundle.entry[{si}].resource.reasonCode[{ri}]", "one wheel variant per referral")
                out["local_system"] = name
                out["local_codes"].append(str(code))
    for category in service_request.get("category") or []:
        step = _code_in(category, INTERVENTION_LEVELS)
        if step and step.startswith("step-") and step[5:].isdigit():
            out["trappan_step"] = int(step[5:])
    notes = service_request.get("note")
    if isinstance(notes, list) and notes and isinstance(notes[0], dict) and isinstance(notes[0].get("text"), str):
        out["concern_text"] = notes[0]["text"]


def _shared(ti: int, task: dict[str, Any], service_request: dict[str, Any], out: dict[str, Any]) -> None:
    inputs = task.get("input")
    for item in inputs if isinstance(inputs, list) else []:
        if not isinstance(item, dict):
            continue
        category = _code_in(item.get("type"), DATA_CATEGORIES)
        basis = _code_in(item.get("type"), LEGAL_BASES)
        if category is not None:
            text = item.get("valueString")
            out["information"][category] = _content(text) if isinstance(text, str) else None
        elif basis is not None:
            out["legal_basis"] = basis
            ident = _identifier(item.get("valueIdentifier"))
            if ident is not None and ident[0] != SHARING_DECISION_SYSTEM:
                out["basis_reference"] = ident[1]
    for info in service_request.get("supportingInfo") or []:
        ident = _identifier(info.get("identifier") if isinstance(info, dict) else None)
        if ident is not None and ident[0] == CONSENT_SYSTEM:
            out["legal_basis"] = out["legal_basis"] or "consent"
            out["basis_reference"] = out["basis_reference"] or ident[1]


def _content(text: str) -> Any:
    """A category's content: JSON when the adapter sent a structure, the text otherwise."""
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def parse_referral_bundle(bundle: Any) -> BundledReferral:
    """The referral a transaction Bundle asks for, or InvalidInput naming every offending element."""
    errors = _Errors()
    found = _entries(bundle, errors)
    if "ServiceRequest" not in found or "Task" not in found:
        raise InvalidInput("The Bundle is not a referral.", errors=errors.items)
    si, service_request, _ = found["ServiceRequest"]
    ti, task, _ = found["Task"]
    kind = _code_in(service_request.get("code"), REFERRAL_KINDS)
    if kind is None:
        errors.add(f"Bundle.entry[{si}].resource.code", f"a code of {REFERRAL_KINDS}")
    out: dict[str, Any] = {
        "dimensions": [],
        "local_system": None,
        "local_codes": [],
        "information": {},
        "legal_basis": None,
        "basis_reference": None,
    }
    _concern(si, service_request, out, errors)
    _shared(ti, task, service_request, out)
    recipient = _recipient((si, service_request), (ti, task), errors)
    pin = _child(found, errors)
    key = _idempotency_key(bundle, found["Task"], errors)
    if errors.items or kind is None:
        raise InvalidInput(f"{len(errors.items)} element(s) of the Bundle are not valid.", errors=errors.items)
    categories = {key for key, value in out["information"].items()}
    out["information"] = {k: v for k, v in out["information"].items() if v is not None}
    categories |= {"identity"} | ({"concern-text"} if out.get("concern_text") else set())
    return BundledReferral(
        kind=kind,
        personal_identity_number=pin,
        data_categories=sorted(categories),
        idempotency_key=key,
        recipient_hsa_id=recipient.get("recipient_hsa_id"),
        organisation_id=recipient.get("organisation_id"),
        service_id=recipient.get("service_id"),
        dimensions=out["dimensions"],
        local_system=out["local_system"],
        local_codes=out["local_codes"],
        trappan_step=out.get("trappan_step"),
        concern_text=out.get("concern_text"),
        information=out["information"],
        legal_basis=out["legal_basis"],
        basis_reference=out["basis_reference"],
        protected_identity=_protected(found),
    )
