"""The team around the child as use cases: ``roles`` (naming, handing over, the lead professional,
participants, the family's choices, reading), ``changes`` (the one walk every change takes, and offers
by id), ``referrals`` (joining and leaving by a referral's acceptance and end), ``messages`` (an offer's
news as the message its receiver's system gets), ``views`` (what REST, GraphQL and FHIR show)."""

from hub.services.teams.changes import Changed, change_offer, read_offer
from hub.services.teams.messages import offer_message
from hub.services.teams.referrals import follow_referral
from hub.services.teams.roles import (
    NOT_ON_TEAM,
    add_participant,
    appoint_lead,
    end_lead,
    name_person,
    offer_handover,
    read_team,
    read_team_by_id,
    read_team_of_child,
    record_choice,
    remove_participant,
)
from hub.services.teams.views import (
    AssignmentView,
    ChoiceView,
    MembershipView,
    MemberView,
    OfferView,
    OrganisationRef,
    ResponsibleView,
    TeamView,
)

__all__ = [
    "NOT_ON_TEAM",
    "AssignmentView",
    "Changed",
    "ChoiceView",
    "MemberView",
    "MembershipView",
    "OfferView",
    "OrganisationRef",
    "ResponsibleView",
    "TeamView",
    "add_participant",
    "appoint_lead",
    "change_offer",
    "end_lead",
    "follow_referral",
    "name_person",
    "offer_handover",
    "offer_message",
    "read_offer",
    "read_team",
    "read_team_by_id",
    "read_team_of_child",
    "record_choice",
    "remove_participant",
]
