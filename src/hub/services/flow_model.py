"""The shapes of a coordinator's flow query: what it may count, the filter, the rows and answer it gets,
and the context every query runs in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.config import Settings
from hub.db import flows as db
from hub.domain.disclosure import TOTAL, DisclosureRules
from hub.domain.errors import Explanation
from hub.domain.vocabulary import Vocabulary
from hub.runtime import Runtime
from hub.services.context import Actor

TRANSITIONS = ("received", "accepted", "completed")
# What a count can count (the ``measure`` of counts and trends) → its rollup measure.
MEASURES: dict[str, str] = {
    "sent": "sent",
    "received": "lead:received",
    "accepted": "lead:accepted",
    "completed": "lead:completed",
    "rejected": "status:rejected",
    "suggested": "suggested",
    "redirected": "redirected",
}
PERIODS = db.PERIODS
GROUPINGS = db.GROUPINGS - {"reason"}
STALL_GROUPINGS = db.STALL_GROUPINGS
MAX_WEEKS = 530  # ten years and a little: a query stays a bounded read of the rollups


@dataclass(frozen=True)
class FlowFilter:
    """What a coordinator narrows a query to. Dates are snapped outwards to whole weeks (or to whole
    months, quarters or years when the hub's finest period is coarser). Steps are "0"–"3" or "none";
    municipalities SCB codes or "county" (referrals between county-wide units)."""

    date_from: date | None = None
    date_to: date | None = None
    municipalities: tuple[str, ...] = ()
    sender_types: tuple[str, ...] = ()
    recipient_types: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    dimension: str | None = None


@dataclass(frozen=True)
class FlowRow:
    """One published key: its group values (``*`` where it is a total over that grouping) and its values
    by name; ``None`` is hidden (too few children, or it would let a hidden value be worked out)."""

    key: tuple[tuple[str, str], ...]
    values: dict[str, float | None]

    @property
    def total(self) -> bool:
        return any(value == TOTAL for _, value in self.key)


@dataclass(frozen=True)
class FlowAnswer:
    """A protected table and what it was computed over: the weeks (Mondays of the first and last), the
    groupings, the threshold, and the notes to show beside it."""

    table: str
    by: tuple[str, ...]
    columns: tuple[str, ...]
    week_from: date
    week_to: date
    k: int
    rows: tuple[FlowRow, ...]
    notes: tuple[Explanation, ...]
    filters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """What every query needs besides the session it reads with: who asks, the hub's settings and
    vocabulary, and where its audit entry is written (the primary: the reads may be on a replica)."""

    actor: Actor
    settings: Settings
    vocabulary: Vocabulary
    audit_sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def of(cls, actor: Actor, runtime: Runtime) -> Context:
        return cls(actor, runtime.settings, runtime.vocabulary, runtime.sessions)

    @property
    def rules(self) -> DisclosureRules:
        return DisclosureRules(k=self.settings.disclosure_k, finest_period=self.settings.flows_finest_period)
