"""Trusted identity providers (federated sign-in): what each is trusted for, and its signing keys.

``HUB_TRUSTED_ISSUERS_FILE`` (JSON or TOML, ``{"issuers": [...]}``; docs/operations.md, "Federated
sign-in") lists any number of issuers. Each names its ``issuer`` (the tokens' ``iss``), where its keys
are (``discovery_url``, OpenID Connect Discovery 1.0, or ``jwks_url``), the ``audience`` its tokens carry
for this hub, the ``algorithms`` allowed, its ``kind`` (``system``: client-credentials tokens of a
system; ``personal``: a professional signed in) and how its claims map to the hub's caller: the
organisation (a claim holding the unit's HSA-id, looked up in the registry, or the hub's organisation id)
and the roles (fixed ``roles``, and/or a claim such as the commission's purpose read through
``role_map``). Nothing about a token is guessed: an issuer is one kind or the other.

This module fetches keys (httpx); :mod:`hub.api.auth`, the only module importing python-jose, verifies.
A key set is fetched over HTTPS (HTTP only to a loopback host in dev mode), cached as long as its
``Cache-Control: max-age`` or ``Expires`` says (bounded), fetched again when a token names a key id the
set lacks (at most once per ``refresh_seconds``: a stream of invented ``kid`` values must not become a
stream of requests to the identity provider), so a key rotation needs no restart. An issuer whose keys
cannot be fetched once its cache has expired fails closed: its tokens are refused (401) until a fetch
succeeds, other issuers' tokens are not affected.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
import tomllib
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.domain.errors import FieldError, Unauthenticated
from hub.domain.principal import Role

Algorithm = Literal["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]
_MAX_KEYS = 100  # a key set of more is no key set this hub needs; bounds what one fetch can make us hold
_MAX_BODY = 1_048_576


class IssuerConfig(BaseModel):
    """One trusted issuer: where its keys are, what its tokens must say, how they map to a caller."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    issuer: str = Field(min_length=1, max_length=512)
    discovery_url: str | None = None
    jwks_url: str | None = None
    audience: str = Field(min_length=1, max_length=512)
    algorithms: list[Algorithm] = Field(default=["RS256"], min_length=1)
    kind: Literal["system", "personal"]
    # The claim whose value is the caller's subject (audit's and events' by_subject): for personal tokens
    # the professional's HSA-id (Inera: employeeHsaId), for system tokens the client (sub or client_id).
    subject_claim: str = "sub"
    organisation_claim: str = Field(min_length=1, max_length=256)
    organisation_by: Literal["hsa_id", "id"] = "hsa_id"
    roles: list[Role] = Field(default_factory=list, max_length=8)
    roles_claim: str | None = None
    role_map: dict[str, list[Role]] = Field(default_factory=dict, max_length=1000)
    # Refuse this issuer's tokens unless bound to a client certificate (RFC 8705 cnf.x5t#S256).
    require_certificate: bool = False
    # An unknown kid fetches the key set again at most this often; an issuer whose keys expired and
    # could not be fetched is asked again at most this often (its tokens refused meanwhile).
    refresh_seconds: float = Field(default=30.0, ge=0.0, le=3600.0)
    retry_seconds: float = Field(default=5.0, ge=0.0, le=3600.0)
    min_cache_seconds: float = Field(default=60.0, ge=0.0)
    max_cache_seconds: float = Field(default=86_400.0, ge=1.0)
    default_cache_seconds: float = Field(default=300.0, ge=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> IssuerConfig:
        if (self.discovery_url is None) == (self.jwks_url is None):
            raise ValueError("give exactly one of discovery_url and jwks_url")
        if not self.roles and not (self.roles_claim and self.role_map):
            raise ValueError("give roles, or roles_claim with a role_map: a token must map to at least one role")
        if self.kind == "system" and Role.PROFESSIONAL in self.roles:
            raise ValueError("a system issuer's tokens name no person: the role professional is for kind personal")
        return self


class IssuersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issuers: list[IssuerConfig] = Field(max_length=100)


def load_issuers(path: Path, *, dev_mode: bool) -> list[IssuerConfig]:
    """The issuers ``path`` lists; ValueError (naming the file and the fault) when it is not valid."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        issuers = IssuersFile.model_validate(raw).issuers
    except (OSError, ValueError, ValidationError) as exc:  # json, toml and pydantic errors are ValueErrors
        raise ValueError(f"HUB_TRUSTED_ISSUERS_FILE {path}: {exc}") from None
    seen: set[str] = set()
    for config in issuers:
        if config.issuer in seen:
            raise ValueError(f"HUB_TRUSTED_ISSUERS_FILE {path}: the issuer {config.issuer} is listed twice")
        seen.add(config.issuer)
        for url in (config.discovery_url, config.jwks_url):
            if url is not None:
                check_url(url, dev_mode=dev_mode)
    return issuers


def check_url(url: str, *, dev_mode: bool) -> None:
    """Keys come over HTTPS; plain HTTP only to a loopback host in dev mode (a test's issuer)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and dev_mode and _loopback(parts.hostname or ""):
        return
    raise ValueError(f"{url}: keys are fetched over https only (http only to a loopback host in dev mode)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unavailable(config: IssuerConfig) -> Unauthenticated:
    # 401, not 503: the hub cannot verify the token, so it is not honoured; the caller may retry later.
    return Unauthenticated(
        f"The keys of the token's issuer ({config.name}) cannot be fetched now; try again later.",
        errors=[FieldError("iss", "the issuer's keys are unavailable", "issuer-unavailable")],
    )


class KeySet:
    """One issuer's signing keys (JWKs as dicts), fetched and cached as the module docstring says."""

    def __init__(self, config: IssuerConfig, *, dev_mode: bool, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._dev_mode = dev_mode
        self._http = http
        self._jwks_url = config.jwks_url
        self._keys: dict[str, dict[str, Any]] = {}
        self._expires_at = 0.0  # monotonic: until then the keys are fresh
        self._attempted_at = -1e9  # monotonic: the last fetch, successful or not (rate limit)
        self._lock = asyncio.Lock()

    async def keys(self, kid: str | None) -> list[dict[str, Any]]:
        """The keys that may have signed a token naming ``kid`` (every key when it names none)."""
        fetched = False
        if time.monotonic() >= self._expires_at or (kid is not None and kid not in self._keys):
            async with self._lock:  # a fetch under way: wait for it rather than judge the keys it replaces
                now = time.monotonic()
                stale = now >= self._expires_at
                unknown = kid is not None and kid not in self._keys
                wait = self.config.retry_seconds if stale else self.config.refresh_seconds
                if (stale or unknown) and now - self._attempted_at >= wait:
                    fetched = await self._refresh()
        if not fetched and time.monotonic() >= self._expires_at:
            raise _unavailable(self.config)  # fail closed: keys past their cache time are not trusted
        if kid is None:
            return list(self._keys.values())
        found = self._keys.get(kid)
        return [] if found is None else [found]

    async def _refresh(self) -> bool:
        """Fetch the key set; True when it was fetched (the keys are then used even with no cache time)."""
        self._attempted_at = time.monotonic()
        client = self._http or httpx.AsyncClient(timeout=5.0)
        try:
            if self._jwks_url is None:
                self._jwks_url = await self._discover(client)
            response = await client.get(self._jwks_url, headers={"Accept": "application/json"})
            response.raise_for_status()
            if len(response.content) > _MAX_BODY:
                raise ValueError("key set too large")
            keys = _parse_jwks(response.json())
        except (httpx.HTTPError, ValueError, TypeError):
            if self.config.jwks_url is None:
                self._jwks_url = None  # discover again next time: the provider may have moved its keys
            return False  # the keys held stay trusted until their cache time ends, and not after
        finally:
            if self._http is None:
                await client.aclose()
        self._keys = keys
        self._expires_at = time.monotonic() + _cache_seconds(response, self.config)
        return True

    async def _discover(self, client: httpx.AsyncClient) -> str:
        assert self.config.discovery_url is not None
        response = await client.get(self.config.discovery_url, headers={"Accept": "application/json"})
        response.raise_for_status()
        document = response.json()
        # OpenID Connect Discovery 1.0, 4.3: the document's issuer must be exactly the one configured.
        if not isinstance(document, dict) or document.get("issuer") != self.config.issuer:
            raise ValueError("the discovery document names another issuer")
        url = document.get("jwks_uri")
        if not isinstance(url, str):
            raise ValueError("the discovery document has no jwks_uri")
        check_url(url, dev_mode=self._dev_mode)
        return url


def _parse_jwks(body: object) -> dict[str, dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
        raise ValueError("not a JWK set")
    keys: dict[str, dict[str, Any]] = {}
    for i, key in enumerate(body["keys"][:_MAX_KEYS]):
        if not isinstance(key, dict) or key.get("use", "sig") != "sig" or key.get("kty") not in ("RSA", "EC"):
            continue  # encryption keys and key types the hub does not verify with
        kid = key.get("kid")
        keys[kid if isinstance(kid, str) else f"#{i}"] = key
    return keys


def _cache_seconds(response: httpx.Response, config: IssuerConfig) -> float:
    """How long the key set may be used: its ``Cache-Control: max-age`` (or ``Expires``), bounded by the
    issuer's ``min_cache_seconds`` (so ``no-cache`` does not mean a fetch per request) and
    ``max_cache_seconds``; ``default_cache_seconds`` when the response says nothing."""
    seconds = config.default_cache_seconds
    directives = [d.strip().lower() for d in response.headers.get("cache-control", "").split(",")]
    max_age = next((d.partition("=")[2] for d in directives if d.startswith("max-age=")), None)
    if max_age is not None and max_age.strip('"').isdigit():
        seconds = float(max_age.strip('"'))
    elif "no-store" in directives or "no-cache" in directives:
        seconds = 0.0
    elif "expires" in response.headers:
        try:
            seconds = parsedate_to_datetime(response.headers["expires"]).timestamp() - time.time()
        except (TypeError, ValueError):
            seconds = 0.0  # RFC 9111 5.3: an invalid Expires means already expired
    return max(config.min_cache_seconds, min(seconds, config.max_cache_seconds))
