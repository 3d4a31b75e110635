"""The registry over real HTTP and PostgreSQL: organisations, endpoints, the service directory, stale waiting
times, resolving referral targets, and the audit trail of admin changes."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from hub.devtools.demo import demo_organisations, demo_services, load_demo
from hub.domain.errors import InvalidInput
from hub.main import create_app
from hub.runtime import Runtime
from hub.services import registry
from tests.api.test_auth_and_problems import assert_problem

Auth = Callable[..., dict[str, str]]
NORA = "1884"
SCHOOL, ELEVHALSA, BUP, REGION = "nora-grundskola", "nora-elevhalsa", "region-bup", "region-samordning"
WEBHOOK = {"url": "http://127.0.0.1:8901/hub", "secret_ref": "nora-skola-webhook"}


@pytest.fixture
async def demo(client: httpx.AsyncClient, runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        await load_demo(session)


async def confirmed_days_ago(runtime: Runtime, service_id: str, days: float | None, waiting_days: int = 10) -> None:
    """Time travel for a waiting-time confirmation (tests only: the API always confirms as of now)."""
    at = None if days is None else datetime.now(UTC) - timedelta(days=days)
    async with runtime.sessions() as session:
        await session.execute(
            text("update service set waiting_confirmed_at = :at, waiting_days = :w where id = :id"),
            {"at": at, "w": waiting_days, "id": service_id},
        )
        await session.commit()


def pointers(body: dict[str, Any]) -> list[str]:
    return [e["pointer"] for e in body.get("errors", [])]


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [s["id"] for s in response.json()["items"]]


def service_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Samtalsstöd",
        "intervention_level": "selective",
        "trappan_step": 2,
        "age_min": 6,
        "age_max": 17,
        "referral_kinds": ["samverkansforfragan"],
        "dimensions": ["included"],
    }
    body.update(over)
    return body


async def create_service(client: httpx.AsyncClient, auth: Auth, org: str, sid: str, **over: Any) -> dict[str, Any]:
    body = service_body(id=sid, organisation_id=org, **over)
    r = await client.post("/v1/registry/services", json=body, headers=auth(REGION, "admin"))
    assert r.status_code == 201, r.text
    return r.json()


# ----------------------------------------------------------------------------------------------- auth
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/registry/services"),
        ("GET", "/v1/registry/organisations"),
        ("PUT", f"/v1/registry/organisations/{BUP}/endpoint"),
        ("GET", "/v1/registry/stale-services"),
    ],
)
async def test_the_registry_needs_a_token(client: httpx.AsyncClient, method: str, path: str) -> None:
    r = await client.request(method, path, json={"adapter": "mailbox", "config": {}} if method == "PUT" else None)
    assert_problem(r, 401, "unauthenticated")


async def test_who_may_change_what(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    endpoint = {"adapter": "mailbox", "config": {}}
    # A school's admin may not touch BUP's endpoint, nor read it; its system may not change its own.
    assert_problem(
        await client.put(f"/v1/registry/organisations/{BUP}/endpoint", json=endpoint, headers=auth(SCHOOL, "admin")),
        403,
        "forbidden",
    )
    assert_problem(
        await client.get(f"/v1/registry/organisations/{BUP}/endpoint", headers=auth(SCHOOL, "admin")), 403, "forbidden"
    )
    assert_problem(
        await client.put(
            f"/v1/registry/organisations/{SCHOOL}/endpoint", json=endpoint, headers=auth(SCHOOL, "system")
        ),
        403,
        "forbidden",
    )
    # Its own admin may; so may a regional admin, for anyone (but not a regional coordinator).
    assert (
        await client.put(f"/v1/registry/organisations/{SCHOOL}/endpoint", json=endpoint, headers=auth(SCHOOL, "admin"))
    ).status_code == 200
    assert (
        await client.put(f"/v1/registry/organisations/{BUP}/endpoint", json=endpoint, headers=auth(REGION, "admin"))
    ).status_code == 200
    assert_problem(
        await client.put(
            f"/v1/registry/organisations/{BUP}/endpoint", json=endpoint, headers=auth(REGION, "coordinator")
        ),
        403,
        "forbidden",
    )
    # Organisations: regional admins only.
    org = {"name": "Ny skola", "type": "grundskola", "municipality_code": NORA, "region_code": "18"}
    assert_problem(
        await client.put("/v1/registry/organisations/nora-ny-skola", json=org, headers=auth(SCHOOL, "admin")),
        403,
        "forbidden",
    )
    assert_problem(
        await client.put("/v1/registry/organisations/nora-ny-skola", json=org, headers=auth(BUP, "admin")),
        403,
        "forbidden",
    )
    # Services: the owning organisation's admin (or a regional admin).
    body = service_body(organisation_id=BUP)
    assert_problem(
        await client.post("/v1/registry/services", json=body, headers=auth(SCHOOL, "admin")), 403, "forbidden"
    )
    assert_problem(
        await client.put(
            "/v1/registry/services/region-bup-utredning", json=service_body(), headers=auth(SCHOOL, "admin")
        ),
        403,
        "forbidden",
    )
    assert_problem(
        await client.delete("/v1/registry/services/region-bup-utredning", headers=auth(SCHOOL, "admin")),
        403,
        "forbidden",
    )
    assert (
        await client.put("/v1/registry/services/region-bup-utredning", json=service_body(), headers=auth(BUP, "admin"))
    ).status_code == 200
    # Waiting times: the owning organisation's system keeps them current; nobody else's system, no professional.
    wait = "/v1/registry/services/region-bup-utredning/waiting-time"
    assert (await client.post(wait, json={"waiting_days": 40}, headers=auth(BUP, "system"))).status_code == 200
    assert_problem(await client.post(wait, json={"waiting_days": 1}, headers=auth(SCHOOL, "system")), 403, "forbidden")
    assert_problem(
        await client.post(wait, json={"waiting_days": 1}, headers=auth(BUP, "professional")), 403, "forbidden"
    )
    # Reading is for every authenticated caller.
    assert (
        await client.get("/v1/registry/services/region-bup-utredning", headers=auth(SCHOOL, "professional"))
    ).json()["waiting_days"] == 40
    assert (
        await client.get(f"/v1/registry/organisations/{BUP}", headers=auth(SCHOOL, "professional"))
    ).status_code == 200


# ----------------------------------------------------------------------------------------- endpoints
async def test_endpoint_config_is_validated_against_the_adapter(
    client: httpx.AsyncClient, auth: Auth, demo: None
) -> None:
    url = f"/v1/registry/organisations/{SCHOOL}/endpoint"
    admin = auth(SCHOOL, "admin")
    r = await client.put(url, json={"adapter": "carrier-pigeon", "config": {}}, headers=admin)
    assert pointers(assert_problem(r, 422, "invalid-input")) == ["/adapter"]
    r = await client.put(url, json={"adapter": "webhook", "config": {}}, headers=admin)
    assert sorted(pointers(assert_problem(r, 422, "invalid-input"))) == ["/config/secret_ref", "/config/url"]
    r = await client.put(
        url, json={"adapter": "webhook", "config": {**WEBHOOK, "url": "ftp://journal.example"}}, headers=admin
    )
    assert pointers(assert_problem(r, 422, "invalid-input")) == ["/config/url"]
    # A secret value inline is refused, and never echoed back.
    r = await client.put(url, json={"adapter": "webhook", "config": {**WEBHOOK, "secret": "hunter2"}}, headers=admin)
    body = assert_problem(r, 422, "invalid-input")
    assert body["errors"] == [
        {"pointer": "/config/secret", "detail": body["errors"][0]["detail"], "code": "inline-secret"}
    ]
    assert "hunter2" not in r.text
    r = await client.put(url, json={"adapter": "webhook", "config": {**WEBHOOK, "timeout": 3}}, headers=admin)
    assert pointers(assert_problem(r, 422, "invalid-input")) == ["/config/timeout"]
    # Nothing of that was stored.
    assert (await client.get(url, headers=admin)).json()["config"]["secret_ref"] == "demo-webhook"


async def test_an_endpoint_is_replaced_and_read_back_as_stored(
    client: httpx.AsyncClient, auth: Auth, runtime: Runtime, demo: None
) -> None:
    url = f"/v1/registry/organisations/{SCHOOL}/endpoint"
    before = (await client.get(url, headers=auth(SCHOOL, "admin"))).json()
    assert before["adapter"] == "webhook" and before["active"] is True
    r = await client.put(url, json={"adapter": "webhook", "config": WEBHOOK}, headers=auth(SCHOOL, "admin"))
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["id"] != before["id"] and after["organisation_id"] == SCHOOL
    assert after["config"] == WEBHOOK  # references only: the secret's name, never a value
    assert (await client.get(url, headers=auth(REGION, "admin"))).json() == after
    async with runtime.sessions() as session:
        assert await registry.active_endpoint(session, SCHOOL) == ("webhook", WEBHOOK)
        rows = (
            (await session.execute(text("select active from endpoint where organisation_id = :o"), {"o": SCHOOL}))
            .scalars()
            .all()
        )
    assert sorted(rows) == [False, True]  # the previous one is kept, retired
    r = await client.put(
        "/v1/registry/organisations/nowhere/endpoint",
        json={"adapter": "mailbox", "config": {}},
        headers=auth(REGION, "admin"),
    )
    assert_problem(r, 404, "not-found")


# ------------------------------------------------------------------------------------- organisations
async def test_regional_admins_register_organisations(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    admin = auth(REGION, "admin")
    org = {
        "name": "Noraskolan (demo)",
        "type": "grundskola",
        "municipality_code": NORA,
        "region_code": "18",
        "parent_id": None,
        "hsa_id": None,
        "organisation_number": None,
    }
    r = await client.put("/v1/registry/organisations/nora-noraskolan", json=org, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json() == {"id": "nora-noraskolan", **org, "active": True}
    r = await client.put(
        "/v1/registry/organisations/nora-noraskolan", json={**org, "name": "Noraskolan F-9 (demo)"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["name"] == "Noraskolan F-9 (demo)"
    assert (await client.get("/v1/registry/organisations/nora-noraskolan", headers=auth(SCHOOL))).json()[
        "name"
    ] == "Noraskolan F-9 (demo)"
    listed = await client.get(f"/v1/registry/organisations?type=grundskola&municipality={NORA}", headers=auth(SCHOOL))
    assert [o["id"] for o in listed.json()["items"]] == ["nora-grundskola", "nora-noraskolan"]
    # Validation, with pointers.
    bad = {**org, "type": "skola", "municipality_code": "0180", "parent_id": "nowhere"}
    r = await client.put("/v1/registry/organisations/Nora_Skola", json=bad, headers=admin)
    assert sorted(pointers(assert_problem(r, 422, "invalid-input"))) == [
        "/municipality_code",
        "/parent_id",
        "/type",
        "organisation_id",
    ]
    r = await client.put("/v1/registry/organisations/nora-x", json={**org, "municipality_code": "18"}, headers=admin)
    assert pointers(assert_problem(r, 422, "invalid-input")) == ["/municipality_code"]
    assert_problem(await client.get("/v1/registry/organisations/nowhere", headers=auth(SCHOOL)), 404, "not-found")


async def test_organisations_page_with_a_cursor(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"type": "elevhalsa", "limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/registry/organisations", params=params, headers=auth(SCHOOL))).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 12 and seen == sorted(seen)
    county = (await client.get(f"/v1/registry/organisations/{BUP}", headers=auth(SCHOOL))).json()
    assert county["municipality_code"] is None and county["region_code"] == "18"  # a county-wide unit
    r = await client.get("/v1/registry/organisations?cursor=not-a-cursor", headers=auth(SCHOOL))
    assert pointers(assert_problem(r, 422, "invalid-input")) == ["cursor"]


# ------------------------------------------------------------------------------------------ services
async def test_services_are_created_changed_and_taken_out(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    admin = auth(ELEVHALSA, "admin")
    r = await client.post("/v1/registry/services", json=service_body(name="Studiero"), headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    sid = created["id"]
    assert sid.startswith("svc-") and created["organisation"]["id"] == ELEVHALSA  # the caller's own
    assert created["waiting_days"] is None and created["confirmed"] is False
    r = await client.put(
        f"/v1/registry/services/{sid}", json=service_body(name="Studiero i klassrummet", age_max=12), headers=admin
    )
    assert r.status_code == 200 and r.json()["name"] == "Studiero i klassrummet" and r.json()["age_max"] == 12
    search = f"/v1/registry/services?municipality={NORA}&q=studiero"
    assert ids(await client.get(search, headers=auth(SCHOOL))) == [sid]
    assert (await client.delete(f"/v1/registry/services/{sid}", headers=admin)).status_code == 204
    assert (await client.delete(f"/v1/registry/services/{sid}", headers=admin)).status_code == 204
    assert ids(await client.get(search, headers=auth(SCHOOL))) == []
    assert (await client.get(f"/v1/registry/services/{sid}", headers=auth(SCHOOL))).json()["active"] is False
    # An id chosen by the caller, once.
    await create_service(client, auth, ELEVHALSA, "nora-studiero")
    r = await client.post("/v1/registry/services", json=service_body(id="nora-studiero"), headers=admin)
    assert_problem(r, 409, "conflict")
    assert_problem(await client.get("/v1/registry/services/nowhere", headers=auth(SCHOOL)), 404, "not-found")


async def test_service_validation_points_at_the_fields(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    admin = auth(ELEVHALSA, "admin")
    bad = service_body(
        age_min=12,
        age_max=6,
        referral_kinds=["remiss", "nonsense"],
        dimensions=["happy"],
        intervention_level="universal",
        trappan_step=3,  # step 3 goes with indicated
    )
    r = await client.post("/v1/registry/services", json=bad, headers=admin)
    assert sorted(pointers(assert_problem(r, 422, "invalid-input"))) == [
        "/age_min",
        "/dimensions/0",
        "/intervention_level",
        "/referral_kinds/1",
    ]
    r = await client.post(
        "/v1/registry/services", json=service_body(municipality_codes=["18"], waiting_days=3), headers=admin
    )
    assert sorted(pointers(assert_problem(r, 422, "invalid-input"))) == ["/municipality_codes/0", "/waiting_days"]
    r = await client.post("/v1/registry/services", json=service_body(intervention_level="sometimes"), headers=admin)
    assert pointers(assert_problem(r, 422, "invalid-input")) == ["/intervention_level"]


async def test_search_who_can_help_a_nine_year_old_in_nora(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    r = await client.get(
        "/v1/registry/services",
        params={"age": 9, "municipality": NORA, "referral_kind": "remiss", "dimension": "healthy"},
        headers=auth(SCHOOL, "professional"),
    )
    # The county's units serve Nora; confirmed waits first, shortest first; then the unconfirmed ones.
    assert ids(r) == [
        "region-bup-akut",  # 0 days, confirmed yesterday
        "region-barnklinik-bedomning",  # 30 days, confirmed 40 days ago
        "region-bup-utredning",  # 75 days, confirmed 10 days ago
        "region-forsta-linjen-samtal",  # 21 days, but confirmed 200 days ago
        "region-buh-habilitering",  # 120 days, never confirmed
    ]
    items = r.json()["items"]
    assert [s["confirmed"] for s in items] == [True, True, True, False, False]
    assert items[0]["organisation"] == {
        "id": BUP,
        "name": "BUP Region Örebro län (demo)",
        "type": "bup",
        "municipality_code": None,
    }
    assert items[4]["waiting_days"] == 120 and items[4]["waiting_confirmed_at"] is None
    assert all(s["age_min"] <= 9 <= s["age_max"] and "remiss" in s["referral_kinds"] for s in items)


async def test_search_ranks_local_before_county_then_confirmed_then_shorter_wait(
    client: httpx.AsyncClient, auth: Auth, runtime: Runtime, demo: None
) -> None:
    await create_service(client, auth, ELEVHALSA, "rank-local", name="Ranktest lokal")
    await create_service(
        client,
        auth,
        "lindesberg-socialtjanst-oppenvard",
        "rank-listed",
        name="Ranktest listad",
        municipality_codes=["1885", NORA],
    )
    await create_service(client, auth, "region-forsta-linjen", "rank-county", name="Ranktest län")
    await create_service(client, auth, "region-buh", "rank-county-unknown", name="Ranktest län utan väntetid")
    await create_service(client, auth, "kumla-elevhalsa", "rank-elsewhere", name="Ranktest i Kumla")
    for sid, days in (("rank-local", 60), ("rank-listed", 30), ("rank-county", 5), ("rank-elsewhere", 1)):
        r = await client.post(
            f"/v1/registry/services/{sid}/waiting-time", json={"waiting_days": days}, headers=auth(REGION, "admin")
        )
        assert r.status_code == 200 and r.json()["confirmed"] is True
    search = {"municipality": NORA, "q": "ranktest"}
    expected = ["rank-listed", "rank-local", "rank-county", "rank-county-unknown"]
    assert ids(await client.get("/v1/registry/services", params=search, headers=auth(SCHOOL))) == expected
    # A stale confirmation ranks after a fresh one within the same reach.
    await confirmed_days_ago(runtime, "rank-listed", 100, waiting_days=30)
    r = await client.get("/v1/registry/services", params=search, headers=auth(SCHOOL))
    assert ids(r) == ["rank-local", "rank-listed", "rank-county", "rank-county-unknown"]
    assert [s["confirmed"] for s in r.json()["items"]] == [True, False, True, False]
    # Without a municipality every active match is found, Kumla's too.
    assert "rank-elsewhere" in ids(
        await client.get("/v1/registry/services", params={"q": "ranktest"}, headers=auth(SCHOOL))
    )
    # Paging with a cursor walks the same ranking.
    seen, cursor = [], None
    while True:
        page = (
            await client.get(
                "/v1/registry/services",
                params={**search, "limit": 1, **({"cursor": cursor} if cursor else {})},
                headers=auth(SCHOOL),
            )
        ).json()
        seen += [s["id"] for s in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == ["rank-local", "rank-listed", "rank-county", "rank-county-unknown"]


async def test_search_filters(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    async def search(**params: Any) -> list[str]:
        return ids(
            await client.get("/v1/registry/services", params={"municipality": NORA, **params}, headers=auth(SCHOOL))
        )

    assert await search(trappan_step=0) == ["nora-familjecentral"]
    assert await search(referral_kind="orosanmalan") == ["nora-socialtjanst-mottagning"]
    assert "nora-elevhalsa-insats" in await search(age=7)
    assert "nora-elevhalsa-insats" not in await search(age=3)  # elevhälsan: 6-19
    assert set(await search(dimension=["active"])) == {"nora-familjecentral", "region-buh-habilitering"}
    assert set(await search(dimension=["active", "responsible"])) == {
        "nora-familjecentral",
        "region-buh-habilitering",
        "nora-oppenvard-familjestod",
    }
    assert await search(q="barnombud") == ["nora-barnombud"]
    assert await search(q="%") == []  # LIKE wildcards are text
    assert set(await search(organisation_type="bup")) == {"region-bup-akut", "region-bup-utredning"}
    assert await search(q="familjestödjare") == []  # Örebro's own service does not serve Nora
    assert await search(q="familjestödjare", municipality="1880") == ["orebro-familjestodjare"]
    r = await client.get(
        "/v1/registry/services",
        params={"referral_kind": "letter", "dimension": "happy", "organisation_type": "castle"},
        headers=auth(SCHOOL),
    )
    assert sorted(pointers(assert_problem(r, 422, "invalid-input"))) == [
        "dimension",
        "organisation_type",
        "referral_kind",
    ]
    r = await client.get("/v1/registry/services?municipality=nora&trappan_step=4", headers=auth(SCHOOL))
    assert sorted(pointers(assert_problem(r, 422, "invalid-input"))) == ["municipality", "trappan_step"]
    assert pointers(
        assert_problem(await client.get("/v1/registry/services?cursor=e30", headers=auth(SCHOOL)), 422, "invalid-input")
    ) == ["cursor"]


# ------------------------------------------------------------------------------------- stale entries
async def test_stale_waiting_times_are_flagged_to_their_organisation(
    client: httpx.AsyncClient, auth: Auth, runtime: Runtime, demo: None
) -> None:
    sid = "nora-elevhalsa-insats"
    await confirmed_days_ago(runtime, sid, 89)
    assert (await client.get(f"/v1/registry/services/{sid}", headers=auth(SCHOOL))).json()["confirmed"] is True
    page = (await client.get("/v1/registry/stale-services", headers=auth(ELEVHALSA, "system"))).json()
    assert page == {"items": [], "next_cursor": None, "max_age_days": 90}
    await confirmed_days_ago(runtime, sid, 91)
    page = (await client.get("/v1/registry/stale-services", headers=auth(ELEVHALSA, "system"))).json()
    assert [s["id"] for s in page["items"]] == [sid] and page["items"][0]["confirmed"] is False
    assert (await client.get("/v1/registry/stale-services", headers=auth(ELEVHALSA, "admin"))).json()["items"] == page[
        "items"
    ]
    # Only its own: another organisation's system sees its own list, and may not ask for Nora's.
    assert sid not in [
        s["id"] for s in (await client.get("/v1/registry/stale-services", headers=auth(BUP, "system"))).json()["items"]
    ]
    assert_problem(
        await client.get(f"/v1/registry/stale-services?organisation={ELEVHALSA}", headers=auth(BUP, "system")),
        403,
        "forbidden",
    )
    assert_problem(
        await client.get("/v1/registry/stale-services", headers=auth(ELEVHALSA, "professional")), 403, "forbidden"
    )
    # The organisation's system confirms the current waiting time: no longer stale.
    r = await client.post(
        f"/v1/registry/services/{sid}/waiting-time", json={"waiting_days": 12}, headers=auth(ELEVHALSA, "system")
    )
    assert r.json()["confirmed"] is True and r.json()["waiting_days"] == 12
    assert (await client.get("/v1/registry/stale-services", headers=auth(ELEVHALSA, "system"))).json()["items"] == []
    # A regional admin sees every organisation's, never-confirmed ones first, a page at a time.
    seen, cursor = [], None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/registry/stale-services", params=params, headers=auth(REGION, "admin"))).json()
        seen += page["items"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert len({s["organisation"]["id"] for s in seen}) > 10 and len(seen) == len({s["id"] for s in seen})
    assert seen[0]["waiting_confirmed_at"] is None and seen[-1]["waiting_confirmed_at"] is not None
    assert "region-forsta-linjen-samtal" in [s["id"] for s in seen] and sid not in [s["id"] for s in seen]


@pytest.fixture
async def strict_client(runtime: Runtime, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The same hub configured with HUB_SERVICE_CONFIRMATION_MAX_AGE_DAYS=30."""
    settings = runtime.settings.model_copy(update={"service_confirmation_max_age_days": 30})
    app = create_app(runtime=dataclasses.replace(runtime, settings=settings))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            yield c


async def test_stale_flagging_follows_the_configured_max_age(
    client: httpx.AsyncClient, strict_client: httpx.AsyncClient, auth: Auth, runtime: Runtime, demo: None
) -> None:
    sid = "nora-elevhalsa-insats"
    await confirmed_days_ago(runtime, sid, 45)
    assert (await client.get(f"/v1/registry/services/{sid}", headers=auth(SCHOOL))).json()["confirmed"] is True
    assert (await strict_client.get(f"/v1/registry/services/{sid}", headers=auth(SCHOOL))).json()["confirmed"] is False
    page = (await strict_client.get("/v1/registry/stale-services", headers=auth(ELEVHALSA, "system"))).json()
    assert [s["id"] for s in page["items"]] == [sid] and page["max_age_days"] == 30


# ---------------------------------------------------------------------------------- referral targets
async def test_resolve_target(client: httpx.AsyncClient, auth: Auth, runtime: Runtime, demo: None) -> None:
    async def resolve(**kw: Any) -> tuple[str, str | None]:
        async with runtime.sessions() as session:
            t = await registry.resolve_target(session, **kw)
        return t.organisation.id, t.service.id if t.service else None

    async def refused(**kw: Any) -> str:
        with pytest.raises(InvalidInput) as caught:
            await resolve(**kw)
        assert [e.pointer for e in caught.value.errors] == ["/target"]
        return caught.value.detail

    assert await resolve(organisation_id=BUP) == (BUP, None)
    assert await resolve(service_id="region-bup-utredning", referral_kind="remiss") == (BUP, "region-bup-utredning")
    assert await resolve(organisation_type="elevhalsa", municipality_code=NORA) == (ELEVHALSA, None)
    assert await resolve(organisation_type="bup", municipality_code=NORA) == (BUP, None)  # the county's unit
    assert await resolve(organisation_type="barnklinik", municipality_code="1880") == ("region-barnklinik", None)
    await refused(service_id="region-bup-akut", referral_kind="orosanmalan")
    await refused(organisation_type="bup", municipality_code="0180")  # another county: nobody
    await refused(organisation_id="nowhere")
    await refused(service_id="nowhere")
    await refused()
    await refused(organisation_id=BUP, service_id="region-bup-akut")
    await refused(organisation_type="bup")
    # Two student health teams in Nora: ambiguous, unless the referral kind tells them apart.
    org = {
        "name": "Elevhälsan gymnasiet, Nora (demo)",
        "type": "elevhalsa",
        "municipality_code": NORA,
        "region_code": "18",
    }
    assert (
        await client.put("/v1/registry/organisations/nora-elevhalsa-gy", json=org, headers=auth(REGION, "admin"))
    ).status_code == 201
    assert "2 organisations" in await refused(organisation_type="elevhalsa", municipality_code=NORA)
    assert await resolve(organisation_type="elevhalsa", municipality_code=NORA, referral_kind="begaran-om-insats") == (
        ELEVHALSA,
        None,
    )
    # A deactivated service is no target.
    await client.delete("/v1/registry/services/region-bup-akut", headers=auth(BUP, "admin"))
    await refused(service_id="region-bup-akut")


async def test_demo_gives_every_organisation_an_endpoint_and_valid_services(
    client: httpx.AsyncClient, runtime: Runtime, demo: None
) -> None:
    async with runtime.sessions() as session:
        endpoints = {o.id: await registry.active_endpoint(session, o.id) for o in demo_organisations()}
        assert await registry.active_endpoint(session, "nowhere") is None
        state = text(
            "select (select array_agg(e order by e.id) from endpoint e)::text,"
            " (select array_agg(s order by s.id) from service s)::text"
        )
        before = (await session.execute(state)).one()
        await load_demo(session)  # again: nothing changes
        after = (await session.execute(state)).one()
    assert before == after
    assert all(endpoints.values())
    assert endpoints[BUP] == ("webhook", {"url": "http://127.0.0.1:8901/bup", "secret_ref": "demo-webhook"})
    assert endpoints[SCHOOL] == (
        "webhook",
        {"url": "http://127.0.0.1:8901/nora-grundskola", "secret_ref": "demo-webhook"},
    )
    assert endpoints["region-buh"] == ("fhir-r4", {"base_url": "http://127.0.0.1:8900/fhir"})
    assert endpoints["kumla-bvc"] == ("mailbox", {})
    for d in demo_services():
        draft = registry.ServiceDraft(
            name=d.name,
            intervention_level=d.intervention_level,
            trappan_step=d.trappan_step,
            age_min=d.ages[0],
            age_max=d.ages[1],
            referral_kinds=tuple(d.referral_kinds),
            dimensions=tuple(d.dimensions),
        )
        assert registry.service_errors(draft, runtime.vocabulary) == [], d.id
    confirmations = [d.confirmed_days_ago for d in demo_services()]
    assert (
        None in confirmations
        and any(c is not None and c < 90 for c in confirmations)
        and any(c and c > 90 for c in confirmations)
    )


# ------------------------------------------------------------------------------------------- audit
async def test_admin_changes_are_audited(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    put = await client.put(
        f"/v1/registry/organisations/{SCHOOL}/endpoint",
        json={"adapter": "webhook", "config": WEBHOOK},
        headers=auth(REGION, "admin"),
    )
    await create_service(client, auth, ELEVHALSA, "nora-audit-test")
    await client.post(
        "/v1/registry/services/nora-audit-test/waiting-time",
        json={"waiting_days": 3},
        headers=auth(ELEVHALSA, "system"),
    )
    org = {"name": "Ny enhet", "type": "kultur-fritid", "municipality_code": NORA, "region_code": "18"}
    await client.put("/v1/registry/organisations/nora-ny-enhet", json=org, headers=auth(REGION, "admin"))
    # A refused change leaves no admin-change entry.
    await client.put(
        f"/v1/registry/organisations/{BUP}/endpoint",
        json={"adapter": "mailbox", "config": {}},
        headers=auth(SCHOOL, "admin"),
    )
    r = await client.get("/v1/audit?action=admin-change", headers=auth(REGION, "auditor"))
    entries = {(e["details"]["change"], e["entity_id"]): e for e in r.json()["items"]}
    assert set(entries) == {
        ("endpoint-set", put.json()["id"]),
        ("service-created", "nora-audit-test"),
        ("service-waiting-time", "nora-audit-test"),
        ("organisation-created", "nora-ny-enhet"),
    }
    endpoint = entries["endpoint-set", put.json()["id"]]
    assert endpoint["entity_type"] == "Endpoint" and endpoint["actor_organisation"] == REGION
    assert endpoint["counterpart_organisation"] == SCHOOL
    assert endpoint["details"]["adapter"] == "webhook" and endpoint["details"]["config_keys"] == ["secret_ref", "url"]
    wait = entries["service-waiting-time", "nora-audit-test"]
    assert wait["actor_organisation"] == ELEVHALSA and wait["details"]["waiting_days"] == 3
    # The school's own auditor sees the change a regional admin made to its endpoint.
    own = (await client.get("/v1/audit?action=admin-change", headers=auth(SCHOOL, "auditor"))).json()["items"]
    assert [e["entity_type"] for e in own] == ["Endpoint"]


# ----------------------------------------------------------------------------------------- GraphQL
async def test_graphql_service_search(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    query = """query($m: String) { services(age: 9, municipality: $m, referralKind: "remiss", dimensions: ["healthy"]) {
        __typename
        ... on ServicePage { items { id confirmed waitingDays organisation { id municipalityCode } } nextCursor }
        ... on InvalidInputProblem { fields }
        ... on AuthenticationProblem { detail }
    } }"""
    r = await client.post("/graphql", json={"query": query, "variables": {"m": NORA}}, headers=auth(SCHOOL))
    page = r.json()["data"]["services"]
    rest = await client.get(
        "/v1/registry/services",
        params={"age": 9, "municipality": NORA, "referral_kind": "remiss", "dimension": "healthy"},
        headers=auth(SCHOOL),
    )
    assert [s["id"] for s in page["items"]] == ids(rest) and page["nextCursor"] is None
    assert page["items"][0]["organisation"] == {"id": BUP, "municipalityCode": None}
    r = await client.post("/graphql", json={"query": query, "variables": {"m": "nora"}}, headers=auth(SCHOOL))
    assert r.json()["data"]["services"] == {"__typename": "InvalidInputProblem", "fields": ["municipality"]}
    r = await client.post("/graphql", json={"query": query, "variables": {"m": NORA}})
    assert r.status_code == 401 and r.json()["errors"][0]["extensions"]["type"] == "/problems/unauthenticated"
