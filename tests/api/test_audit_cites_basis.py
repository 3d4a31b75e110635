"""The audit entry of a sharing decision cites its basis and the basis the caller asked for, over HTTP:
in ``GET /v1/audit`` and in the FHIR AuditEvent, without the assessment's sealed free texts and without
the id of a consent the sender may not see."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fhir.resources.R4B.auditevent import AuditEvent

from tests.api import test_consent_oracle as oracle
from tests.api.test_consent_oracle import county as county  # the fixture
from tests.api.test_lawful_sharing_http import CHILD, Auth, ask, record_consent
from tests.api.test_lawful_sharing_http import demo as demo  # the fixture

CONSENT_SID = "https://vocab.hub.se/fhir/sid/consent"
ASSESSMENT_SID = "https://vocab.hub.se/fhir/sid/necessity-assessment"


async def entry_of(client: httpx.AsyncClient, auth: Auth, org: str, decision_id: str) -> dict[str, Any]:
    r = await client.get("/v1/audit?action=sharing-decision", headers=auth(org, "auditor"))
    assert r.status_code == 200, r.text
    (entry,) = [e for e in r.json()["items"] if e["decision_id"] == decision_id]
    return entry


async def audit_event(client: httpx.AsyncClient, auth: Auth, org: str, entry_id: int) -> dict[str, Any]:
    r = await client.get(f"/fhir/r4/AuditEvent/{entry_id}", headers=auth(org, "auditor"))
    assert r.status_code == 200, r.text
    AuditEvent.model_validate(r.json())
    return r.json()


def cited(event: dict[str, Any], system: str) -> list[str]:
    return [
        e["what"]["identifier"]["value"]
        for e in event.get("entity", [])
        if e.get("what", {}).get("identifier", {}).get("system") == system
    ]


def uncited(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry's cited basis without its statute (``test_statutes_in_force`` checks that one), after
    checking that an allowed decision cites one for its basis."""
    basis = dict(entry["details"]["basis"])
    statute = basis.pop("statute")
    assert statute["legal_basis"] == basis["legal_basis"] and statute["vocabulary"] == "legal-bases"
    return basis


async def test_a_decision_allowed_by_a_consent_cites_the_consent(client, auth, demo) -> None:
    consent = await record_consent(client, auth)
    decision = await ask(client, auth)
    assert decision["allowed"] is True
    entry = await entry_of(client, auth, "nora-elevhalsa", decision["id"])
    assert uncited(entry) == {"legal_basis": "consent", "consent_id": consent["id"]}
    assert entry["details"]["requested_basis"] == {"legal_basis": None, "basis_reference": None}

    event = await audit_event(client, auth, "nora-elevhalsa", entry["id"])
    assert cited(event, CONSENT_SID) == [consent["id"]]


async def test_a_refusal_records_the_basis_the_caller_asked_for(client, auth, demo) -> None:
    asked = str(uuid.uuid4())
    decision = await ask(client, auth, legal_basis="consent", basis_reference=asked)
    assert decision["allowed"] is False
    entry = await entry_of(client, auth, "nora-elevhalsa", decision["id"])
    assert entry["outcome"] == "4" and entry["details"]["basis"] is None
    assert entry["details"]["requested_basis"] == {"legal_basis": "consent", "basis_reference": asked}

    event = await audit_event(client, auth, "nora-elevhalsa", entry["id"])
    (thing,) = [e for e in event["entity"] if e.get("detail")]
    details = {d["type"]: d["valueString"] for d in thing["detail"]}
    assert asked in details["requested_basis"] and '"consent"' in details["requested_basis"]


async def test_a_free_text_reference_is_not_kept_in_the_chain(client, auth, demo) -> None:
    decision = await ask(client, auth, legal_basis="consent", basis_reference="Anna Andersson 0701234567")
    entry = await entry_of(client, auth, "nora-elevhalsa", decision["id"])
    assert entry["details"]["requested_basis"]["basis_reference"] == "[not-an-id]"
    assert "Anna" not in str(entry)


async def test_a_necessity_assessment_is_cited_by_id_without_its_sealed_texts(client, auth, demo) -> None:
    r = await client.post(
        "/v1/necessity-assessments",
        json={
            "child": {"personal_identity_number": CHILD},
            "recipient_organisation": "region-bup",
            "decided_by_person": "SE2321000016-ABCD",
            "decided_by_role": "rektor",
            "justification": "Akut risk; BUP behöver skolans bild i dag.",
            "case_reference": "EH-2026-77",
            "data_categories": ["identity", "school-situation"],
        },
        headers=auth("nora-elevhalsa", "professional"),
    )
    assert r.status_code == 201, r.text
    assessment = r.json()["id"]
    decision = await ask(
        client, auth, legal_basis="necessary-disclosure", data_categories=["identity", "school-situation"]
    )
    assert decision["allowed"] is True
    entry = await entry_of(client, auth, "nora-elevhalsa", decision["id"])
    assert uncited(entry) == {"legal_basis": "necessary-disclosure", "necessity_assessment_id": assessment}
    assert entry["details"]["requested_basis"] == {"legal_basis": "necessary-disclosure", "basis_reference": None}
    event = await audit_event(client, auth, "nora-elevhalsa", entry["id"])
    assert cited(event, ASSESSMENT_SID) == [assessment]
    for sealed in ("SE2321000016-ABCD", "rektor", "EH-2026-77", "Akut risk"):
        assert sealed not in str(entry) and sealed not in str(event)


async def test_a_report_of_concern_is_cited_as_such(client, auth, demo) -> None:
    decision = await ask(
        client,
        auth,
        org="nora-grundskola",
        to_organisation="nora-socialtjanst-myndighet",
        purpose="orosanmalan",
        data_categories=["identity", "concern-text"],
    )
    entry = await entry_of(client, auth, "nora-grundskola", decision["id"])
    assert uncited(entry) == {"legal_basis": "report-of-concern"}


async def test_a_consent_the_sender_may_not_see_is_cited_without_its_id(client, auth, county) -> None:
    consent = await oracle.record(client, auth)
    r = await client.post("/v1/sharing-decisions", json=oracle.question(), headers=auth(oracle.ATTACKER, "system"))
    assert r.status_code == 200 and r.json()["allowed"] is True
    entry = await entry_of(client, auth, oracle.ATTACKER, r.json()["id"])
    assert uncited(entry) == {
        "legal_basis": "consent",
        "consent_id": None,
        "consent_of_another_organisation": True,
    }
    event = await audit_event(client, auth, oracle.ATTACKER, entry["id"])
    assert consent["id"] not in str(entry) and consent["id"] not in str(event)
    assert cited(event, CONSENT_SID) == []
