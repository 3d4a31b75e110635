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
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import AnyHttpUrl, Field, field_validator

from hub.adapters._fhir_r4_resources import (
    IDEMPOTENCY_KEY_SYSTEM,
    PERSONNUMMER_SYSTEM,
    REFERRAL_ID_SYSTEM,
    REFERRAL_SUBJECT_SYSTEM,
    REJECTION_REASONS,
    SAMORDNINGSNUMMER_SYSTEM,
    referral_bundle,
    status_communication,
)
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

__all__ = [
    "PERSONNUMMER_SYSTEM",
    "REFERRAL_ID_SYSTEM",
    "REFERRAL_SUBJECT_SYSTEM",
    "REJECTION_REASONS",
    "SAMORDNINGSNUMMER_SYSTEM",
    "TASK_STATUS_TO_REFERRAL",
    "FhirR4Adapter",
    "FhirR4Config",
    "referral_bundle",
    "status_communication",
]

FHIR_JSON = "application/fhir+json"
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
