"""Client certificates, for certificate-bound tokens (RFC 8705; SITHS function certificates).

A token with ``cnf.x5t#S256`` is honoured only on a request that comes with that certificate (its
SHA-256 thumbprint, base64url). The certificate reaches the hub one of two ways:

- **TLS terminated by the hub** (``hub serve --tls-cert … --tls-client-certs required``): uvicorn puts
  nothing of the peer's certificate in the ASGI scope, so ``hub serve`` runs uvicorn with
  :func:`certificate_protocol`, which adds the ASGI TLS extension's ``client_cert_chain`` (PEM) to each
  request's scope. Any ASGI server that fills that extension works the same.
- **TLS terminated by a reverse proxy** that forwards the verified client certificate in
  ``HUB_TLS_CLIENT_CERT_HEADER``: honoured only when the TCP peer is in ``HUB_TRUSTED_PROXIES``
  (anyone else could write the header). Formats: URL-encoded PEM (nginx ``$ssl_client_escaped_cert``),
  PEM, base64 DER, or Envoy's ``x-forwarded-client-cert`` ``Cert="…"`` element. The peer is the TCP
  peer as the hub's protocol saw it, before uvicorn's proxy-header handling rewrote the scope's client;
  without the hub's protocol, the scope's client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hub.api.connection_share import ConnectionShare
from hub.config import Settings
from hub.domain.errors import FieldError, Unauthenticated

PEER_EXTENSION = "hub.peer"  # our scope extension: the TCP peer before proxy headers were applied
_XFCC_CERT = re.compile(r'(?:^|;)\s*Cert="([^"]+)"', re.I)
_MAX_HEADER = 16_384


def thumbprint(der: bytes) -> str:
    """RFC 8705 3.1: base64url (no padding) of the SHA-256 of the DER certificate."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def check_binding(scope: Mapping[str, Any], settings: Settings, bound_to: str) -> None:
    """Raise 401 unless the request came with the certificate whose thumbprint is ``bound_to``."""
    der = client_certificate(scope, settings)
    if der is None:
        raise Unauthenticated(
            "The bearer token is bound to a client certificate (cnf.x5t#S256); the request came without one.",
            errors=[FieldError("cnf", "no client certificate on this request", "certificate-missing")],
        )
    if not hmac.compare_digest(thumbprint(der), bound_to):
        raise Unauthenticated(
            "The bearer token is bound to another client certificate than the one this request came with.",
            errors=[FieldError("cnf", "the client certificate does not match cnf.x5t#S256", "certificate-mismatch")],
        )


def client_certificate(scope: Mapping[str, Any], settings: Settings) -> bytes | None:
    """The DER client certificate of this request: the TLS extension's, else a trusted proxy's header."""
    extensions = scope.get("extensions") or {}
    chain = (extensions.get("tls") or {}).get("client_cert_chain") or []
    if chain:
        return _der(str(chain[0]))
    header = settings.tls_client_cert_header
    if not header or not _trusted_peer(extensions.get(PEER_EXTENSION) or scope.get("client"), settings):
        return None
    wanted = header.lower().encode("latin-1")
    value = next((v for k, v in scope.get("headers", []) if k == wanted), None)
    if value is None or len(value) > _MAX_HEADER:
        return None
    return _der(value.decode("latin-1"))


def _trusted_peer(peer: Any, settings: Settings) -> bool:
    if not peer or not settings.trusted_proxies:
        return False
    try:
        address = ipaddress.ip_address(str(peer[0]))
    except ValueError:
        return False
    return any(address in network for network in settings.trusted_proxies)


def _der(value: str) -> bytes | None:
    """A certificate in any of the forwarded formats, as DER; None when it is none."""
    xfcc = _XFCC_CERT.search(value)
    text = unquote(xfcc.group(1) if xfcc else value).strip()
    try:
        if "-----BEGIN" in text:
            # Some proxies fold the PEM onto one line (newlines as spaces): rebuild the base64 body.
            body = re.sub(r"-----[A-Z ]+-----", "", text)
            text = "-----BEGIN CERTIFICATE-----\n" + "".join(body.split()) + "\n-----END CERTIFICATE-----\n"
            return x509.load_pem_x509_certificate(text.encode()).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(base64.b64decode(text, validate=True)).public_bytes(Encoding.DER)
    except (ValueError, binascii.Error):
        return None


def certificate_protocol(base: type[Any], share: ConnectionShare | None = None) -> type[Any]:
    """A subclass of uvicorn's HTTP protocol ``base`` that puts the TLS peer certificate (the ASGI TLS
    extension's ``client_cert_chain``) and the TCP peer (``hub.peer``) into every request's scope, and
    counts its connections in ``share`` (hub.api.connection_share) when the process is one of several."""

    class CertificateProtocol(base):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            if share is not None:
                share.opened()  # first: connection_lost follows even if what comes next raises
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            chain = [_pem(der)] if der else []
            self.app: Any = _WithConnection(self.app, peer=self.client, chain=chain, share=share)

        def connection_lost(self, exc: Exception | None) -> None:
            if share is not None:
                share.closed()
            super().connection_lost(exc)

    CertificateProtocol.__name__ = f"Certificate{base.__name__}"
    return CertificateProtocol


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


class _WithConnection:
    """Adds what the connection knows to each scope (one per connection, so no lookups per request)."""

    def __init__(self, app: Any, *, peer: Any, chain: list[str], share: ConnectionShare | None) -> None:
        self.app = app
        self.peer = peer
        self.tls = {"client_cert_chain": chain} if chain else None
        self.share = share

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        extensions = dict(scope.get("extensions") or {})
        extensions[PEER_EXTENSION] = self.peer
        if self.tls is not None:
            extensions["tls"] = {**(extensions.get("tls") or {}), **self.tls}
        scope["extensions"] = extensions
        if self.share is not None and scope["type"] == "http":
            send = self.share.closing_send(send) or send
        await self.app(scope, receive, send)
