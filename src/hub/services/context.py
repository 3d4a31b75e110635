"""Who acts, in which request, at what time: passed to every use case that audits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from hub.domain.principal import Principal


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Actor:
    principal: Principal
    request_id: str | None = None
    now: datetime = field(default_factory=utcnow)

    @property
    def organisation_id(self) -> str:
        return self.principal.organisation_id

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(sorted(r.value for r in self.principal.roles))
