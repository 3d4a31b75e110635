"""Federated sign-in: tokens of identity providers the hub trusts (HUB_TRUSTED_ISSUERS_FILE), each a real
OIDC issuer on loopback (discovery + JWKS over HTTP, keys made here), with Inera-style HSA claims. The
hub maps them to the unit's organisation and the commission's role, picks up a rotated key without a
restart, and refuses an unknown issuer, a wrong audience, a claim it cannot map, and the tokens of an
issuer whose keys cannot be fetched (and only those)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt
from sqlalchemy import text

from hub.api.issuers import IssuerConfig, _cache_seconds, load_issuers
from hub.db.repositories import OrganisationRepository
from hub.db.tables import Organisation
from hub.main import create_app
from hub.runtime import Runtime
from tests.api.test_lawful_sharing_http import consent_body
from tests.api.test_lawful_sharing_http import demo as demo  # the fixture
from tests.api.test_tokens_strict import refused
from tests.loopback import Recorded, Recorder, Reply, serve

AUDIENCE = "https://hub.region.test"
UNIT_HSA = "SE2321000164-7381"  # a unit of Region Örebro län (organisation number 232100-0164)
OTHER_UNIT_HSA = "SE2321000164-9999"  # in no registry
EMPLOYEE_HSA = "SE2321000164-1234"
SCHOOL = "nora-grundskola"
CARE = "Vård och behandling"  # Inera's commissionPurpose values


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class Issuer:
    """An OIDC issuer on loopback: discovery, a JWKS of the keys it publishes, and tokens it signs."""

    def __init__(self, *, cache_control: str = "max-age=300") -> None:
        self.keys: dict[str, str] = {"k1": _pem()}
        self.published = ["k1"]
        self.down = False
        self.cache_control = cache_control
        self.url = ""
        self.recorder = Recorder(self._respond)

    def _respond(self, request: Recorded) -> Reply:
        if self.down:
            return Reply(503, {"error": "down"})
        if request.path == "/.well-known/openid-configuration":
            return Reply(200, {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})
        if request.path == "/jwks":
            keys = [{**jwk.construct(self.keys[k], "RS256").public_key().to_dict(), "kid": k} for k in self.published]
            return Reply(200, {"keys": keys}, headers={"Cache-Control": self.cache_control})
        return Reply(404, {})

    @property
    def jwks_fetches(self) -> int:
        return sum(1 for r in self.recorder.requests if r.path == "/jwks")

    def rotate(self, kid: str) -> None:
        self.keys[kid] = _pem()
        self.published = [kid]

    def token(self, *, kid: str = "k1", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return str(jwt.encode(body, self.keys.setdefault(kid, _pem()), algorithm="RS256", headers={"kid": kid}))


def personal(issuer: Issuer, **over: Any) -> dict[str, str]:
    """A bearer header with a professional's token, Inera-style claims; ``None`` leaves a claim out."""
    claims: dict[str, Any] = {
        "sub": "a-pairwise-subject",
        "employeeHsaId": EMPLOYEE_HSA,
        "healthCareUnitHsaId": UNIT_HSA,
        "commissionPurpose": CARE,
        **over,
    }
    return {"Authorization": f"Bearer {issuer.token(**claims)}"}


def system(issuer: Issuer, **over: Any) -> dict[str, str]:
    claims = {"sub": "journal-client", "client_id": "journal-client", "unit_hsa_id": UNIT_HSA, **over}
    return {"Authorization": f"Bearer {issuer.token(**claims)}"}


@pytest.fixture
def inera() -> Iterator[Issuer]:
    issuer = Issuer()
    with serve(issuer.recorder) as url:
        issuer.url = url
        yield issuer


@pytest.fixture
def machines() -> Iterator[Issuer]:
    issuer = Issuer()
    with serve(issuer.recorder) as url:
        issuer.url = url
        yield issuer


def issuers_file(path: Path, inera: Issuer, machines: Issuer) -> Path:
    path.write_text(
        json.dumps(
            {
                "issuers": [
                    {
                        "name": "inera-test",
                        "issuer": inera.url,
                        "discovery_url": f"{inera.url}/.well-known/openid-configuration",
                        "audience": AUDIENCE,
                        "kind": "personal",
                        "subject_claim": "employeeHsaId",
                        "organisation_claim": "healthCareUnitHsaId",
                        "roles_claim": "commissionPurpose",
                        "role_map": {CARE: ["professional"], "Samordning": ["coordinator"]},
                        "refresh_seconds": 0,  # every unknown kid fetches again: the rotation test
                    },
                    {
                        "name": "machines",
                        "issuer": machines.url,
                        "jwks_url": f"{machines.url}/jwks",
                        "audience": AUDIENCE,
                        "kind": "system",
                        "subject_claim": "client_id",
                        "organisation_claim": "unit_hsa_id",
                        "roles": ["system"],
                        "retry_seconds": 60,
                    },
                ]
            }
        )
    )
    return path


@pytest.fixture
async def hub(
    runtime: Runtime, db: Runtime, tmp_path: Path, inera: Issuer, machines: Issuer
) -> AsyncIterator[httpx.AsyncClient]:
    """A hub trusting both issuers, its school registered with the unit's HSA-id."""
    async with runtime.sessions() as session:
        await OrganisationRepository(session).upsert(
            Organisation(id=SCHOOL, name="Nora grundskola", type="grundskola", region_code="18", hsa_id=UNIT_HSA)
        )
        await session.commit()
    path = issuers_file(tmp_path / "issuers.json", inera, machines)
    settings = runtime.settings.model_copy(update={"trusted_issuers_file": path})
    app = create_app(runtime=dataclasses.replace(runtime, settings=settings))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
            yield client


async def me(hub: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await hub.get("/v1/me", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


# ----------------------------------------------------------------------------------------- mapping
async def test_a_professionals_token_maps_to_the_units_organisation_and_the_commissions_role(hub, inera) -> None:
    caller = await me(hub, personal(inera))
    assert caller["organisation_id"] == SCHOOL
    assert caller["roles"] == ["professional"]
    assert caller["subject"] == EMPLOYEE_HSA  # not the IdP's sub: the HSA-id is who acts


async def test_a_system_token_maps_by_the_issuers_configuration(hub, machines) -> None:
    caller = await me(hub, system(machines))
    assert (caller["organisation_id"], caller["roles"], caller["subject"]) == (SCHOOL, ["system"], "journal-client")


async def test_the_hubs_own_tokens_keep_working_beside_federated_ones(hub, auth) -> None:
    assert (await me(hub, auth(SCHOOL, "system")))["subject"] == f"dev:{SCHOOL}"


async def test_the_professionals_hsa_id_is_the_subject_of_what_they_do(hub, inera, auth, demo, runtime) -> None:
    async with runtime.engine.begin() as conn:
        await conn.execute(text("update organisation set hsa_id = :h where id = 'nora-elevhalsa'"), {"h": UNIT_HSA})
        await conn.execute(text("update organisation set hsa_id = null where id = :id"), {"id": SCHOOL})
    r = await hub.post("/v1/consents", json=consent_body(), headers=personal(inera))
    assert r.status_code == 201, r.text
    r = await hub.get("/v1/audit?action=consent-recorded", headers=auth("nora-elevhalsa", "auditor"))
    assert r.status_code == 200, r.text
    (entry,) = r.json()["items"]
    assert (entry["actor_subject"], entry["actor_organisation"]) == (EMPLOYEE_HSA, "nora-elevhalsa")


# ------------------------------------------------------------------------------------------- keys
async def test_a_rotated_key_is_picked_up_without_a_restart(hub, inera) -> None:
    await me(hub, personal(inera))
    inera.rotate("k2")
    rotated = {"Authorization": f"Bearer {inera.token(kid='k2', **_claims())}"}
    assert (await me(hub, rotated))["subject"] == EMPLOYEE_HSA
    r = await hub.get("/v1/me", headers={"Authorization": f"Bearer {inera.token(kid='k1', **_claims())}"})
    assert r.status_code == 401, r.text  # the retired key is no longer trusted


def _claims() -> dict[str, Any]:
    return {"employeeHsaId": EMPLOYEE_HSA, "healthCareUnitHsaId": UNIT_HSA, "commissionPurpose": CARE, "sub": "x"}


async def test_the_key_set_is_cached_and_unknown_kids_do_not_hammer_the_issuer(hub, machines) -> None:
    for _ in range(3):
        await me(hub, system(machines))  # a new token each time: not the verified-token cache
    for i in range(5):
        token = machines.token(kid=f"invented-{i}", client_id="x", unit_hsa_id=UNIT_HSA)
        r = await hub.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, r.text
    assert machines.jwks_fetches == 1  # max-age=300, and refresh_seconds (30) bounds the unknown kids


async def test_requests_arriving_while_the_keys_are_fetched_wait_for_them(hub, machines) -> None:
    answers = await asyncio.gather(*(hub.get("/v1/me", headers=system(machines)) for _ in range(10)))
    assert [r.status_code for r in answers] == [200] * 10
    assert machines.jwks_fetches == 1


def test_the_key_sets_cache_time_follows_its_headers() -> None:
    config = IssuerConfig.model_validate(
        {"name": "x", "issuer": "https://idp", "jwks_url": "https://idp/jwks", "audience": "a", "kind": "system",
         "organisation_claim": "o", "roles": ["system"], "min_cache_seconds": 60, "max_cache_seconds": 3600}
    )  # fmt: skip

    def seconds(**headers: str) -> float:
        return _cache_seconds(httpx.Response(200, headers=headers), config)

    assert seconds() == 300  # the default
    assert seconds(**{"Cache-Control": "public, max-age=900"}) == 900
    assert seconds(**{"Cache-Control": "no-cache"}) == 60  # not a fetch per request
    assert seconds(**{"Cache-Control": "max-age=999999"}) == 3600
    assert 1700 < seconds(Expires=time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 1800))) <= 1800
    assert seconds(Expires="garbage") == 60


async def test_an_issuer_whose_keys_cannot_be_fetched_fails_closed_for_its_tokens_only(hub, inera, machines) -> None:
    machines.down = True
    refused(await hub.get("/v1/me", headers=system(machines)), 401, "iss", "issuer-unavailable")
    assert (await me(hub, personal(inera)))["organisation_id"] == SCHOOL
    fetches = len(machines.recorder.requests)
    refused(await hub.get("/v1/me", headers=system(machines)), 401, "iss", "issuer-unavailable")
    assert len(machines.recorder.requests) == fetches  # retried after retry_seconds, not per request


# ------------------------------------------------------------------------------------------ refusals
async def test_a_token_of_an_issuer_not_trusted_is_refused(hub, inera) -> None:
    stranger = Issuer()
    stranger.url = "https://idp.elsewhere.test"
    token = stranger.token(**_claims())
    refused(await hub.get("/v1/me", headers={"Authorization": f"Bearer {token}"}), 401, "iss", "unknown-issuer")


async def test_a_token_for_another_audience_is_refused(hub, inera) -> None:
    refused(await hub.get("/v1/me", headers=personal(inera, aud="https://other.test")), 401, "aud", "invalid-claim")


async def test_a_commission_without_a_mapping_is_refused(hub, inera) -> None:
    r = await hub.get("/v1/me", headers=personal(inera, commissionPurpose="Forskning"))
    refused(r, 401, "commissionPurpose", "no-role-mapping")
    refused(
        await hub.get("/v1/me", headers=personal(inera, commissionPurpose=None)),
        401,
        "commissionPurpose",
        "no-role-mapping",
    )


async def test_a_unit_not_in_the_registry_is_refused(hub, inera) -> None:
    r = await hub.get("/v1/me", headers=personal(inera, healthCareUnitHsaId=OTHER_UNIT_HSA))
    refused(r, 401, "healthCareUnitHsaId", "unknown-organisation")


@pytest.mark.parametrize(
    "value", [None, "", "1234", "SE2321000164", 42, ["SE2321000164-1234"], "SE2321000164-12\u0000"]
)
async def test_a_professional_without_a_well_formed_hsa_id_is_refused(hub, inera, value) -> None:
    r = await hub.get("/v1/me", headers=personal(inera, employeeHsaId=value))
    refused(r, 401, "employeeHsaId", "missing-claim" if value is None else "invalid-claim")


async def test_the_strict_rules_hold_for_federated_tokens(hub, inera) -> None:
    r = await hub.get("/v1/me", headers=personal(inera, commissionPurpose="Samordning"))
    refused(r, 403, "roles", "role-not-allowed")  # a school is no coordinating organisation
    refused(await hub.get("/v1/me", headers=personal(inera, exp=None)), 401, "exp", "missing-claim")


async def test_a_certificate_bound_federated_token_without_its_certificate_is_refused(hub, machines) -> None:
    bound = system(machines, cnf={"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"})
    refused(await hub.get("/v1/me", headers=bound), 401, "cnf", "certificate-missing")
    refused(await hub.get("/v1/me", headers=system(machines, cnf={"jkt": "abc"})), 401, "cnf", "invalid-claim")


# -------------------------------------------------------------------------------------- configuration
def _one(**over: Any) -> dict[str, Any]:
    base = {"name": "x", "issuer": "https://idp.test", "jwks_url": "https://idp.test/jwks", "audience": "hub",
            "kind": "personal", "organisation_claim": "healthCareUnitHsaId", "roles": ["professional"]}  # fmt: skip
    return {k: v for k, v in {**base, **over}.items() if v is not None}


@pytest.mark.parametrize(
    ("over", "dev_mode", "words"),
    [
        ({"jwks_url": "http://idp.test/jwks"}, True, "https only"),
        ({"jwks_url": "http://127.0.0.1:9/jwks"}, False, "https only"),
        ({"discovery_url": "https://idp.test/.well-known/openid-configuration"}, True, "exactly one"),
        ({"roles": None}, True, "at least one role"),
        ({"kind": "system"}, True, "professional is for kind personal"),
        ({"kind": "guess"}, True, "kind"),
        ({"algorithms": ["HS256"]}, True, "algorithms"),
    ],
)
def test_an_issuers_file_that_is_not_right_stops_the_hub(tmp_path, over, dev_mode, words) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [_one(**over)]}))
    with pytest.raises(ValueError, match=words):
        load_issuers(path, dev_mode=dev_mode)


def test_an_issuers_file_may_be_toml_and_http_is_for_loopback_in_dev_mode(tmp_path) -> None:
    path = tmp_path / "issuers.toml"
    path.write_text(
        '[[issuers]]\nname = "dev"\nissuer = "http://127.0.0.1:9"\njwks_url = "http://127.0.0.1:9/jwks"\n'
        'audience = "hub"\nkind = "system"\norganisation_claim = "org"\norganisation_by = "id"\nroles = ["system"]\n'
    )
    (config,) = load_issuers(path, dev_mode=True)
    assert (config.kind, config.organisation_by) == ("system", "id")


def test_the_shipped_examples_load() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "issuers"
    for path in sorted(examples.glob("*.*")):
        assert load_issuers(path, dev_mode=False), path
