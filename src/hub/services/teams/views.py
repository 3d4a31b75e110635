"""What the API layers show of a team (REST, GraphQL and FHIR share these): organisations and roles,
periods and reasons; never a case's content."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hub.domain.teams import Assignment, FamilyChoice, Membership, Offer, Team


@dataclass(frozen=True)
class OrganisationRef:
    organisation_id: str
    name: str | None
    type: str | None
    hsa_id: str | None = None  # the unit's HSA-id when the registry has it (FHIR names it by that)


@dataclass(frozen=True)
class AssignmentView:
    id: str
    role: str
    organisation: OrganisationRef
    stage: str | None
    professional_ref: str | None
    period_start: datetime
    period_end: datetime | None
    start_reason: str
    end_reason: str | None


@dataclass(frozen=True)
class OfferView:
    id: str
    state: str
    stage: str
    from_organisation: OrganisationRef
    to_organisation: OrganisationRef
    professional_ref: str | None
    offered_at: datetime
    answered_at: datetime | None
    reason: str | None


@dataclass(frozen=True)
class MembershipView:
    id: str
    organisation: OrganisationRef
    period_start: datetime
    period_end: datetime | None
    join_reason: str
    leave_reason: str | None


@dataclass(frozen=True)
class MemberView:
    organisation: OrganisationRef
    roles: list[str]


@dataclass(frozen=True)
class ChoiceView:
    id: str
    about: str
    choice: str
    chosen_by: str
    recorded_by: OrganisationRef
    recorded_at: datetime


@dataclass(frozen=True)
class ResponsibleView:
    """Who is responsible now; ``returned``: the lead professional's role ended and responsibility is back
    with the named person (``note`` says so in Swedish and English)."""

    organisation: OrganisationRef | None
    role: str | None
    returned: bool
    note_sv: str | None
    note_en: str | None


@dataclass(frozen=True)
class TeamView:
    id: str
    responsible: ResponsibleView
    named_person: AssignmentView | None
    lead_professional: AssignmentView | None
    members: list[MemberView]
    assignments: list[AssignmentView]
    memberships: list[MembershipView]
    offers: list[OfferView]
    family_choices: list[ChoiceView]
    updated_at: datetime


Names = dict[str, tuple[str, str, str | None]]  # organisation id → (name, type, HSA-id)


def org(organisation_id: str, names: Names) -> OrganisationRef:
    name, kind, hsa_id = names.get(organisation_id, (None, None, None))
    return OrganisationRef(organisation_id, name, kind, hsa_id)


def assignment_view(a: Assignment, names: Names) -> AssignmentView:
    return AssignmentView(
        str(a.id),
        a.role,
        org(a.organisation, names),
        a.stage,
        a.professional_ref,
        a.start,
        a.end,
        a.start_reason,
        a.end_reason,
    )


def offer_view(o: Offer, names: Names) -> OfferView:
    return OfferView(
        str(o.id),
        o.state,
        o.stage,
        org(o.from_organisation, names),
        org(o.to_organisation, names),
        o.professional_ref,
        o.offered_at,
        o.answered_at,
        o.reason,
    )


def _membership(m: Membership, names: Names) -> MembershipView:
    return MembershipView(str(m.id), org(m.organisation, names), m.start, m.end, m.join_reason, m.leave_reason)


def _choice(c: FamilyChoice, names: Names) -> ChoiceView:
    return ChoiceView(str(c.id), c.about, c.choice, c.by, org(c.recorded_by, names), c.recorded_at)


RETURNED = (
    "Samordnarrollen har upphört; ansvaret ligger åter hos den namngivna personen.",
    "The lead professional's role has ended; responsibility is back with the named person.",
)


def team_view(team: Team, names: Names, now: datetime) -> TeamView:
    responsible = team.responsible(now)
    named, lead = team.current("named-person", now), team.current("lead-professional", now)
    return TeamView(
        id=str(team.id),
        responsible=ResponsibleView(
            org(responsible.organisation, names) if responsible.organisation else None,
            responsible.role,
            responsible.returned,
            RETURNED[0] if responsible.returned else None,
            RETURNED[1] if responsible.returned else None,
        ),
        named_person=assignment_view(named, names) if named else None,
        lead_professional=assignment_view(lead, names) if lead else None,
        members=[MemberView(org(o, names), roles) for o, roles in sorted(team.member_roles(now).items())],
        assignments=[assignment_view(a, names) for a in team.assignments],
        memberships=[_membership(m, names) for m in team.memberships],
        offers=[offer_view(o, names) for o in team.offers],
        family_choices=[_choice(c, names) for c in team.choices],
        updated_at=now,
    )


def organisations_named(team: Team) -> set[str]:
    """Every organisation a view of the team names."""
    return (
        {a.organisation for a in team.assignments}
        | {o for offer in team.offers for o in (offer.from_organisation, offer.to_organisation)}
        | {m.organisation for m in team.memberships}
        | {c.recorded_by for c in team.choices}
    )
