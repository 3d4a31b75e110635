"""The team around the child as a write model. Plain Python, no I/O.

Who is involved with one child, and who is responsible now:

- the **named person**: one organisation at a time, per life stage (``life-stages``: the organisation
  types that may hold it in each stage), with a period. Periods of named persons never overlap: an
  assignment that would is refused with the one it clashes with.
- a **handover** is an offer the next organisation must accept: the current holder stays responsible
  until it does; an offer declined, withdrawn or never answered stays on the team for both to see.
- the **lead professional**: one at a time, appointed by the named person among the team's members;
  when the role ends, responsibility returns to the named person (``Team.responsible`` says so).
- **participants**: organisations that joined by accepting a referral about the child, or that the lead
  professional (the named person while there is none) added; each membership has a period and a reason.
- the **family's choices** (a guardian, or the child, declining a lead professional or a plan) are
  recorded and block nothing.

Every change goes through a method of :class:`Team`, which checks the rules, changes the records and says
whom to tell (``Team.notices``: offers and their answers travel to the organisations' own systems).
Storage persists ``Team.changed`` and decides nothing. Who may *see* the team is :meth:`Team.member_roles`:
its current members; everyone else is told it does not exist.
"""

from hub.domain.teams.records import (
    HANDED_OVER,
    HANDOVER_ACCEPTED,
    LEAD_PROFESSIONAL,
    NAMED_PERSON,
    OPEN,
    PARTICIPANT,
    REFERRAL_ACCEPTED,
    Assignment,
    AssignmentRole,
    FamilyChoice,
    Membership,
    Notice,
    Offer,
    OfferState,
    Record,
    Responsible,
)
from hub.domain.teams.stages import expected_end
from hub.domain.teams.team import Team

__all__ = [
    "HANDED_OVER",
    "HANDOVER_ACCEPTED",
    "LEAD_PROFESSIONAL",
    "NAMED_PERSON",
    "OPEN",
    "PARTICIPANT",
    "REFERRAL_ACCEPTED",
    "Assignment",
    "AssignmentRole",
    "FamilyChoice",
    "Membership",
    "Notice",
    "Offer",
    "OfferState",
    "Record",
    "Responsible",
    "Team",
    "expected_end",
]
