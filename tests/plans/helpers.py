"""Shared steps for plan tests: a team with a named person, BUP joined by a referral, social services as
lead professional; a plan by the child-plan schema 1.1.0; consents from social services."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import httpx

from hub.vocabulary import EXAMPLES_DIR
from tests.referrals.helpers import CHILD, NOW, RECEIVER, event, sent
from tests.teams.test_team_story import SCHOOL, SOCIAL, child, name_school

VARDCENTRAL = "nora-vardcentral"
PIN = {"Child-Personal-Identity-Number": CHILD}
EXAMPLE: dict[str, Any] = json.loads((EXAMPLES_DIR / "child-plan-1.0.0.json").read_text(encoding="utf-8"))


def plan_document(**over: Any) -> dict[str, Any]:
    """The packaged example plan, by schema 1.1.0, with a school situation and a health section."""
    doc = copy.deepcopy(EXAMPLE)
    doc["schema_version"] = "1.1.0"
    doc["school_situation"] = {"summary": "Närvaro 62 %, särskilt stöd i matematik."}
    doc["health"] = {"summary": "Sömnproblem; utreds av BUP.", "care": "BUP-utredning pågår."}
    doc.update(over)
    return doc


def review_answers() -> dict[str, Any]:
    return {
        "date": "2026-12-01",
        "what_has_improved": "Närvaron har ökat.",
        "has_anything_got_worse": "Nej.",
        "purpose_met": "partly",
        "what_should_change": "Fler samtal hos BUP.",
        "can_activities_continue": {"answer": True},
    }


async def post_plan(
    client: httpx.AsyncClient, auth: Any, org: str = SOCIAL, *, if_match: str | None = None, **over: Any
) -> httpx.Response:
    headers = {**auth(org), **({"If-Match": if_match} if if_match is not None else {})}
    body = {"child": {"personal_identity_number": CHILD}, "plan": plan_document(**over)}
    return await client.post("/v1/children/plan/versions", json=body, headers=headers)


async def plan_consent(
    client: httpx.AsyncClient, auth: Any, to: str, categories: list[str], *, by: str = SOCIAL
) -> dict[str, Any]:
    """The guardians' consent that ``by`` (social services) shares the plan's ``categories`` with ``to``."""
    body = {
        "child": {"personal_identity_number": CHILD},
        "guardian_count": 2,
        "grantors": [{"role": "guardian", "reference": "vh1"}, {"role": "guardian", "reference": "vh2"}],
        "data_categories": categories,
        "from_parties": {"organisation_ids": [by]},
        "to_parties": {"organisation_ids": [to]},
        "purposes": ["samverkansforfragan"],
        "valid_from": (NOW - timedelta(days=1)).isoformat(),
        "valid_until": (NOW + timedelta(days=180)).isoformat(),
        "information_given": {"language": "sv", "form": "written"},
        "evidence_reference": "soc-journal:2026/77",
    }
    r = await client.post("/v1/consents", json=body, headers=auth(by, "system"))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def build_team(client: httpx.AsyncClient, auth: Any, worker: Any, *, extra: tuple[str, ...] = ()) -> None:
    """The school names itself; BUP accepts a referral and joins; the school adds social services (and
    ``extra`` organisations) and appoints social services lead professional."""
    assert (await name_school(client, auth)).status_code == 201
    rid = await sent(client, auth)
    await worker.run_until_idle()
    assert (await event(client, auth, RECEIVER, rid, type="status", status="accepted")).status_code == 201
    for org in (SOCIAL, *extra):
        r = await client.post(
            "/v1/children/team/participants", json=child(organisation_id=org, reason="plan"), headers=auth(SCHOOL)
        )
        assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/children/team/lead-professional", json=child(organisation_id=SOCIAL), headers=auth(SCHOOL)
    )
    assert r.status_code == 201, r.text


async def school_and_social(client: httpx.AsyncClient, auth: Any) -> None:
    """A team of two: the school as named person (no lead professional), social services a participant."""
    assert (await name_school(client, auth)).status_code == 201
    r = await client.post(
        "/v1/children/team/participants", json=child(organisation_id=SOCIAL, reason="sip"), headers=auth(SCHOOL)
    )
    assert r.status_code == 201, r.text
