"""The referral lifecycle and what a delivered referral may carry. Plain Python, no I/O.

Statuses follow FHIR ``Task.status``; the transition table (who may move a referral from which status to
which, and when a reason or feedback is required) is vocabulary data (``referral-statuses``), handed in
as ``Lifecycle``. Delivery state (queued, retrying, delivered, dead-lettered) is never a status here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hub.domain.errors import Conflict, FieldError, InvalidInput, NotPermitted

Side = Literal["sender", "receiver", "hub"]

# A referral's data categories and where each one lives in the referral document.
IDENTITY = "identity"
CONCERN_TEXT = "concern-text"


@dataclass(frozen=True)
class Rule:
    actor: Side
    reason_required: bool = False
    feedback_required: bool = False


@dataclass(frozen=True)
class Change:
    """A status change the caller asked for, with what it carries."""

    to: str
    side: Side
    reason_code: str | None = None
    reason_text: str | None = None
    feedback: str | None = None


class Lifecycle:
    """The transition table. ``check`` says whether ``change`` may happen now, or raises why not."""

    def __init__(self, rules: Mapping[tuple[str, str], Rule], terminal: Iterable[str]) -> None:
        self.rules = dict(rules)
        self.terminal = frozenset(terminal)

    def next_statuses(self, current: str, side: Side) -> list[str]:
        return sorted(to for (frm, to), rule in self.rules.items() if frm == current and rule.actor == side)

    def check(self, current: str, change: Change, *, cancellation_requested: bool) -> None:
        if current in self.terminal:
            raise Conflict(f"The referral is {current}; a {current} referral does not change again.")
        rule = self.rules.get((current, change.to))
        if rule is None:
            allowed = ", ".join(self.next_statuses(current, change.side)) or "none"
            raise Conflict(
                f"A referral cannot go from {current} to {change.to}. From {current}, the {change.side} may "
                f"move it to: {allowed}."
            )
        if change.to == "cancelled" and change.side == "sender" and rule.actor == "receiver":
            raise Conflict(
                "The referral has been delivered and work may have started: send a cancellation-requested "
                "event; the receiver confirms the cancellation."
            )
        if rule.actor != change.side:
            raise NotPermitted(f"Only the {rule.actor} moves a referral from {current} to {change.to}.")
        if change.to == "cancelled" and change.side == "receiver" and not cancellation_requested:
            raise Conflict("The receiver confirms a cancellation the sender has requested; none is pending.")
        missing = []
        if rule.reason_required and not (change.reason_code or change.reason_text):
            missing.append(FieldError("/reason_code", f"A reason is required to move a referral to {change.to}."))
        if rule.feedback_required and not change.feedback:
            missing.append(FieldError("/feedback", f"Moving a referral to {change.to} carries feedback to the sender."))
        if missing:
            raise InvalidInput(missing[0].message, errors=missing)

    def may_request_cancellation(self, current: str) -> None:
        """After delivery the sender cannot cancel alone (work may have started): it asks the receiver."""
        if current in self.terminal:
            raise Conflict(f"The referral is {current}; there is nothing to cancel.")
        if current == "requested":
            raise Conflict("The referral is not delivered yet: cancel it directly (status cancelled).")


def categories_carried(document: Mapping[str, Any]) -> set[str]:
    """The data categories a referral document actually holds."""
    carried = set(document.get("information", {}))
    if document.get("child"):
        carried.add(IDENTITY)
    if (document.get("concern") or {}).get("text"):
        carried.add(CONCERN_TEXT)
    return carried


def strip_to(document: Mapping[str, Any], permitted: Iterable[str]) -> dict[str, Any]:
    """The golden rule applied to the document itself: only the permitted categories leave the hub."""
    allowed = set(permitted)
    out = {k: v for k, v in document.items() if k not in ("child", "concern", "information")}
    if IDENTITY in allowed and document.get("child"):
        out["child"] = dict(document["child"])
    concern = dict(document.get("concern") or {})
    if CONCERN_TEXT not in allowed:
        concern.pop("text", None)
    out["concern"] = concern
    out["information"] = {k: v for k, v in (document.get("information") or {}).items() if k in allowed}
    return out
