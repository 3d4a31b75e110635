"""A SIP meeting as a write model (samordnad individuell plan: HSL 16 kap. 4 §, SoL). Plain Python, no I/O.

One organisation (the inviter) invites several organisations at once to a meeting about one child's
coordinated plan. Each invitee's invitation is decided on its own (the sharing engine, outside this
module: the invitation discloses who the child is and that a coordinated plan is being made), and only
an invitee with a basis is told: ``outcome`` ``invited``; the others are ``withheld`` and learn nothing.

- an invited organisation answers: ``accepted``, ``declined`` (a reason optional) or ``proposed-time``
  (a time required). It may answer again (plans change): the latest answer stands and each answer
  travels to the inviter; repeating the answer that stands changes nothing and sends nothing, so a
  retried request is harmless.
- the inviter cancels: every invited organisation is told; a cancelled meeting takes no answers (409
  with its state).
- who may see the meeting (:meth:`Meeting.visible_to`): the inviter (every invitation, withheld ones
  with why) and each invited organisation (the meeting, the other *invited* organisations and their
  answers, since coordinating with them is the meeting's point; never a withheld invitee, whose
  invitation was not lawful to make, so even its name stays with the inviter). Everyone else: not found.

Every change goes through a method of :class:`Meeting`, which checks the rules and records what travels
(``Meeting.events``: each becomes an outbox entry to its organisation's system).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from hub.domain.errors import FieldError, InvalidInput, NotFound, NotPermitted, StateConflict
from hub.domain.sharing import Decision

Outcome = Literal["invited", "withheld"]
Answer = Literal["accepted", "declined", "proposed-time"]
MeetingState = Literal["open", "cancelled"]
EventType = Literal["invited", "answered", "cancelled"]
MAX_INVITEES: Final = 20  # a SIP meeting is a handful of organisations; more is a mistake or a broadcast
PURPOSE: Final = "sip-kallelse"  # the referral kind the sharing engine decides an invitation as
CATEGORIES: Final = ("child-plan", "identity")  # what an invitation discloses: who, and that a SIP is made
NOT_FOUND: Final = "No such SIP meeting."


def permits_invitation(decision: Decision) -> bool:
    """An invitation travels only when every category it discloses is permitted: without ``child-plan``
    it would be an invitation to nothing, without ``identity`` about no one."""
    return decision.allowed and not decision.denied_categories


def check_invitees(inviter: str, invitees: Sequence[str], *, pointer: str = "/invitees") -> None:
    """The invitee list's own rules, checked before anything is decided: not empty, at most
    ``MAX_INVITEES``, no duplicates, not the inviter itself."""
    if not invitees:
        raise InvalidInput("Invite at least one organisation.", errors=[FieldError(pointer, "empty", "empty")])
    if len(invitees) > MAX_INVITEES:
        raise InvalidInput(
            f"At most {MAX_INVITEES} organisations per meeting.",
            errors=[FieldError(pointer, f"more than {MAX_INVITEES}", "too-many")],
        )
    errors: list[FieldError] = []
    for i, org in enumerate(invitees):
        if org == inviter:
            errors.append(FieldError(f"{pointer}/{i}", "the inviter itself", "self-invite"))
        elif org in invitees[:i]:
            errors.append(FieldError(f"{pointer}/{i}", "listed twice", "duplicate"))
    if errors:
        raise InvalidInput("The invitee list is not valid.", errors=errors)


def check_times(times: Sequence[datetime], now: datetime, *, pointer: str = "/times") -> None:
    """At least one proposed time, each still to come."""
    if not times:
        raise InvalidInput("Propose at least one time.", errors=[FieldError(pointer, "empty", "empty")])
    errors = [FieldError(f"{pointer}/{i}", "in the past", "past") for i, t in enumerate(times) if t <= now]
    if errors:
        raise InvalidInput("A meeting is proposed for a time still to come.", errors=errors)


@dataclass
class Invitation:
    """One invitee's invitation: decided (``decision_id``) and, if ``invited``, its latest answer."""

    id: uuid.UUID
    organisation: str
    outcome: Outcome
    decision_id: uuid.UUID
    answer: Answer | None = None
    answered_at: datetime | None = None
    reason: str | None = None
    proposed_time: datetime | None = None

    def public(self) -> dict[str, Any]:
        """What a conflict shows of it (to its own organisation)."""
        return {
            "invitation_id": str(self.id),
            "organisation_id": self.organisation,
            "answer": self.answer,
            "answered_at": self.answered_at.isoformat() if self.answered_at else None,
        }


@dataclass(frozen=True)
class Event:
    """News for one organisation's system: ``invited`` and ``cancelled`` to an invitee, ``answered`` (with
    the answer as given) to the inviter."""

    id: uuid.UUID
    invitation_id: uuid.UUID
    type: EventType
    to_organisation: str
    at: datetime
    answer: Answer | None = None
    reason: str | None = None
    proposed_time: datetime | None = None


@dataclass
class Meeting:
    """One SIP meeting: its invitations, its state, and the rules every change is checked against."""

    id: uuid.UUID
    inviter: str
    times: tuple[datetime, ...]
    state: MeetingState
    created_at: datetime
    invitations: list[Invitation] = field(default_factory=list)
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    events: list[Event] = field(default_factory=list)  # made by this change, to be delivered
    changed: list[Invitation] = field(default_factory=list)

    @classmethod
    def invite(
        cls, *, inviter: str, times: Sequence[datetime], decided: Sequence[tuple[str, bool, uuid.UUID]], now: datetime
    ) -> Meeting:
        """A new meeting. ``decided``: per invitee (in the caller's order), whether its decision allows the
        invitation and the decision's id. Only invitees with a basis are sent an invitation."""
        check_invitees(inviter, [org for org, _, _ in decided])
        check_times(times, now)
        meeting = cls(uuid.uuid4(), inviter, tuple(times), "open", now)
        for org, allowed, decision_id in decided:
            invitation = Invitation(uuid.uuid4(), org, "invited" if allowed else "withheld", decision_id)
            meeting.invitations.append(invitation)
            meeting.changed.append(invitation)
            if allowed:
                meeting.events.append(Event(uuid.uuid4(), invitation.id, "invited", org, now))
        return meeting

    # --- reading -----------------------------------------------------------------------------------------

    def invited(self) -> list[Invitation]:
        return [i for i in self.invitations if i.outcome == "invited"]

    def visible_to(self, organisation: str) -> list[Invitation]:
        """The invitations ``organisation`` may see: all for the inviter, the invited ones for an invited
        organisation; anyone else (a withheld invitee too) is told the meeting does not exist."""
        if organisation == self.inviter:
            return list(self.invitations)
        invited = self.invited()
        if not any(i.organisation == organisation for i in invited):
            raise NotFound(NOT_FOUND)
        return invited

    # --- changes -----------------------------------------------------------------------------------------

    def _open(self, invitation: Invitation | None = None) -> None:
        if self.state != "open":
            current: dict[str, Any] = {"meeting": {"state": self.state, "cancelled_at": _iso(self.cancelled_at)}}
            if invitation is not None:
                current["invitation"] = invitation.public()
            raise StateConflict("The meeting is cancelled; it takes no more answers or changes.", current=current)

    def answer(
        self,
        by: str,
        answer: Answer,
        now: datetime,
        *,
        reason: str | None = None,
        proposed_time: datetime | None = None,
    ) -> Invitation:
        """``by`` answers its invitation; the latest answer stands, and travels to the inviter. The
        answer that already stands, repeated, changes nothing."""
        self.visible_to(by)
        if by == self.inviter:
            raise NotPermitted("The inviter does not answer its own meeting; it may cancel it.")
        invitation = next(i for i in self.invited() if i.organisation == by)
        self._open(invitation)
        if answer == "proposed-time":
            if proposed_time is None:
                raise InvalidInput(
                    "Proposing another time needs the time.", errors=[FieldError("/proposed_time", "required")]
                )
            if proposed_time <= now:
                raise InvalidInput("Propose a time still to come.", errors=[FieldError("/proposed_time", "past")])
        else:
            proposed_time = None
        reason = reason if answer == "declined" else None
        if (invitation.answer, invitation.reason, invitation.proposed_time) == (answer, reason, proposed_time):
            return invitation
        invitation.answer, invitation.answered_at = answer, now
        invitation.reason, invitation.proposed_time = reason, proposed_time
        self.changed.append(invitation)
        self.events.append(
            Event(uuid.uuid4(), invitation.id, "answered", self.inviter, now, answer, reason, proposed_time)
        )
        return invitation

    def withhold(self, organisation: str, decision_id: uuid.UUID) -> Invitation:
        """The basis of ``organisation``'s invitation was gone when the hub came to deliver it (a consent
        withdrawn meanwhile): it is withheld after all, citing the decision that found so. Its system is
        told nothing; the inviter sees it withheld."""
        invitation = next(i for i in self.invitations if i.organisation == organisation)
        invitation.outcome, invitation.decision_id = "withheld", decision_id
        self.changed.append(invitation)
        return invitation

    def cancel(self, by: str, now: datetime, reason: str | None) -> None:
        """The inviter cancels; every invited organisation's system is told."""
        self.visible_to(by)
        if by != self.inviter:
            raise NotPermitted("Only the inviter cancels the meeting.")
        self._open()
        self.state, self.cancelled_at, self.cancel_reason = "cancelled", now, reason
        for invitation in self.invited():
            self.events.append(
                Event(uuid.uuid4(), invitation.id, "cancelled", invitation.organisation, now, reason=reason)
            )


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None
