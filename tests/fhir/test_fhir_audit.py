"""The audit trail as FHIR R4 AuditEvent: entries made through the real API, read back by auditors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from tests.api.test_auth_and_problems import assert_problem

from hub.devtools.demo import load_demo
from hub.domain.audit import AuditAction
from hub.domain.identity import luhn_check_digit, parse_personal_identity_number
from hub.fhir import audit as fhir_audit
from hub.runtime import Runtime
from hub.services.audit_sealer import seal_all

Auth = Callable[..., dict[str, str]]
FHIR_JSON = "application/fhir+json"
NOW = datetime.now(UTC)
BORN = "20140923"
CHILD = f"{BORN}-471{luhn_check_digit(BORN[2:] + '471')}"
PIN_FORMS = (CHILD, CHILD.replace("-", ""), CHILD[2:], CHILD[2:].replace("-", ""))
SENDER, REFUSED_SENDER, RECIPIENT = "nora-grundskola", "kumla-grundskola", "region-bup"
REGIONAL = "region-samordning"


def test_the_child_is_a_valid_personnummer() -> None:
    pin = parse_personal_identity_number(CHILD, today=NOW.date())
    assert pin.kind == "personnummer" and pin.birth_date == date(2014, 9, 23)


@pytest.fixture
async def audited(client: httpx.AsyncClient, auth: Auth, runtime: Runtime) -> None:
    """A consent recorded by Nora's school, an allowed share to BUP, and a refused one from Kumla's school."""
    async with runtime.sessions() as session:
        await load_demo(session)
    consent = {
        "child": {"personal_identity_number": CHILD},
        "guardian_count": 2,
        "grantors": [{"role": "guardian", "reference": "vh1"}, {"role": "guardian", "reference": "vh2"}],
        "data_categories": ["identity", "school-situation"],
        "from_parties": {"organisation_ids": [SENDER]},
        "to_parties": {"organisation_types": ["bup"]},
        "purposes": ["remiss"],
        "valid_from": (NOW - timedelta(days=1)).isoformat(),
        "valid_until": (NOW + timedelta(days=180)).isoformat(),
        "information_given": {"language": "sv", "form": "written"},
        "evidence_reference": "journal-doc-4711",
    }
    r = await client.post("/v1/consents", json=consent, headers=auth(SENDER, "professional"))
    assert r.status_code == 201, r.text
    question = {
        "to_organisation": RECIPIENT,
        "child": {"personal_identity_number": CHILD},
        "purpose": "remiss",
        "data_categories": ["identity", "school-situation"],
    }
    for org, allowed in ((SENDER, True), (REFUSED_SENDER, False)):
        r = await client.post("/v1/sharing-decisions", json=question, headers=auth(org, "professional"))
        assert r.status_code == 200, r.text
        assert r.json()["allowed"] is allowed
    await seal_all(runtime.engine, runtime.settings)  # as the sealer does within a second


def parse_bundle(r: httpx.Response) -> list[dict[str, Any]]:
    """Every entry validated as an R4 AuditEvent; the resources, in order."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    assert r.headers["cache-control"] == "no-store"
    assert not any(form in r.text for form in PIN_FORMS)
    body = r.json()
    Bundle.model_validate(body)
    assert body["type"] == "searchset"
    resources = [e["resource"] for e in body.get("entry", [])]
    for entry, resource in zip(body.get("entry", []), resources, strict=True):
        AuditEvent.model_validate(resource)
        assert entry["fullUrl"] == f"http://hub.test/fhir/r4/AuditEvent/{resource['id']}"
    return resources


def action(resource: dict[str, Any]) -> str:
    return resource["type"]["code"]


def organisations(resource: dict[str, Any]) -> set[str]:
    return {a["who"]["identifier"]["value"] for a in resource["agent"]}


async def search(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    return parse_bundle(await client.get("/fhir/r4/AuditEvent", params=params, headers=headers))


async def test_an_auditor_gets_audit_events_without_the_personnummer(client, auth, audited) -> None:
    events = await search(client, auth(REGIONAL, "auditor"))
    assert [action(e) for e in events] == ["sharing-decision", "sharing-decision", "consent-recorded"]
    refused, allowed, consent = events
    assert int(refused["id"]) > int(allowed["id"]) > int(consent["id"])  # newest first

    assert allowed["type"]["system"] == fhir_audit.AUDIT_ACTION_SYSTEM
    assert (allowed["action"], allowed["outcome"], refused["outcome"]) == ("E", "0", "4")
    assert refused["outcomeDesc"] == "Refused" and "outcomeDesc" not in allowed
    assert consent["action"] == "C"
    requestor, recipient = allowed["agent"]
    assert requestor["requestor"] is True and recipient["requestor"] is False
    assert requestor["who"]["identifier"] == {"system": fhir_audit.ORGANISATION_SYSTEM, "value": SENDER}
    assert recipient["who"]["identifier"]["value"] == RECIPIENT
    assert requestor["role"] == [{"coding": [{"system": fhir_audit.ROLE_SYSTEM, "code": "professional"}]}]
    assert requestor["altId"] == f"dev:{SENDER}"
    assert {c["coding"][0]["code"] for c in allowed["purposeOfEvent"]} == {"consent", "remiss"}
    assert datetime.fromisoformat(allowed["recorded"]) <= datetime.now(UTC)

    child = allowed["entity"][0]
    assert child["what"]["identifier"]["system"] == fhir_audit.CHILD_PSEUDONYM_SYSTEM
    assert child["role"]["code"] == "1"  # patient
    assert {e["entity"][0]["what"]["identifier"]["value"] for e in events} == {
        child["what"]["identifier"]["value"]
    }  # the same pseudonym everywhere
    decision = allowed["entity"][1]
    assert decision["what"]["identifier"]["system"].endswith("/sid/sharing-decision")
    assert {d["type"] for d in decision["detail"]} >= {"permitted", "denied", "reasons"}
    assert allowed["entity"][-1]["type"]["code"] == "XrequestId"
    [chain] = allowed["extension"]
    assert chain["url"] == fhir_audit.CHAIN_EXTENSION
    parts = {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in chain["extension"]}
    # The second entry of the log (after the consent), with its leaf hash.
    assert parts["partition"] == SENDER and parts["seq"] == 1 and len(parts["hash"]) == 64


async def test_an_organisations_auditor_sees_only_its_own_organisations_entries(client, auth, audited) -> None:
    everyone = await search(client, auth(REGIONAL, "auditor"))
    assert {o for e in everyone for o in organisations(e)} == {SENDER, REFUSED_SENDER, RECIPIENT}

    nora = await search(client, auth(SENDER, "auditor"))
    assert [action(e) for e in nora] == ["sharing-decision", "consent-recorded"]
    assert all(SENDER in organisations(e) for e in nora)

    bup = await search(client, auth(RECIPIENT, "auditor"))  # the counterpart of both questions
    assert bup == [], "another organisation's dry runs and refusals are its own deliberation"

    r = await client.get("/fhir/r4/AuditEvent", params={"agent": SENDER}, headers=auth(RECIPIENT, "auditor"))
    assert_problem(r, 403, "forbidden")


async def test_the_regional_auditor_filters_by_agent_type_outcome_and_date(client, auth, audited) -> None:
    regional = auth(REGIONAL, "auditor")
    kumla = await search(client, regional, agent=f"Organization/{REFUSED_SENDER}")
    assert [(action(e), e["outcome"]) for e in kumla] == [("sharing-decision", "4")]
    by_identifier = await search(client, regional, **{"agent:identifier": f"{fhir_audit.ORGANISATION_SYSTEM}|{SENDER}"})
    assert [action(e) for e in by_identifier] == ["sharing-decision", "consent-recorded"]
    refused = await search(client, regional, outcome="4")
    assert [organisations(e) for e in refused] == [{REFUSED_SENDER, RECIPIENT}]
    consents = await search(client, regional, type=f"{fhir_audit.AUDIT_ACTION_SYSTEM}|consent-recorded")
    assert [action(e) for e in consents] == ["consent-recorded"]

    today = NOW.date().isoformat()
    tomorrow = (NOW + timedelta(days=1)).date().isoformat()
    shares = await search(client, regional, type="sharing-decision", date=[f"ge{today}", f"lt{tomorrow}"])
    assert len(shares) == 2
    assert await search(client, regional, type="sharing-decision", date=f"gt{today}") == []
    hour_ago = (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    assert len(await search(client, regional, type="sharing-decision", date=f"ge{hour_ago}")) == 2
    assert await search(client, regional, type="sharing-decision", date=f"lt{hour_ago}") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"date": "sa2026-01-01"}, "date"),
        ({"date": "2026-01-01T10:00:00"}, "date"),  # a time needs a zone
        ({"date": "2026-02-30"}, "date"),
        ({"type": "deleted-everything"}, "type"),
        ({"type": "http://example.org/x|sharing-decision"}, "type"),
        ({"outcome": "1"}, "outcome"),
        ({"agent": "Practitioner/x"}, "agent"),
        ({"_cursor": "not-ours"}, "cursor"),
    ],
)
async def test_a_bad_search_is_a_422_naming_the_parameter(client, auth, audited, params, field) -> None:
    r = await client.get("/fhir/r4/AuditEvent", params=params, headers=auth(REGIONAL, "auditor"))
    body = assert_problem(r, 422, "invalid-input")
    assert field in {e["pointer"] for e in body["errors"]}


async def test_only_auditors_may_read(client, auth, audited) -> None:
    for path in ("/fhir/r4/AuditEvent", "/fhir/r4/AuditEvent/1"):
        assert_problem(await client.get(path, headers=auth(SENDER, "professional", "system")), 403, "forbidden")
        assert_problem(await client.get(path), 401, "unauthenticated")


async def test_paging_follows_next_links_to_the_end_without_duplicates(client, auth, audited) -> None:
    headers = auth(SENDER, "auditor")
    for _ in range(3):  # three audit-read entries more for Nora: 5 entries in all before the walk
        await search(client, headers)
    url: str | None = "/fhir/r4/AuditEvent?_count=2"
    seen: list[int] = []
    pages = 0
    while url is not None:
        r = await client.get(url, headers=headers)
        resources = parse_bundle(r)
        assert 0 < len(resources) <= 2 and "total" not in r.json()
        seen += [int(e["id"]) for e in resources]
        links = {link["relation"]: link["url"] for link in r.json()["link"]}
        assert links["self"].startswith("http://hub.test/fhir/r4/AuditEvent?")
        url = links.get("next")
        if url is not None:
            assert "_count=2" in url and "_cursor=" in url
            assert urlsplit(url).netloc == "hub.test"
        pages += 1
    assert pages == 3 and len(seen) == 5
    assert seen == sorted(set(seen), reverse=True)  # no duplicates, newest first
    # Reading is audited: every page read above is now an audit-read entry of Nora's, newer than the walk.
    after = [int(e["id"]) for e in await search(client, headers, _count=200)]
    assert [i for i in after if i <= seen[0]] == seen
    reads = await search(client, headers, type="audit-read")
    assert len(reads) == 3 + pages + 1
    assert all(e["action"] == "E" and e["agent"][0]["who"]["identifier"]["value"] == SENDER for e in reads)


async def test_read_by_id_is_scoped_like_search(client, auth, audited) -> None:
    regional = auth(REGIONAL, "auditor")
    events = await search(client, regional)
    refused = next(e for e in events if e["outcome"] == "4")
    nora_share = next(e for e in events if e["outcome"] == "0" and action(e) == "sharing-decision")

    r = await client.get(f"/fhir/r4/AuditEvent/{nora_share['id']}", headers=auth(SENDER, "auditor"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON) and r.headers["cache-control"] == "no-store"
    assert AuditEvent.model_validate(r.json()).id == nora_share["id"]
    assert r.json() == nora_share
    assert not any(form in r.text for form in PIN_FORMS)

    r = await client.get(f"/fhir/r4/AuditEvent/{refused['id']}", headers=auth(SENDER, "auditor"))
    assert_problem(r, 404, "not-found")  # Kumla's entry: invisible to Nora, indistinguishable from none
    for missing in ("999999", "abc", "1" * 30):
        assert_problem(await client.get(f"/fhir/r4/AuditEvent/{missing}", headers=regional), 404, "not-found")
    r = await client.get(f"/fhir/r4/AuditEvent/{refused['id']}", headers=regional)
    assert r.status_code == 200 and r.json()["outcome"] == "4"


async def test_the_capability_statement_declares_audit_event(client) -> None:
    r = await client.get("/fhir/r4/metadata")
    assert r.status_code == 200
    statement = CapabilityStatement.model_validate(r.json())
    [rest] = r.json()["rest"]
    [audit] = [res for res in rest["resource"] if res["type"] == "AuditEvent"]
    assert {i["code"] for i in audit["interaction"]} == {"read", "search-type"}
    assert {p["name"] for p in audit["searchParam"]} == {"_id", "_count", "date", "agent", "type", "outcome"}
    assert "auditor" in rest["security"]["description"]
    assert statement.fhirVersion == "4.0.1"


# --- the renderer alone ---------------------------------------------------------------------------------------


def test_every_action_has_a_fhir_action_code() -> None:
    assert set(fhir_audit.ACTION_CODES) == set(AuditAction)
    assert set(fhir_audit.ACTION_CODES.values()) <= {"C", "R", "U", "D", "E"}


def test_a_minimal_entry_renders_a_valid_audit_event() -> None:
    entry = SimpleNamespace(
        id=7,
        partition="region-samordning",
        seq=3,
        hash="ab" * 32,
        content={
            "occurred_at": "2026-03-01T09:30:00+00:00",
            "action": "audit-read",
            "outcome": "0",
            "actor_subject": "hsa:SE2321000016-1234",
            "actor_organisation": "region-samordning",
            "actor_roles": ["auditor"],
            "details": {"count": 0, "scope": "all"},
        },
    )
    resource = fhir_audit.audit_event(entry)
    AuditEvent.model_validate(resource)
    assert [a["requestor"] for a in resource["agent"]] == [True, True]  # the organisation, the professional
    hsa = {"system": "urn:oid:1.2.752.29.4.19", "value": "SE2321000016-1234"}
    assert resource["agent"][1]["who"]["identifier"] == hsa
    assert "purposeOfEvent" not in resource
    [thing] = resource["entity"]  # no child, no request id: only the details of what was read
    assert thing["detail"] == [{"type": "count", "valueString": "0"}, {"type": "scope", "valueString": "all"}]


@pytest.mark.parametrize(
    ("values", "since", "until"),
    [
        (["2026-03"], datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        (["eq2026-12"], datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        (["ge2026", "lt2026-06-15"], datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC)),
        (["gt2026-03-01", "le2026-03-02"], datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)),
        (
            ["ge2026-03-01T10:00+01:00"],
            datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
            None,
        ),
        (["le2026-03-01T10:00:00Z"], None, datetime(2026, 3, 1, 10, 0, 1, tzinfo=UTC)),
        (["gt2026-03-01T10:00:00.5Z"], datetime(2026, 3, 1, 10, 0, 0, 600000, tzinfo=UTC), None),
        (["ge2026-03-01T10:00 01:00"], datetime(2026, 3, 1, 9, 0, tzinfo=UTC), None),  # "+" decoded as " "
        ([], None, None),
    ],
)
def test_date_search_values(values: list[str], since: datetime | None, until: datetime | None) -> None:
    assert fhir_audit.date_bounds(values) == (since, until)
