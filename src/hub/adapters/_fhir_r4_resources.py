"""What the ``fhir-r4`` adapter sends: a referral as a transaction Bundle of [Patient,] ServiceRequest
and Task, a status event as a Communication about the Task, and the identifier systems and code
systems they use (the mapping in docs/fhir.md, "Referrals to a FHIR R4 server")."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from hub.adapters.base import Message

VOCAB = "https://vocab.hub.se/fhir"
REFERRAL_ID_SYSTEM = f"{VOCAB}/sid/referral"
REFERRAL_SUBJECT_SYSTEM = f"{VOCAB}/sid/referral-subject"  # "the child of referral X", when identity is not shared
IDEMPOTENCY_KEY_SYSTEM = f"{VOCAB}/sid/idempotency-key"
ORGANISATION_SYSTEM = f"{VOCAB}/sid/organisation"
SERVICE_SYSTEM = f"{VOCAB}/sid/service"
CONSENT_SYSTEM = f"{VOCAB}/sid/consent"
SHARING_DECISION_SYSTEM = f"{VOCAB}/sid/sharing-decision"
STATUS_EVENT_SYSTEM = f"{VOCAB}/sid/status-event"
REFERRAL_KINDS = f"{VOCAB}/CodeSystem/referral-kinds"
REFERRAL_STATUSES = f"{VOCAB}/CodeSystem/referral-statuses"
REJECTION_REASONS = f"{VOCAB}/CodeSystem/rejection-reasons"
WELLBEING_WHEEL = f"{VOCAB}/CodeSystem/wellbeing-wheel"
INTERVENTION_LEVELS = f"{VOCAB}/CodeSystem/intervention-levels"
LEGAL_BASES = f"{VOCAB}/CodeSystem/legal-bases"
DATA_CATEGORIES = f"{VOCAB}/CodeSystem/data-categories"
HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"
PERSONNUMMER_SYSTEM = "http://electronichealth.se/identifier/personnummer"
SAMORDNINGSNUMMER_SYSTEM = "http://electronichealth.se/identifier/samordningsnummer"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
PROTECTED_IDENTITY_INPUT = f"{VOCAB}/CodeSystem/referral-inputs"  # code "protected-identity": the marker

PROPOSAL_KINDS = frozenset({"samverkansforfragan", "sip-kallelse"})  # asking, not instructing


def referral_bundle(message: Message) -> dict[str, Any]:
    """The transaction Bundle for a referral message: [Patient,] ServiceRequest, Task (Task always last)."""
    ref = message.body["referral"]
    referral_id = str(ref["id"])
    by_referral = urlencode({"identifier": f"{REFERRAL_ID_SYSTEM}|{referral_id}"})
    referral_identifier = {"system": REFERRAL_ID_SYSTEM, "value": referral_id}

    def full_url(kind: str) -> str:  # stable across retries, so a retry sends the same bytes
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{REFERRAL_ID_SYSTEM}/{referral_id}/{kind}')}"

    entries, subject = _subject(ref.get("child") or {}, referral_id, full_url("Patient"))
    sender, recipient = _organisation(ref["sender"]), _organisation(ref["recipient"])
    service_request = _service_request(ref, referral_identifier, subject, sender, recipient)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [referral_identifier, {"system": IDEMPOTENCY_KEY_SYSTEM, "value": message.idempotency_key}],
        "status": "requested",
        "businessStatus": {"coding": [{"system": REFERRAL_STATUSES, "code": "requested"}]},
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill"}]},
        "focus": {"reference": full_url("ServiceRequest")},
        "for": subject,
        "authoredOn": ref["created_at"],
        "requester": sender,
        "owner": recipient,
        "input": _task_inputs(ref),
    }
    if ref.get("protected_identity"):
        # Restricted (R): the child's personal data are protected; the marker says how to reach the sender.
        restricted = {"security": [{"system": CONFIDENTIALITY_SYSTEM, "code": "R", "display": "restricted"}]}
        task["meta"] = service_request["meta"] = restricted
        marker = json.dumps(ref["protected_identity"], ensure_ascii=False, sort_keys=True)
        coding = {"system": PROTECTED_IDENTITY_INPUT, "code": "protected-identity"}
        task["input"].append({"type": {"coding": [coding]}, "valueString": marker})
    entries.append(_entry(full_url("ServiceRequest"), service_request, by_referral))
    entries.append(_entry(full_url("Task"), _clean(task), by_referral))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _subject(child: dict[str, Any], referral_id: str, patient_url: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The Bundle's Patient entry (when the child's identity may be shared) and the reference to the child."""
    pin = child.get("personal_identity_number")
    if not pin:
        # No identity was permitted: a logical reference naming "the child of this referral" by the hub's
        # (pseudonymous) referral id. The receiver learns who the child is only through the hub.
        return [], {
            "type": "Patient",
            "identifier": {"system": REFERRAL_SUBJECT_SYSTEM, "value": referral_id},
            "display": "Barnet i ärendet (identitet delas inte) / the child of this referral (identity not shared)",
        }
    patient_identifier = {"system": _pin_system(str(pin)), "value": _pin_value(str(pin))}
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": [patient_identifier]}
    if child.get("birth_date"):
        patient["birthDate"] = child["birth_date"]
    if_none = urlencode({"identifier": f"{patient_identifier['system']}|{patient_identifier['value']}"})
    return [_entry(patient_url, patient, if_none)], {"reference": patient_url}


def _service_request(
    ref: dict[str, Any],
    referral_identifier: dict[str, str],
    subject: dict[str, Any],
    sender: dict[str, Any],
    recipient: dict[str, Any],
) -> dict[str, Any]:
    """The ServiceRequest: the kind, the concern's step, codes and text, the service and the consent."""
    kind = str(ref["kind"])
    concern = ref.get("concern") or {}
    service_request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [referral_identifier],
        "status": "active",
        "intent": "proposal" if kind in PROPOSAL_KINDS else "order",
        "code": {"coding": [{"system": REFERRAL_KINDS, "code": kind}]},
        "subject": subject,
        "authoredOn": ref["created_at"],
        "requester": sender,
        "performer": [recipient],
    }
    if concern.get("trappan_step") is not None:
        step = {"system": INTERVENTION_LEVELS, "code": f"step-{concern['trappan_step']}"}
        service_request["category"] = [{"coding": [step]}]
    if ref.get("service"):
        service = {"system": SERVICE_SYSTEM, "value": str(ref["service"]["id"])}
        service_request["performer"].append(
            _clean({"type": "HealthcareService", "identifier": service, "display": ref["service"].get("name")})
        )
    reasons = [
        {"coding": [_coding(d.get("system") or WELLBEING_WHEEL, d["code"], d.get("display"))]}
        for d in concern.get("dimensions", [])
    ]
    reasons += [{"coding": [_coding(c["system"], c["code"])]} for c in concern.get("local_codes", [])]
    if reasons:
        service_request["reasonCode"] = reasons
    if concern.get("text"):
        service_request["note"] = [{"text": concern["text"]}]
    legal = ref.get("legal_basis") or {}
    if legal.get("basis") == "consent" and legal.get("reference"):
        consent = {"system": CONSENT_SYSTEM, "value": str(legal["reference"])}
        service_request["supportingInfo"] = [{"type": "Consent", "identifier": consent}]
    return _clean(service_request)


def _task_inputs(ref: dict[str, Any]) -> list[dict[str, Any]]:
    """The Task's inputs: the sharing decision it rests on, then each permitted category's information."""
    legal = ref.get("legal_basis") or {}
    inputs = []
    if legal.get("basis") and legal.get("decision_id"):
        decision = {"system": SHARING_DECISION_SYSTEM, "value": str(legal["decision_id"])}
        inputs.append(
            {"type": {"coding": [{"system": LEGAL_BASES, "code": legal["basis"]}]}, "valueIdentifier": decision}
        )
    for category, value in (ref.get("information") or {}).items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        inputs.append({"type": {"coding": [{"system": DATA_CATEGORIES, "code": category}]}, "valueString": text})
    return inputs


def status_communication(message: Message) -> dict[str, Any]:
    """A status event as a Communication about the referral's Task (referenced by the referral id)."""
    event = message.body["event"]
    status = str(event["status"])
    payload: list[dict[str, Any]] = []
    for text in (event.get("reason_text"), event.get("feedback")):
        if text:
            payload.append({"contentString": text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)})
    if event.get("suggested_organisation"):
        suggested = {"system": ORGANISATION_SYSTEM, "value": str(event["suggested_organisation"])}
        payload.append({"contentReference": {"type": "Organization", "identifier": suggested, "display": "suggested"}})
    if event.get("suggested_service"):
        suggested = {"system": SERVICE_SYSTEM, "value": str(event["suggested_service"])}
        payload.append(
            {"contentReference": {"type": "HealthcareService", "identifier": suggested, "display": "suggested"}}
        )
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [
            {"system": IDEMPOTENCY_KEY_SYSTEM, "value": message.idempotency_key},
            {"system": STATUS_EVENT_SYSTEM, "value": str(event["id"])},
        ],
        "status": "completed",
        "topic": {"coding": [{"system": REFERRAL_STATUSES, "code": status}]},
        "about": [{"type": "Task", "identifier": {"system": REFERRAL_ID_SYSTEM, "value": str(event["referral_id"])}}],
        "sent": event["occurred_at"],
        "sender": _organisation({"organisation_id": event.get("by_organisation") or message.sender_organisation}),
        "recipient": [_organisation({"organisation_id": message.recipient_organisation})],
        "payload": payload,
    }
    if event.get("reason_code"):
        system = REJECTION_REASONS if status == "rejected" else None
        communication["reasonCode"] = [{"coding": [_coding(system, event["reason_code"])]}]
    return _clean(communication)


def _entry(full_url: str, resource: dict[str, Any], if_none_exist: str) -> dict[str, Any]:
    request = {"method": "POST", "url": resource["resourceType"], "ifNoneExist": if_none_exist}
    return {"fullUrl": full_url, "resource": resource, "request": request}


def _organisation(org: dict[str, Any]) -> dict[str, Any]:
    if org.get("hsa_id"):
        identifier = {"system": HSA_SYSTEM, "value": str(org["hsa_id"])}
    else:
        identifier = {"system": ORGANISATION_SYSTEM, "value": str(org["organisation_id"])}
    return _clean({"type": "Organization", "identifier": identifier, "display": org.get("name")})


def _coding(system: str | None, code: str, display: str | None = None) -> dict[str, Any]:
    if system and ":" not in system:  # a vocabulary name rather than a canonical url
        system = f"{VOCAB}/CodeSystem/{system}"
    return _clean({"system": system, "code": str(code), "display": display})


def _clean(value: dict[str, Any]) -> dict[str, Any]:
    """Drop empty elements: FHIR forbids ``null``, ``[]`` and ``""``."""
    return {k: v for k, v in value.items() if v not in (None, "", [], {})}


def _digits(pin: str) -> str:
    return pin.replace("-", "").replace("+", "")


def _pin_system(pin: str) -> str:
    day = int(_digits(pin)[-6:-4])  # YYMMDD or YYYYMMDD, then NNNC
    return SAMORDNINGSNUMMER_SYSTEM if day > 60 else PERSONNUMMER_SYSTEM


def _pin_value(pin: str) -> str:
    # The 12-digit form without separator (the hub's canonical form). A 10-digit number is passed as it
    # came: only the hub's identity module knows its century, and adapters do not import it.
    return _digits(pin) if len(_digits(pin)) == 12 else pin
