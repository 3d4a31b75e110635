"""The ``Team`` aggregate: every change to a child's team goes through one of its methods (see the
package's docstring)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from hub.domain.errors import FieldError, InvalidInput, NotFound, NotPermitted, StateConflict
from hub.domain.teams.records import (
    HANDED_OVER,
    HANDOVER_ACCEPTED,
    LEAD_PROFESSIONAL,
    NAMED_PERSON,
    OPEN,
    PARTICIPANT,
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


@dataclass
class Team:
    """One child's team: its records, and the rules every change is checked against."""

    id: uuid.UUID
    stages: Mapping[str, frozenset[str]]  # life stage → organisation types that may hold the named person
    assignments: list[Assignment] = field(default_factory=list)
    offers: list[Offer] = field(default_factory=list)
    memberships: list[Membership] = field(default_factory=list)
    choices: list[FamilyChoice] = field(default_factory=list)
    changed: list[Record] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)

    # --- reading -------------------------------------------------------------------------------------------

    def current(self, role: AssignmentRole, now: datetime) -> Assignment | None:
        return next((a for a in self.assignments if a.role == role and a.current_at(now)), None)

    def member_roles(self, now: datetime) -> dict[str, list[str]]:
        """The current members and their roles: the named person, the lead professional, participants."""
        roles: dict[str, list[str]] = {}
        for a in self.assignments:
            if a.current_at(now):
                roles.setdefault(a.organisation, []).append(a.role)
        for m in self.memberships:
            if m.end is None:
                roles.setdefault(m.organisation, []).append(PARTICIPANT)
        return roles

    def responsible(self, now: datetime) -> Responsible:
        lead = self.current(LEAD_PROFESSIONAL, now)
        if lead is not None:
            return Responsible(lead.organisation, LEAD_PROFESSIONAL)
        named = self.current(NAMED_PERSON, now)
        ended = [a for a in self.assignments if a.role == LEAD_PROFESSIONAL and a.end is not None and a.end <= now]
        return Responsible(
            named.organisation if named else None, NAMED_PERSON if named else None, returned=bool(ended and named)
        )

    def is_member(self, organisation: str, now: datetime) -> bool:
        return organisation in self.member_roles(now)

    def offer(self, offer_id: uuid.UUID, organisation: str) -> Offer:
        """An offer either party may see; 404 for anyone else (or no such offer)."""
        found = next((o for o in self.offers if o.id == offer_id), None)
        if found is None or organisation not in (found.from_organisation, found.to_organisation):
            raise NotFound("No such offer.")
        return found

    # --- the named person --------------------------------------------------------------------------------

    def _check_stage(self, stage: str, organisation_type: str, pointer: str) -> None:
        holders = self.stages.get(stage)
        if holders is None:
            raise InvalidInput(
                "Unknown life stage.", errors=[FieldError(pointer, "not a life-stages code", "unknown-code")]
            )
        if organisation_type not in holders:
            raise InvalidInput(
                f"An organisation of type {organisation_type} is not a named person in the stage {stage}.",
                errors=[FieldError(pointer, f"held by: {', '.join(sorted(holders))}", "stage-organisation-type")],
            )

    def _no_overlap(self, role: AssignmentRole, start: datetime, end: datetime | None) -> None:
        for other in self.assignments:
            if other.role == role and other.overlaps(start, end):
                raise StateConflict(
                    f"The period overlaps the {role.replace('-', ' ')}'s assignment of {other.organisation}; "
                    "periods never overlap (a current holder hands over by an offer).",
                    current={"conflicting_assignment": other.public()},
                )

    def _assign(
        self,
        role: AssignmentRole,
        organisation: str,
        *,
        stage: str | None,
        professional_ref: str | None,
        period: tuple[datetime, datetime | None],
        reason: str,
        stage_ends_on: date | None = None,
    ) -> Assignment:
        start, end = period
        if end is not None and end <= start:
            raise InvalidInput("A period ends after it starts.", errors=[FieldError("/period/end", "before the start")])
        self._no_overlap(role, start, end)
        made = Assignment(
            uuid.uuid4(), role, organisation, stage, professional_ref, start, end, reason, stage_ends_on=stage_ends_on
        )
        self.assignments.append(made)
        self.changed.append(made)
        return made

    def name_person(
        self,
        organisation: str,
        organisation_type: str,
        *,
        stage: str,
        professional_ref: str | None,
        period: tuple[datetime, datetime | None],
        stage_ends_on: date | None = None,
    ) -> Assignment:
        """An organisation takes the named person's role for a period no other assignment covers (the
        first one, or after the last one ended). Replacing a current holder is a handover (``offer``).
        ``stage_ends_on``: when the stage is expected to end (:func:`expected_end`), so that a handover
        still not made after it can be counted."""
        self._check_stage(stage, organisation_type, "/stage")
        return self._assign(
            NAMED_PERSON,
            organisation,
            stage=stage,
            professional_ref=professional_ref,
            period=period,
            reason="assigned",
            stage_ends_on=stage_ends_on,
        )

    def offer_handover(
        self,
        by: str,
        to: str,
        to_type: str,
        *,
        stage: str,
        professional_ref: str | None,
        now: datetime,
        stage_ends_on: date | None = None,
    ) -> Offer:
        """The current named person offers the role to ``to`` for ``stage``; it stays responsible until
        ``to`` accepts. One open offer at a time."""
        holder = self.current(NAMED_PERSON, now)
        if holder is None or holder.organisation != by:
            self._member_or_404(by, now)
            raise NotPermitted("Only the current named person hands the role over.")
        if to == by:
            raise InvalidInput(
                "An organisation does not hand over to itself.",
                errors=[FieldError("/to_organisation", "the holder itself")],
            )
        self._check_stage(stage, to_type, "/stage")
        if (pending := next((o for o in self.offers if o.state == OPEN), None)) is not None:
            raise StateConflict("An offer is already open: withdraw it first.", current={"offer": pending.public()})
        made = Offer(uuid.uuid4(), stage, by, to, professional_ref, OPEN, now, stage_ends_on=stage_ends_on)
        self.offers.append(made)
        self.changed.append(made)
        self.notices.append(Notice(made.id, to, OPEN))
        return made

    def _answer(self, offer: Offer, state: OfferState, now: datetime, reason: str | None) -> None:
        if offer.state != OPEN:
            raise StateConflict(
                f"The offer is {offer.state}; it can no longer be answered.", current={"offer": offer.public()}
            )
        offer.state, offer.answered_at, offer.reason = state, now, reason
        self.changed.append(offer)
        other = offer.to_organisation if state == "withdrawn" else offer.from_organisation
        self.notices.append(Notice(offer.id, other, state))

    def accept(self, offer_id: uuid.UUID, by: str, now: datetime, professional_ref: str | None = None) -> Assignment:
        """``by`` accepts the offer made to it: the holder's period ends now and ``by``'s begins."""
        offer = self._addressed_to(offer_id, by)
        if offer.state == OPEN:
            holder = self.current(NAMED_PERSON, now)
            if holder is None or holder.organisation != offer.from_organisation:
                raise StateConflict(
                    "The organisation that made the offer no longer holds the named person's role.",
                    current={"offer": offer.public()},
                )
            holder.end, holder.end_reason = now, HANDED_OVER
            self.changed.append(holder)
        self._answer(offer, "accepted", now, None)
        return self._assign(
            NAMED_PERSON,
            by,
            stage=offer.stage,
            professional_ref=professional_ref or offer.professional_ref,
            period=(now, None),
            reason=HANDOVER_ACCEPTED,
            stage_ends_on=offer.stage_ends_on,
        )

    def decline(self, offer_id: uuid.UUID, by: str, now: datetime, reason: str | None) -> Offer:
        offer = self._addressed_to(offer_id, by)
        self._answer(offer, "declined", now, reason)
        return offer

    def withdraw(self, offer_id: uuid.UUID, by: str, now: datetime) -> Offer:
        offer = self.offer(offer_id, by)
        if offer.from_organisation != by:
            raise NotPermitted("Only the organisation that made the offer withdraws it.")
        self._answer(offer, "withdrawn", now, None)
        return offer

    def _addressed_to(self, offer_id: uuid.UUID, by: str) -> Offer:
        offer = self.offer(offer_id, by)
        if offer.to_organisation != by:
            raise NotPermitted("Only the organisation the offer is made to answers it.")
        return offer

    # --- the lead professional and participants ---------------------------------------------------------

    def _member_or_404(self, organisation: str, now: datetime, pointer: str | None = None) -> None:
        if not self.is_member(organisation, now):
            errors = [FieldError(pointer, "not on the child's team", "not-a-member")] if pointer else []
            raise NotFound("No team around this child that includes the organisation.", errors=errors)

    def appoint_lead(self, by: str, organisation: str, *, professional_ref: str | None, now: datetime) -> Assignment:
        """The named person appoints a lead professional among the team's members; one at a time."""
        self._member_or_404(by, now)
        named = self.current(NAMED_PERSON, now)
        if named is None or named.organisation != by:
            raise NotPermitted("The named person appoints the lead professional.")
        self._member_or_404(organisation, now, "/organisation_id")
        return self._assign(
            LEAD_PROFESSIONAL,
            organisation,
            stage=None,
            professional_ref=professional_ref,
            period=(now, None),
            reason="appointed",
        )

    def end_lead(self, by: str, now: datetime, reason: str | None) -> Assignment:
        """The lead role ends (by the lead or the named person); responsibility returns to the named person."""
        self._member_or_404(by, now)
        lead = self.current(LEAD_PROFESSIONAL, now)
        named = self.current(NAMED_PERSON, now)
        if lead is None:
            raise StateConflict("There is no lead professional to end.", current={"lead_professional": None})
        if by not in (lead.organisation, named.organisation if named else None):
            raise NotPermitted("The lead professional or the named person ends the lead role.")
        lead.end, lead.end_reason = now, reason or "ended"
        self.changed.append(lead)
        return lead

    def _coordinator(self, by: str, now: datetime) -> None:
        """Participants are added and removed by the lead professional, or the named person while there is none."""
        self._member_or_404(by, now)
        lead = self.current(LEAD_PROFESSIONAL, now)
        holder = lead or self.current(NAMED_PERSON, now)
        if holder is None or holder.organisation != by:
            raise NotPermitted(
                "The lead professional (or, while there is none, the named person) changes participants."
            )

    def add_participant(self, by: str, organisation: str, *, reason: str, now: datetime) -> Membership:
        self._coordinator(by, now)
        return self.join(organisation, reason=reason, now=now)

    def remove_participant(self, by: str, organisation: str, *, reason: str, now: datetime) -> Membership:
        self._coordinator(by, now)
        left = self.leave(organisation, reason=reason, now=now)
        if left is None:
            raise NotFound(
                "The organisation is not a participant on the child's team.",
                errors=[FieldError("/organisation_id", "not a participant", "not-a-member")],
            )
        return left

    def join(
        self, organisation: str, *, reason: str, now: datetime, referral_id: uuid.UUID | None = None
    ) -> Membership:
        """An organisation joins as a participant (already one: its membership stands)."""
        active = next((m for m in self.memberships if m.organisation == organisation and m.end is None), None)
        if active is not None:
            return active
        made = Membership(uuid.uuid4(), organisation, now, None, reason, referral_id=referral_id)
        self.memberships.append(made)
        self.changed.append(made)
        return made

    def leave(
        self, organisation: str, *, reason: str, now: datetime, referral_id: uuid.UUID | None = None
    ) -> Membership | None:
        """A participant leaves; with ``referral_id``, only the membership that referral began (an
        organisation added for another reason stays). None: nothing to end."""
        for m in self.memberships:
            if (
                m.organisation == organisation
                and m.end is None
                and (referral_id is None or m.referral_id == referral_id)
            ):
                m.end, m.leave_reason = now, reason
                self.changed.append(m)
                return m
        return None

    def record_choice(
        self,
        by: str,
        *,
        about: Literal["lead-professional", "plan"],
        choice: Literal["declined", "agreed"],
        chosen_by: Literal["guardian", "child"],
        now: datetime,
    ) -> FamilyChoice:
        """A member records the family's choice. It blocks nothing: the named person remains, and a lead
        professional or a plan the family declined is the practitioners' to reconsider, not the hub's."""
        self._member_or_404(by, now)
        made = FamilyChoice(uuid.uuid4(), about, choice, chosen_by, by, now)
        self.choices.append(made)
        self.changed.append(made)
        return made
