"""Who acts, in which request, at what time: passed to every use case that audits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from hub.domain.principal import Principal

# Ages and "today" follow the Swedish calendar: a child turns 15 at midnight in Sweden, not in UTC.
SWEDEN = ZoneInfo("Europe/Stockholm")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Actor:
    principal: Principal
    request_id: str | None = None
    now: datetime = field(default_factory=utcnow)

    @property
    def today(self) -> date:
        return self.now.astimezone(SWEDEN).date()

    @property
    def organisation_id(self) -> str:
        return self.principal.organisation_id

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(sorted(r.value for r in self.principal.roles))
