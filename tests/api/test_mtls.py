"""Certificate-bound tokens (RFC 8705) over real mutual TLS: the hub served by uvicorn on loopback as
``hub serve --tls-cert … --tls-ca … --tls-client-certs optional`` runs it, with certificates made here.
A token bound to a certificate (``cnf.x5t#S256``) is honoured only on a connection that presented that
certificate; behind a TLS-terminating proxy, only when the proxy forwarding it is a trusted address."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub.api.auth import mint_dev_token
from hub.api.tls import thumbprint
from hub.cli.serve import _UVICORN_OPTIONS, _tls_options, _with_protocol
from hub.config import Settings
from hub.main import create_app
from tests.api.test_tokens_strict import refused, register

SCHOOL = "nora-grundskola"
HEADER = "X-SSL-Client-Cert"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: tuple[Path, Path]
    alice: tuple[Path, Path]  # a system's function certificate
    mallory: tuple[Path, Path]  # another certificate of the same CA

    @staticmethod
    def der(pair: tuple[Path, Path]) -> bytes:
        return x509.load_pem_x509_certificate(pair[0].read_bytes()).public_bytes(serialization.Encoding.DER)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    directory: Path, name: str, ca: tuple[x509.Certificate, Any] | None, *, server: bool = False
) -> tuple[x509.Certificate, Any, tuple[Path, Path]]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca[0].subject if ca else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif ca is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(ca[1] if ca else key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert, key, (cert_path, key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key, (ca_path, _) = _issue(directory, "test-ca", None)
    ca = (ca_cert, ca_key)
    return Pki(
        ca=ca_path,
        server=_issue(directory, "hub", ca, server=True)[2],
        alice=_issue(directory, "journal-system", ca)[2],
        mallory=_issue(directory, "other-system", ca)[2],
    )


@contextmanager
def hub_server(settings: Settings, tls: dict[str, Any]) -> Iterator[str]:
    """The hub under uvicorn on a loopback port, with ``hub serve``'s options and protocol; its own
    runtime (opened in the server's event loop) on the test database."""
    app = create_app(settings.model_copy(update={"serve_runs_worker": False, "apply_migrations_on_start": False}))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = {**_UVICORN_OPTIONS, **_with_protocol(tls)}
    config = uvicorn.Config(
        app, loop="asyncio", lifespan="on", access_log=False, timeout_graceful_shutdown=1, **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the hub did not start"
        time.sleep(0.02)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def tls_hub(settings: Settings, pki: Pki) -> Iterator[str]:
    """Mutual TLS at the hub; a certificate header configured but no proxy trusted at 127.0.0.1."""
    tls = _tls_options(str(pki.server[0]), str(pki.server[1]), str(pki.ca), "optional")
    proxied = settings.model_copy(update={"tls_client_cert_header": HEADER, "trusted_proxies": ["10.0.0.0/8"]})
    with hub_server(Settings.model_validate(proxied.model_dump()), tls) as url:
        yield url


@pytest.fixture(scope="module")
def proxied_hub(settings: Settings) -> Iterator[str]:
    """Plain HTTP behind a TLS-terminating proxy at 127.0.0.1 that forwards the client certificate."""
    proxied = settings.model_copy(update={"tls_client_cert_header": HEADER, "trusted_proxies": ["127.0.0.1/32"]})
    with hub_server(Settings.model_validate(proxied.model_dump()), {}) as url:
        yield url


def client(pki: Pki, url: str, cert: tuple[Path, Path] | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return httpx.Client(base_url=url, verify=context, timeout=10)


def bound_to(settings: Settings, der: bytes | None) -> dict[str, str]:
    extra = {"cnf": {"x5t#S256": thumbprint(der)}} if der is not None else None
    token = mint_dev_token(settings, organisation_id=SCHOOL, roles=["system"], extra_claims=extra)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def school(db: Any) -> None:
    await register(db, SCHOOL, "grundskola")


# ------------------------------------------------------------------------------------ TLS at the hub
def test_a_bound_token_is_honoured_with_its_certificate(settings, pki, tls_hub, school) -> None:
    with client(pki, tls_hub, pki.alice) as c:
        r = c.get("/v1/me", headers=bound_to(settings, pki.der(pki.alice)))
    assert r.status_code == 200, r.text
    assert r.json()["organisation_id"] == SCHOOL


def test_a_bound_token_without_a_certificate_is_refused(settings, pki, tls_hub, school) -> None:
    with client(pki, tls_hub, None) as c:
        refused(c.get("/v1/me", headers=bound_to(settings, pki.der(pki.alice))), 401, "cnf", "certificate-missing")
        assert c.get("/v1/me", headers=bound_to(settings, None)).status_code == 200  # unbound tokens: as before


def test_a_bound_token_with_another_certificate_is_refused(settings, pki, tls_hub, school) -> None:
    with client(pki, tls_hub, pki.mallory) as c:
        r = c.get("/v1/me", headers=bound_to(settings, pki.der(pki.alice)))
    refused(r, 401, "cnf", "certificate-mismatch")


def test_graphql_honours_the_binding_too(settings, pki, tls_hub, school) -> None:
    query = {"query": "{ me { ... on Me { organisationId } ... on AuthenticationProblem { detail } } }"}
    with client(pki, tls_hub, pki.mallory) as c:
        r = c.post("/graphql", json=query, headers=bound_to(settings, pki.der(pki.alice)))
    assert r.status_code == 401 and "another client certificate" in r.text, r.text


def test_a_forged_certificate_header_from_an_untrusted_peer_is_ignored(settings, pki, tls_hub, school) -> None:
    forged = {HEADER: quote(pki.alice[0].read_text()), "X-Forwarded-For": "10.1.2.3"}
    with client(pki, tls_hub, None) as c:
        r = c.get("/v1/me", headers=bound_to(settings, pki.der(pki.alice)) | forged)
    refused(r, 401, "cnf", "certificate-missing")  # the TCP peer is 127.0.0.1, whatever X-Forwarded-For says


# --------------------------------------------------------------------------------- TLS at a proxy
@pytest.mark.parametrize(
    "encode",
    [
        lambda pem: quote(pem),  # nginx $ssl_client_escaped_cert
        lambda pem: pem.replace("\n", " ").strip(),  # a PEM folded onto one line
        lambda pem: f'By=spiffe://hub;Hash=x;Cert="{quote(pem)}";Subject="CN=x"',  # Envoy's XFCC
    ],
)
def test_a_trusted_proxys_forwarded_certificate_is_honoured(settings, pki, proxied_hub, school, encode) -> None:
    headers = bound_to(settings, pki.der(pki.alice)) | {HEADER: encode(pki.alice[0].read_text())}
    with httpx.Client(base_url=proxied_hub, timeout=10) as c:
        assert c.get("/v1/me", headers=headers).status_code == 200


def test_a_proxy_forwarding_another_certificate_or_none_is_refused(settings, pki, proxied_hub, school) -> None:
    token = bound_to(settings, pki.der(pki.alice))
    with httpx.Client(base_url=proxied_hub, timeout=10) as c:
        other = c.get("/v1/me", headers=token | {HEADER: quote(pki.mallory[0].read_text())})
        refused(other, 401, "cnf", "certificate-mismatch")
        refused(c.get("/v1/me", headers=token), 401, "cnf", "certificate-missing")
        refused(c.get("/v1/me", headers=token | {HEADER: "not a certificate"}), 401, "cnf", "certificate-missing")


# ------------------------------------------------------------------------------------- hub serve
@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((None, None, "ca.pem", "none"), "need --tls-cert"),
        (("c.pem", "k.pem", None, "required"), "--tls-ca"),
        (("c.pem", "k.pem", "ca.pem", "sometimes"), "none, optional or required"),
    ],
)
def test_serve_refuses_tls_options_that_do_not_fit(args, words, capsys) -> None:
    import typer

    with pytest.raises(typer.Exit):
        _tls_options(*args)
    assert words in capsys.readouterr().err


def test_serve_passes_required_client_certificates_to_uvicorn() -> None:
    options = _tls_options("c.pem", "k.pem", "ca.pem", "required")
    assert options["ssl_cert_reqs"] == ssl.CERT_REQUIRED and options["ssl_ca_certs"] == "ca.pem"
