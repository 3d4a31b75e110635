"""FHIR referrals in, over real HTTP: a fhirpy client against the hub on a loopback port sends the
transaction Bundle the fhir-r4 adapter delivers, searches its Tasks and moves one through the lifecycle;
errors come back as OperationOutcome with the REST problem codes."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound
from sqlalchemy import text
from tests.conftest import dev_auth
from tests.loopback import serve
from tests.referrals.helpers import CHILD, RECEIVER, SENDER, ack, mailbox, record_consent, set_endpoint, worker_for

from hub.api.auth import mint_dev_token
from hub.config import Settings
from hub.devtools.demo import load_demo
from hub.main import create_app
from hub.runtime import Runtime

VOCAB = "https://vocab.hub.se/fhir"
HSA = "urn:oid:1.2.752.29.4.19"
BUP_HSA = "SE2321000164-BUP1"
PROBLEMS = f"{VOCAB}/CodeSystem/hub-problems"


def bundle(key: str = "journal-1|remiss-77", owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the fhir-r4 adapter delivers, as a sending journal system would build it."""
    system, value = key.split("|")
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "identifier": {"system": f"urn:journal:{system}", "value": value},
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [
                        {
                            "system": "http://electronichealth.se/identifier/personnummer",
                            "value": CHILD.replace("-", ""),
                        }
                    ],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "intent": "order",
                    "code": {"coding": [{"system": f"{VOCAB}/CodeSystem/referral-kinds", "code": "remiss"}]},
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                    "reasonCode": [{"coding": [{"system": f"{VOCAB}/CodeSystem/wellbeing-wheel", "code": "healthy"}]}],
                    "category": [{"coding": [{"system": f"{VOCAB}/CodeSystem/intervention-levels", "code": "step-2"}]}],
                    "note": [{"text": "Oro för sömn och skolfrånvaro."}],
                    "performer": [owner or {"type": "Organization", "identifier": {"system": HSA, "value": BUP_HSA}}],
                },
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
            {
                "fullUrl": "urn:uuid:33333333-3333-4333-8333-333333333333",
                "resource": {
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "focus": {"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"},
                    "owner": owner or {"type": "Organization", "identifier": {"system": HSA, "value": BUP_HSA}},
                    "input": [
                        {
                            "type": {
                                "coding": [
                                    {"system": f"{VOCAB}/CodeSystem/data-categories", "code": "school-situation"}
                                ]
                            },
                            "valueString": '{"attendance_percent": 62}',
                        }
                    ],
                },
                "request": {"method": "POST", "url": "Task"},
            },
        ],
    }


@pytest.fixture
async def hub(client: httpx.AsyncClient, runtime: Runtime, settings: Settings) -> AsyncIterator[str]:
    """The demo county with a consent, BUP registered with its HSA-id, and the real app on loopback (its own
    runtime in the server's event loop: asyncpg connections belong to the loop that made them)."""
    async with runtime.sessions() as session:
        await load_demo(session)
    for org in (SENDER, RECEIVER):
        await set_endpoint(runtime, org, "mailbox", {})
    async with runtime.engine.begin() as conn:
        await conn.execute(text("update organisation set hsa_id = :h where id = :o"), {"h": BUP_HSA, "o": RECEIVER})
    await record_consent(client, dev_auth(settings))
    # No public URL: links (a search's next page) name the loopback address the client called.
    with serve(create_app(settings.model_copy(update={"serve_runs_worker": False, "public_url": ""}))) as url:
        yield url + "/fhir/r4"


def fhir(base: str, settings: Settings, org: str) -> AsyncFHIRClient:
    token = mint_dev_token(settings, organisation_id=org, roles=["system"])
    return AsyncFHIRClient(base, authorization=f"Bearer {token}")


def problem_codes(error: OperationOutcome) -> list[str]:
    issues = error.resource["issue"]
    return [i["details"]["coding"][0]["code"] for i in issues]


async def test_a_fhir_client_sends_searches_and_moves_a_referral(
    hub: str, settings: Settings, runtime: Runtime, client: httpx.AsyncClient
) -> None:
    school, bup, other = (
        fhir(hub, settings, SENDER),
        fhir(hub, settings, RECEIVER),
        fhir(hub, settings, "nora-grundskola"),
    )
    answer = await school.execute("", method="post", data=bundle())
    assert answer["type"] == "transaction-response"
    task_location = answer["entry"][-1]["response"]["location"]
    assert answer["entry"][-1]["response"]["status"] == "201 Created"
    task_id = task_location.split("/")[1]
    again = await school.execute("", method="post", data=bundle())  # the same Bundle.identifier: the same referral
    assert again["entry"][-1]["response"] == {"status": "200 OK", "location": task_location}

    sent = await school.resources("Task").search(_id=task_id).fetch()
    [task] = sent
    assert (task["status"], task["owner"]["identifier"]) == ("requested", {"system": HSA, "value": BUP_HSA})
    assert task["requester"]["identifier"]["value"] == SENDER  # no HSA-id registered: the hub's id
    assert await other.resources("Task").search(_id=task_id).fetch() == []
    with pytest.raises(ResourceNotFound):
        await other.get("Task", task_id)
    # Not delivered yet: the receiver does not see it.
    assert await bup.resources("Task").search(owner=RECEIVER).fetch() == []

    async with httpx.AsyncClient() as http:
        await worker_for(runtime, http, delivery_backoff_base_seconds=0.001).run_until_idle()
    auth = dev_auth(settings)
    for message in await mailbox(client, auth, RECEIVER):
        await ack(client, auth, RECEIVER, message["id"])
    [received] = (
        await bup.resources("Task")
        .search(status="received", **{"requester:identifier": f"{VOCAB}/sid/organisation|{SENDER}"})
        .fetch()
    )
    assert received.id == task_id

    accepted = await bup.patch("Task", task_id, status="accepted")  # a partial Task, as fhirpy patches
    assert accepted["status"] == "accepted"
    working = await bup.reference("Task", task_id).to_resource()
    working["status"] = "in-progress"
    await working.save()  # PUT of the whole Task
    assert (await school.get("Task", task_id))["status"] == "in-progress"
    assert [
        t.id
        for t in await bup.resources("Task")
        .search(status="in-progress", _lastUpdated=f"ge{task['meta']['lastUpdated']}")
        .fetch()
    ] == [task_id]

    with pytest.raises(OperationOutcome) as refused:
        await bup.patch("Task", task_id, status="rejected")  # not from in-progress
    assert problem_codes(refused.value)[0] == "conflict"
    changed = copy.deepcopy(bundle())
    changed["entry"][1]["resource"]["note"] = [{"text": "Annan text."}]
    with pytest.raises(OperationOutcome) as clash:
        await school.execute("", method="post", data=changed)  # same key, another body
    assert problem_codes(clash.value)[0] == "conflict"


async def test_errors_are_operation_outcomes_with_the_rest_codes(hub: str, settings: Settings) -> None:
    school = fhir(hub, settings, SENDER)
    bad_owner = {"type": "Organization", "identifier": {"system": HSA, "value": "SE2321000165-BUP1"}}
    with pytest.raises(OperationOutcome) as invalid:
        await school.execute("", method="post", data=bundle(owner=bad_owner))
    issues = invalid.value.resource["issue"]
    assert issues[0]["code"] == "invalid" and problem_codes(invalid.value)[0] == "invalid-input"
    [hsa] = [i for i in issues[1:] if i["details"]["coding"][0]["code"] == "hsa-id-check-digit"]
    assert "check digit" in hsa["details"]["text"] and hsa["expression"][0].endswith("owner.identifier.value")
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(f"{hub}/Task")
        assert anonymous.status_code == 401 and anonymous.headers["content-type"].startswith("application/fhir+json")
        assert anonymous.json()["issue"][0]["details"]["coding"][0]["code"] == "unauthenticated"
        found = await http.get(
            f"{hub}/Organization",
            params={"identifier": f"{HSA}|{BUP_HSA}"},
            headers={"Authorization": f"Bearer {mint_dev_token(settings, organisation_id=SENDER, roles=['system'])}"},
        )
        [org] = [e["resource"] for e in found.json()["entry"]]
        assert org["id"] == RECEIVER and {"system": HSA, "value": BUP_HSA, "use": "official"} in org["identifier"]


async def test_the_capability_statement_declares_the_referral_surface(client: httpx.AsyncClient) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    r = await client.get("/fhir/r4/metadata")
    CapabilityStatement.model_validate(r.json())
    rest = r.json()["rest"][0]
    resources = {res["type"]: res for res in rest["resource"]}
    assert {i["code"] for i in resources["Task"]["interaction"]} == {"read", "search-type", "update", "patch"}
    assert {p["name"] for p in resources["Task"]["searchParam"]} >= {
        "_id",
        "status",
        "owner",
        "requester",
        "_lastUpdated",
    }
    assert "identifier" in {p["name"] for p in resources["Organization"]["searchParam"]}
    assert [i["code"] for i in rest["interaction"]] == ["transaction"]


async def test_a_patient_labelled_restricted_marks_the_childs_identity_protected(
    hub: str, settings: Settings, runtime: Runtime
) -> None:
    sent = bundle("journal-1|remiss-protected")
    restricted = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
    sent["entry"][0]["resource"]["meta"] = {"security": [restricted]}
    headers = {**dev_auth(settings)(SENDER), "Content-Type": "application/fhir+json"}
    async with httpx.AsyncClient() as http:
        r = await http.post(hub, json=sent, headers=headers)
    assert r.status_code == 200, r.text
    async with runtime.engine.connect() as conn:
        marks = await conn.scalar(text("select count(*) from protected_identity"))
        permitted = await conn.scalar(text("select permitted_categories from referral"))
    assert marks == 1
    assert "identity" not in permitted  # BUP is no recipient the default policy names


async def test_a_task_search_reads_on_page_by_page_through_next_links(hub: str, settings: Settings) -> None:
    school = fhir(hub, settings, SENDER)
    sent = []
    for n in range(5):
        answer = await school.execute("", method="post", data=bundle(key=f"journal-1|remiss-{n}"))
        sent.append(answer["entry"][-1]["response"]["location"].split("/")[1])

    every = await school.resources("Task").search(_count=2).fetch_all()  # fhirpy follows the next links
    assert [t.id for t in every] == sent[::-1], "each Task once, newest first"

    headers = {"Authorization": f"Bearer {mint_dev_token(settings, organisation_id=SENDER, roles=['system'])}"}
    async with httpx.AsyncClient(headers=headers) as http:
        first = (await http.get(f"{hub}/Task", params={"_count": 4})).json()
        assert len(first["entry"]) == 4 and "total" not in first, "a page of several: no total of the page"
        [onward] = [link["url"] for link in first["link"] if link["relation"] == "next"]
        last = (await http.get(onward)).json()
        assert [e["resource"]["id"] for e in last["entry"]] == sent[:1]
        assert [link["relation"] for link in last["link"]] == ["self"] and "total" not in last
        whole = (await http.get(f"{hub}/Task", params={"_count": 5})).json()
        assert whole["total"] == 5 and [link["relation"] for link in whole["link"]] == ["self"]
        forged = await http.get(f"{hub}/Task", params={"_cursor": "bm90IGEgY3Vyc29y"})
        assert forged.status_code == 422 and forged.json()["resourceType"] == "OperationOutcome"
        assert ["_cursor"] in [issue.get("expression") for issue in forged.json()["issue"]], "the parameter named"
