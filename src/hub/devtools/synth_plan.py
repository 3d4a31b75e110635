"""What ``hub synth`` writes, decided up front and deterministically for a seed: children, referrals
and each referral's lifecycle events, with plausible distributions for Region Örebro län.

Plain data, no I/O: ``hub.devtools.synth`` writes a plan through the real use cases (small sizes) or in
bulk (``hub.devtools.synth_bulk``). Every event follows the transition table of ``referral-statuses`` (requested →
received | failed | cancelled; received → accepted | rejected | cancelled; accepted → in-progress;
in-progress → on-hold | completed; on-hold → in-progress), and events that would lie after ``until``
are not written: the referral stays where it was then (so recent ones are still open).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from hub.devtools.demo import MUNICIPALITIES
from hub.domain.identity import luhn_check_digit

# Inhabitants (SCB, 2023, thousands), for the share of referrals each municipality sends.
POPULATION: dict[str, float] = {
    "orebro": 158.0, "karlskoga": 30.4, "lindesberg": 23.5, "kumla": 22.0, "hallsberg": 16.0,
    "askersund": 11.4, "nora": 10.6, "degerfors": 9.6, "lekeberg": 8.6, "hallefors": 6.8, "laxa": 5.6,
    "ljusnarsberg": 4.7,
}  # fmt: skip
# A municipality's waits relative to the county's (smaller ones with thinner services wait longer).
WAIT_FACTOR: dict[str, float] = {slug: 0.8 + 0.1 * (i % 5) for i, (slug, _, _) in enumerate(MUNICIPALITIES)}


@dataclass(frozen=True)
class Flow:
    """A common path: who sends what to whom. ``recipient`` is a county unit's id, or ``@type`` for the
    unit of that type in the sender's municipality."""

    weight: float
    sender_type: str
    recipient: str
    kind: str
    steps: tuple[float, float, float, float, float]  # weights of steps 0, 1, 2, 3 and none
    dimensions: tuple[str, ...]
    wait_days: float  # median from received to accepted
    reject: float  # share rejected
    suggest: str | None = None  # where a wrong-recipient rejection points instead


FLOWS: tuple[Flow, ...] = (
    Flow(
        20,
        "grundskola",
        "@elevhalsa",
        "begaran-om-insats",
        (0, 0.50, 0.42, 0.03, 0.05),
        ("achieving", "included", "healthy"),
        5,
        0.04,
    ),
    Flow(
        12,
        "elevhalsa",
        "region-bup",
        "remiss",
        (0, 0.10, 0.55, 0.33, 0.02),
        ("healthy", "safe"),
        60,
        0.24,
        "region-forsta-linjen",
    ),
    Flow(
        8,
        "elevhalsa",
        "region-forsta-linjen",
        "remiss",
        (0, 0.25, 0.70, 0.03, 0.02),
        ("healthy", "included"),
        18,
        0.10,
        "region-bup",
    ),
    Flow(
        10,
        "grundskola",
        "@socialtjanst-myndighet",
        "orosanmalan",
        (0, 0.30, 0.45, 0.23, 0.02),
        ("safe", "nurtured"),
        10,
        0.06,
        "@socialtjanst-oppenvard",
    ),
    Flow(
        6,
        "bvc",
        "@socialtjanst-myndighet",
        "orosanmalan",
        (0, 0.35, 0.45, 0.18, 0.02),
        ("safe", "nurtured", "healthy"),
        10,
        0.05,
    ),
    Flow(
        3,
        "polis",
        "@socialtjanst-myndighet",
        "orosanmalan",
        (0, 0.15, 0.45, 0.38, 0.02),
        ("safe", "responsible"),
        7,
        0.03,
    ),
    Flow(
        6,
        "forskola",
        "@familjecentral",
        "samverkansforfragan",
        (0.30, 0.55, 0.12, 0, 0.03),
        ("nurtured", "active", "included"),
        7,
        0.05,
    ),
    Flow(
        8,
        "elevhalsa",
        "@socialtjanst-oppenvard",
        "samverkansforfragan",
        (0, 0.45, 0.50, 0.02, 0.03),
        ("nurtured", "safe", "included"),
        14,
        0.12,
        "@socialtjanst-myndighet",
    ),
    Flow(
        4,
        "vardcentral",
        "region-bup",
        "remiss",
        (0, 0.05, 0.55, 0.38, 0.02),
        ("healthy",),
        55,
        0.30,
        "region-forsta-linjen",
    ),
    Flow(3, "bvc", "region-barnklinik", "remiss", (0, 0.20, 0.60, 0.18, 0.02), ("healthy", "safe"), 25, 0.08),
    Flow(
        3,
        "elevhalsa",
        "region-buh",
        "remiss",
        (0, 0.05, 0.45, 0.48, 0.02),
        ("healthy", "achieving", "active"),
        110,
        0.15,
        "region-bup",
    ),
    Flow(
        3,
        "socialtjanst-myndighet",
        "region-bup",
        "sip-kallelse",
        (0, 0.05, 0.50, 0.43, 0.02),
        ("safe", "healthy"),
        14,
        0.05,
    ),
    Flow(
        2,
        "gymnasieskola",
        "@elevhalsa",
        "begaran-om-insats",
        (0, 0.50, 0.45, 0.02, 0.03),
        ("achieving", "healthy"),
        6,
        0.04,
    ),
)
REASONS = (("wrong-recipient", 30), ("outside-mandate", 20), ("insufficient-information", 18), ("no-capacity", 12),
           ("duplicate", 6), ("needs-met-elsewhere", 8), ("other", 6))  # fmt: skip


@dataclass(frozen=True)
class Event:
    seq: int
    from_status: str | None
    to_status: str
    at: datetime
    by: str | None  # the organisation that made it; None: the hub (delivery, failure)
    type: str = "status"
    reason_code: str | None = None
    suggested_organisation: str | None = None


@dataclass
class Referral:
    id: uuid.UUID
    child: int
    sender: str
    recipient: str
    kind: str
    trappan_step: int | None
    dimensions: list[str]
    created_at: datetime
    events: list[Event] = field(default_factory=list)

    @property
    def status(self) -> str:
        return next(e.to_status for e in reversed(self.events) if e.type == "status")

    @property
    def changed_at(self) -> datetime:
        return self.events[-1].at


def child_pin(child: int) -> str:
    """A valid, fictional 12-digit personnummer for child number ``child`` (born 2008–2024)."""
    born = date(2008, 1, 1) + timedelta(days=child % 6200)
    serial = (child // 6200) % 1000
    nine = f"{born:%y%m%d}{serial:03d}"
    return f"{born:%Y%m%d}{serial:03d}{luhn_check_digit(nine)}"


class Planner:
    """Draws referrals in order of sending. Deterministic for ``seed``, ``weeks`` and ``until``."""

    def __init__(self, *, seed: int, weeks: int, until: datetime) -> None:
        self.rng = random.Random(seed)
        self.start = until - timedelta(weeks=weeks)
        self.until = until
        self.children = 0
        self.slugs = [slug for slug, _, _ in MUNICIPALITIES]
        self.weights = [POPULATION[s] for s in self.slugs]
        self.flow_weights = [f.weight for f in FLOWS]
        self.pending: list[tuple[datetime, Referral]] = []  # redirections waiting to be sent

    def referrals(self, count: int) -> Iterator[Referral]:
        """``count`` referrals (redirections included), oldest first."""
        span = (self.until - self.start).total_seconds()
        times = sorted(self._working_time(self.rng.random() * span) for _ in range(count))
        made = 0
        for at in times:
            while self.pending and self.pending[0][0] <= at and made < count:
                made += 1
                yield self.pending.pop(0)[1]
            if made >= count:
                return
            made += 1
            yield self._one(at)

    def _working_time(self, offset: float) -> datetime:
        at = self.start + timedelta(seconds=offset)
        if at.weekday() >= 5:  # weekends: to the Friday before (a few are sent then anyway)
            at -= timedelta(days=at.weekday() - 4) if self.rng.random() < 0.9 else timedelta()
        at = at.replace(hour=7 + int(self.rng.random() * 10) if at.hour < 7 or at.hour > 17 else at.hour)
        return min(at, self.until - timedelta(seconds=1))

    def _child(self) -> int:
        # About one child in four already had a referral: siblings of concern, or a second attempt.
        if self.children and self.rng.random() < 0.25:
            return self.rng.randrange(max(0, self.children - 5000), self.children)
        self.children += 1
        return self.children - 1

    def _one(self, at: datetime) -> Referral:
        rng = self.rng
        flow = rng.choices(FLOWS, self.flow_weights)[0]
        slug = rng.choices(self.slugs, self.weights)[0]
        sender = f"{slug}-{flow.sender_type}" if flow.sender_type != "polis" else "polis-bergslagen"
        recipient = f"{slug}-{flow.recipient[1:]}" if flow.recipient.startswith("@") else flow.recipient
        steps = rng.choices((0, 1, 2, 3, None), flow.steps)[0]
        dimensions = (
            []
            if rng.random() < 0.05
            else rng.sample(flow.dimensions, min(len(flow.dimensions), 1 + (rng.random() < 0.35)))
        )
        referral = Referral(self._uuid(), self._child(), sender, recipient, flow.kind, steps, dimensions, at)
        self._lifecycle(referral, flow, slug)
        if rng.random() < 0.03:  # sent twice by mistake (same week, same cell): rejected as a duplicate
            self._duplicate(referral, at + timedelta(hours=rng.uniform(1, 30)))
        return referral

    def _duplicate(self, first: Referral, at: datetime) -> None:
        again = replace(first, id=self._uuid(), created_at=at, dimensions=list(first.dimensions), events=[])
        add = _Adder(again, self.until)
        if add("requested", at, first.sender) and add("received", at + timedelta(minutes=3), None):
            add("rejected", at + self._lognormal_days(1, 0.5), first.recipient, reason="duplicate")
        if again.events:
            self.pending.append((at, again))
            self.pending.sort(key=lambda p: p[0])

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _lognormal_days(self, median: float, sigma: float = 0.7) -> timedelta:
        return timedelta(days=median * math.exp(self.rng.gauss(0, sigma)))

    def _lifecycle(self, r: Referral, flow: Flow, slug: str) -> None:
        rng = self.rng
        add = _Adder(r, self.until)
        add("requested", r.created_at, r.sender)
        roll = rng.random()
        if roll < 0.015:
            add("failed", r.created_at + timedelta(hours=rng.uniform(1, 48)), None, reason="other")
            return
        if roll < 0.035:
            add("cancelled", r.created_at + timedelta(minutes=rng.uniform(2, 120)), r.sender, reason="duplicate")
            return
        received = r.created_at + timedelta(minutes=1 + rng.expovariate(1 / 20))
        if not add("received", received, None):
            return
        decided = received + self._lognormal_days(max(1.0, flow.wait_days * WAIT_FACTOR[slug] / 4), 0.8)
        if rng.random() < flow.reject:
            reason = rng.choices([c for c, _ in REASONS], [w for _, w in REASONS])[0]
            suggested = None
            if flow.suggest and reason in ("wrong-recipient", "outside-mandate") and rng.random() < 0.7:
                suggested = f"{slug}-{flow.suggest[1:]}" if flow.suggest.startswith("@") else flow.suggest
            if add("rejected", decided, r.recipient, reason=reason, suggested=suggested) and suggested:
                if rng.random() < 0.65:  # the sender follows the suggestion a few days later
                    self._redirect(r, suggested, decided + self._lognormal_days(3, 0.6), flow, slug)
            return
        if rng.random() < 0.02:  # the sender asks to cancel; the receiver confirms
            if add("received", decided, r.sender, kind="cancellation-requested"):
                add("cancelled", decided + timedelta(hours=rng.uniform(1, 72)), r.recipient, reason="other")
            return
        # Accepted after the recipient's wait; some step-2 referrals stall there (nobody picks them up).
        accepted = decided + self._lognormal_days(flow.wait_days * WAIT_FACTOR[slug] * 0.75, 0.6)
        if not add("accepted", accepted, r.recipient) or (r.trappan_step == 2 and rng.random() < 0.08):
            return
        if not add("in-progress", accepted + self._lognormal_days(4, 0.7), r.recipient):
            return
        if rng.random() < 0.05:
            paused = r.events[-1].at + self._lognormal_days(14, 0.5)
            if not add("on-hold", paused, r.recipient, reason="other"):
                return
            if not add("in-progress", paused + self._lognormal_days(21, 0.5), r.recipient):
                return
        add("completed", r.events[-1].at + self._lognormal_days(45, 0.7), r.recipient)

    def _redirect(self, rejected: Referral, recipient: str, at: datetime, flow: Flow, slug: str) -> None:
        if at >= self.until:
            return
        redirected = Referral(
            self._uuid(), rejected.child, rejected.sender, recipient, rejected.kind, rejected.trappan_step,
            list(rejected.dimensions), at,
        )  # fmt: skip
        follow = next((f for f in FLOWS if f.recipient == recipient and f.kind == flow.kind), flow)
        self._lifecycle(redirected, replace(follow, reject=0.05, suggest=None), slug)
        self.pending.append((at, redirected))
        self.pending.sort(key=lambda p: p[0])


class _Adder:
    """Appends status events in order, refusing any at or after ``until`` (the referral stops there)."""

    def __init__(self, referral: Referral, until: datetime) -> None:
        self.referral = referral
        self.until = until

    def __call__(
        self,
        status: str,
        at: datetime,
        by: str | None,
        *,
        reason: str | None = None,
        suggested: str | None = None,
        kind: str = "status",
    ) -> bool:
        events = self.referral.events
        if at >= self.until:
            return False
        if events and at <= events[-1].at:
            at = events[-1].at + timedelta(seconds=1)
        previous = events[-1].to_status if events else None
        events.append(Event(len(events) + 1, previous, status, at, by, kind, reason, suggested))
        return True
