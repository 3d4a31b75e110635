"""SIP meetings as use cases: ``invite`` (one request to several organisations, each decided on its own),
``changes`` (answers back to the inviter, cancelling), ``read`` (who may see what), ``messages`` (the
news as the message an organisation's system gets), ``views`` (what the API shows)."""

from hub.services.sip.changes import answer, cancel
from hub.services.sip.invite import Invited, MeetingDraft, invite
from hub.services.sip.messages import sip_message
from hub.services.sip.read import read_meeting
from hub.services.sip.views import Explained, ExplanationView, InvitationView, MeetingView

__all__ = [
    "Explained",
    "ExplanationView",
    "InvitationView",
    "Invited",
    "MeetingDraft",
    "MeetingView",
    "answer",
    "cancel",
    "invite",
    "read_meeting",
    "sip_message",
]
