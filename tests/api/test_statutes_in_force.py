"""Effective-dated legal bases over HTTP (issue #14, section 1): a decision cites the statute in force on
the day the hub sees (its clock set, never waited for), keeps that citation after the law changes, and a
county's dated policy rule and statute reading apply from their day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from hub.domain.policy import Policy
from hub.runtime import Runtime
from tests.api.test_lawful_sharing_http import Auth, ask
from tests.api.test_lawful_sharing_http import demo as demo  # the fixture

# 1 July 2025 begins at 22:00 UTC on 30 June (Swedish summer time, UTC+2): the last second under SoL
# (2001:453) and the first under SoL (2025:400).
LAST_OLD = datetime(2025, 6, 30, 21, 59, 59, tzinfo=UTC)
FIRST_NEW = datetime(2025, 6, 30, 22, 0, 0, tzinfo=UTC)
STATUTE_SYSTEM = "https://vocab.hub.se/fhir/CodeSystem/legal-bases/statute"


class Clock:
    """The hub's clock for a test: ``clock.at = …`` moves the time the hub sees."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock(runtime: Runtime) -> Iterator[Clock]:
    kept = runtime.clock
    runtime.clock = Clock(LAST_OLD)
    try:
        yield runtime.clock
    finally:
        runtime.clock = kept


@pytest.fixture
def county_policy(runtime: Runtime) -> Iterator[Any]:
    """``set(**fields)`` puts a policy with these fields in force on the hub for the test."""
    kept = runtime.policy

    def put(**fields: Any) -> None:
        runtime.policy = Policy.model_validate({**kept.model_dump(), **fields})

    try:
        yield put
    finally:
        runtime.policy = kept


async def report(client: httpx.AsyncClient, auth: Auth, **over: Any) -> dict[str, Any]:
    body = {
        "org": "nora-grundskola",
        "to_organisation": "nora-socialtjanst-myndighet",
        "purpose": "orosanmalan",
        "data_categories": ["identity", "concern-text"],
    }
    return await ask(client, auth, **{**body, **over})


def statute_reason(decision: dict[str, Any]) -> dict[str, Any]:
    (reason,) = [r for r in decision["reasons"] if r["code"].startswith("statute-cited")]
    return reason


async def entry_of(client: httpx.AsyncClient, auth: Auth, decision_id: str) -> dict[str, Any]:
    r = await client.get("/v1/audit?action=sharing-decision", headers=auth("nora-grundskola", "auditor"))
    assert r.status_code == 200, r.text
    (entry,) = [e for e in r.json()["items"] if e["decision_id"] == decision_id]
    return entry


async def test_a_report_of_concern_cites_the_act_in_force_on_its_day(client, auth, demo, clock) -> None:
    before = await report(client, auth)
    assert before["allowed"] and before["decided_at"].startswith("2025-06-30T21:59:59")
    reason = statute_reason(before)
    assert reason["code"] == "statute-cited" and reason["legal_basis"] == "report-of-concern"
    assert "14 kap. 1 § socialtjänstlagen (2001:453)" in reason["sv"] and "version 2.0.0" in reason["sv"]
    assert "Chapter 14, Section 1, Social Services Act (2001:453)" in reason["en"]

    clock.at = FIRST_NEW
    after = await report(client, auth)
    reason = statute_reason(after)
    # SFS 2025:400's chapter and section were not confirmed in the hub's sources: the act, and says so.
    assert reason["code"] == "statute-cited-provision-unconfirmed"
    assert "socialtjänstlagen (2025:400)" in reason["sv"] and "2001:453" not in reason["sv"]
    assert "not confirmed" in reason["en"]

    # The audit trail keeps each decision's citation as made, read after the change.
    old, new = [await entry_of(client, auth, d["id"]) for d in (before, after)]
    assert old["details"]["basis"]["statute"] == {
        "legal_basis": "report-of-concern",
        "vocabulary": "legal-bases",
        "vocabulary_version": "2.0.0",
        "statute_id": "sol-2001-453-14-1",
        "sv": reason_text(before, "sv"),
        "en": reason_text(before, "en"),
        "valid_from": "2002-01-01",
        "valid_until": "2025-07-01",
        "provision_verified": True,
        "provision_source": None,
    }
    cited = new["details"]["basis"]["statute"]
    assert cited["statute_id"] == "sol-2025-400-report" and cited["valid_from"] == "2025-07-01"
    assert cited["valid_until"] is None and cited["provision_verified"] is False
    assert old["occurred_at"].startswith("2025-06-30T21:59:59")


def reason_text(decision: dict[str, Any], lang: str) -> str:
    """The citation itself, as the reason quotes it (between "on"/"på" and the version)."""
    text: str = statute_reason(decision)[lang]
    return text.split(" på " if lang == "sv" else " on ", 1)[1].rsplit(" (", 1)[0]


async def test_the_fhir_audit_event_names_the_statute_and_the_vocabulary_version(client, auth, demo, clock) -> None:
    decisions = [await report(client, auth)]
    clock.at = FIRST_NEW
    decisions.append(await report(client, auth))
    for decision, statute in zip(decisions, ("sol-2001-453-14-1", "sol-2025-400-report"), strict=True):
        entry = await entry_of(client, auth, decision["id"])
        r = await client.get(f"/fhir/r4/AuditEvent/{entry['id']}", headers=auth("nora-grundskola", "auditor"))
        assert r.status_code == 200, r.text
        event = r.json()
        AuditEvent.model_validate(event)
        (cited,) = [
            e for e in event["entity"] if e.get("what", {}).get("identifier", {}).get("system") == STATUTE_SYSTEM
        ]
        assert cited["what"]["identifier"]["value"] == statute and "socialtjänstlagen" in cited["name"]
        (purpose,) = [p for p in event["purposeOfEvent"] if "legal-bases" in p["coding"][0]["system"]]
        assert purpose["coding"][0] == {
            "system": "https://vocab.hub.se/fhir/CodeSystem/legal-bases",
            "code": "report-of-concern",
            "version": "2.0.0",
        }


async def test_a_consent_decision_cites_osl_and_a_refusal_cites_nothing(client, auth, demo, clock) -> None:
    clock.at = FIRST_NEW
    refused = await ask(client, auth, data_categories=["health"])  # no consent: no basis, no statute
    assert not refused["allowed"] and not [r for r in refused["reasons"] if r["code"].startswith("statute")]
    entry = await entry_of_org(client, auth, "nora-elevhalsa", refused["id"])
    assert entry["details"]["basis"] is None


async def entry_of_org(client: httpx.AsyncClient, auth: Auth, org: str, decision_id: str) -> dict[str, Any]:
    r = await client.get("/v1/audit?action=sharing-decision", headers=auth(org, "auditor"))
    (entry,) = [e for e in r.json()["items"] if e["decision_id"] == decision_id]
    return entry


async def test_a_county_confirmed_provision_is_cited_from_its_policy(client, auth, demo, clock, county_policy) -> None:
    county_policy(
        statute_provisions={
            "sol-2025-400-report": {
                "sv": "X kap. Y § socialtjänstlagen (2025:400)",
                "en": "Chapter X, Section Y, Social Services Act (2025:400)",
                "source": "Region Örebro län, juridiska enheten, beslut 2025-08-01",
            }
        }
    )
    clock.at = FIRST_NEW
    decision = await report(client, auth)
    reason = statute_reason(decision)
    assert reason["code"] == "statute-cited" and "X kap. Y § socialtjänstlagen (2025:400)" in reason["sv"]
    cited = (await entry_of(client, auth, decision["id"]))["details"]["basis"]["statute"]
    assert cited["provision_verified"] is True and cited["provision_source"].startswith("Region Örebro")
    clock.at = LAST_OLD  # the county's reading concerns the new act only
    assert "(2001:453)" in statute_reason(await report(client, auth))["sv"]


async def test_a_dated_policy_rule_applies_from_its_day(client, auth, demo, clock, county_policy) -> None:
    county_policy(
        dated_rules=[
            {
                "valid_from": "2025-07-01",
                "source": "Nämndbeslut 2025-05-20 § 14 (exempel)",
                "rules": {"report_of_concern_recipient_types": ["socialtjanst-myndighet", "socialtjanst-oppenvard"]},
            }
        ]
    )
    to_open_care = {"to_organisation": "nora-socialtjanst-oppenvard"}
    before = await report(client, auth, **to_open_care)
    assert not before["allowed"] and "report-recipient-type-not-allowed" in {r["code"] for r in before["reasons"]}
    clock.at = FIRST_NEW
    after = await report(client, auth, **to_open_care)
    assert after["allowed"] and after["legal_basis"] == "report-of-concern"
