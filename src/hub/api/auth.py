"""Bearer-token authentication. The only module that imports python-jose.

Tokens are JWTs signed RS256 or ES256. The hub checks signature, issuer, audience, expiry and the
claims ``org_id`` (the caller's organisation) and ``roles``. Keys come from, in order: the dev key
(``HUB_DEV_MODE``), a PEM file (``HUB_JWT_PUBLIC_KEY_FILE``), a JWKS URL (``HUB_JWKS_URL``, cached).
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import jwk, jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

from hub.config import Settings
from hub.domain.errors import NotPermitted, Unauthenticated, Unavailable
from hub.domain.principal import Principal, Role

DEV_KID = "hub-dev-1"
_PEM_BLOCK = re.compile(rb"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.S)


def load_or_create_dev_key(settings: Settings) -> bytes:
    """The dev signing key (PEM, private), created on first use and kept in the data directory."""
    path = settings.dev_key_file
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.replace(tmp, path)  # atomic: two processes starting together end with one key
    return path.read_bytes() if path.exists() else pem


def _public_pem(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def mint_dev_token(
    settings: Settings,
    *,
    organisation_id: str,
    roles: list[str],
    subject: str | None = None,
    ttl_seconds: int | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """A token signed with the dev key. Refused outside dev mode."""
    if not settings.dev_mode:
        raise NotPermitted("Dev tokens are only minted in dev mode (HUB_DEV_MODE=true).")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject or f"dev:{organisation_id}",
        "org_id": organisation_id,
        "roles": roles,
        "iat": now,
        "nbf": now,
        "exp": now + (ttl_seconds or settings.dev_token_ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    claims.update(extra_claims or {})
    return str(
        jwt.encode(claims, _signing_key(load_or_create_dev_key(settings)), algorithm="RS256", headers={"kid": DEV_KID})
    )


@functools.lru_cache(maxsize=4)
def _signing_key(pem: bytes) -> jwk.Key:
    # Parsing an RSA private key checks it and costs tens of milliseconds; `hub demo` signs hundreds.
    return jwk.construct(pem.decode(), "RS256")


@dataclass
class _JwksCache:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_VERIFIED_MAX = 10_000
_VERIFIED_SECONDS = 60.0


class TokenVerifier:
    """Verifies bearer tokens against the configured keys. One per app."""

    def __init__(self, settings: Settings, *, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._static: list[Any] = []
        if settings.dev_mode:
            self._static.append(jwk.construct(_public_pem(load_or_create_dev_key(settings)).decode(), "RS256"))
        if settings.jwt_public_key_file is not None:
            for block in _PEM_BLOCK.findall(settings.jwt_public_key_file.read_bytes()):
                alg = "ES256" if b"EC " in block or _is_ec(block) else "RS256"
                self._static.append(jwk.construct(block.decode(), alg))
        self._http = http
        self._jwks = _JwksCache()
        self._verified: dict[str, tuple[Principal, float]] = {}
        if not self._static and not settings.jwks_url:
            raise ValueError("No token keys: set HUB_DEV_MODE, HUB_JWT_PUBLIC_KEY_FILE or HUB_JWKS_URL.")

    async def verify(self, token: str) -> Principal:
        # A verified token is remembered briefly: RS256 verification costs ~0.1 ms per request. Bounded
        # in size and to a minute, so a key removed from the JWKS stops being honoured soon after.
        cached = self._verified.get(token)
        now = time.time()
        if cached is not None and now < cached[1]:
            return cached[0]
        principal, exp = await self._verify(token)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (principal, min(exp, now + _VERIFIED_SECONDS))
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise Unauthenticated("The bearer token is not a well-formed JWT.") from None
        alg = header.get("alg")
        if alg not in self.settings.jwt_algorithms:
            raise Unauthenticated(f"Tokens must be signed with one of {', '.join(self.settings.jwt_algorithms)}.")
        candidates = list(self._static)
        if self.settings.jwks_url:
            candidates += await self._jwks_keys(header.get("kid"))
        claims: dict[str, Any] | None = None
        last: Exception | None = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=self.settings.jwt_algorithms,
                    audience=self.settings.jwt_audience,
                    issuer=self.settings.jwt_issuer,
                    options={"leeway": self.settings.jwt_leeway_seconds, "require_exp": True},
                )
                break
            except ExpiredSignatureError:
                raise Unauthenticated("The bearer token has expired.") from None
            except JWTClaimsError as exc:
                raise Unauthenticated(f"The bearer token's claims are not accepted: {_claims_reason(exc)}.") from None
            except JWTError as exc:
                last = exc
        if claims is None:
            _ = last
            raise Unauthenticated("The bearer token's signature does not verify with any trusted key.")
        return _principal(claims), float(claims["exp"])

    async def _jwks_keys(self, kid: str | None) -> list[Any]:
        cache = self._jwks
        fresh = time.monotonic() - cache.fetched_at < self.settings.jwks_cache_seconds
        if not fresh or (kid is not None and kid not in cache.keys and time.monotonic() - cache.fetched_at > 10):
            async with cache.lock:
                await self._refresh_jwks()
        keys = cache.keys.values() if kid is None else [k for i, k in cache.keys.items() if i == kid]
        return [jwk.construct(k) for k in keys]

    async def _refresh_jwks(self) -> None:
        assert self.settings.jwks_url is not None
        client = self._http or httpx.AsyncClient(timeout=5.0)
        try:
            response = await client.get(self.settings.jwks_url)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError):
            if not self._jwks.keys:
                raise Unavailable("The token key set (JWKS) could not be fetched.") from None
            return  # keep serving with the keys we have
        finally:
            if self._http is None:
                await client.aclose()
        self._jwks.keys = {str(k.get("kid", i)): k for i, k in enumerate(body.get("keys", []))}
        self._jwks.fetched_at = time.monotonic()


def _is_ec(block: bytes) -> bool:
    try:
        key = serialization.load_pem_public_key(block)
    except ValueError:
        return False
    return type(key).__name__.startswith("_EllipticCurve") or "EllipticCurve" in type(key).__name__


def _claims_reason(exc: JWTClaimsError) -> str:
    text = str(exc).lower()
    if "audience" in text:
        return "wrong audience"
    if "issuer" in text:
        return "wrong issuer"
    if "before" in text or "nbf" in text:
        return "not yet valid"
    return "invalid claims"


def _principal(claims: dict[str, Any]) -> Principal:
    org = claims.get("org_id")
    if not isinstance(org, str) or not org:
        raise Unauthenticated("The bearer token has no org_id claim.")
    raw_roles = claims.get("roles", [])
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.split()
    roles: set[Role] = set()
    for r in raw_roles if isinstance(raw_roles, list) else []:
        try:
            roles.add(Role(r))
        except ValueError:
            continue  # unknown roles grant nothing
    sub = claims.get("sub")
    return Principal(
        subject=str(sub) if sub else f"org:{org}",
        organisation_id=org,
        roles=frozenset(roles),
        token_id=claims.get("jti"),
    )


_bearer = HTTPBearer(auto_error=False, description="A JWT from the hub's identity provider (or `hub token` in dev).")


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("This endpoint needs a bearer token (Authorization: Bearer <token>).")
    verifier: TokenVerifier = request.app.state.verifier
    principal = await verifier.verify(credentials.credentials)
    request.state.principal = principal
    return principal


def require(*roles: Role):  # type: ignore[no-untyped-def]
    """A dependency that admits a caller holding any of ``roles`` (every authenticated caller if none)."""

    async def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if roles and not principal.has_any(*roles):
            wanted = ", ".join(r.value for r in roles)
            raise NotPermitted(f"This needs one of the roles: {wanted}.")
        return principal

    return dependency


Caller = Annotated[Principal, Depends(current_principal)]
