"""The child's plan as use cases: ``versions`` (sending a version: validated, decided per member, sealed),
``shares`` (each member's share, decided by the sharing engine and recorded on its own), ``read`` (a
version as one member may see it), ``reviews`` (the five evaluation questions, for the author),
``messages`` (the outbox entries as the messages organisations' systems get)."""

from hub.services.plans.messages import review_message, share_message
from hub.services.plans.read import NO_PLAN, PlanView, read_plan, read_plan_by_id, search_plans
from hub.services.plans.reviews import Reviewed, review_version
from hub.services.plans.shares import PLAN_PURPOSE, section_categories
from hub.services.plans.versions import Sent, send_version

__all__ = [
    "NO_PLAN",
    "PLAN_PURPOSE",
    "PlanView",
    "Reviewed",
    "Sent",
    "read_plan",
    "read_plan_by_id",
    "review_message",
    "review_version",
    "search_plans",
    "section_categories",
    "send_version",
    "share_message",
]
