"""Bearer-token authentication. The only module that imports python-jose.

Tokens are JWTs signed RS256 or ES256. The hub's own tokens (``iss`` = ``HUB_JWT_ISSUER``) verify with
the dev key (``HUB_DEV_MODE``), a PEM file (``HUB_JWT_PUBLIC_KEY_FILE``) or a JWKS URL (``HUB_JWKS_URL``,
cached). A token of a trusted identity provider (``HUB_TRUSTED_ISSUERS_FILE``, :mod:`hub.api.issuers`)
verifies with that issuer's keys, its audience and algorithms, and its claims are mapped to the caller
by the issuer's configuration (organisation by the unit's HSA-id, roles by a claim's mapping table, the
subject by a claim such as the professional's HSA-id); a token naming any other issuer is refused.

A token is honoured only when all of this holds, else the request is refused with a 401 or 403 problem
whose ``errors`` name the claim (``pointer``) and why (``code``: ``missing-claim``, ``invalid-claim``,
``unknown-role``, ``unknown-organisation``, ``inactive-organisation``, ``role-not-allowed``):

- the signature verifies with a trusted key and the algorithm is an allowed one;
- ``iss``, ``aud``, ``exp`` and ``sub`` are present (python-jose skips the audience and issuer checks of
  a token without them unless told to require them) and right; ``nbf`` and ``iat``, when present, valid;
- ``org_id`` is an organisation id (the registry's slug: 2 to 64 of ``a-z0-9-``), ``sub`` 1 to 256 and
  ``jti`` at most 128 printable characters, ``roles`` 1 to 16 roles this hub knows (an unknown one
  refuses the token: an identity provider that misspells a role should hear it, not lose the grant);
- the organisation is registered and active, and ``coordinator`` is claimed only for an organisation of
  a coordinating type (:func:`hub.domain.principal.admit`; the registry's answer is cached for
  ``HUB_ORGANISATION_CACHE_SECONDS``);
- a token with ``cnf`` is bound to a client certificate (RFC 8705 ``x5t#S256``, the only confirmation
  method honoured) and is honoured only on a request that comes with it (:mod:`hub.api.tls`).

Federated tokens meet the same rules with the issuer's claims in place of ``org_id``/``roles``/``sub``
(codes also ``unknown-issuer``, ``issuer-unavailable`` and ``no-role-mapping``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import jwk, jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.api.claims import federated_principal, hsa_claim, org_claim, own_principal, refused
from hub.api.issuers import IssuerConfig, KeySet, load_issuers
from hub.api.tls import check_binding
from hub.config import Settings
from hub.domain.errors import NotPermitted, Unauthenticated, Unavailable
from hub.domain.principal import Principal, Role, admit
from hub.services.organisations import OrganisationStandings

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


@functools.lru_cache(maxsize=256)
def _jwk(key_json: str, alg: str) -> jwk.Key:
    # Constructing a key parses it (tens of microseconds for RSA); an issuer's few keys are made once.
    return jwk.construct(json.loads(key_json), alg)


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
_MAX_TOKEN_CHARS = 16_384
_REQUIRED = {"require_iss": True, "require_aud": True, "require_exp": True, "require_sub": True}
_MISSING = re.compile(r'missing required key "(\w+)"')  # python-jose's words for a required claim absent

Sessions = Callable[[], async_sessionmaker[AsyncSession]]


class TokenVerifier:
    """Verifies bearer tokens against the configured keys and the registry. One per app.

    ``sessions`` gives the database the registry is read from (called when first needed: the app's
    runtime opens after the verifier is made); without it no token is honoured.
    """

    def __init__(
        self, settings: Settings, *, http: httpx.AsyncClient | None = None, sessions: Sessions | None = None
    ) -> None:
        self.settings = settings
        self._static: list[Any] = []
        if settings.dev_mode:
            self._static.append(jwk.construct(_public_pem(load_or_create_dev_key(settings)).decode(), "RS256"))
        if settings.jwt_public_key_file is not None:
            for block in _PEM_BLOCK.findall(settings.jwt_public_key_file.read_bytes()):
                alg = "ES256" if b"EC " in block or _is_ec(block) else "RS256"
                self._static.append(jwk.construct(block.decode(), alg))
        self._http = http
        self._issuers: dict[str, KeySet] = {}
        if settings.trusted_issuers_file is not None:
            for config in load_issuers(settings.trusted_issuers_file, dev_mode=settings.dev_mode):
                self._issuers[config.issuer] = KeySet(config, dev_mode=settings.dev_mode, http=http)
        self._jwks = _JwksCache()
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._standings = (
            None
            if sessions is None
            else OrganisationStandings(sessions, ttl_seconds=settings.organisation_cache_seconds)
        )
        if not self._static and not settings.jwks_url and not self._issuers:
            raise ValueError(
                "No token keys: set HUB_DEV_MODE, HUB_TRUSTED_ISSUERS_FILE, HUB_JWT_PUBLIC_KEY_FILE or HUB_JWKS_URL."
            )

    async def verify(self, token: str, *, scope: Mapping[str, Any] | None = None) -> Principal:
        """The caller ``token`` names, admitted by the registry. ``scope`` (the request's ASGI scope) is
        where a certificate-bound token's certificate is looked for; without it such a token is refused."""
        if len(token) > _MAX_TOKEN_CHARS:
            raise Unauthenticated(f"The bearer token is longer than {_MAX_TOKEN_CHARS} characters.")
        # A verified token is remembered briefly: RS256 verification costs ~0.1 ms per request. Bounded
        # in size and to a minute, so a key removed from the JWKS stops being honoured soon after. The
        # registry is asked every time (from its own cache): a deactivation must not wait for this one.
        cached = self._verified.get(token)
        now = time.time()
        if cached is not None and now < cached[1]:
            principal = cached[0]
        else:
            principal, exp = await self._verify(token)
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.clear()
            self._verified[token] = (principal, min(exp, now + _VERIFIED_SECONDS))
        if self._standings is None:
            raise Unavailable("This hub has no registry to check the token's organisation against.")
        admit(principal, await self._standings.get(principal.organisation_id))
        if principal.certificate_thumbprint is not None:
            check_binding(scope or {}, self.settings, principal.certificate_thumbprint)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise Unauthenticated("The bearer token is not a well-formed JWT.") from None
        alg, kid = header.get("alg"), header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("The bearer token's key id (kid) is not a string.")
        if self._issuers:
            try:
                iss = jwt.get_unverified_claims(token).get("iss")
            except (JWTError, AttributeError):
                raise Unauthenticated("The bearer token is not a well-formed JWT.") from None
            keyset = self._issuers.get(iss) if isinstance(iss, str) else None
            if keyset is not None:
                return await self._verify_federated(token, keyset, alg, kid)
            if isinstance(iss, str) and iss != self.settings.jwt_issuer:
                raise refused("The bearer token's issuer (iss) is not one this hub trusts.", "iss", "unknown-issuer")
        if not isinstance(alg, str) or alg not in self.settings.jwt_algorithms:
            raise Unauthenticated(f"Tokens must be signed with one of {', '.join(self.settings.jwt_algorithms)}.")
        candidates = list(self._static)
        if self.settings.jwks_url:
            candidates += await self._jwks_keys(kid)
        for key in candidates:
            claims = self._decode(token, key)
            if claims is not None:
                return own_principal(claims), _expiry(claims)
        raise Unauthenticated("The bearer token's signature does not verify with any trusted key.")

    async def _verify_federated(
        self, token: str, keyset: KeySet, alg: object, kid: str | None
    ) -> tuple[Principal, float]:
        config = keyset.config
        if not isinstance(alg, str) or alg not in config.algorithms:
            raise Unauthenticated(f"Tokens of {config.name} must be signed with one of {', '.join(config.algorithms)}.")
        for key in await keyset.keys(kid):
            if key.get("alg", alg) != alg:
                continue  # a key published for another algorithm (RFC 7517 4.4) does not verify this one
            try:
                constructed = _jwk(json.dumps(key, sort_keys=True), alg)
            except JWTError:
                continue  # a key of another type than the token's algorithm
            claims = self._decode(token, constructed, issuer=config)
            if claims is not None:
                return await self._federated_principal(claims, config), _expiry(claims)
        raise Unauthenticated(f"The bearer token's signature does not verify with any key of {config.name}.")

    async def _federated_principal(self, claims: dict[str, Any], config: IssuerConfig) -> Principal:
        if self._standings is None:
            raise Unavailable("This hub has no registry to check the token's organisation against.")
        unit = config.organisation_claim
        if config.organisation_by == "id":
            return federated_principal(claims, config, organisation_id=org_claim(claims, unit))
        org = await self._standings.by_hsa_id(hsa_claim(claims, unit))
        if org is None:
            raise refused(
                f"The bearer token's {unit} names no organisation in this hub's registry.", unit, "unknown-organisation"
            )
        return federated_principal(claims, config, organisation_id=org)

    def _decode(self, token: str, key: Any, *, issuer: IssuerConfig | None = None) -> dict[str, Any] | None:
        """The token's claims if ``key`` signed it and they are acceptable; None if another key signed it.
        ``issuer``: a trusted identity provider's token (its audience and algorithms), else the hub's own."""
        settings = self.settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=issuer.algorithms if issuer else settings.jwt_algorithms,
                audience=issuer.audience if issuer else settings.jwt_audience,
                issuer=issuer.issuer if issuer else settings.jwt_issuer,
                options={"leeway": settings.jwt_leeway_seconds, **_REQUIRED},
            )
            return claims
        except ExpiredSignatureError:
            raise refused("The bearer token has expired.", "exp", "invalid-claim") from None
        except JWTClaimsError as exc:
            reason, claim = _claims_reason(exc)
            raise refused(f"The bearer token's claims are not accepted: {reason}.", claim, "invalid-claim") from None
        except JWTError as exc:
            missing = _MISSING.search(str(exc))  # raised only once the signature has verified
            if missing is None:
                return None
            claim = missing.group(1)
            raise refused(f"The bearer token has no {claim} claim.", claim, "missing-claim") from None
        except (TypeError, ValueError, OverflowError):  # python-jose on a time claim that is no number
            claim = _bad_time_claim(token)
            raise refused(f"The bearer token's {claim} claim is not a number.", claim, "invalid-claim") from None

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


def _claims_reason(exc: JWTClaimsError) -> tuple[str, str]:
    """A short reason and the claim at fault, from python-jose's message."""
    text = str(exc).lower()
    for words, reason, claim in (
        ("audience", "wrong audience", "aud"),
        ("claim format", "aud must be a string or a list of strings", "aud"),
        ("issuer", "wrong issuer", "iss"),
        ("subject", "sub must be a string", "sub"),
        ("(nbf) must", "nbf must be a number", "nbf"),
        ("not yet valid", "not yet valid", "nbf"),
        ("(iat)", "iat must be a number", "iat"),
        ("(exp)", "exp must be a number", "exp"),
        ("jwt id", "jti must be a string", "jti"),
    ):
        if words in text:
            return reason, claim
    return "invalid claims", ""


def _bad_time_claim(token: str) -> str:
    claims = jwt.get_unverified_claims(token)  # only called once the signature has verified
    for claim in ("exp", "nbf", "iat"):
        value = claims.get(claim)
        if claim in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            return claim
    return "exp"


def _expiry(claims: dict[str, Any]) -> float:
    # python-jose has checked that int() takes it; a year 10**300 is far, not a float overflow.
    return float(min(int(claims["exp"]), 2**53))


_bearer = HTTPBearer(auto_error=False, description="A JWT from the hub's identity provider (or `hub token` in dev).")


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def current_principal(request: Request, credentials: Credentials) -> Principal:
    return await _authenticate(request, credentials)


async def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("This endpoint needs a bearer token (Authorization: Bearer <token>).")
    verifier: TokenVerifier = request.app.state.verifier
    principal = await verifier.verify(credentials.credentials, scope=request.scope)
    request.state.principal = principal
    return principal


def require(*roles: Role):  # type: ignore[no-untyped-def]
    """A dependency that admits a caller holding any of ``roles`` (every authenticated caller if none)."""

    # Authenticates itself rather than through ``current_principal``: FastAPI resolves each dependency
    # of a request on its own, and one level less is a few percent of a referral's CPU.
    async def dependency(request: Request, credentials: Credentials) -> Principal:
        principal = await _authenticate(request, credentials)
        if roles and not principal.has_any(*roles):
            wanted = ", ".join(r.value for r in roles)
            raise NotPermitted(f"This needs one of the roles: {wanted}.")
        return principal

    return dependency


Caller = Annotated[Principal, Depends(current_principal)]
