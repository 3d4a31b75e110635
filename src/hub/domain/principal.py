"""Who calls, and what the registry lets a caller's organisation do with the roles its token carries."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hub.domain.errors import FieldError, NotPermitted, Unauthenticated


class Role(StrEnum):
    """The roles a token may carry."""

    SYSTEM = "system"  # a case-management or journal system
    PROFESSIONAL = "professional"
    COORDINATOR = "coordinator"
    AUDITOR = "auditor"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """A verified caller. ``subject`` is a system id or a person's id (a federated personal token: the
    professional's HSA-id). ``certificate_thumbprint``: the token is bound to the client certificate with
    this SHA-256 thumbprint (RFC 8705 ``cnf.x5t#S256``) and is honoured only on requests that carry it."""

    subject: str
    organisation_id: str
    roles: frozenset[Role]
    token_id: str | None = None
    certificate_thumbprint: str | None = None

    def has_any(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))


@dataclass(frozen=True)
class OrganisationStanding:
    """What the registry says of a token's organisation: whether it is active, and whether its type is a
    coordinating one (only those may hold the role ``coordinator``)."""

    active: bool
    coordinating: bool


def admit(principal: Principal, standing: OrganisationStanding | None) -> None:
    """Raise unless the registry lets ``principal``'s organisation act with the roles it claims.

    ``standing`` is ``None`` when the organisation is not registered: that token was issued for an
    organisation this hub does not serve (401). A deactivated organisation, or the role ``coordinator``
    claimed for an organisation of a non-coordinating type, is authenticated but refused (403). The
    details name the token's own claims only: the caller is the token's holder.
    """
    if standing is None:
        raise Unauthenticated(
            "The bearer token's organisation (org_id) is not registered in this hub.",
            errors=[FieldError("org_id", "not in the hub's registry", "unknown-organisation")],
        )
    if not standing.active:
        raise NotPermitted(
            "The bearer token's organisation (org_id) is deactivated in this hub's registry.",
            errors=[FieldError("org_id", "deactivated in the hub's registry", "inactive-organisation")],
        )
    if Role.COORDINATOR in principal.roles and not standing.coordinating:
        raise NotPermitted(
            "The role coordinator is honoured only for organisations of a coordinating type; the token's "
            "organisation is not one.",
            errors=[FieldError("roles", "coordinator: not for this organisation's type", "role-not-allowed")],
        )
