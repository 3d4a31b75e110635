"""Referrals as use cases, one room per capability: ``send`` (decided, stored and queued in one statement),
``transitions`` (the lifecycle: the domain decides, the room persists), ``read`` (lists and audited reads),
``views`` (what the API layers show); ``draft`` is what a sender asks for and its check, ``derived`` what
they read from the vocabulary. Delivery itself is ``hub.services.delivery``."""

from hub.services.referrals.derived import WHEEL, lifecycle
from hub.services.referrals.draft import LocalCodes, ReferralDraft, Target
from hub.services.referrals.read import (
    ReferralListPage,
    ReferralQuery,
    document_for,
    event_texts,
    list_referrals,
    read_referral,
    side_of,
    visible_referral,
)
from hub.services.referrals.send import Sent, send_referral
from hub.services.referrals.transitions import EventDraft, aggregate, hub_transition, persist, record_event
from hub.services.referrals.views import DeliveryView, EventView, ReferralDetail, ReferralView

__all__ = [
    "WHEEL",
    "DeliveryView",
    "EventDraft",
    "EventView",
    "LocalCodes",
    "ReferralDetail",
    "ReferralDraft",
    "ReferralListPage",
    "ReferralQuery",
    "ReferralView",
    "Sent",
    "Target",
    "aggregate",
    "document_for",
    "event_texts",
    "hub_transition",
    "lifecycle",
    "list_referrals",
    "persist",
    "read_referral",
    "record_event",
    "send_referral",
    "side_of",
    "visible_referral",
]
