"""The Nordjournal adapter: the hub's messages in, the journal's status changes back out.

Nordjournal (fictional) has a small REST API, authenticated with an API key as a bearer token:

    POST /api/v2/inbound-referrals          a new referral; X-Request-Key dedupes → {"caseId", "state"}
    POST /api/v2/referral-events            a status event about a referral; X-Request-Key dedupes
    GET  /api/v2/inbound-referrals/{caseId} a case: {"caseId", "externalId", "state", "stateChangedAt", ...}
    GET  /api/v2/inbound-referrals?externalId=…   the cases for one hub referral
    GET  /api/v2/health                     {"status": "UP"}

What the adapter does is what any adapter does: map the hub's message onto the system's API, pass the
idempotency key on (here as ``X-Request-Key``), map the answer onto a Receipt or the contract's errors
(``hub.adapters.http_request`` does the HTTP part), and translate the system's states back into the
hub's referral statuses in ``poll``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import Field, field_validator

from hub.adapters import (
    Adapter,
    AdapterConfig,
    DeliveryError,
    Health,
    InboundStatus,
    Message,
    OpenReferral,
    PermanentDeliveryError,
    Receipt,
    http_request,
    remote_id,
)

# Nordjournal's case states → the hub's referral statuses (referral-statuses vocabulary).
STATES = {
    "RECEIVED": "received",
    "TRIAGE": "received",
    "ACCEPTED": "accepted",
    "DECLINED": "rejected",
    "ACTIVE": "in-progress",
    "PAUSED": "on-hold",
    "CLOSED": "completed",
    "WITHDRAWN": "cancelled",
}


class NordjournalConfig(AdapterConfig):
    """One receiving unit in one Nordjournal installation."""

    base_url: str = Field(description="The API root, e.g. https://nordjournal.region.example/api/v2")
    api_key_ref: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        description="The name of the API key secret (never the key itself).",
        json_schema_extra={"x-secret-ref": True},
    )
    unit_id: str | None = Field(
        default=None, description="Nordjournal's id for the receiving unit, if not the default."
    )
    timeout_seconds: float | None = Field(default=None, gt=0, le=120)

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        url = httpx.URL(value)
        loopback = url.host in ("localhost", "127.0.0.1", "::1")
        if url.scheme != "https" and not (url.scheme == "http" and loopback):
            raise ValueError("must be https (plain http only on a loopback host, for development)")
        return value.rstrip("/")


class NordjournalAdapter(Adapter):
    """Referrals become Nordjournal cases; status events are posted to the case; poll reads case states."""

    name: ClassVar[str] = "nordjournal"
    Config: ClassVar[type[AdapterConfig]] = NordjournalConfig
    target_url_field: ClassVar[str | None] = "base_url"

    @property
    def settings(self) -> NordjournalConfig:
        assert isinstance(self.config, NordjournalConfig)
        return self.config

    def _headers(self, message: Message | None = None) -> dict[str, str]:
        try:
            key = self.context.secret(self.settings.api_key_ref)
        except KeyError:
            raise DeliveryError(f"the API key secret {self.settings.api_key_ref!r} is not configured") from None
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        if message is not None:
            headers["X-Request-Key"] = message.idempotency_key
        return headers

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await http_request(
            self.context,
            method,
            self.settings.base_url + path,
            timeout_seconds=self.settings.timeout_seconds,
            **kwargs,
        )

    async def deliver(self, message: Message) -> Receipt:
        if message.kind == "referral":
            document, path, id_key = self._case(message.body["referral"]), "/inbound-referrals", "caseId"
        elif message.kind == "status-event":
            document, path, id_key = self._event(message.body["event"]), "/referral-events", "eventId"
        else:  # a kind this version does not know: retrying will not teach it
            raise PermanentDeliveryError(f"message kind {message.kind!r} is not supported by this adapter")
        response = await self._call("POST", path, json=document, headers=self._headers(message))
        return Receipt(remote_id=remote_id(response, id_key), detail=f"HTTP {response.status_code}")

    def _case(self, referral: dict[str, Any]) -> dict[str, Any]:
        child = referral.get("child") or {}
        concern = referral.get("concern") or {}
        return {
            "externalId": referral["id"],
            "type": referral["kind"],
            "unitId": self.settings.unit_id,
            "from": {
                "organisationId": referral["sender"]["organisation_id"],
                "name": referral["sender"]["name"],
                "hsaId": referral["sender"].get("hsa_id"),
            },
            "subject": {"personnummer": child.get("personal_identity_number"), "birthDate": child.get("birth_date")}
            if child
            else None,
            "reason": {
                "wellbeingCodes": [d["code"] for d in concern.get("dimensions", [])],
                "step": concern.get("trappan_step"),
                "text": concern.get("text"),
            },
            "attachments": referral.get("information", {}),
            "legalBasis": referral["legal_basis"]["basis"],
            "replyTo": referral["reply_to"],
        }

    @staticmethod
    def _event(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "externalId": event["referral_id"],
            "eventId": event["id"],
            "sequence": event.get("seq"),
            "type": event.get("type", "status"),
            "status": event["status"],
            "byOrganisation": event["by_organisation"],
            "occurredAt": event["occurred_at"],
            "reason": event.get("reason_code") or event.get("reason_text"),
            "feedback": event.get("feedback"),
        }

    async def poll(self, open_referrals: Sequence[OpenReferral]) -> list[InboundStatus]:
        """One GET per open referral; report those whose Nordjournal state means another status now."""
        changes: list[InboundStatus] = []
        for open_referral in open_referrals:
            case = await self._find_case(open_referral)
            if case is None:
                continue
            status = STATES.get(case.get("state", ""))
            if status is None or status == open_referral.status:
                continue
            changes.append(
                InboundStatus(
                    referral_id=open_referral.referral_id,
                    status=status,
                    occurred_at=_parse_time(case.get("stateChangedAt")),
                    reason_code=case.get("stateReasonCode"),
                    reason_text=case.get("stateReason"),
                    remote_id=case.get("caseId"),
                )
            )
        return changes

    async def _find_case(self, open_referral: OpenReferral) -> dict[str, Any] | None:
        try:
            if open_referral.remote_id:
                path = f"/inbound-referrals/{open_referral.remote_id}"
                response = await self._call("GET", path, headers=self._headers())
                case = response.json()
                return case if isinstance(case, dict) else None
            response = await self._call(
                "GET", "/inbound-referrals", params={"externalId": open_referral.referral_id}, headers=self._headers()
            )
        except PermanentDeliveryError:
            return None  # the journal does not know the case (any more): nothing to report
        found = response.json()
        return found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else None

    async def health(self) -> Health:
        try:
            response = await self._call("GET", "/health", headers=self._headers())
            status = response.json().get("status")
        except DeliveryError as exc:
            return Health(ok=False, detail=exc.detail)
        except (ValueError, AttributeError):
            return Health(ok=False, detail="the health endpoint did not answer with a JSON object")
        return Health(ok=status == "UP", detail=f"Nordjournal status {status!r}")


def _parse_time(value: object) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)
