"""The team around the child in GraphQL: the same view as ``GET /v1/children/team``, for its members.

The child is named by the ``Child-Personal-Identity-Number`` header, as in REST, not by an argument: a
GraphQL query may travel in a URL (GET), and a personal identity number never does."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from hub.api.context import request_id_var
from hub.api.graphql.context import Context
from hub.api.graphql.guard import guarded
from hub.api.graphql.problems import AuthenticationProblem, InvalidInputProblem, NotFoundProblem
from hub.domain.errors import HubError, InvalidInput, NotFound
from hub.domain.principal import Role
from hub.services import teams as svc
from hub.services.context import Actor

PIN_HEADER = "Child-Personal-Identity-Number"


@strawberry.type(description="An organisation on (or offered a role on) the team")
class TeamOrganisation:
    organisation_id: str
    name: str | None
    type: str | None


@strawberry.type(description="A named person (with its life stage) or a lead professional, for a period")
class TeamAssignment:
    id: str
    role: str
    organisation: TeamOrganisation
    stage: str | None
    professional_ref: str | None
    period_start: datetime
    period_end: datetime | None
    start_reason: str
    end_reason: str | None


@strawberry.type(description="The named person's role offered to the next organisation")
class TeamOffer:
    id: str
    state: str
    stage: str
    from_organisation: TeamOrganisation
    to_organisation: TeamOrganisation
    offered_at: datetime
    answered_at: datetime | None
    reason: str | None


@strawberry.type(description="A participant's period on the team, why it joined and why it left")
class TeamMembership:
    id: str
    organisation: TeamOrganisation
    period_start: datetime
    period_end: datetime | None
    join_reason: str
    leave_reason: str | None


@strawberry.type(description="A current member and its roles: named-person, lead-professional, participant")
class TeamMember:
    organisation: TeamOrganisation
    roles: list[str]


@strawberry.type(description="Who is responsible now; returned: the lead role ended, back with the named person")
class TeamResponsible:
    organisation: TeamOrganisation | None
    role: str | None
    returned: bool
    note_sv: str | None
    note_en: str | None


@strawberry.type(description="A family's choice about a lead professional or a plan; it blocks nothing")
class TeamFamilyChoice:
    about: str
    choice: str
    chosen_by: str
    recorded_by: TeamOrganisation
    recorded_at: datetime


@strawberry.type(description="The team around the child: organisations and roles, never case content")
class Team:
    id: str
    responsible: TeamResponsible
    named_person: TeamAssignment | None
    lead_professional: TeamAssignment | None
    members: list[TeamMember]
    assignments: list[TeamAssignment]
    memberships: list[TeamMembership]
    offers: list[TeamOffer]
    family_choices: list[TeamFamilyChoice]


TeamResult = Annotated[
    Team | NotFoundProblem | InvalidInputProblem | AuthenticationProblem, strawberry.union("TeamResult")
]


def _org(o: svc.OrganisationRef) -> TeamOrganisation:
    return TeamOrganisation(organisation_id=o.organisation_id, name=o.name, type=o.type)


def _assignment(a: svc.AssignmentView | None) -> TeamAssignment | None:
    if a is None:
        return None
    return TeamAssignment(
        id=a.id,
        role=a.role,
        organisation=_org(a.organisation),
        stage=a.stage,
        professional_ref=a.professional_ref,
        period_start=a.period_start,
        period_end=a.period_end,
        start_reason=a.start_reason,
        end_reason=a.end_reason,
    )


def team(view: svc.TeamView) -> Team:
    """The service's view as the GraphQL type (also what FHIR's CareTeam is built from: one view)."""
    r = view.responsible
    return Team(
        id=view.id,
        responsible=TeamResponsible(
            organisation=_org(r.organisation) if r.organisation else None,
            role=r.role,
            returned=r.returned,
            note_sv=r.note_sv,
            note_en=r.note_en,
        ),
        named_person=_assignment(view.named_person),
        lead_professional=_assignment(view.lead_professional),
        members=[TeamMember(organisation=_org(m.organisation), roles=m.roles) for m in view.members],
        assignments=[a for a in map(_assignment, view.assignments) if a is not None],
        memberships=[
            TeamMembership(
                id=m.id,
                organisation=_org(m.organisation),
                period_start=m.period_start,
                period_end=m.period_end,
                join_reason=m.join_reason,
                leave_reason=m.leave_reason,
            )
            for m in view.memberships
        ],
        offers=[
            TeamOffer(
                id=o.id,
                state=o.state,
                stage=o.stage,
                from_organisation=_org(o.from_organisation),
                to_organisation=_org(o.to_organisation),
                offered_at=o.offered_at,
                answered_at=o.answered_at,
                reason=o.reason,
            )
            for o in view.offers
        ],
        family_choices=[
            TeamFamilyChoice(
                about=c.about,
                choice=c.choice,
                chosen_by=c.chosen_by,
                recorded_by=_org(c.recorded_by),
                recorded_at=c.recorded_at,
            )
            for c in view.family_choices
        ],
    )


@strawberry.type
class TeamQuery:
    """The team field; ``hub.api.graphql.schema.Query`` inherits it."""

    @strawberry.field(
        description=f"The team around the child named by the {PIN_HEADER} header, for its members "
        "(as GET /v1/children/team); not found for everyone else",
        metadata=guarded(Role.SYSTEM, Role.PROFESSIONAL, Role.COORDINATOR, cost=5),
    )
    async def team(self, info: strawberry.Info[Context, None]) -> TeamResult:
        asked = await child_asked(info, svc.NOT_ON_TEAM)
        if not isinstance(asked, tuple):
            return asked
        actor, pin = asked
        try:
            view = await svc.read_team(info.context.runtime, actor, pin=pin, pointer=PIN_HEADER)
        except InvalidInput as exc:
            return InvalidInputProblem(detail=exc.detail, fields=[e.pointer for e in exc.errors])
        except NotFound as exc:
            return NotFoundProblem(detail=exc.detail, field=None)
        return team(view)


async def child_asked(
    info: strawberry.Info[Context, None], not_found: str
) -> tuple[Actor, str] | AuthenticationProblem | InvalidInputProblem | NotFoundProblem:
    """The caller as an actor and the child's number from the header, or the problem to answer: no valid
    token, no header, or a coordinator (told what everyone off the team is told: ``not_found``)."""
    try:
        principal = await info.context.principal()
    except HubError as exc:
        return AuthenticationProblem(detail=exc.detail)
    pin = info.context.http_request.headers.get(PIN_HEADER)
    if not pin:
        return InvalidInputProblem(detail=f"Name the child in the {PIN_HEADER} header.", fields=[PIN_HEADER])
    if not principal.has_any(Role.SYSTEM, Role.PROFESSIONAL):
        return NotFoundProblem(detail=not_found, field=None)
    return Actor(principal=principal, request_id=request_id_var.get()), pin
