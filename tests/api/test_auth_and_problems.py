"""Auth and error handling, once for every endpoint: tokens, roles, problem+json bodies, limits."""

from __future__ import annotations

import time

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from hub.api.auth import DEV_KID, load_or_create_dev_key
from hub.config import Settings

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, type_code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"] == f"/problems/{type_code}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


def _claims(settings: Settings, **over: object) -> dict:
    now = int(time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": "test",
        "org_id": "nora-grundskola",
        "roles": ["system"],
        "iat": now,
        "exp": now + 600,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(settings: Settings, claims: dict, key: bytes | None = None) -> str:
    pem = (key or load_or_create_dev_key(settings)).decode()
    return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": DEV_KID})


async def test_me_with_a_valid_token(client: httpx.AsyncClient, db, auth) -> None:
    from tests.api.test_tokens_strict import register

    await register(db, "nora-grundskola", "grundskola")  # tokens of unregistered organisations are refused
    r = await client.get("/v1/me", headers=auth("nora-grundskola", "system", "professional"))
    assert r.status_code == 200
    body = r.json()
    assert body["organisation_id"] == "nora-grundskola"
    assert body["roles"] == ["professional", "system"]
    assert body["registered"] is True
    assert body["organisation"]["active"] is True and body["organisation"]["coordinating"] is False


async def test_no_token_is_401_problem(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/me")
    body = assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token" in body["detail"]


async def test_garbage_token_is_401(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert_problem(r, 401, "unauthenticated")


async def test_bad_signature_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {_sign(settings, _claims(settings), other)}"})
    body = assert_problem(r, 401, "unauthenticated")
    assert "signature" in body["detail"]


async def test_expired_token_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    old = int(time.time()) - 3600
    token = _sign(settings, _claims(settings, iat=old - 600, exp=old))
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    body = assert_problem(r, 401, "unauthenticated")
    assert "expired" in body["detail"]


async def test_wrong_audience_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    token = _sign(settings, _claims(settings, aud="someone-else"))
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    body = assert_problem(r, 401, "unauthenticated")
    assert "audience" in body["detail"]


async def test_wrong_issuer_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    token = _sign(settings, _claims(settings, iss="https://evil.example"))
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert "issuer" in assert_problem(r, 401, "unauthenticated")["detail"]


async def test_hs256_token_is_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    # An attacker signing with a shared secret (or "none") must not get through.
    token = jwt.encode(_claims(settings), "secret", algorithm="HS256")
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert_problem(r, 401, "unauthenticated")


async def test_token_without_org_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    token = _sign(settings, _claims(settings, org_id=None))
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert "org_id" in assert_problem(r, 401, "unauthenticated")["detail"]


async def test_unknown_path_is_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/nothing-here"), 404, "not-found")


async def test_method_not_allowed_is_405_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/healthz"), 405, "method-not-allowed")


async def test_problem_types_are_documented(client: httpx.AsyncClient) -> None:
    r = await client.get("/problems/unauthenticated")
    assert r.status_code == 200 and r.json()["status"] == 401


async def test_request_id_is_echoed_when_safe(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 32


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_endpoints(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200
    assert r.json()["status"] in ("ok", "ready")


async def test_readyz_reports_checks(client: httpx.AsyncClient) -> None:
    body = (await client.get("/readyz")).json()
    assert body["checks"] == {"database": "ok", "migrations": "ok", "adapters": "ok"}


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert 'hub_http_requests_total{method="GET",route="/healthz",status="200"}' in r.text
