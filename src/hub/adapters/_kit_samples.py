"""The conformance kit's messages: a fictional referral and a status event, shaped exactly as the hub
builds them (docs/adapters.md, "Message bodies"). Every run gets fresh ids, so a target that keeps data
between runs sees new referrals each time."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from hub.adapters.base import Message

# Skatteverket's well-known test personal identity number ("Tolvan Tolvansson"): never a real child.
KIT_PERSONAL_IDENTITY_NUMBER = "191212121212"

WHEEL = "https://vocab.hub.se/fhir/CodeSystem/wellbeing-wheel"
SENDER = {
    "organisation_id": "kit-grundskola",
    "name": "Kitskolan (conformance kit)",
    "type": "grundskola",
    "municipality_code": "1882",
    "hsa_id": "SE2321000000-KIT1",
}
RECIPIENT = {
    "organisation_id": "kit-bup",
    "name": "BUP Kit (conformance kit)",
    "type": "bup",
    "municipality_code": "1880",
    "hsa_id": "SE2321000000-KIT2",
}


@dataclass(frozen=True)
class Samples:
    referral: Message
    status_event: Message
    concern_marker: str  # a unique string in the concern text: it must never show up in an error
    hub_url: str

    @property
    def personal_data(self) -> tuple[str, ...]:
        """Strings from the message that must never appear in an exception's detail or a receipt."""
        return (KIT_PERSONAL_IDENTITY_NUMBER, self.concern_marker)

    def fresh_referral(self) -> Message:
        """Another referral (new ids and key, the same concern marker), so scenarios do not collide."""
        ids = {**_ids(), "marker": self.concern_marker}
        return _referral(ids, self.hub_url)

    def replay(self, message: Message) -> Message:
        """The same message again, as the worker rebuilds it for a retry: equal ids and key, new object."""
        return replace(message, body=_copy(message.body))


def _ids() -> dict[str, str]:
    run = uuid.uuid4().hex[:12]
    return {
        "run": run,
        "referral_id": f"kit-ref-{run}",
        "message_id": f"kit-msg-{run}",
        "key": f"kit-key-{run}",
        "marker": f"kit-concern-{run}",
    }


def make_samples(hub_url: str) -> Samples:
    ids = _ids()
    referral = _referral(ids, hub_url)
    event_id = f"kit-evt-{ids['run']}"
    event = Message(
        kind="status-event",
        message_id=f"kit-msg-{event_id}",
        idempotency_key=f"kit-key-{event_id}",
        referral_id=ids["referral_id"],
        sender_organisation=SENDER["organisation_id"],
        recipient_organisation=RECIPIENT["organisation_id"],
        body={
            "event": {
                "id": event_id,
                "referral_id": ids["referral_id"],
                "seq": 2,
                "type": "cancellation-requested",  # the sender asks; the receiver confirms (status cancelled)
                "status": "received",
                "previous_status": "received",
                "by_organisation": SENDER["organisation_id"],
                "occurred_at": _now(),
                "reason_code": None,
                "reason_text": "Behovet tillgodoses på annat sätt (conformance kit).",
                "suggested_organisation": None,
                "suggested_service": None,
                "feedback": None,
            }
        },
        created_at=datetime.now(UTC),
    )
    return Samples(referral=referral, status_event=event, concern_marker=ids["marker"], hub_url=hub_url)


def _referral(ids: dict[str, str], hub_url: str) -> Message:
    reply_to = f"{hub_url.rstrip('/')}/v1/referrals/{ids['referral_id']}/events"
    body: dict[str, Any] = {
        "referral": {
            "id": ids["referral_id"],
            "kind": "remiss",
            "status": "requested",
            "created_at": _now(),
            "sender": dict(SENDER),
            "recipient": dict(RECIPIENT),
            "service": {"id": "kit-bup-intake", "name": "Intag (conformance kit)"},
            "child": {"personal_identity_number": KIT_PERSONAL_IDENTITY_NUMBER, "birth_date": "1912-12-12"},
            "concern": {
                "dimensions": [
                    {"system": WHEEL, "code": "healthy", "display": "Healthy"},
                    {"system": WHEEL, "code": "achieving", "display": "Achieving"},
                ],
                "local_codes": [{"system": "urn:kit:local-wheel", "code": "halsa"}],
                "trappan_step": 2,
                "text": f"Fictional concern for the conformance kit ({ids['marker']}).",
            },
            "information": {
                "school-situation": {"attendance_percent": 71, "note": "Fictional."},
                "wellbeing-assessment": {"healthy": 2, "achieving": 3},
            },
            "legal_basis": {"basis": "consent", "reference": "kit-consent-1", "decision_id": f"kit-dec-{ids['run']}"},
            "permitted_categories": ["identity", "school-situation", "wellbeing-assessment", "concern-text"],
            "reply_to": reply_to,
        }
    }  # fmt: skip
    return Message(
        kind="referral",
        message_id=ids["message_id"],
        idempotency_key=ids["key"],
        referral_id=ids["referral_id"],
        sender_organisation=SENDER["organisation_id"],
        recipient_organisation=RECIPIENT["organisation_id"],
        body=body,
        created_at=datetime.now(UTC),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
