"""Strict tokens, attacked as a holder of a signing key's tokens would: every claim left out, stretched,
mistyped or invented; tokens of organisations the registry does not know or has deactivated; the role
coordinator claimed by an organisation that coordinates nothing. Each is refused with a 401 or 403
problem that names the claim at fault."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from jose import jwt
from sqlalchemy import text

from hub.api.auth import DEV_KID, load_or_create_dev_key
from hub.config import Settings
from hub.db.repositories import OrganisationRepository
from hub.db.tables import Organisation
from hub.main import create_app
from hub.runtime import Runtime
from tests.api.test_auth_and_problems import assert_problem

SCHOOL = "nora-grundskola"
REGION = "region-samordning"  # of the coordinating type regional-samordning
GUARDED = [  # a sample of guarded operations, each reading or writing for the token's organisation
    ("GET", "/v1/me"),
    ("GET", "/v1/registry/organisations"),
    ("GET", "/v1/registry/services"),
    ("POST", "/v1/sharing-decisions"),
    ("GET", "/v1/audit"),
]


async def register(runtime: Runtime, org_id: str, org_type: str, *, active: bool = True) -> None:
    async with runtime.sessions() as session:
        await OrganisationRepository(session).upsert(
            Organisation(id=org_id, name=f"{org_id} (test)", type=org_type, region_code="18", active=active)
        )
        await session.commit()


@pytest.fixture
async def county(db: Runtime) -> None:
    await register(db, SCHOOL, "grundskola")
    await register(db, REGION, "regional-samordning")


def claims(settings: Settings, **over: object) -> dict[str, Any]:
    """A valid token's claims for the school; ``None`` leaves a claim out."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": "journal-system-1",
        "org_id": SCHOOL,
        "roles": ["system"],
        "iat": now,
        "exp": now + 600,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def bearer(settings: Settings, **over: object) -> dict[str, str]:
    token = jwt.encode(
        claims(settings, **over), load_or_create_dev_key(settings).decode(), algorithm="RS256", headers={"kid": DEV_KID}
    )
    return {"Authorization": f"Bearer {token}"}


async def call(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body = {} if method == "POST" else None
    return await client.request(method, path, headers=headers, json=body)


def refused(response: httpx.Response, status: int, pointer: str, code: str) -> dict[str, Any]:
    body = assert_problem(response, status, "unauthenticated" if status == 401 else "forbidden")
    assert {"pointer": pointer, "code": code} in [{"pointer": e["pointer"], "code": e["code"]} for e in body["errors"]]
    return body


async def test_a_valid_token_of_a_registered_organisation_passes(client, settings, county) -> None:
    for method, path in GUARDED[:3]:
        r = await call(client, method, path, bearer(settings))
        assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------------- required claims
@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "sub", "org_id", "roles"])
@pytest.mark.parametrize(("method", "path"), GUARDED)
async def test_a_token_without_a_required_claim_is_refused(client, settings, county, claim, method, path) -> None:
    r = await call(client, method, path, bearer(settings, **{claim: None}))
    refused(r, 401, claim, "missing-claim")


async def test_a_token_with_no_role_is_refused(client, settings, county) -> None:
    refused(await client.get("/v1/me", headers=bearer(settings, roles=[])), 401, "roles", "missing-claim")


# -------------------------------------------------------------------------------------------- roles
@pytest.mark.parametrize("roles", [["superuser"], ["system", "root"], ["System"], ["system", 7], [None]])
async def test_an_unknown_role_refuses_the_token(client, settings, county, roles) -> None:
    r = await client.get("/v1/me", headers=bearer(settings, roles=roles))
    body = refused(r, 401, f"roles/{len(roles) - 1}", "unknown-role")
    assert "system, professional, coordinator, auditor, admin" in body["detail"]


@pytest.mark.parametrize("roles", [["system"] * 17, {"system": True}, 42, "system " * 40])
async def test_roles_that_are_no_short_list_are_refused(client, settings, county, roles) -> None:
    refused(await client.get("/v1/me", headers=bearer(settings, roles=roles)), 401, "roles", "invalid-claim")


async def test_a_huge_roles_list_is_refused(client, settings, county) -> None:
    r = await client.get("/v1/me", headers=bearer(settings, roles=["system"] * 100_000))
    assert_problem(r, 401, "unauthenticated")


# ----------------------------------------------------------------------------- claim types and lengths
@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("org_id", "a" * 300),
        ("org_id", "nora-grundskola\u0000"),
        ("org_id", "Nora-Grundskola"),
        ("org_id", 42),
        ("org_id", ["nora-grundskola"]),
        ("sub", "x" * 10_000),
        ("sub", "journal\u0000system"),
        ("sub", "\ud800"),
        ("sub", ""),
        ("sub", 42),
        ("sub", {"id": 1}),
        ("jti", "j" * 10_000),
        ("jti", "a\u0000b"),
        ("aud", ["hub", 1]),
        ("iat", ["now"]),
        ("nbf", {"t": 1}),
        ("exp", ["later"]),
        ("exp", "soon"),
    ],
)
@pytest.mark.parametrize(("method", "path"), GUARDED)
async def test_a_malformed_claim_is_refused_not_a_server_error(
    client, settings, county, claim, value, method, path
) -> None:
    refused(await call(client, method, path, bearer(settings, **{claim: value})), 401, claim, "invalid-claim")


async def test_a_far_future_expiry_is_no_server_error(client, settings, county) -> None:
    r = await client.get("/v1/me", headers=bearer(settings, exp=10**400))
    assert r.status_code == 200, r.text


async def test_an_oversized_token_is_refused(client, settings, county) -> None:
    r = await client.get("/v1/me", headers=bearer(settings, padding="p" * 20_000))
    assert "longer than" in assert_problem(r, 401, "unauthenticated")["detail"]


# ------------------------------------------------------------------------------------ the registry
@pytest.mark.parametrize(("method", "path"), GUARDED)
async def test_a_token_of_an_unregistered_organisation_is_refused(client, settings, county, method, path) -> None:
    r = await call(client, method, path, bearer(settings, org_id="orebro-grundskola"))
    body = refused(r, 401, "org_id", "unknown-organisation")
    assert "not registered" in body["detail"]


async def test_graphql_refuses_a_token_of_an_unregistered_organisation(client, settings, county) -> None:
    q = {"query": "{ me { __typename ... on Me { organisationId } } }"}
    r = await client.post("/graphql", json=q, headers=bearer(settings, org_id="orebro-grundskola"))
    assert "Me" not in r.text and "orebro-grundskola" not in r.text


async def deactivate(client: httpx.AsyncClient, settings: Settings, org_id: str, *, active: bool = False):
    org = {"name": f"{org_id} (test)", "type": "grundskola", "municipality_code": None, "region_code": "18"}
    admin = bearer(settings, org_id=REGION, roles=["admin"])
    return await client.put(f"/v1/registry/organisations/{org_id}", json={**org, "active": active}, headers=admin)


async def test_a_deactivated_organisation_is_refused_at_once_and_reactivated(client, settings, county) -> None:
    school = bearer(settings)
    assert (await client.get("/v1/me", headers=school)).status_code == 200  # verified and cached
    r = await deactivate(client, settings, SCHOOL)
    assert r.status_code == 200 and r.json()["active"] is False
    for method, path in GUARDED:
        body = refused(await call(client, method, path, school), 403, "org_id", "inactive-organisation")
        assert "deactivated" in body["detail"]
    assert (await deactivate(client, settings, SCHOOL, active=True)).status_code == 200
    assert (await client.get("/v1/me", headers=school)).status_code == 200


async def test_an_organisation_cannot_deactivate_itself(client, settings, county) -> None:
    r = await deactivate(client, settings, REGION)
    body = assert_problem(r, 422, "invalid-input")
    assert "/active" in [e["pointer"] for e in body["errors"]]


async def test_a_deactivated_organisation_is_no_referral_target(client, db, settings, county) -> None:
    from tests.referrals.helpers import referral_body

    await register(db, "region-bup", "bup", active=False)  # the county's only BUP
    r = await client.post(
        "/v1/referrals",
        json=referral_body(target={"organisation_type": "bup", "municipality_code": "1884"}),
        headers={**bearer(settings), "Idempotency-Key": "deactivated-target"},
    )
    body = assert_problem(r, 422, "invalid-input")
    assert "no bup in municipality 1884" in body["detail"] and body["errors"][0]["pointer"] == "/target"


async def test_a_deactivated_organisation_named_by_id_is_no_referral_target(client, db, settings, county) -> None:
    from tests.referrals.helpers import referral_body

    await register(db, "region-bup", "bup", active=False)
    r = await client.post(
        "/v1/referrals",
        json=referral_body(target={"organisation_id": "region-bup"}),
        headers={**bearer(settings), "Idempotency-Key": "deactivated-target-by-id"},
    )
    body = assert_problem(r, 422, "invalid-input")
    assert "deactivated" in body["detail"] and body["errors"][0]["pointer"] == "/target"
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("select count(*) from referral"))).scalar() == 0


@pytest.fixture
async def uncached_client(runtime: Runtime, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """Another hub process over the same database, with HUB_ORGANISATION_CACHE_SECONDS=0."""
    settings = runtime.settings.model_copy(update={"organisation_cache_seconds": 0})
    app = create_app(runtime=dataclasses.replace(runtime, settings=settings))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            yield c


async def test_a_deactivation_elsewhere_is_honoured_when_the_cache_expires(
    uncached_client, runtime, settings, county
) -> None:
    school = bearer(settings)
    assert (await uncached_client.get("/v1/me", headers=school)).status_code == 200
    async with runtime.engine.begin() as conn:  # as another hub process (or an operator) would
        await conn.execute(text("update organisation set active = false where id = :id"), {"id": SCHOOL})
    refused(await uncached_client.get("/v1/me", headers=school), 403, "org_id", "inactive-organisation")


# ----------------------------------------------------------------------------------- coordinators
@pytest.mark.parametrize("path", ["/v1/me", "/v1/flows/counts?by=recipient_type"])
async def test_the_coordinator_role_of_a_non_coordinating_organisation_is_refused(
    client, settings, county, path
) -> None:
    for roles in (["coordinator"], ["system", "coordinator"]):
        r = await client.get(path, headers=bearer(settings, roles=roles))
        body = refused(r, 403, "roles", "role-not-allowed")
        assert "coordinating type" in body["detail"]


async def test_a_coordinating_organisation_may_hold_the_coordinator_role(client, settings, county) -> None:
    r = await client.get("/v1/me", headers=bearer(settings, org_id=REGION, roles=["coordinator"]))
    assert r.status_code == 200, r.text
    assert r.json()["organisation"]["coordinating"] is True
    r = await client.get(
        "/v1/flows/counts?by=recipient_type", headers=bearer(settings, org_id=REGION, roles=["coordinator"])
    )
    assert r.status_code == 200, r.text
