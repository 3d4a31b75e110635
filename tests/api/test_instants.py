"""Times a caller sends are bounded: an instant the database cannot hold is a 422 at its field, never a 500."""

from __future__ import annotations

import httpx
import pytest

from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.api.test_auth_and_problems import assert_problem
from tests.api.test_lawful_sharing_http import consent_body

CHILD = "20150311-2383"
# Year 1 at +14:00 is year 0 in UTC and 9999-12-31 at -14:00 is year 10000: neither exists for Python or
# PostgreSQL. 1899 and 2201 exist, but no record about a child is dated then.
OUT_OF_RANGE = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "1899-12-31T12:00:00Z",
    "2201-01-01T00:00:00Z",
]


@pytest.fixture
async def demo(client: httpx.AsyncClient, runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        await load_demo(session)


def assessment(decided_at: str) -> dict[str, object]:
    return {
        "child": {"personal_identity_number": CHILD},
        "recipient_organisation": "region-bup",
        "decided_by_person": "SE2321000016-ABCD",
        "decided_by_role": "rektor",
        "justification": "Akut risk; BUP behöver skolans bild i dag.",
        "case_reference": "EH-2026-77",
        "data_categories": ["identity"],
        "decided_at": decided_at,
    }


@pytest.mark.parametrize("instant", OUT_OF_RANGE)
async def test_an_instant_out_of_range_is_refused_at_its_field(client, auth, demo, instant) -> None:
    eht = auth("nora-elevhalsa", "professional")
    r = await client.post("/v1/necessity-assessments", json=assessment(instant), headers=eht)
    body = assert_problem(r, 422, "invalid-input")
    assert [e["pointer"] for e in body["errors"]] == ["/decided_at"]

    r = await client.post("/v1/consents", json=consent_body(valid_until=instant), headers=eht)
    assert [e["pointer"] for e in assert_problem(r, 422, "invalid-input")["errors"]] == ["/valid_until"]

    auditor = auth("nora-elevhalsa", "auditor")
    r = await client.get("/v1/audit", params={"since": instant}, headers=auditor)
    assert "since" in [e["pointer"] for e in assert_problem(r, 422, "invalid-input")["errors"]]
    r = await client.get("/v1/referrals", params={"created_to": instant}, headers=eht)
    assert "created_to" in [e["pointer"] for e in assert_problem(r, 422, "invalid-input")["errors"]]


async def test_instants_within_range_are_accepted(client, auth, demo) -> None:
    eht = auth("nora-elevhalsa", "professional")
    r = await client.post("/v1/necessity-assessments", json=assessment("2026-11-30T09:00:00+01:00"), headers=eht)
    assert r.status_code == 201, r.text
