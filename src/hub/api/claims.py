"""From a verified token's claims to the caller (:class:`hub.domain.principal.Principal`): the hub's own
claims (``sub``, ``org_id``, ``roles``, ``jti``), a trusted issuer's mapped ones, and a certificate binding
(``cnf``). Each refusal names the claim at fault; :mod:`hub.api.auth` verifies the token first."""

from __future__ import annotations

import re
from typing import Any

from hub.api.issuers import IssuerConfig
from hub.domain.errors import FieldError, Unauthenticated
from hub.domain.hsa import InvalidHsaId, parse_hsa_id
from hub.domain.principal import Principal, Role

_ORG_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,63}")  # the registry's organisation ids
_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256, unpadded
_MAX_SUBJECT = 256
_MAX_TOKEN_ID = 128
_MAX_ROLES = 16
_ROLE_NAMES = frozenset(r.value for r in Role)
_KNOWN_ROLES = ", ".join(r.value for r in Role)


def refused(detail: str, claim: str, code: str) -> Unauthenticated:
    return Unauthenticated(detail, errors=[FieldError(claim, detail, code)] if claim else None)


def text_claim(claims: dict[str, Any], claim: str, limit: int) -> str:
    value = claims[claim]
    if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
        raise refused(f"The bearer token's {claim} must be 1 to {limit} printable characters.", claim, "invalid-claim")
    return value


def role_list(raw: object) -> frozenset[Role]:
    if raw is None:
        raise refused("The bearer token has no roles claim.", "roles", "missing-claim")
    if isinstance(raw, str) and len(raw) <= _MAX_ROLES * 16:
        raw = raw.split()  # some identity providers write a space-separated list, as OAuth's scope
    if not isinstance(raw, list) or len(raw) > _MAX_ROLES:
        raise refused(f"The bearer token's roles must be a list of at most {_MAX_ROLES}.", "roles", "invalid-claim")
    if not raw:
        raise refused(f"The bearer token carries no role; one of: {_KNOWN_ROLES}.", "roles", "missing-claim")
    roles: set[Role] = set()
    for i, name in enumerate(raw):
        if not isinstance(name, str) or name not in _ROLE_NAMES:
            detail = f"The bearer token's roles[{i}] is not a role this hub knows ({_KNOWN_ROLES})."
            raise refused(detail, f"roles/{i}", "unknown-role")
        roles.add(Role(name))
    return frozenset(roles)


def own_principal(claims: dict[str, Any]) -> Principal:
    """The caller a verified token's claims name; refused when a claim is missing, too long or unknown."""
    return Principal(
        subject=text_claim(claims, "sub", _MAX_SUBJECT),
        organisation_id=org_claim(claims, "org_id"),
        roles=role_list(claims.get("roles")),
        token_id=text_claim(claims, "jti", _MAX_TOKEN_ID) if "jti" in claims else None,
        certificate_thumbprint=binding(claims, required=False),
    )


def org_claim(claims: dict[str, Any], claim: str) -> str:
    org = claims.get(claim)
    if org is None:
        raise refused(f"The bearer token has no {claim} claim.", claim, "missing-claim")
    if not isinstance(org, str) or not _ORG_ID.fullmatch(org):
        detail = f"The bearer token's {claim} is not an organisation id (2 to 64 of a-z, 0-9 and '-')."
        raise refused(detail, claim, "invalid-claim")
    return org


def hsa_claim(claims: dict[str, Any], claim: str) -> str:
    """An HSA-id claim (:func:`hub.domain.hsa.parse_hsa_id`: the form and the organisation number's check
    digit), refused saying which part is wrong, never repeating the value."""
    value = claims.get(claim)
    if value is None:
        raise refused(f"The bearer token has no {claim} claim.", claim, "missing-claim")
    try:
        return str(parse_hsa_id(value))
    except InvalidHsaId as error:
        raise refused(f"The bearer token's {claim} is not an HSA-id: {error.message}", claim, "invalid-claim") from None


def mapped_roles(claims: dict[str, Any], config: IssuerConfig) -> frozenset[Role]:
    """The issuer's fixed roles and those its role_map gives the values of its roles claim."""
    roles = set(config.roles)
    if config.roles_claim is not None:
        raw = claims.get(config.roles_claim)
        values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        for value in values[:_MAX_ROLES]:
            if isinstance(value, str):
                roles.update(config.role_map.get(value, ()))
    if not roles:
        claim = config.roles_claim or "roles"
        detail = f"The bearer token's {claim} maps to no role of this hub (the issuer's role_map)."
        raise refused(detail, claim, "no-role-mapping")
    return frozenset(roles)


def binding(claims: dict[str, Any], *, required: bool) -> str | None:
    """The certificate thumbprint a token is bound to (RFC 8705 ``cnf.x5t#S256``), if any."""
    cnf = claims.get("cnf")
    if cnf is None:
        if required:
            raise refused("Tokens of this issuer must be bound to a client certificate.", "cnf", "missing-claim")
        return None
    thumbprint = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
    if not isinstance(thumbprint, str) or not _THUMBPRINT.fullmatch(thumbprint):
        # Another confirmation method (DPoP's jkt, ...) binds the token to a proof this hub does not check:
        # honouring the token as a bearer token would drop the binding its issuer asked for.
        detail = "The bearer token's cnf is not a certificate binding (x5t#S256) this hub can check."
        raise refused(detail, "cnf", "invalid-claim")
    return thumbprint


def federated_principal(claims: dict[str, Any], config: IssuerConfig, *, organisation_id: str) -> Principal:
    """The caller a trusted issuer's verified token names, its unit already found (``organisation_id``)."""
    if config.kind == "personal":
        subject = hsa_claim(claims, config.subject_claim)  # the professional's HSA-id
    else:
        subject = text_claim_named(claims, config.subject_claim)
    return Principal(
        subject=subject,
        organisation_id=organisation_id,
        roles=mapped_roles(claims, config),
        token_id=text_claim(claims, "jti", _MAX_TOKEN_ID) if "jti" in claims else None,
        certificate_thumbprint=binding(claims, required=config.require_certificate),
    )


def text_claim_named(claims: dict[str, Any], claim: str) -> str:
    if claim not in claims:
        raise refused(f"The bearer token has no {claim} claim.", claim, "missing-claim")
    return text_claim(claims, claim, _MAX_SUBJECT)
