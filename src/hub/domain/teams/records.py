"""The team's records: assignments (named person, lead professional), offers, memberships, the family's
choices, and what the aggregate tells (notices) and answers (who is responsible). Plain data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Literal

NAMED_PERSON: Final = "named-person"
LEAD_PROFESSIONAL: Final = "lead-professional"
PARTICIPANT: Final = "participant"
AssignmentRole = Literal["named-person", "lead-professional"]
OfferState = Literal["open", "accepted", "declined", "withdrawn"]
OPEN: Final = "open"

# Why a membership or assignment began or ended (stored, shown on the team).
REFERRAL_ACCEPTED = "referral-accepted"
HANDED_OVER = "handed-over"
HANDOVER_ACCEPTED = "handover-accepted"


@dataclass
class Assignment:
    """A named person (with its life stage) or a lead professional, for a period (``end`` None: open)."""

    id: uuid.UUID
    role: AssignmentRole
    organisation: str
    stage: str | None
    professional_ref: str | None
    start: datetime
    end: datetime | None
    start_reason: str
    end_reason: str | None = None
    stage_ends_on: date | None = None  # the named person's stage is expected to end (a handover is due)

    def current_at(self, now: datetime) -> bool:
        return self.start <= now and (self.end is None or now < self.end)

    def overlaps(self, start: datetime, end: datetime | None) -> bool:
        return (end is None or self.start < end) and (self.end is None or start < self.end)

    def public(self) -> dict[str, Any]:
        """What a conflict shows of it: whose role it is, in which stage, for which period."""
        return {
            "assignment_id": str(self.id),
            "role": self.role,
            "organisation_id": self.organisation,
            "stage": self.stage,
            "period": {"start": self.start.isoformat(), "end": self.end.isoformat() if self.end else None},
        }


@dataclass
class Offer:
    """The named person's role offered to the next organisation; open until answered or withdrawn."""

    id: uuid.UUID
    stage: str
    from_organisation: str
    to_organisation: str
    professional_ref: str | None
    state: OfferState
    offered_at: datetime
    answered_at: datetime | None = None
    reason: str | None = None
    stage_ends_on: date | None = None  # the offered stage's expected end, for the assignment it makes

    def public(self) -> dict[str, Any]:
        return {
            "offer_id": str(self.id),
            "state": self.state,
            "stage": self.stage,
            "from_organisation": self.from_organisation,
            "to_organisation": self.to_organisation,
            "offered_at": self.offered_at.isoformat(),
            "answered_at": self.answered_at.isoformat() if self.answered_at else None,
        }


@dataclass
class Membership:
    """A participant's time on the team: why it joined, and (once ended) why it left."""

    id: uuid.UUID
    organisation: str
    start: datetime
    end: datetime | None
    join_reason: str
    leave_reason: str | None = None
    referral_id: uuid.UUID | None = None


@dataclass
class FamilyChoice:
    """A guardian's (or the child's) choice about a lead professional or a plan. Recorded; blocks nothing."""

    id: uuid.UUID
    about: Literal["lead-professional", "plan"]
    choice: Literal["declined", "agreed"]
    by: Literal["guardian", "child"]
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class Notice:
    """An offer's news for an organisation's system: offered (to the receiver), answered (to the offerer),
    withdrawn (to the receiver). Delivered through the organisation's adapter like a referral."""

    offer_id: uuid.UUID
    to_organisation: str
    state: OfferState


Record = Assignment | Offer | Membership | FamilyChoice


@dataclass(frozen=True)
class Responsible:
    """Who holds responsibility now, and why: the lead professional while there is one, else the named
    person; ``returned`` says the lead role ended and responsibility came back to the named person."""

    organisation: str | None
    role: AssignmentRole | None
    returned: bool = False
