"""Who is calling: the organisation and roles a verified token carries."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """The roles a token may carry."""

    SYSTEM = "system"  # a case-management or journal system
    PROFESSIONAL = "professional"
    COORDINATOR = "coordinator"
    AUDITOR = "auditor"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """A verified caller. ``subject`` is the token's ``sub``: a system id or a person's id in their org."""

    subject: str
    organisation_id: str
    roles: frozenset[Role]
    token_id: str | None = None

    def has_any(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))
