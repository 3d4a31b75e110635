"""The report-of-concern loop over HTTP (issue #14, section 2): social services answer a report with one
code, the answer travels back to the reporter's system (a real loopback receiver) and nowhere else, a report
unanswered past the policy's deadline is overdue to the reporter (the hub's clock moved, never waited for)
and counted, suppressed, in the coordinators' flows; the receiving social services find reports about a
child in their own municipality, everyone else finds nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hub.adapters.webhook import verify_signature
from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.api.test_statutes_in_force import Clock
from tests.flows.workload import pin
from tests.loopback import Recorded, Recorder, Reply, serve
from tests.referrals.helpers import CHILD, referral, set_endpoint, worker_for
from tests.test_one_commit import tally as tally  # the fixture

SECRET = "dev-secret-demo-webhook"
REPORTER = "nora-grundskola"
SOCIAL = "nora-socialtjanst-myndighet"
OPENED = "investigation-opened"


class Systems(Recorder):
    """Every organisation's case system at one loopback address, each on its own path."""

    def __init__(self) -> None:
        super().__init__(self._answer)

    def _answer(self, req: Recorded) -> Reply:
        verify_signature(SECRET, req.headers.get("hub-signature"), req.body, now=time.time())
        return Reply(200, {"id": f"case-{uuid.uuid4().hex[:8]}"})

    def to(self, organisation: str) -> list[dict[str, Any]]:
        return [r.json() for r in self.requests if r.path == f"/{organisation}"]


@pytest.fixture
def clock(runtime: Runtime) -> Iterator[Clock]:
    kept = runtime.clock
    runtime.clock = Clock(datetime.now(UTC))
    try:
        yield runtime.clock
    finally:
        runtime.clock = kept


@pytest.fixture
async def systems(client: httpx.AsyncClient, runtime: Runtime) -> Iterator[Systems]:
    async with runtime.sessions() as session:
        await load_demo(session)
    receiver = Systems()
    with serve(receiver) as url:
        for org in (REPORTER, SOCIAL, "kumla-socialtjanst-myndighet", "orebro-socialtjanst-myndighet", "region-bup"):
            await set_endpoint(runtime, org, "webhook", {"url": f"{url}/{org}", "secret_ref": "demo-webhook"})
        yield receiver


async def report(client: httpx.AsyncClient, auth: Any, *, child: str = CHILD, to: str = SOCIAL, **over: Any) -> str:
    body = {
        "kind": "orosanmalan",
        "target": {"organisation_id": to},
        "child": {"personal_identity_number": child},
        "concern": {"text": "Eleven berättar om våld i hemmet."},
        "data_categories": ["identity", "concern-text"],
        **over,
    }
    headers = {**auth(REPORTER, "system"), "Idempotency-Key": uuid.uuid4().hex}
    r = await client.post("/v1/referrals", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def deliver(runtime: Runtime) -> None:
    async with httpx.AsyncClient() as http:
        await worker_for(runtime, http).run_until_idle()


async def answer(
    client: httpx.AsyncClient, auth: Any, rid: str, code: str = OPENED, org: str = SOCIAL
) -> httpx.Response:
    return await client.post(f"/v1/referrals/{rid}/concern-answer", json={"answer": code}, headers=auth(org, "system"))


async def test_the_answer_reaches_the_reporters_system_as_a_code_and_nothing_more(
    client, auth, runtime, systems, clock
) -> None:
    rid = await report(client, auth)
    await deliver(runtime)
    r = await answer(client, auth, rid)
    assert r.status_code == 201, r.text
    assert r.json()["answer"] == OPENED and r.json()["overdue"] is False
    await deliver(runtime)
    told = [m["event"] for m in systems.to(REPORTER) if m.get("event", {}).get("type") == "concern-answer"]
    [event] = told
    assert (event["referral_id"], event["answer"], event["reason_code"]) == (rid, OPENED, OPENED)
    assert event["reason_text"] is None and event["feedback"] is None  # no free text travels back
    assert event["status"] == event["previous_status"] == "received"  # an answer is not a status
    # Nobody else hears of it: social services' own system got the report and nothing about its answer.
    assert not [m for m in systems.to(SOCIAL) if "event" in m]
    seen = await referral(client, auth, REPORTER, rid)
    assert seen["status"] == "received" and seen["concern_answer"]["answer"] == OPENED
    # Once only, from the receiver only, a code of the vocabulary only, a report of concern only.
    assert (await answer(client, auth, rid, "investigation-ongoing")).status_code == 409
    other = await report(client, auth, child=pin(7))
    await deliver(runtime)
    assert (await answer(client, auth, other, org=REPORTER)).status_code == 403
    bad = await answer(client, auth, other, "maybe")
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/answer"
    assert (await answer(client, auth, other, org="orebro-socialtjanst-myndighet")).status_code == 404


async def test_an_unanswered_report_is_overdue_to_the_reporter_after_the_policys_days(
    client, auth, runtime, systems, clock
) -> None:
    rid = await report(client, auth)
    await deliver(runtime)
    seen = await referral(client, auth, REPORTER, rid)
    due = datetime.fromisoformat(seen["concern_answer"]["due_at"])
    assert seen["concern_answer"] == {
        "answer": None,
        "answered_at": None,
        "due_at": seen["concern_answer"]["due_at"],
        "overdue": False,
    }
    assert timedelta(days=14) <= due - clock.at < timedelta(days=14, minutes=5)  # from its delivery
    clock.at = due - timedelta(minutes=1)
    assert (await referral(client, auth, REPORTER, rid))["concern_answer"]["overdue"] is False
    clock.at = due + timedelta(minutes=1)
    assert (await referral(client, auth, REPORTER, rid))["concern_answer"]["overdue"] is True
    listed = (await client.get("/v1/referrals?kind=orosanmalan", headers=auth(REPORTER, "system"))).json()
    assert [i["concern_answer"]["overdue"] for i in listed["items"]] == [True]
    query = '{ referrals(kind: ["orosanmalan"]) { ... on ReferralPage { items { id concernAnswer { overdue } } } } }'
    r = await client.post("/graphql", json={"query": query}, headers=auth(REPORTER, "system"))
    assert r.json()["data"]["referrals"]["items"] == [{"id": rid, "concernAnswer": {"overdue": True}}]
    # Answered late, it is answered: no longer overdue.
    assert (await answer(client, auth, rid, "investigation-not-opened")).status_code == 201
    assert (await referral(client, auth, REPORTER, rid))["concern_answer"]["overdue"] is False
    # Another kind of referral carries no answer at all.
    assert (await client.get("/v1/referrals?kind=remiss", headers=auth(REPORTER, "system"))).json()["items"] == []


async def search(client: httpx.AsyncClient, auth: Any, org: str, child: str, *, role: str = "system") -> httpx.Response:
    return await client.post(
        "/v1/concern-reports/search", json={"child": {"personal_identity_number": child}}, headers=auth(org, role)
    )


async def test_only_the_receiving_municipalitys_social_services_find_reports_by_child(
    client, auth, runtime, systems, clock
) -> None:
    rid = await report(client, auth)
    await deliver(runtime)
    r = await search(client, auth, SOCIAL, CHILD)
    assert r.status_code == 200, r.text
    [found] = r.json()["items"]
    assert found["id"] == rid and found["concern"]["answer"] is None and "document" not in found
    # By header too; never in the URL.
    r = await client.post(
        "/v1/concern-reports/search", headers={**auth(SOCIAL), "Child-Personal-Identity-Number": CHILD}
    )
    assert [i["id"] for i in r.json()["items"]] == [rid]
    nobody = (await search(client, auth, SOCIAL, pin(3))).json()
    for org, role in (
        ("orebro-socialtjanst-myndighet", "system"),  # another municipality's social services
        ("nora-socialtjanst-oppenvard", "system"),  # the same municipality, not a unit that receives reports
        (REPORTER, "system"),
        ("region-bup", "professional"),
        ("region-samordning", "coordinator"),
    ):
        r = await search(client, auth, org, CHILD, role=role)
        assert r.status_code == 200 and r.json() == nobody == {"items": []}, org
    # Audited with its basis (the searching social services' auditor sees it).
    r = await client.get("/v1/audit?action=concern-reports-searched", headers=auth(SOCIAL, "auditor"))
    entries = r.json()["items"]
    assert {e["legal_basis"] for e in entries} == {"report-of-concern"}
    assert sorted(e["details"]["count"] for e in entries) == [0, 1, 1]
    bad = await client.post("/v1/concern-reports/search", json={}, headers=auth(SOCIAL))
    assert bad.status_code == 422


async def test_the_answer_is_refused_onward_whatever_basis_is_offered(client, auth, runtime, systems, clock) -> None:
    from hub.domain.policy import Policy

    kept = runtime.policy
    # Even a county that lets consent carry every category, and a consent that names the answer.
    every = {**kept.model_dump()["legal_basis_categories"]}
    every["consent"] = sorted({*every["consent"], "concern-answer"})
    runtime.policy = Policy.model_validate({**kept.model_dump(), "legal_basis_categories": every})
    try:
        consent = {
            "child": {"personal_identity_number": CHILD},
            "guardian_count": 1,
            "grantors": [{"role": "guardian", "reference": "vh1"}],
            "data_categories": ["concern-answer", "school-situation"],
            "from_parties": {"organisation_ids": [REPORTER]},
            "to_parties": {"organisation_types": ["bup"]},
            "purposes": ["remiss"],
            "valid_from": (clock.at - timedelta(days=1)).isoformat(),
            "valid_until": (clock.at + timedelta(days=30)).isoformat(),
            "information_given": {"language": "sv", "form": "written"},
            "evidence_reference": "journal:1",
        }
        r = await client.post("/v1/consents", json=consent, headers=auth(REPORTER))
        assert r.status_code == 201, r.text
        for basis in (None, "consent", "report-of-concern", "necessary-disclosure"):
            ask = {
                "to_organisation": "region-bup",
                "child": {"personal_identity_number": CHILD},
                "purpose": "remiss",
                "data_categories": ["concern-answer", "school-situation"],
                "legal_basis": basis,
            }
            r = await client.post("/v1/sharing-decisions", json=ask, headers=auth(REPORTER))
            assert r.status_code == 200, r.text
            decision = r.json()
            assert "concern-answer" in decision["denied_categories"], basis
            assert "concern-answer" not in decision["permitted_categories"]
            assert "category-never-shared-onward" in [x["code"] for x in decision["reasons"]]
        alone = {**ask, "data_categories": ["concern-answer"], "legal_basis": "consent"}
        r = await client.post("/v1/sharing-decisions", json=alone, headers=auth(REPORTER))
        assert r.json()["allowed"] is False and r.json()["denied_categories"] == ["concern-answer"]
    finally:
        runtime.policy = kept


async def test_answering_and_searching_each_commit_once(client, auth, runtime, systems, clock, tally) -> None:
    rid = await report(client, auth)
    await deliver(runtime)
    for act in (lambda: answer(client, auth, rid), lambda: search(client, auth, SOCIAL, CHILD)):
        async with tally() as t:
            r = await act()
            assert r.status_code < 300, r.text
        assert (t.uow_commits, t.orm_commits) == (1, 1)
        assert len(t.transactions) == 1, "the answer, its event, its outbox entry and its audit entry: one commit"


async def overdue_rows(client: httpx.AsyncClient, auth: Any) -> dict[str, float | None]:
    r = await client.get("/v1/flows/concern-overdue", headers=auth("region-samordning", "coordinator"))
    assert r.status_code == 200, r.text
    return {row["key"]["recipient_municipality"]: row["values"]["overdue"] for row in r.json()["rows"]}


async def test_the_coordinators_count_overdue_reports_per_municipality_suppressed(
    client, auth, runtime, systems, clock
) -> None:
    kumla = []
    for n in range(6):
        await report(client, auth, child=pin(100 + n))
        kumla.append(await report(client, auth, child=pin(200 + n), to="kumla-socialtjanst-myndighet"))
    await report(client, auth, child=pin(300), to="orebro-socialtjanst-myndighet")
    await deliver(runtime)
    assert not [v for v in (await overdue_rows(client, auth)).values() if v]  # none is due yet
    clock.at += timedelta(days=16)
    rows = await overdue_rows(client, auth)
    assert rows["1880"] is None  # Örebro's one report: too few children to show
    assert rows["*"] is not None and rows["*"] >= 5
    assert all(v is None or v >= 5 for v in rows.values())
    assert (await client.get("/v1/flows/concern-overdue", headers=auth(SOCIAL, "system"))).status_code == 403
    for rid in kumla:  # answered late, they are answered: Kumla has nothing overdue any more
        r = await answer(client, auth, rid, "investigation-ongoing", org="kumla-socialtjanst-myndighet")
        assert r.status_code == 201, r.text
    assert not (await overdue_rows(client, auth)).get("1881")
    # The same table in GraphQL.
    query = "{ flowConcernOverdue { ... on FlowTable { rows { key { value } values { value hidden } } } } }"
    r = await client.post("/graphql", json={"query": query}, headers=auth("region-samordning", "coordinator"))
    graph = {row["key"][0]["value"]: row["values"][0] for row in r.json()["data"]["flowConcernOverdue"]["rows"]}
    assert graph["1880"] == {"value": None, "hidden": True}
