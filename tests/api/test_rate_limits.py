"""Issue #9, item 1: sharing decisions and referral attempts are rate limited per organisation and per
organisation and child (429 problem+json with Retry-After), and refusals beyond a threshold are flagged
in the audit trail. The attacker probes one child (or many) as fast as it can."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from hub.devtools.demo import load_demo
from hub.domain.identity import luhn_check_digit
from hub.main import create_app
from hub.runtime import Runtime
from hub.services.rate_limits import LeakyCounters
from tests.api.test_auth_and_problems import assert_problem
from tests.referrals.helpers import referral_body

ORG = "nora-elevhalsa"
Auth = Callable[..., dict[str, str]]


def pin(n: int) -> str:
    nine = f"15{1 + n // 28:02d}{1 + n % 28:02d}{100 + n:03d}"
    return f"20{nine[:6]}-{nine[6:]}{luhn_check_digit(nine)}"


async def tuned_client(runtime: Runtime, **limits: Any) -> AsyncIterator[httpx.AsyncClient]:
    # Its own runtime object, hence its own in-process counters, with small limits and a long window
    # (nothing drains while the test runs).
    tuned = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"sharing_limit_window_seconds": 3600.0, **limits})
    )
    app = create_app(runtime=tuned)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            yield c


@pytest.fixture
async def demo(db: Runtime) -> Runtime:
    async with db.sessions() as session:
        await load_demo(session)
    return db


@pytest.fixture
async def tight(demo: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async for c in tuned_client(demo, sharing_limit_per_child=3, sharing_limit_per_organisation=5):
        yield c


@pytest.fixture
async def flagging(demo: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async for c in tuned_client(demo, sharing_refusals_flag_per_child=2, sharing_refusals_flag_per_organisation=4):
        yield c


async def ask(client: httpx.AsyncClient, auth: Auth, child: int, org: str = ORG, **over: Any) -> httpx.Response:
    body = {
        "to_organisation": "region-bup",
        "child": {"personal_identity_number": pin(child)},
        "purpose": "remiss",
        "data_categories": ["identity"],
        **over,
    }
    return await client.post("/v1/sharing-decisions", json=body, headers=auth(org, "system"))


def assert_limited(r: httpx.Response) -> None:
    body = assert_problem(r, 429, "rate-limited")
    assert int(r.headers["Retry-After"]) >= 1
    assert body["detail"]


async def test_probing_one_child_is_limited_per_organisation_and_child(tight, auth) -> None:
    for purpose in ("remiss", "samverkansforfragan", "sip-kallelse"):
        assert (await ask(tight, auth, 1, purpose=purpose)).status_code == 200
    assert_limited(await ask(tight, auth, 1, purpose="orosanmalan"))
    assert (await ask(tight, auth, 2)).status_code == 200, "another child: its own counter"
    assert (await ask(tight, auth, 1, org="nora-grundskola")).status_code == 200, "another organisation's own"


async def test_a_referral_attempt_counts_and_is_refused_before_anything_is_written(tight, auth) -> None:
    for purpose in ("remiss", "samverkansforfragan", "sip-kallelse"):
        assert (await ask(tight, auth, 1, purpose=purpose)).status_code == 200
    body = referral_body(child={"personal_identity_number": pin(1)})
    r = await tight.post("/v1/referrals", json=body, headers={**auth(ORG, "system"), "Idempotency-Key": "k1"})
    assert_limited(r)
    audit = await tight.get("/v1/audit?action=sharing-decision", headers=auth(ORG, "auditor"))
    assert len(audit.json()["items"]) == 3, "the limited attempt decided and recorded nothing"


async def test_probing_many_children_is_limited_per_organisation(tight, auth) -> None:
    for child in range(5):
        assert (await ask(tight, auth, child)).status_code == 200
    assert_limited(await ask(tight, auth, 99))
    r = await tight.post(
        "/v1/referrals",
        json=referral_body(child={"personal_identity_number": pin(98)}),
        headers={**auth(ORG, "system"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert_limited(r)
    assert (await ask(tight, auth, 99, org="nora-grundskola")).status_code == 200


async def test_refusals_beyond_the_threshold_are_flagged_for_the_auditor(flagging, auth) -> None:
    for purpose in ("remiss", "samverkansforfragan", "sip-kallelse"):
        r = await ask(flagging, auth, 1, purpose=purpose)
        assert r.status_code == 200 and r.json()["allowed"] is False
    for child in (2, 3):
        assert (await ask(flagging, auth, child)).json()["allowed"] is False

    r = await flagging.get("/v1/audit?action=sharing-decision&outcome=4", headers=auth(ORG, "auditor"))
    assert r.status_code == 200, r.text
    flags = [entry["details"].get("flagged", []) for entry in reversed(r.json()["items"])]  # oldest first
    assert flags == [[], [], ["refusals-per-child"], [], ["refusals-per-organisation"]]


def test_counters_drain_and_say_how_long_to_wait() -> None:
    now = [0.0]
    counters = LeakyCounters(2, 10.0, clock=lambda: now[0])  # 2 at once, then one every 5 s
    assert counters.add("a") == 1 and counters.add("a") == 2
    assert counters.wait("a") == pytest.approx(5.0)
    now[0] = 2.5
    assert counters.wait("a") == pytest.approx(2.5)
    now[0] = 5.0
    assert counters.wait("a") == 0 and counters.add("a") == pytest.approx(2.0)
    assert counters.wait("b") == 0, "keys are counted apart"


def test_drained_counters_are_forgotten() -> None:
    now = [0.0]
    counters = LeakyCounters(1, 1.0, clock=lambda: now[0])
    for n in range(5000):
        counters.add(n)
    now[0] = 10.0
    for n in range(5000, 9000):
        counters.add(n)
    assert len(counters._levels) < 5000
