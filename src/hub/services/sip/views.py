"""What the API shows of a SIP meeting: to the inviter every invitation (a withheld one with its decision's
reasons and remedies), to an invited organisation the invited organisations and their answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.db import sip as db
from hub.domain.sip import Invitation, Meeting
from hub.services.teams.views import OrganisationRef, org


@dataclass(frozen=True)
class ExplanationView:
    code: str
    sv: str
    en: str
    categories: list[str] = field(default_factory=list)
    legal_basis: str | None = None
    basis_reference: str | None = None


@dataclass(frozen=True)
class Explained:
    """A decision as the inviter sees it (``hub.services.sharing.explanation``'s JSON, kept with it)."""

    decision_id: str
    legal_basis: str | None
    reasons: list[ExplanationView]
    remedies: list[ExplanationView]


@dataclass(frozen=True)
class InvitationView:
    id: str
    organisation: OrganisationRef
    outcome: str | None  # None for an invitee's view: it sees invited organisations only
    decision: Explained | None  # the inviter's view only
    answer: str | None
    answered_at: datetime | None
    reason: str | None
    proposed_time: datetime | None


@dataclass(frozen=True)
class MeetingView:
    id: str
    state: str
    inviter: OrganisationRef
    times: list[datetime]
    duration_minutes: int
    format: str
    language: str
    purpose: str | None
    place: str | None
    created_at: datetime
    cancelled_at: datetime | None
    cancel_reason: str | None
    invitations: list[InvitationView]


def explained(decision_id: str, legal_basis: str | None, kept: dict[str, Any]) -> Explained:
    def items(key: str) -> list[ExplanationView]:
        return [
            ExplanationView(
                r["code"],
                r["sv"],
                r["en"],
                list(r.get("categories") or []),
                r.get("legal_basis"),
                r.get("basis_reference"),
            )
            for r in kept.get(key, [])
        ]

    return Explained(decision_id, legal_basis, items("reasons"), items("remedies"))


def meeting_view(
    stored: db.StoredMeeting,
    details: dict[str, Any],
    *,
    viewer: str,
    names: dict[str, tuple[str, str, str | None]],
    decisions: dict[str, Explained],
) -> MeetingView:
    """The meeting as ``viewer`` may see it (``Meeting.visible_to``). ``details``: the opened sealed
    details; the child's identity in them is never shown here (it travels in the invitation only)."""
    meeting, setting = stored.meeting, stored.setting
    inviter = viewer == meeting.inviter
    return MeetingView(
        id=str(meeting.id),
        state=meeting.state,
        inviter=org(meeting.inviter, names),
        times=list(meeting.times),
        duration_minutes=setting.duration_minutes,
        format=setting.format,
        language=setting.language,
        purpose=details.get("purpose"),
        place=details.get("place"),
        created_at=meeting.created_at,
        cancelled_at=meeting.cancelled_at,
        cancel_reason=meeting.cancel_reason,
        invitations=[
            _invitation(i, names, decisions.get(str(i.decision_id)) if inviter else None, inviter)
            for i in meeting.visible_to(viewer)
        ],
    )


def _invitation(
    i: Invitation, names: dict[str, tuple[str, str, str | None]], decision: Explained | None, inviter: bool
) -> InvitationView:
    return InvitationView(
        id=str(i.id),
        organisation=org(i.organisation, names),
        outcome=i.outcome if inviter else None,
        decision=decision,
        answer=i.answer,
        answered_at=i.answered_at,
        reason=i.reason,
        proposed_time=i.proposed_time,
    )


def organisations_named(meeting: Meeting) -> list[str]:
    return sorted({meeting.inviter, *(i.organisation for i in meeting.invitations)})
