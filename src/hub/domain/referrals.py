"""The referral lifecycle and what a delivered referral may carry. Plain Python, no I/O.

Statuses follow FHIR ``Task.status``; the transition table (who may move a referral from which status to
which, and when a reason or feedback is required) is vocabulary data (``referral-statuses``), handed in
as ``Lifecycle``. Delivery state (queued, retrying, delivered, dead-lettered) is never a status here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from hub.domain.errors import Conflict, FieldError, InvalidInput, InvalidTransition, NotPermitted
from hub.domain.vocabulary import ReferralStatusesDoc, Vocabulary

Side = Literal["sender", "receiver", "hub"]

# The status a receipt from the receiver's system moves a referral to (``Referral.receipt``), when the
# lifecycle lets the hub move it there.
RECEIVED = "received"
# The status the hub gives a referral it gives up delivering for good (``Referral.delivery_failed``), and the
# event that tells the sender when the outbox gave up but an operator may still queue it again.
FAILED = "failed"
DELIVERY_FAILED = "delivery-failed"
# The statuses whose first reaching is a milestone of the referral's way (the flows time it from sending),
# and the refusal the flows count by its reason and the alternative it suggests.
ACCEPTED = "accepted"
MILESTONES = frozenset({RECEIVED, ACCEPTED, "completed"})
REJECTED = "rejected"

# A referral's data categories and where each one lives in the referral document.
IDENTITY = "identity"
CONCERN_TEXT = "concern-text"
# The concern's structured codes (wellbeing dimensions, local codes, Trappan step) say what the concern is
# about: they are the wellbeing assessment and travel only when that category is permitted.
WELLBEING = "wellbeing-assessment"
CONCERN_CODES = ("dimensions", "local_codes", "trappan_step")


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
        # Where every referral starts: the status the table leaves from but never leads to.
        starts = {frm for frm, _ in self.rules} - {to for _, to in self.rules}
        if len(starts) != 1:
            raise ValueError(f"a lifecycle has one initial status, not {sorted(starts)}")
        self.initial = starts.pop()

    @classmethod
    def of(cls, vocabulary: Vocabulary) -> Lifecycle:
        """The lifecycle of a vocabulary's transition table (``referral-statuses``)."""
        doc = vocabulary.get("referral-statuses")
        assert isinstance(doc, ReferralStatusesDoc)
        rules = {
            (t.from_, t.to): Rule(t.actor, t.reason_required, t.feedback_required)
            for t in vocabulary.referral_transitions()
        }
        return cls(rules, terminal=[c.code for c in doc.concept if getattr(c, "terminal", False)])

    def next_statuses(self, current: str, side: Side) -> list[str]:
        return sorted(to for (frm, to), rule in self.rules.items() if frm == current and rule.actor == side)

    def allows(self, current: str, to: str, side: Side) -> bool:
        """Whether ``side`` may move a referral from ``current`` to ``to`` (no reason needed to ask)."""
        rule = self.rules.get((current, to))
        return current not in self.terminal and rule is not None and rule.actor == side

    def sources(self, to: str, side: Side) -> list[str]:
        """Every status from which ``side`` may move a referral to ``to``."""
        return sorted(frm for (frm, dest), rule in self.rules.items() if dest == to and rule.actor == side)

    def check(self, current: str, change: Change, *, cancellation_requested: bool) -> None:
        if current in self.terminal:
            raise InvalidTransition(
                f"The referral is {current}; a {current} referral does not change again.", allowed_transitions=[]
            )
        allowed = self.next_statuses(current, change.side)
        rule = self.rules.get((current, change.to))
        if rule is None:
            raise InvalidTransition(
                f"A referral cannot go from {current} to {change.to}. From {current}, the {change.side} may "
                f"move it to: {', '.join(allowed) or 'none'}.",
                allowed_transitions=allowed,
            )
        if change.to == "cancelled" and change.side == "sender" and rule.actor == "receiver":
            raise InvalidTransition(
                "The referral has been delivered and work may have started: send a cancellation-requested "
                "event; the receiver confirms the cancellation.",
                allowed_transitions=allowed,
            )
        if rule.actor != change.side:
            raise NotPermitted(f"Only the {rule.actor} moves a referral from {current} to {change.to}.")
        if change.to == "cancelled" and change.side == "receiver" and not cancellation_requested:
            raise InvalidTransition(
                "The receiver confirms a cancellation the sender has requested; none is pending.",
                allowed_transitions=[to for to in allowed if to != "cancelled"],
            )
        missing = []
        if rule.reason_required and not (change.reason_code or change.reason_text):
            missing.append(FieldError("/reason_code", f"A reason is required to move a referral to {change.to}."))
        if rule.feedback_required and not change.feedback:
            missing.append(FieldError("/feedback", f"Moving a referral to {change.to} carries feedback to the sender."))
        if missing:
            raise InvalidInput(missing[0].message, errors=missing)

    @property
    def open(self) -> frozenset[str]:
        """The statuses a referral still moves from (every status the table names, less the final ones)."""
        return frozenset(s for pair in self.rules for s in pair) - self.terminal

    def classes(self) -> list[StatusClass]:
        """What each status is, for storage that counts referrals by status (the flows): one row each."""
        return [
            StatusClass(status, status == self.initial, status in self.open, status in MILESTONES, status == REJECTED)
            for status in sorted({s for pair in self.rules for s in pair})
        ]

    def purge(self, now: datetime, retention: timedelta) -> Purge:
        """The retention rule at ``now``: referrals finished (in a final status) and unchanged for
        ``retention`` lose their personal data."""
        return Purge(statuses=self.terminal, before=now - retention, at=now)

    def may_request_cancellation(self, current: str) -> None:
        """After delivery the sender cannot cancel alone (work may have started): it asks the receiver."""
        if current in self.terminal:
            raise Conflict(f"The referral is {current}; there is nothing to cancel.")
        if current == self.initial:
            raise Conflict("The referral is not delivered yet: cancel it directly (status cancelled).")


def categories_carried(document: Mapping[str, Any]) -> set[str]:
    """The data categories a referral document actually holds."""
    carried = set(document.get("information", {}))
    if document.get("child"):
        carried.add(IDENTITY)
    concern = document.get("concern") or {}
    if concern.get("text"):
        carried.add(CONCERN_TEXT)
    if any(concern.get(key) not in (None, []) for key in CONCERN_CODES):
        carried.add(WELLBEING)
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
    if WELLBEING not in allowed:
        for key in CONCERN_CODES:
            concern.pop(key, None)
    out["concern"] = concern  # the fact of a concern travels, even with nothing of what it is about
    out["information"] = {k: v for k, v in (document.get("information") or {}).items() if k in allowed}
    return out


@dataclass(frozen=True)
class StatusClass:
    """One status as the lifecycle classes it: where a referral starts (``initial``), whether it still
    moves from it (``open``), whether reaching it is a milestone, whether it is the refusal."""

    status: str
    initial: bool
    open: bool
    milestone: bool
    rejection: bool


@dataclass(frozen=True)
class Purge:
    """Which referrals lose their personal data now, one rule for all of them (storage applies it in one
    statement, to every referral ``applies_to`` names): those in a final status (``statuses``) unchanged
    since before ``before``. Purging drops the document and the sealed texts of the referral's events and
    records when (``at``); the metadata stays for follow-up. Mailbox copies the receiver acknowledged before
    ``before`` go too."""

    statuses: frozenset[str]
    before: datetime
    at: datetime

    def applies_to(self, status: str, updated_at: datetime) -> bool:
        return status in self.statuses and updated_at < self.before


# --- the write model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventToRecord:
    """An event the referral's change writes, and the party told of it (``notify``; None: nobody)."""

    type: str  # "status" | "cancellation-requested"
    from_status: str | None  # None: the referral's first event
    to_status: str
    side: Side
    notify: str | None
    reason_code: str | None = None
    reason_text: str | None = None
    feedback: str | None = None
    suggested_organisation: str | None = None
    suggested_service: str | None = None


@dataclass(frozen=True)
class TeamEffect:
    """What a change of a referral means for the team around its child: the receiver joins when it
    accepts the referral (``join``), and the membership that acceptance began ends when the referral
    reaches a final status (``reason``: ``referral-<status>``)."""

    join: bool
    organisation: str
    reason: str


@dataclass(frozen=True)
class Decided:
    """What a change of the referral decided: its new status, the event to record (with the party to tell),
    and what else it implies for storage."""

    status: str
    event: EventToRecord
    cancellation_requested: bool = False
    # Why nothing still queued to deliver the referral itself is sent any more (None: delivery goes on).
    abandon_delivery: str | None = None
    team: TeamEffect | None = None  # the team around the child changes too (``TeamEffect``)


@dataclass(frozen=True)
class Referral:
    """The referral as a write model: every status change, the parties' and the hub's, goes through one of
    these methods, which check the lifecycle and say what to record and whom to tell. Storage persists the
    answer and decides nothing."""

    sender: str
    recipient: str
    status: str
    delivered: bool
    cancellation_requested: bool
    lifecycle: Lifecycle

    @staticmethod
    def send(lifecycle: Lifecycle) -> Decided:
        """A new referral: its first status and first event, by the sender. The referral itself goes to
        the recipient through the outbox, so the event tells nobody."""
        return Decided(lifecycle.initial, EventToRecord("status", None, lifecycle.initial, "sender", None))

    def _stops_delivery(self, to: str) -> str | None:
        """A referral that ends before it was delivered (its sender cancelled it or entered it in error, the
        hub failed it) is not delivered any more: why its queued delivery stops; None when delivery goes on."""
        return f"referral {to} before delivery" if to in self.lifecycle.terminal and not self.delivered else None

    def counterpart(self, side: Side) -> str:
        return self.recipient if side == "sender" else self.sender

    def change(self, change: Change, *, suggested: tuple[str | None, str | None] = (None, None)) -> Decided:
        """A party moves the referral. Before delivery the receiver has not seen it: nobody is told."""
        self.lifecycle.check(self.status, change, cancellation_requested=self.cancellation_requested)
        tell = change.side == "receiver" or self.delivered
        event = EventToRecord(
            "status",
            self.status,
            change.to,
            change.side,
            self.counterpart(change.side) if tell else None,
            change.reason_code,
            change.reason_text,
            change.feedback,
            *suggested,
        )
        return Decided(change.to, event, abandon_delivery=self._stops_delivery(change.to), team=self._team(change.to))

    def _team(self, to: str) -> TeamEffect | None:
        if to == ACCEPTED:
            return TeamEffect(True, self.recipient, "referral-accepted")
        if to in self.lifecycle.terminal:
            return TeamEffect(False, self.recipient, f"referral-{to}")
        return None

    def request_cancellation(self, reason_code: str | None, reason_text: str | None) -> Decided:
        """After delivery the sender asks the receiver to cancel; the status stays."""
        self.lifecycle.may_request_cancellation(self.status)
        event = EventToRecord(
            "cancellation-requested", self.status, self.status, "sender", self.recipient, reason_code, reason_text
        )
        return Decided(self.status, event, cancellation_requested=True)

    def hub_change(self, to: str, *, reason_code: str | None = None, reason_text: str | None = None) -> Decided:
        """A change the hub itself makes (received, failed), checked as any other; the sender is told. A
        final status reached before delivery stops the delivery, as a party's change does."""
        self.lifecycle.check(self.status, Change(to, "hub", reason_code, reason_text), cancellation_requested=False)
        event = EventToRecord("status", self.status, to, "hub", self.sender, reason_code, reason_text)
        return Decided(to, event, abandon_delivery=self._stops_delivery(to))

    def receipt(self) -> Decided | None:
        """The receiver's system acknowledged the referral, by whichever adapter: *received* when the
        lifecycle lets the hub move it there now; None when the acknowledgement changes nothing (a repeated
        receipt, or a referral already moved on)."""
        if not self.lifecycle.allows(self.status, RECEIVED, "hub"):
            return None
        return self.hub_change(RECEIVED)

    def delivery_failed(self, reason_code: str, reason_text: str, *, final: bool) -> Decided | None:
        """The hub gave up delivering the referral; the sender is told, with ``reason_code``, through its
        own adapter. ``final`` (nothing may be sent any more: no legal basis at send time): the referral is
        *failed* while the lifecycle allows it, and its queued delivery stops. Not final (the outbox
        dead-lettered it: the receiver stayed unreachable past the retry horizon, or refused it for good,
        and an operator may queue it again): the status stays as it is, the event is ``delivery-failed``,
        and the referral's delivery state (the outbox's) says dead-lettered. None when there is nothing to
        say any more: the referral has moved on meanwhile (received; its sender cancelled it, which stopped
        the delivery then)."""
        if not self.lifecycle.allows(self.status, FAILED, "hub"):
            return None
        if final:
            failed = self.hub_change(FAILED, reason_code=reason_code, reason_text=reason_text)
            # A final failure is found at send time (e.g. no-legal-basis: "no legal basis at send time").
            return replace(failed, abandon_delivery=f"{reason_code.replace('-', ' ')} at send time")
        event = EventToRecord(DELIVERY_FAILED, self.status, self.status, "hub", self.sender, reason_code, reason_text)
        return Decided(self.status, event)

    @property
    def deliverable(self) -> bool:
        """A referral is handed over only while its receipt could still make it received."""
        return self.lifecycle.allows(self.status, RECEIVED, "hub")


def received_from(lifecycle: Lifecycle) -> list[str]:
    """The statuses a receipt moves to *received* (``Referral.receipt``'s rule for every status at once),
    for storage that applies a receipt in one statement under the referral's row lock."""
    return [s for s in lifecycle.sources(RECEIVED, "hub") if Referral("", "", s, False, False, lifecycle).receipt()]
