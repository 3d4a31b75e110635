"""The fhir-r4 adapter against a real FHIR server on loopback (tests/adapters/fhir_server.py), which
validates every resource it is sent with fhir.resources; faults come from tests.loopback.Recorder."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from importlib.metadata import entry_points
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from hub.adapters.base import AdapterContext, DeliveryError, Message, OpenReferral, PermanentDeliveryError
from hub.adapters.fhir_r4 import (
    PERSONNUMMER_SYSTEM,
    REFERRAL_ID_SYSTEM,
    REFERRAL_SUBJECT_SYSTEM,
    REJECTION_REASONS,
    SAMORDNINGSNUMMER_SYSTEM,
    FhirR4Adapter,
    FhirR4Config,
)
from hub.adapters.registry import GROUP
from hub.domain.identity import luhn_check_digit
from tests.adapters.fhir_server import FhirServer
from tests.logscan import personal_identity_numbers_in
from tests.loopback import Recorder, Reply, refused_url, serve


def pin(yymmdd: str, serial: str = "238") -> str:
    """A valid 12-digit number born in 20YY (a samordningsnummer when the day is over 60)."""
    return f"20{yymmdd}{serial}{luhn_check_digit(yymmdd + serial)}"


WHEEL = "https://vocab.hub.se/fhir/CodeSystem/wellbeing-wheel"
PERSONNUMMER = pin("150314")
SAMORDNINGSNUMMER = pin("150374")


def referral(referral_id: str = "ref-1", *, child: str | None = PERSONNUMMER, key: str = "") -> Message:
    body: dict[str, Any] = {
        "id": referral_id,
        "kind": "remiss",
        "status": "requested",
        "created_at": "2026-03-01T09:30:00+01:00",
        "sender": {
            "organisation_id": "nora-grundskola",
            "name": "Nora grundskola",
            "type": "school",
            "municipality_code": "1884",
            "hsa_id": None,
        },
        "recipient": {
            "organisation_id": "bup-orebro",
            "name": "BUP Örebro",
            "type": "healthcare",
            "municipality_code": "1880",
            "hsa_id": "SE2321000164-7381037590003",
        },
        "service": {"id": "bup-mottagning", "name": "BUP-mottagningen"},
        "concern": {
            "dimensions": [{"system": WHEEL, "code": "healthy", "display": "Healthy"}],
            "local_codes": [{"system": "variant-behovskompassen", "code": "trygghet"}],
            "trappan_step": 2,
            "text": "Sover dåligt, mycket frånvaro sedan januari.",
        },
        "information": {"school-situation": {"absence_percent": 35}, "health": "Återkommande huvudvärk."},
        "legal_basis": {"basis": "consent", "reference": "consent-42", "decision_id": "decision-7"},
        "permitted_categories": ["school-situation", "health", "concern-text"],
        "reply_to": "http://hub.test/v1/referrals/ref-1",
    }
    if child:
        body["child"] = {"personal_identity_number": child, "birth_date": f"{child[:4]}-{child[4:6]}-14"}
        body["permitted_categories"].append("identity")
    return Message(
        kind="referral",
        message_id=f"msg-{referral_id}",
        idempotency_key=key or f"idem-{referral_id}",
        referral_id=referral_id,
        sender_organisation="nora-grundskola",
        recipient_organisation="bup-orebro",
        body={"referral": body},
        created_at=datetime(2026, 3, 1, 8, 30, tzinfo=UTC),
    )


def status_event(status: str = "cancelled") -> Message:
    event = {
        "id": "event-1",
        "referral_id": "ref-1",
        "status": status,
        "previous_status": "accepted",
        "by_organisation": "nora-grundskola",
        "occurred_at": "2026-03-02T10:00:00+01:00",
        "reason_code": None,
        "reason_text": "Familjen har flyttat.",
        "suggested_organisation": None,
        "suggested_service": None,
        "feedback": None,
    }
    return Message(
        kind="status-event",
        message_id="msg-event-1",
        idempotency_key="idem-event-1",
        referral_id="ref-1",
        sender_organisation="nora-grundskola",
        recipient_organisation="bup-orebro",
        body={"event": event},
        created_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def adapter(http: httpx.AsyncClient, base_url: str, **config: Any) -> FhirR4Adapter:
    secrets = {"bup-fhir-token": "s3cret"}
    context = AdapterContext(hub_url="http://hub.test", secret=secrets.__getitem__, http=http, timeout_seconds=5)
    return FhirR4Adapter(FhirR4Config(base_url=base_url, **config), context)


def sent_text(server: FhirServer) -> list[str]:
    lines = []
    for r in server.requests:
        lines += [r.path, r.query, *r.headers.values(), r.body.decode()]
    return lines


def test_registered_and_strict_config() -> None:
    # The entry point itself (the registry's available() loads every adapter, some of them not written yet).
    [entry_point] = entry_points(group=GROUP, name="fhir-r4")
    assert entry_point.load() is FhirR4Adapter
    with pytest.raises(ValidationError):
        FhirR4Config(base_url="http://x", token="oops")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        FhirR4Config(base_url="not a url")


async def test_deliver_creates_patient_service_request_and_task(http: httpx.AsyncClient) -> None:
    server = FhirServer()
    with serve(server) as base_url:
        receipt = await adapter(http, base_url, bearer_token_secret="bup-fhir-token").deliver(referral())

    assert server.invalid == []
    [patient], [service_request], [task] = (server.resources(k) for k in ("Patient", "ServiceRequest", "Task"))
    assert receipt.remote_id == task["id"]
    assert patient["identifier"] == [{"system": PERSONNUMMER_SYSTEM, "value": PERSONNUMMER}]
    assert patient["birthDate"] == "2015-03-14"
    assert task["status"] == "requested"
    assert task["intent"] == "order"
    assert task["focus"] == {"reference": f"ServiceRequest/{service_request['id']}"}
    assert task["for"] == service_request["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert {"system": REFERRAL_ID_SYSTEM, "value": "ref-1"} in task["identifier"]
    assert {"system": "https://vocab.hub.se/fhir/sid/idempotency-key", "value": "idem-ref-1"} in task["identifier"]
    assert task["owner"]["identifier"] == {"system": "urn:oid:1.2.752.29.4.19", "value": "SE2321000164-7381037590003"}
    assert task["requester"]["identifier"] == {
        "system": "https://vocab.hub.se/fhir/sid/organisation",
        "value": "nora-grundskola",
    }
    assert service_request["status"] == "active"
    assert service_request["code"]["coding"][0] == {
        "system": "https://vocab.hub.se/fhir/CodeSystem/referral-kinds",
        "code": "remiss",
    }
    assert service_request["reasonCode"] == [
        {"coding": [{"system": WHEEL, "code": "healthy", "display": "Healthy"}]},
        {"coding": [{"system": "https://vocab.hub.se/fhir/CodeSystem/variant-behovskompassen", "code": "trygghet"}]},
    ]
    assert service_request["category"] == [
        {"coding": [{"system": "https://vocab.hub.se/fhir/CodeSystem/intervention-levels", "code": "step-2"}]}
    ]
    assert service_request["performer"][1]["identifier"]["value"] == "bup-mottagning"
    inputs = {i["type"]["coding"][0]["code"]: i for i in task["input"]}
    assert inputs["consent"]["valueIdentifier"]["value"] == "decision-7"
    assert inputs["school-situation"]["valueString"] == '{"absence_percent": 35}'
    assert inputs["health"]["valueString"] == "Återkommande huvudvärk."
    assert service_request["supportingInfo"] == [
        {"type": "Consent", "identifier": {"system": "https://vocab.hub.se/fhir/sid/consent", "value": "consent-42"}}
    ]
    assert service_request["note"] == [{"text": "Sover dåligt, mycket frånvaro sedan januari."}]
    [request] = server.requests
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["content-type"] == "application/fhir+json"


async def test_delivering_the_same_message_twice_makes_one_task(http: httpx.AsyncClient) -> None:
    server = FhirServer()
    with serve(server) as base_url:
        fhir = adapter(http, base_url)
        first = await fhir.deliver(referral())
        second = await fhir.deliver(referral())

    assert server.invalid == []
    assert first.remote_id == second.remote_id
    assert second.detail is not None and "already there" in second.detail
    assert [len(server.resources(k)) for k in ("Patient", "ServiceRequest", "Task")] == [1, 1, 1]


async def test_without_the_identity_category_no_personal_identity_number_is_sent(http: httpx.AsyncClient) -> None:
    server = FhirServer()
    with serve(server) as base_url:
        receipt = await adapter(http, base_url).deliver(referral(child=None))

    assert server.invalid == []
    assert server.resources("Patient") == []
    [service_request], [task] = server.resources("ServiceRequest"), server.resources("Task")
    assert receipt.remote_id == task["id"]
    assert service_request["subject"]["identifier"] == {"system": REFERRAL_SUBJECT_SYSTEM, "value": "ref-1"}
    assert task["for"] == service_request["subject"]
    sent = sent_text(server)
    assert personal_identity_numbers_in(sent) == []
    assert not any(PERSONNUMMER in line or PERSONNUMMER[2:8] in line for line in sent)


async def test_a_samordningsnummer_uses_its_own_identifier_system(http: httpx.AsyncClient) -> None:
    server = FhirServer()
    with serve(server) as base_url:
        await adapter(http, base_url).deliver(referral(child=SAMORDNINGSNUMMER))

    assert server.invalid == []
    [patient] = server.resources("Patient")
    assert patient["identifier"] == [{"system": SAMORDNINGSNUMMER_SYSTEM, "value": SAMORDNINGSNUMMER}]


async def test_a_status_event_is_a_communication_about_the_task_sent_once(http: httpx.AsyncClient) -> None:
    server = FhirServer()
    with serve(server) as base_url:
        fhir = adapter(http, base_url)
        first = await fhir.deliver(status_event())
        second = await fhir.deliver(status_event())

    assert server.invalid == []
    [communication] = server.resources("Communication")
    assert first.remote_id == second.remote_id == communication["id"]
    assert communication["about"] == [{"type": "Task", "identifier": {"system": REFERRAL_ID_SYSTEM, "value": "ref-1"}}]
    assert communication["topic"]["coding"][0]["code"] == "cancelled"
    assert communication["payload"] == [{"contentString": "Familjen har flyttat."}]
    assert server.resources("Task") == []  # the receiver owns the Task's status


@pytest.mark.parametrize("status", [500, 503, 429, 408])
async def test_server_errors_are_retryable_and_retry_after_is_honoured(http: httpx.AsyncClient, status: int) -> None:
    with serve(Recorder(lambda r: Reply(status, headers={"Retry-After": "7"}))) as base_url:
        with pytest.raises(DeliveryError) as caught:
            await adapter(http, base_url).deliver(referral())
    assert not isinstance(caught.value, PermanentDeliveryError)
    assert caught.value.retry_after_seconds == 7


async def test_retry_after_as_an_http_date(http: httpx.AsyncClient) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    with serve(Recorder(lambda r: Reply(503, headers={"Retry-After": later}))) as base_url:
        with pytest.raises(DeliveryError) as caught:
            await adapter(http, base_url).deliver(referral())
    assert caught.value.retry_after_seconds is not None and 100 < caught.value.retry_after_seconds <= 120


@pytest.mark.parametrize("status", [400, 422, 401, 404])
async def test_client_errors_are_permanent_and_do_not_quote_the_receiver(http: httpx.AsyncClient, status: int) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": f"bad {PERSONNUMMER}"}],
    }
    with serve(Recorder(lambda r: Reply(status, outcome))) as base_url:
        with pytest.raises(PermanentDeliveryError) as caught:
            await adapter(http, base_url).deliver(referral())
    assert caught.value.detail == f"HTTP {status} from the FHIR server (OperationOutcome: invalid)"


async def test_a_timeout_is_retryable(http: httpx.AsyncClient) -> None:
    with serve(Recorder(lambda r: Reply(201, delay=5))) as base_url:
        with pytest.raises(DeliveryError) as caught:
            await adapter(http, base_url, timeout_seconds=0.3).deliver(referral())
    assert not isinstance(caught.value, PermanentDeliveryError)
    assert "timed out" in caught.value.detail


async def test_a_refused_connection_is_retryable(http: httpx.AsyncClient) -> None:
    with pytest.raises(DeliveryError) as caught:
        await adapter(http, refused_url()).deliver(referral())
    assert not isinstance(caught.value, PermanentDeliveryError)


async def test_poll_maps_what_the_receiver_did_to_its_tasks(http: httpx.AsyncClient) -> None:
    server = FhirServer()
    with serve(server) as base_url:
        fhir = adapter(http, base_url)
        ids = {r: str((await fhir.deliver(referral(r, child=None))).remote_id) for r in ("a", "b", "c", "d", "e")}
        # The receiver's system acts, over HTTP: PATCH, and PUT of the whole Task.
        ok = await http.patch(
            f"{base_url}/Task/{ids['a']}", json=[{"op": "replace", "path": "/status", "value": "accepted"}]
        )
        assert ok.status_code == 200
        rejected = {k: v for k, v in server.store["Task"][ids["b"]].items() if k not in ("id", "meta")}
        rejected["status"] = "rejected"
        rejected["statusReason"] = {
            "coding": [{"system": REJECTION_REASONS, "code": "wrong-recipient"}],
            "text": "Hör hemma hos elevhälsan.",
        }
        assert (await http.put(f"{base_url}/Task/{ids['b']}", json=rejected)).status_code == 200
        for rid in (ids["c"], ids["e"]):
            ops = [{"op": "replace", "path": "/status", "value": "completed"}]
            assert (await http.patch(f"{base_url}/Task/{rid}", json=ops)).status_code == 200

        changes = await fhir.poll(
            [
                OpenReferral("a", ids["a"], "received"),
                OpenReferral("b", ids["b"], "received"),
                OpenReferral("c", None, "in-progress"),  # no remote id: found by its identifier
                OpenReferral("d", ids["d"], "received"),  # the receiver has not acted
                OpenReferral("e", ids["e"], "completed"),  # already known
                OpenReferral("gone", "999", "received"),  # not at the receiver (any more)
            ]
        )

    assert server.invalid == []
    by_referral = {c.referral_id: c for c in changes}
    assert set(by_referral) == {"a", "b", "c"}
    assert by_referral["a"].status == "accepted" and by_referral["a"].remote_id == ids["a"]
    assert (by_referral["b"].status, by_referral["b"].reason_code, by_referral["b"].reason_text) == (
        "rejected",
        "wrong-recipient",
        "Hör hemma hos elevhälsan.",
    )
    assert by_referral["c"].status == "completed" and by_referral["c"].remote_id == ids["c"]
    assert all(c.occurred_at.tzinfo is not None for c in changes)


async def test_poll_passes_on_a_receiver_outage(http: httpx.AsyncClient) -> None:
    with serve(Recorder(lambda r: Reply(503))) as base_url:
        with pytest.raises(DeliveryError):
            await adapter(http, base_url).poll([OpenReferral("a", "1", "received")])


async def test_health(http: httpx.AsyncClient) -> None:
    with serve(FhirServer()) as base_url:
        assert (await adapter(http, base_url).health()).ok
    with serve(Recorder(lambda r: Reply(503))) as base_url:
        down = await adapter(http, base_url).health()
        assert not down.ok and "503" in down.detail
    with serve(
        Recorder(lambda r: Reply(200, {"resourceType": "CapabilityStatement", "fhirVersion": "5.0.0"}))
    ) as base_url:
        assert not (await adapter(http, base_url).health()).ok
    with serve(Recorder()) as base_url:  # answers, but is no FHIR server
        assert not (await adapter(http, base_url).health()).ok
    assert not (await adapter(http, refused_url()).health()).ok


async def test_a_success_that_names_no_task_is_retryable(http: httpx.AsyncClient) -> None:
    with serve(Recorder()) as base_url:  # 200 {"id": ...}: not a transaction-response
        with pytest.raises(DeliveryError) as caught:
            await adapter(http, base_url).deliver(referral())
    assert not isinstance(caught.value, PermanentDeliveryError)


async def test_a_protected_childs_referral_is_restricted_and_carries_the_marker(http: httpx.AsyncClient) -> None:
    message = referral(child=None)
    marker = {
        "protected": True,
        "withheld_categories": ["guardians-contact", "identity"],
        "contact": {"organisation": message.body["referral"]["sender"], "reply_to": "http://hub.test/v1/x/events"},
        "text": {"sv": "Barnet har skyddade personuppgifter.", "en": "The child has protected personal data."},
    }
    message.body["referral"]["protected_identity"] = marker
    server = FhirServer()
    with serve(server) as base_url:
        await adapter(http, base_url).deliver(message)

    assert server.invalid == [] and server.resources("Patient") == []
    [service_request], [task] = server.resources("ServiceRequest"), server.resources("Task")
    restricted = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
    for resource in (service_request, task):
        [label] = resource["meta"]["security"]
        assert {k: label[k] for k in restricted} == restricted
    [carried] = [i for i in task["input"] if i["type"]["coding"][0]["code"] == "protected-identity"]
    assert json.loads(carried["valueString"]) == marker
