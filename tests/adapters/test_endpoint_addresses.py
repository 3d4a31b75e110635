"""Endpoint URLs as an attacker with an organisation's admin token would set them: at the hub's own
database port, the cloud metadata service, private networks. Outside dev mode the registry refuses them
(422 naming the field), and the delivery worker refuses them again at connection time, when the name is
resolved — an endpoint stored earlier, or a name that now points somewhere else (DNS rebinding)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from hub.adapters.addresses import AddressPolicy, RefusedAddress, classify, pinned_transport
from hub.api.auth import load_or_create_dev_key
from hub.config import Settings
from hub.devtools.demo import load_demo
from hub.main import create_app
from hub.runtime import Runtime
from hub.services.delivery import running_worker
from tests.api.test_auth_and_problems import assert_problem
from tests.loopback import Recorder, serve
from tests.referrals.helpers import RECEIVER, record_consent, sent, set_endpoint
from tests.referrals.test_delivery import outbox

Auth = Callable[..., dict[str, str]]
ADMIN = "region-bup"
ENDPOINT = f"/v1/registry/organisations/{ADMIN}/endpoint"
ON_PREMISE = "10.20.0.0/16"

FORBIDDEN = [
    ("https://169.254.169.254/latest/meta-data/iam/", "cloud-metadata"),
    ("https://[fd00:ec2::254]/latest/", "cloud-metadata"),
    ("https://metadata.google.internal/computeMetadata/v1/", "cloud-metadata"),
    ("http://127.0.0.1:5432/", "loopback"),  # the hub's own database, were it on TCP
    ("http://localhost:8000/v1/registry", "loopback"),
    ("https://[::1]/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", "loopback"),  # IPv4 inside IPv6
    ("https://127.1/hook", "loopback"),  # a name the resolver turns into 127.0.0.1
    ("https://10.0.0.5/hook", "private"),
    ("https://192.168.1.10/hook", "private"),
    ("https://[fc00::1]/hook", "private"),
    ("https://169.254.1.1/hook", "link-local"),
    ("https://[fe80::1]/hook", "link-local"),
    ("https://0.0.0.0/hook", "unspecified"),
    ("https://224.0.0.1/hook", "multicast"),
    ("https://100.64.0.1/hook", "reserved"),  # carrier-grade NAT
]


def _public_key_file(settings: Settings, directory: Path) -> Path:
    """The dev key's public half as an identity provider's key file, so the fixtures' tokens verify."""
    private = serialization.load_pem_private_key(load_or_create_dev_key(settings), password=None)
    path = directory / "idp.pem"
    path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


@pytest.fixture
def production(settings: Settings, runtime: Runtime, tmp_path: Path) -> Runtime:
    """The test database's hub outside dev mode, with an on-premise network allowed."""
    prod = settings.model_copy(
        update={
            "dev_mode": False,
            "jwt_public_key_file": _public_key_file(settings, tmp_path),
            "endpoint_allowed_networks": [ipaddress.ip_network(ON_PREMISE)],
            "adapter_secrets": SecretStr("demo-webhook:a-production-secret"),
            "worker_poll_interval_seconds": 0.05,
        }
    )
    return dataclasses.replace(runtime, settings=prod)


@pytest.fixture
async def production_client(production: Runtime, db: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with db.sessions() as session:
        await load_demo(session)
    app = create_app(production.settings, runtime=production)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            yield client


async def put_webhook(client: httpx.AsyncClient, auth: Auth, url: str) -> httpx.Response:
    config = {"url": url, "secret_ref": "demo-webhook"}
    return await client.put(ENDPOINT, json={"adapter": "webhook", "config": config}, headers=auth(ADMIN, "admin"))


@pytest.mark.parametrize(("url", "kind"), FORBIDDEN, ids=[u for u, _ in FORBIDDEN])
async def test_an_admin_cannot_point_its_endpoint_at_internal_addresses(
    production_client: httpx.AsyncClient, auth: Auth, url: str, kind: str
) -> None:
    r = await put_webhook(production_client, auth, url)
    body = assert_problem(r, 422, "invalid-input")
    [error] = body["errors"]
    assert error["pointer"] == "/config/url" and error["code"] == "forbidden-address"
    assert f"a {kind} address" in error["detail"], error


async def test_fhir_base_urls_are_checked_too(production_client: httpx.AsyncClient, auth: Auth) -> None:
    config = {"base_url": "https://169.254.169.254/fhir"}
    r = await production_client.put(
        ENDPOINT, json={"adapter": "fhir-r4", "config": config}, headers=auth(ADMIN, "admin")
    )
    [error] = assert_problem(r, 422, "invalid-input")["errors"]
    assert error["pointer"] == "/config/base_url" and "cloud-metadata" in error["detail"]


async def test_public_names_and_allowed_on_premise_networks_are_accepted(
    production_client: httpx.AsyncClient, auth: Auth
) -> None:
    for url in ("https://bup-journal.example.se/hooks/hub", "https://10.20.5.5/hooks/hub", "https://8.8.8.8/h"):
        r = await put_webhook(production_client, auth, url)
        assert r.status_code == 200, (url, r.text)
    r = await put_webhook(production_client, auth, "https://10.21.0.1/hooks/hub")  # outside the allowed network
    assert_problem(r, 422, "invalid-input")


@pytest.fixture
async def dev_registry(client: httpx.AsyncClient, runtime: Runtime) -> httpx.AsyncClient:
    async with runtime.sessions() as session:
        await load_demo(session)
    return client


async def test_dev_mode_allows_loopback_receivers_but_never_the_metadata_service(
    dev_registry: httpx.AsyncClient, auth: Auth
) -> None:
    assert (await put_webhook(dev_registry, auth, "http://127.0.0.1:8901/bup")).status_code == 200
    r = await put_webhook(dev_registry, auth, "https://169.254.169.254/latest/")
    assert_problem(r, 422, "invalid-input")


async def test_the_worker_refuses_a_stored_endpoint_that_resolves_to_loopback(
    production: Runtime, client: httpx.AsyncClient, auth: Auth, db: Runtime
) -> None:
    """An endpoint already in the registry (stored before the check, or whose name now resolves elsewhere)
    is refused when the worker connects: dead-lettered at once, and nothing reaches the address."""
    async with db.sessions() as session:
        await load_demo(session)
    receiver = Recorder()
    with serve(receiver) as url:
        port = url.rsplit(":", 1)[1]
        await set_endpoint(
            db, RECEIVER, "webhook", {"url": f"http://localhost:{port}/hook", "secret_ref": "demo-webhook"}
        )
        await record_consent(client, auth)
        await sent(client, auth)
        async with running_worker(production):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                [entry] = await outbox(production)
                if entry.state != "queued":
                    break
                await asyncio.sleep(0.05)
    assert receiver.requests == [], "nothing may reach a loopback address outside dev mode"
    assert entry.state == "dead-lettered" and entry.attempts == 1, "a configuration error: not retried"
    assert entry.last_error is not None and "localhost resolves to a loopback address" in entry.last_error


# --- the transport, narrowly: real sockets on loopback, a scripted resolver ---------------------------------


def resolver(answers: dict[str, list[str]]) -> Callable[[str, int], Any]:
    async def resolve(host: str, port: int) -> list[str]:
        return answers[host]

    return resolve


async def test_the_transport_connects_to_the_address_it_checked() -> None:
    """``receiver.test`` exists only in the scripted resolver: the request arrives, so the connection went
    to the address that was resolved and checked (no second lookup), with the name kept as Host."""
    receiver = Recorder()
    allowed = AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    limits = httpx.Limits(max_connections=2)
    with serve(receiver) as url:
        port = url.rsplit(":", 1)[1]
        transport = pinned_transport(allowed, limits=limits, resolve=resolver({"receiver.test": ["127.0.0.1"]}))
        async with httpx.AsyncClient(transport=transport) as http:
            r = await http.post(f"http://receiver.test:{port}/hook", content=b"{}")
        assert r.status_code == 200
        assert receiver.requests[0].headers["host"] == f"receiver.test:{port}"

        rebound = resolver({"receiver.test": ["203.0.113.9", "127.0.0.1"]})  # one answer public, one not
        transport = pinned_transport(AddressPolicy(), limits=limits, resolve=rebound)
        async with httpx.AsyncClient(transport=transport) as http:
            with pytest.raises(RefusedAddress, match=r"receiver\.test resolves to a"):
                await http.post(f"http://receiver.test:{port}/hook", content=b"{}")
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", None),
        ("2a00:1450:4001::1", None),
        ("169.254.169.254", "cloud-metadata"),
        ("2002:a9fe:a9fe::", "cloud-metadata"),  # 6to4 of the metadata address
        ("64:ff9b::a9fe:a9fe", "cloud-metadata"),  # NAT64 of it
        ("168.63.129.16", "cloud-metadata"),
        ("::ffff:10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.0.2.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("::", "unspecified"),
        ("ff02::1", "multicast"),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    assert classify(address) == kind


def test_the_allowlist_opens_networks_but_never_the_metadata_service() -> None:
    policy = AddressPolicy(
        allowed_networks=(ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("169.254.0.0/16"))
    )
    assert policy.refusal("10.20.1.1") is None and policy.refusal("::ffff:10.20.1.1") is None
    assert policy.refusal("10.21.0.1") == "private"
    assert policy.refusal("169.254.1.1") is None
    assert policy.refusal("169.254.169.254") == "cloud-metadata"
    assert AddressPolicy(dev_mode=True).refusal("127.0.0.1") is None
    assert AddressPolicy(dev_mode=True).refusal("fd00:ec2::254") == "cloud-metadata"


def test_the_allowlist_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_ENDPOINT_ALLOWED_NETWORKS", "10.20.0.0/16, fd12:3456::/48")
    assert Settings().endpoint_allowed_networks == [
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("fd12:3456::/48"),
    ]
    monkeypatch.setenv("HUB_ENDPOINT_ALLOWED_NETWORKS", "10.20.0.1/16")  # host bits set: a typo, refused
    with pytest.raises(ValueError, match="not a valid IPv4 or IPv6 network"):
        Settings()
