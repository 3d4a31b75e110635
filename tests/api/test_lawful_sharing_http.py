"""Consents, sharing decisions, necessity assessments and the audit trail over real HTTP and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.api.test_auth_and_problems import assert_problem

CHILD = "20150311-2383"  # born 2015: under the age from which the child's own consent is required
OTHER_CHILD = "201206049130"
NOW = datetime.now(UTC)

Auth = Callable[..., dict[str, str]]


@pytest.fixture
async def demo(client: httpx.AsyncClient, runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        await load_demo(session)


def consent_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "child": {"personal_identity_number": CHILD},
        "guardian_count": 2,
        "grantors": [{"role": "guardian", "reference": "vh1"}, {"role": "guardian", "reference": "vh2"}],
        "data_categories": ["identity", "school-situation", "wellbeing-assessment"],
        "from_parties": {"organisation_ids": ["nora-elevhalsa"]},
        "to_parties": {"organisation_types": ["bup"]},
        "purposes": ["remiss"],
        "valid_from": (NOW - timedelta(days=1)).isoformat(),
        "valid_until": (NOW + timedelta(days=180)).isoformat(),
        "information_given": {"language": "sv", "form": "written"},
        "evidence_reference": "elevhalsa-journal:2026/1142",
    }
    body.update(over)
    return body


def question(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "to_organisation": "region-bup",
        "child": {"personal_identity_number": CHILD},
        "purpose": "remiss",
        "data_categories": ["identity", "school-situation", "health"],
    }
    body.update(over)
    return body


async def record_consent(client: httpx.AsyncClient, auth: Auth, **over: Any) -> dict[str, Any]:
    r = await client.post("/v1/consents", json=consent_body(**over), headers=auth("nora-elevhalsa", "system"))
    assert r.status_code == 201, r.text
    return r.json()


async def ask(client: httpx.AsyncClient, auth: Auth, org: str = "nora-elevhalsa", **over: Any) -> dict[str, Any]:
    r = await client.post("/v1/sharing-decisions", json=question(**over), headers=auth(org, "system"))
    assert r.status_code == 200, r.text
    return r.json()


def codes(decision: dict[str, Any], key: str = "reasons") -> set[str]:
    return {item["code"] for item in decision[key]}


# --- consents ---------------------------------------------------------------------------------------------


async def test_a_recorded_consent_is_readable_by_its_parties_only(client, auth, demo) -> None:
    consent = await record_consent(client, auth)
    assert consent["state"] == "active" and consent["recording_organisation"] == "nora-elevhalsa"
    assert CHILD not in str(consent) and "201503112383" not in str(consent)

    own = await client.get(f"/v1/consents/{consent['id']}", headers=auth("nora-elevhalsa", "professional"))
    assert own.status_code == 200 and own.json()["id"] == consent["id"]
    by_type = await client.get(f"/v1/consents/{consent['id']}", headers=auth("region-bup", "system"))
    assert_problem(by_type, 404, "not-found")  # named by type only, and no share yet (tests/api/test_consent_oracle.py)
    named = await record_consent(client, auth, to_parties={"organisation_ids": ["region-bup"]})
    recipient = await client.get(f"/v1/consents/{named['id']}", headers=auth("region-bup", "system"))
    assert recipient.status_code == 200, "an organisation named in to_parties is party to it"
    stranger = await client.get(f"/v1/consents/{consent['id']}", headers=auth("orebro-grundskola", "system"))
    assert_problem(stranger, 404, "not-found")


async def test_search_lists_a_childs_consents_the_caller_is_party_to(client, auth, demo) -> None:
    mine = await record_consent(client, auth)
    await record_consent(client, auth, child={"personal_identity_number": OTHER_CHILD})
    r = await client.post(
        "/v1/consents/search",
        json={"child": {"personal_identity_number": "201503112383"}},  # the other form of the same number
        headers=auth("nora-elevhalsa", "system"),
    )
    assert r.status_code == 200
    assert [c["id"] for c in r.json()["items"]] == [mine["id"]]
    stranger = await client.post(
        "/v1/consents/search",
        json={"child": {"personal_identity_number": CHILD}},
        headers=auth("orebro-grundskola", "system"),
    )
    assert stranger.json()["items"] == []


@pytest.mark.parametrize(
    ("over", "pointer"),
    [
        ({"child": {"personal_identity_number": "20150311-2385"}}, "/child/personal_identity_number"),
        ({"data_categories": ["identity", "shoe-size"]}, "/data_categories/1"),
        ({"purposes": ["gossip"]}, "/purposes/0"),
        ({"to_parties": {"organisation_types": ["pizzeria"]}}, "/to_parties/organisation_types/0"),
        ({"valid_until": (NOW + timedelta(days=800)).isoformat()}, "/valid_until"),
        ({"valid_until": (NOW - timedelta(days=2)).isoformat()}, "/valid_until"),
        ({"guardian_count": 3}, "/guardian_count"),
        ({"valid_from": "2026-11-01T00:00:00"}, "/valid_from"),
    ],
    ids=["checksum", "category", "purpose", "org-type", "too-long", "ends-before-start", "guardians", "naive"],
)
async def test_an_invalid_consent_names_the_offending_field(client, auth, demo, over, pointer) -> None:
    r = await client.post("/v1/consents", json=consent_body(**over), headers=auth("nora-elevhalsa", "system"))
    body = assert_problem(r, 422, "invalid-input")
    assert pointer in [e["pointer"] for e in body["errors"]], body
    assert "2385" not in r.text, "the rejected number is not echoed back"


async def test_recording_a_consent_needs_a_sender_role(client, auth, demo) -> None:
    r = await client.post("/v1/consents", json=consent_body(), headers=auth("region-samordning", "coordinator"))
    assert_problem(r, 403, "forbidden")
    assert_problem(await client.post("/v1/consents", json=consent_body()), 401, "unauthenticated")


async def test_withdrawal_takes_effect_at_once_and_only_once(client, auth, demo) -> None:
    consent = await record_consent(client, auth)
    assert (await ask(client, auth))["allowed"] is True

    r = await client.post(
        f"/v1/consents/{consent['id']}/withdraw",
        json={"withdrawn_by": "vh2", "reason": "Vill inte längre"},
        headers=auth("nora-elevhalsa", "professional"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "withdrawn" and r.json()["withdrawn_by"] == "vh2"

    after = await ask(client, auth)
    assert after["allowed"] is False and "consent-withdrawn" in codes(after)
    again = await client.post(
        f"/v1/consents/{consent['id']}/withdraw",
        json={"withdrawn_by": "vh1", "reason": "again"},
        headers=auth("nora-elevhalsa", "system"),
    )
    assert_problem(again, 409, "conflict")
    stranger = await client.post(
        f"/v1/consents/{consent['id']}/withdraw",
        json={"withdrawn_by": "x", "reason": "y"},
        headers=auth("orebro-grundskola", "system"),
    )
    assert_problem(stranger, 404, "not-found")


# --- decisions ---------------------------------------------------------------------------------------------


async def test_nothing_recorded_is_a_refusal_with_remedies(client, auth, demo) -> None:
    d = await ask(client, auth)
    assert d["allowed"] is False and d["permitted_categories"] == []
    assert {"no-legal-basis", "no-consent"} <= codes(d)
    assert "record-consent" in codes(d, "remedies")
    assert all(r["sv"] and r["en"] for r in d["reasons"] + d["remedies"])


async def test_the_golden_rule_strips_what_the_consent_does_not_cover(client, auth, demo) -> None:
    consent = await record_consent(client, auth)
    d = await ask(client, auth)
    assert d["allowed"] is True and d["legal_basis"] == "consent" and d["basis_reference"] == consent["id"]
    assert d["permitted_categories"] == ["identity", "school-situation"]
    assert d["denied_categories"] == ["health"]


async def test_one_guardian_of_two_is_not_enough(client, auth, demo) -> None:
    await record_consent(client, auth, grantors=[{"role": "guardian", "reference": "vh1"}])
    d = await ask(client, auth)
    assert d["allowed"] is False and "consent-guardian-missing" in codes(d)
    assert "consent-from-second-guardian" in codes(d, "remedies")


async def test_a_consent_for_another_recipient_or_purpose_does_not_allow(client, auth, demo) -> None:
    await record_consent(client, auth)
    other_recipient = await ask(client, auth, to_organisation="region-buh")
    assert other_recipient["allowed"] is False
    other_purpose = await ask(client, auth, purpose="samverkansforfragan")
    assert other_purpose["allowed"] is False
    other_sender = await ask(client, auth, org="nora-grundskola")
    assert other_sender["allowed"] is False


async def test_report_of_concern_goes_to_social_services_only(client, auth, demo) -> None:
    concern = {"purpose": "orosanmalan", "data_categories": ["identity", "concern-text", "health"]}
    d = await ask(client, auth, org="nora-grundskola", to_organisation="nora-socialtjanst-myndighet", **concern)
    assert d["allowed"] is True and d["legal_basis"] == "report-of-concern"
    assert d["permitted_categories"] == ["concern-text", "identity"] and d["denied_categories"] == ["health"]
    to_bup = await ask(client, auth, org="nora-grundskola", to_organisation="region-bup", **concern)
    assert to_bup["allowed"] is False


async def test_necessary_disclosure_needs_a_recorded_assessment(client, auth, demo) -> None:
    wanted = {"legal_basis": "necessary-disclosure", "data_categories": ["identity", "school-situation"]}
    before = await ask(client, auth, **wanted)
    assert before["allowed"] is False and "no-necessity-assessment" in codes(before)

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
    after = await ask(client, auth, **wanted)
    assert after["allowed"] is True and after["legal_basis"] == "necessary-disclosure"
    assert after["basis_reference"] == r.json()["id"]
    assert after["permitted_categories"] == ["identity", "school-situation"]


async def test_an_unknown_recipient_or_category_is_a_clear_error(client, auth, demo) -> None:
    r = await client.post(
        "/v1/sharing-decisions",
        json=question(data_categories=["identity", "horoscope"]),
        headers=auth("nora-elevhalsa"),
    )
    assert "/data_categories/1" in [e["pointer"] for e in assert_problem(r, 422, "invalid-input")["errors"]]
    r = await client.post(
        "/v1/sharing-decisions", json=question(to_organisation="nowhere"), headers=auth("nora-elevhalsa")
    )
    assert "/to_organisation" in [e["pointer"] for e in assert_problem(r, 422, "invalid-input")["errors"]]


async def test_a_coordinator_may_not_ask_for_a_childs_decision(client, auth, demo) -> None:
    r = await client.post("/v1/sharing-decisions", json=question(), headers=auth("region-samordning", "coordinator"))
    assert_problem(r, 403, "forbidden")


# --- audit -------------------------------------------------------------------------------------------------


async def audit_page(client: httpx.AsyncClient, auth: Auth, org: str, query: str = "") -> dict[str, Any]:
    r = await client.get(f"/v1/audit{query}", headers=auth(org, "auditor"))
    assert r.status_code == 200, r.text
    return r.json()


async def test_every_decision_and_consent_change_is_audited_with_its_basis(client, auth, demo) -> None:
    consent = await record_consent(client, auth)
    allowed = await ask(client, auth)
    refused = await ask(client, auth, org="nora-grundskola")
    await client.post(
        f"/v1/consents/{consent['id']}/withdraw",
        json={"withdrawn_by": "vh1", "reason": "r"},
        headers=auth("nora-elevhalsa", "system"),
    )

    items = (await audit_page(client, auth, "region-samordning"))["items"]
    by_decision = {e["decision_id"]: e for e in items if e["decision_id"]}
    assert by_decision[allowed["id"]]["outcome"] == "0"
    assert by_decision[allowed["id"]]["legal_basis"] == "consent"
    assert by_decision[refused["id"]]["outcome"] == "4", "refusals are audited too"
    assert set(by_decision[refused["id"]]["details"]["reasons"]) >= {"no-legal-basis"}
    actions = [e["action"] for e in items]
    assert actions.count("sharing-decision") == 2
    assert {"consent-recorded", "consent-withdrawn"} <= set(actions)
    pseudonyms = {e["child_pseudonym"] for e in items if e["child_pseudonym"]}
    assert len(pseudonyms) == 1 and CHILD not in str(items)
    assert all(e["request_id"] for e in items)


async def test_an_organisations_auditor_sees_its_own_entries_and_a_regional_auditor_all(client, auth, demo) -> None:
    await ask(client, auth, org="nora-elevhalsa")
    await ask(client, auth, org="orebro-grundskola")

    nora = (await audit_page(client, auth, "nora-elevhalsa"))["items"]
    orebro = (await audit_page(client, auth, "orebro-grundskola"))["items"]
    bup = (await audit_page(client, auth, "region-bup"))["items"]
    region = (await audit_page(client, auth, "region-samordning"))["items"]

    def about(e: dict[str, Any], org: str) -> bool:
        return org in (e["actor_organisation"], e["counterpart_organisation"])

    assert nora and all(about(e, "nora-elevhalsa") for e in nora)
    assert orebro and all(about(e, "orebro-grundskola") for e in orebro)
    # Both were questions ("may we send this?"), the askers' own deliberations: the would-be recipient does
    # not learn who asked about which child (the decision that discloses to it, at send time, it does see).
    assert not [e for e in bup if e["action"] == "sharing-decision"]
    assert {e["actor_organisation"] for e in region} >= {"nora-elevhalsa", "orebro-grundskola"}
    only_orebro = (await audit_page(client, auth, "region-samordning", "?organisation=orebro-grundskola"))["items"]
    assert only_orebro and all(about(e, "orebro-grundskola") for e in only_orebro)

    r = await client.get("/v1/audit", headers=auth("nora-elevhalsa", "system"))
    assert_problem(r, 403, "forbidden")


async def test_audit_pages_with_a_cursor_without_gaps_or_repeats(client, auth, demo) -> None:
    for _ in range(7):
        await ask(client, auth)
    seen: list[int] = []
    query = "?limit=3&action=sharing-decision"
    while True:
        page = await audit_page(client, auth, "nora-elevhalsa", query)
        seen += [e["id"] for e in page["items"]]
        if not page["next_cursor"]:
            break
        query = f"?limit=3&action=sharing-decision&cursor={page['next_cursor']}"
    assert len(seen) == 7 and len(set(seen)) == 7 and seen == sorted(seen, reverse=True)
    bad = await client.get("/v1/audit?cursor=not-a-cursor", headers=auth("nora-elevhalsa", "auditor"))
    assert_problem(bad, 422, "invalid-input")


async def test_audit_search_by_child_finds_only_that_child(client, auth, demo) -> None:
    await ask(client, auth)
    await ask(client, auth, child={"personal_identity_number": OTHER_CHILD})
    r = await client.post(
        "/v1/audit/search",
        json={"child": {"personal_identity_number": CHILD}},
        headers=auth("region-samordning", "auditor"),
    )
    assert r.status_code == 200, r.text
    decisions = [e for e in r.json()["items"] if e["action"] == "sharing-decision"]
    assert len(decisions) == 1


async def test_searching_the_audit_trail_for_a_child_is_itself_in_that_childs_trail(client, auth, demo) -> None:
    await ask(client, auth)
    search = {"child": {"personal_identity_number": CHILD}}
    await client.post("/v1/audit/search", json=search, headers=auth("region-samordning", "auditor"))
    r = await client.post("/v1/audit/search", json=search, headers=auth("region-samordning", "auditor"))
    reads = [e for e in r.json()["items"] if e["action"] == "audit-read"]
    assert reads and reads[0]["actor_organisation"] == "region-samordning"
