"""The ``fhir-r4`` adapter: referrals to a receiver's FHIR R4 server as Patient + ServiceRequest + Task.

* ``deliver`` (referral): one ``transaction`` Bundle. Every entry is a conditional create
  (``request.ifNoneExist`` on its identifier), so a retried delivery finds what the first one stored
  instead of making duplicates. The receipt's ``remote_id`` is the Task's id.
* ``deliver`` (status event): a ``Communication`` about the Task (conditional create on the message's
  idempotency key). The adapter never changes the receiver's Task itself: the receiver owns its status,
  and confirms a sender's cancellation by cancelling the Task, which ``poll`` then finds.
* ``poll``: reads each Task and maps ``Task.status`` onto the referral lifecycle.
* ``health``: ``GET [base]/metadata``.

The mapping is written out in docs/fhir.md ("Referrals to a FHIR R4 server").
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import AnyHttpUrl, Field, field_validator

from hub.adapters.addresses import is_loopback_host
from hub.adapters.base import (
    Adapter,
    AdapterConfig,
    DeliveryError,
    Health,
    InboundStatus,
    Message,
    OpenReferral,
    PermanentDeliveryError,
    Receipt,
)

log = logging.getLogger(__name__)

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

FHIR_JSON = "application/fhir+json"
PROPOSAL_KINDS = frozenset({"samverkansforfragan", "sip-kallelse"})  # asking, not instructing
TASK_STATUS_TO_REFERRAL = {
    "received": "received",
    "accepted": "accepted",
    "ready": "accepted",  # accepted and ready to be worked on; nothing started yet
    "rejected": "rejected",
    "in-progress": "in-progress",
    "on-hold": "on-hold",
    "completed": "completed",
    "cancelled": "cancelled",
}
"""Task.status → referral status. Not mapped (ignored by ``poll``): draft and requested (the receiver
has not acted), failed (the hub's ``failed`` is a delivery outcome) and entered-in-error (the sender's)."""


class FhirR4Config(AdapterConfig):
    base_url: AnyHttpUrl = Field(description="The receiver's FHIR R4 base, e.g. https://fhir.example.se/r4")
    bearer_token_secret: str | None = Field(
        default=None, description="Name of the secret holding a bearer token (never the token itself)"
    )
    timeout_seconds: float | None = Field(default=None, gt=0, le=120, description="Default: the hub's")

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        # Personal data in transit: plain http only to the same machine (development, tests).
        if value.scheme != "https" and not is_loopback_host(value.host or ""):
            raise ValueError("must use https (plain http only for loopback hosts: localhost, 127.0.0.1, ::1)")
        return value


class FhirR4Adapter(Adapter):
    name: ClassVar[str] = "fhir-r4"
    Config: ClassVar[type[AdapterConfig]] = FhirR4Config
    target_url_field: ClassVar[str] = "base_url"

    @property
    def _cfg(self) -> FhirR4Config:
        assert isinstance(self.config, FhirR4Config)
        return self.config

    @property
    def _base(self) -> str:
        return str(self._cfg.base_url).rstrip("/")

    async def deliver(self, message: Message) -> Receipt:
        if message.kind == "referral":
            return await self._deliver_referral(message)
        if message.kind == "status-event":
            return await self._deliver_status_event(message)
        raise PermanentDeliveryError(f"fhir-r4 cannot deliver a message of kind {message.kind!r}")

    async def _deliver_referral(self, message: Message) -> Receipt:
        bundle = referral_bundle(message)
        response = await self._send("POST", self._base, json_body=bundle)
        try:
            entry = response.json()["entry"][-1]["response"]  # a transaction-response keeps the request order
            task_id = _id_from_location(entry["location"]) if "Task/" in entry["location"] else None
            if not task_id:
                raise ValueError
        except (ValueError, KeyError, IndexError, TypeError):
            # Retrying is safe (conditional creates) and the receiver may answer properly next time.
            raise DeliveryError("the FHIR server's transaction-response names no Task") from None
        created = str(entry.get("status", "")).startswith("201")
        return Receipt(remote_id=task_id, detail=f"Task/{task_id} {'created' if created else 'already there'}")

    async def _deliver_status_event(self, message: Message) -> Receipt:
        communication = status_communication(message)
        key = urlencode({"identifier": f"{IDEMPOTENCY_KEY_SYSTEM}|{message.idempotency_key}"})
        response = await self._send(
            "POST", f"{self._base}/Communication", json_body=communication, headers={"If-None-Exist": key}
        )
        remote_id = _id_from_location(response.headers.get("location", "")) or _body_id(response)
        return Receipt(remote_id=remote_id, detail=f"Communication/{remote_id}")

    async def poll(self, open_referrals: Sequence[OpenReferral]) -> list[InboundStatus]:
        changes: list[InboundStatus] = []
        for referral in open_referrals:
            task = await self._read_task(referral)
            if task is None:
                log.warning("fhir-r4: no Task for referral %s at the receiver", referral.referral_id)
                continue
            status = TASK_STATUS_TO_REFERRAL.get(str(task.get("status")))
            if status is None or status == referral.status:
                continue
            code, text = _status_reason(task.get("statusReason"))
            changes.append(
                InboundStatus(
                    referral_id=referral.referral_id,
                    status=status,
                    occurred_at=_when(task),
                    reason_code=code,
                    reason_text=text,
                    remote_id=task.get("id"),
                )
            )
        return changes

    async def _read_task(self, referral: OpenReferral) -> dict[str, Any] | None:
        if referral.remote_id:
            url = f"{self._base}/Task/{quote(referral.remote_id, safe='')}"
        else:
            url = f"{self._base}/Task?" + urlencode({"identifier": f"{REFERRAL_ID_SYSTEM}|{referral.referral_id}"})
        response = await self._send("GET", url, tolerate=(404, 410))
        if response.status_code in (404, 410):
            return None
        try:
            body = response.json()
        except ValueError:
            raise DeliveryError("the FHIR server answered a Task read with something that is not JSON") from None
        if body.get("resourceType") == "Bundle":
            tasks = [
                e["resource"] for e in body.get("entry", []) if e.get("resource", {}).get("resourceType") == "Task"
            ]
            return tasks[0] if tasks else None
        return body if body.get("resourceType") == "Task" else None

    async def health(self) -> Health:
        try:
            response = await self._send("GET", f"{self._base}/metadata")
            body = response.json()
        except DeliveryError as error:
            return Health(ok=False, detail=error.detail)
        except ValueError:
            return Health(ok=False, detail="metadata is not JSON")
        if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
            return Health(ok=False, detail="metadata is not a CapabilityStatement")
        version = str(body.get("fhirVersion", ""))
        if not version.startswith("4."):
            return Health(ok=False, detail=f"FHIR version {version or 'unknown'}, not R4")
        return Health(ok=True, detail=f"FHIR {version}")

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        tolerate: tuple[int, ...] = (),
    ) -> httpx.Response:
        """One request; any failure becomes a ``DeliveryError`` (retryable) or ``PermanentDeliveryError``."""
        all_headers = {"Accept": FHIR_JSON, **(headers or {})}
        content = None
        if json_body is not None:
            all_headers["Content-Type"] = FHIR_JSON
            content = json.dumps(json_body, ensure_ascii=False).encode()
        if self._cfg.bearer_token_secret:
            all_headers["Authorization"] = f"Bearer {self.context.secret(self._cfg.bearer_token_secret)}"
        timeout = self._cfg.timeout_seconds or self.context.timeout_seconds
        try:
            response = await self.context.http.request(
                method, url, content=content, headers=all_headers, timeout=timeout
            )
        except httpx.TimeoutException:
            raise DeliveryError(f"timed out after {timeout:g}s ({method})") from None
        except httpx.TransportError as error:
            raise DeliveryError(f"connection failed ({method}): {type(error).__name__}") from None
        if response.is_success or response.status_code in tolerate:
            return response
        # Only the status and the OperationOutcome's issue codes: a receiver's diagnostics may quote what
        # it was sent (a personal identity number), and this detail ends up in logs and the hub's database.
        detail = f"HTTP {response.status_code} from the FHIR server{_issue_codes(response)}"
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise DeliveryError(detail, retry_after_seconds=_retry_after(response))
        raise PermanentDeliveryError(detail)


# --- what is sent ---------------------------------------------------------------------------------------------


def referral_bundle(message: Message) -> dict[str, Any]:
    """The transaction Bundle for a referral message: [Patient,] ServiceRequest, Task (Task always last)."""
    ref = message.body["referral"]
    referral_id = str(ref["id"])
    by_referral = urlencode({"identifier": f"{REFERRAL_ID_SYSTEM}|{referral_id}"})
    referral_identifier = {"system": REFERRAL_ID_SYSTEM, "value": referral_id}
    entries: list[dict[str, Any]] = []

    def full_url(kind: str) -> str:  # stable across retries, so a retry sends the same bytes
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{REFERRAL_ID_SYSTEM}/{referral_id}/{kind}')}"

    child = ref.get("child") or {}
    pin = child.get("personal_identity_number")
    if pin:
        patient_identifier = {"system": _pin_system(str(pin)), "value": _pin_value(str(pin))}
        patient: dict[str, Any] = {"resourceType": "Patient", "identifier": [patient_identifier]}
        if child.get("birth_date"):
            patient["birthDate"] = child["birth_date"]
        if_none = urlencode({"identifier": f"{patient_identifier['system']}|{patient_identifier['value']}"})
        entries.append(_entry(full_url("Patient"), patient, if_none))
        subject: dict[str, Any] = {"reference": full_url("Patient")}
    else:
        # No identity was permitted: a logical reference naming "the child of this referral" by the hub's
        # (pseudonymous) referral id. The receiver learns who the child is only through the hub.
        subject = {
            "type": "Patient",
            "identifier": {"system": REFERRAL_SUBJECT_SYSTEM, "value": referral_id},
            "display": "Barnet i ärendet (identitet delas inte) / the child of this referral (identity not shared)",
        }

    kind = str(ref["kind"])
    sender, recipient = _organisation(ref["sender"]), _organisation(ref["recipient"])
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
    entries.append(_entry(full_url("ServiceRequest"), _clean(service_request), by_referral))

    inputs = []
    if legal.get("basis") and legal.get("decision_id"):
        decision = {"system": SHARING_DECISION_SYSTEM, "value": str(legal["decision_id"])}
        inputs.append(
            {"type": {"coding": [{"system": LEGAL_BASES, "code": legal["basis"]}]}, "valueIdentifier": decision}
        )
    for category, value in (ref.get("information") or {}).items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        inputs.append({"type": {"coding": [{"system": DATA_CATEGORIES, "code": category}]}, "valueString": text})
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
        "input": inputs,
    }
    entries.append(_entry(full_url("Task"), _clean(task), by_referral))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


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


# --- what comes back ------------------------------------------------------------------------------------------


def _id_from_location(location: str) -> str | None:
    """``Task/123/_history/1`` or ``https://x/fhir/Task/123`` → ``123``."""
    parts = [p for p in location.split("?")[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-1] if len(parts) >= 2 else None


def _body_id(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("id") if isinstance(body, dict) else None


def _issue_codes(response: httpx.Response) -> str:
    try:
        body = response.json()
        codes = sorted({str(i.get("code")) for i in body.get("issue", [])}) if isinstance(body, dict) else []
    except (ValueError, AttributeError):
        return ""
    return f" (OperationOutcome: {', '.join(codes)})" if codes else ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _status_reason(reason: Any) -> tuple[str | None, str | None]:
    if not isinstance(reason, dict):
        return None, None
    codings = [c for c in reason.get("coding", []) if isinstance(c, dict) and c.get("code")]
    ours = [c for c in codings if c.get("system") == REJECTION_REASONS] or codings
    code = ours[0]["code"] if ours else None
    text = reason.get("text") or (ours[0].get("display") if ours else None)
    return code, text


def _when(task: dict[str, Any]) -> datetime:
    for value in (task.get("lastModified"), (task.get("meta") or {}).get("lastUpdated")):
        if value:
            try:
                when = datetime.fromisoformat(value)
            except ValueError:
                continue  # a partial date: not precise enough to time a transition
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.now(UTC)
