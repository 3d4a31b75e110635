"""``hub synth``: synthetic referral history for Region Örebro län, deterministic for a seed.

The plan (``hub.devtools.synth_plan``) is written either through the real use cases, with each
actor's clock set to the moment in the history (consents, sending, delivery, the receiver's events:
the same code as real data, audit included), or in bulk: consent, referral and referral_event rows by
COPY with the flow triggers off, then the rollups rebuilt set-based (``flow_rebuild_bulk``), which
gives the same rollups as the triggers (``tests/synth/test_rebuild_bulk.py`` proves it).

Children are fictional; the hub stores them as it stores real ones (keyed pseudonyms, never the
number). Payloads older than the retention period are purged, as the worker would have purged them;
newer ones are encrypted with the hub's payload key.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.db import referrals as referral_db
from hub.db.engine import driver
from hub.devtools import synth_bulk
from hub.devtools.demo import load_demo
from hub.devtools.synth_plan import Event, Planner, Referral, child_pin
from hub.domain.identity import parse_personal_identity_number
from hub.domain.principal import Principal, Role
from hub.runtime import Runtime
from hub.services import referrals as referral_service
from hub.services.consents import ConsentDraft, record_consent
from hub.services.context import Actor, utcnow

CATEGORIES = ["identity"]  # metadata and who the child is: nothing more is needed for flows
KINDS = ["samverkansforfragan", "remiss", "begaran-om-insats", "orosanmalan", "sip-kallelse"]
PARTY_TYPES = [
    "forskola", "grundskola", "gymnasieskola", "elevhalsa", "bvc", "vardcentral", "forsta-linjen", "bup",
    "buh", "barnklinik", "socialtjanst-myndighet", "socialtjanst-oppenvard", "familjecentral", "polis",
]  # fmt: skip
HELD_BACK = "synthetic history (hub synth): never delivered"


@dataclass(frozen=True)
class SynthResult:
    referrals: int
    events: int
    children: int
    consents: int
    load_seconds: float
    rebuild_seconds: float


def _consent(child: int, *, pin: str, recorder: str, at: datetime) -> ConsentDraft:
    """Both guardians' consent, recorded by the first sender, for a year: every kind and party type."""
    return ConsentDraft(
        personal_identity_number=pin,
        guardian_count=2,
        grantors=[
            {"role": "guardian", "reference": "vh1"},
            {"role": "guardian", "reference": "vh2"},
            {"role": "child", "reference": "barnet"},  # from 15 the child agrees too (policy)
        ],
        data_categories=CATEGORIES,
        from_parties={"organisation_types": PARTY_TYPES},
        to_parties={"organisation_types": PARTY_TYPES},
        purposes=KINDS,
        valid_from=at,
        valid_until=at + timedelta(days=365),
        information_given={"language": "sv", "form": "written"},
        evidence_reference=f"synth:{child}",
    )


def _actor(organisation_id: str, at: datetime) -> Actor:
    return Actor(Principal("hub-synth", organisation_id, frozenset({Role.SYSTEM})), now=at)


async def ensure_demo(runtime: Runtime) -> None:
    """The demo registry (``hub demo``), loaded when it is missing: the plan's organisations are in it."""
    async with runtime.sessions() as session:
        if not await synth_bulk.organisation_exists(session, "region-samordning"):
            await load_demo(session)


async def synth(
    runtime: Runtime,
    *,
    referrals: int,
    seed: int = 1,
    weeks: int = 52,
    through_api: bool = False,
    until: datetime | None = None,
    batch: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> SynthResult:
    """Write ``referrals`` referrals sent over the ``weeks`` weeks before ``until`` (default: now)."""
    await ensure_demo(runtime)
    planner = Planner(seed=seed, weeks=weeks, until=until or utcnow())
    plan = planner.referrals(referrals)
    if through_api:
        return await _through_api(runtime, plan, progress)
    return await _bulk(runtime, plan, planner.until, seed=seed, batch=batch, progress=progress)


# --- through the use cases -----------------------------------------------------------------------------------


async def _through_api(
    runtime: Runtime, plan: Iterator[Referral], progress: Callable[[int], None] | None
) -> SynthResult:
    started = time.perf_counter()
    consented: set[int] = set()
    count = events = 0
    for r in plan:
        pin = child_pin(r.child)
        async with runtime.sessions() as session:
            if r.child not in consented:
                at = r.created_at - timedelta(days=1)
                draft = _consent(r.child, pin=pin, recorder=r.sender, at=at)
                await record_consent(actor=_actor(r.sender, at), draft=draft, runtime=runtime)
                consented.add(r.child)
            sent = await referral_service.send_referral(
                actor=_actor(r.sender, r.created_at),
                draft=referral_service.ReferralDraft(
                    kind=r.kind,
                    target=referral_service.Target(organisation_id=r.recipient),
                    personal_identity_number=pin,
                    data_categories=CATEGORIES,
                    dimensions=r.dimensions,
                    trappan_step=r.trappan_step,
                ),
                idempotency_key=f"synth:{r.id}",
                runtime=runtime,
            )
        referral_id = sent.referral.id
        for e in r.events[1:]:
            await _event(runtime, referral_id, e)
        async with runtime.sessions() as session:
            await synth_bulk.hold_back_deliveries(session, referral_id, HELD_BACK)
            await session.commit()
        count, events = count + 1, events + len(r.events)
        if progress and count % 100 == 0:
            progress(count)
    took = time.perf_counter() - started
    return SynthResult(count, events, len(consented), len(consented), took, 0.0)


async def _event(runtime: Runtime, referral_id: uuid.UUID, e: Event) -> None:
    async with runtime.sessions() as session:
        if e.by is None:  # the hub's own: delivered (received) or given up (failed)
            row = await referral_db.referral(session, referral_id, lock=True)
            assert row is not None
            if e.to_status == "received":
                await referral_db.update_referral(session, referral_id, delivered_at=e.at)
            decided = referral_service.aggregate(row, runtime.vocabulary).hub_change(
                e.to_status, reason_code=e.reason_code
            )
            await referral_service.hub_transition(session, row, decided, now=e.at, cipher=runtime.cipher)
            await session.commit()
            return
        await referral_service.record_event(
            actor=_actor(e.by, e.at),
            referral_id=str(referral_id),
            draft=referral_service.EventDraft(
                type=e.type,
                status=None if e.type != "status" else e.to_status,
                reason_text="Behovet har upphört." if e.type != "status" else None,
                reason_code=e.reason_code,
                suggested_organisation=e.suggested_organisation,
                feedback="Avslutad." if e.to_status == "completed" else None,
            ),
            idempotency_key=f"synth:{referral_id}:{e.seq}",
            runtime=runtime,
        )


# --- in bulk -------------------------------------------------------------------------------------------------


class _Rows:
    """A batch of rows in the COPY column orders of ``hub.devtools.synth_bulk``."""

    def __init__(self, runtime: Runtime, until: datetime, seed: int) -> None:
        self.runtime = runtime
        self.until = until
        self.seed = seed
        self.retention = timedelta(days=runtime.settings.payload_retention_days)
        self.pseudonyms: dict[int, tuple[str, str]] = {}  # child -> (pseudonym, consent id)
        self.referrals: list[tuple[object, ...]] = []
        self.events: list[tuple[object, ...]] = []
        self.consents: list[tuple[object, ...]] = []
        self.totals = [0, 0, 0]  # referrals, events, consents

    def add(self, r: Referral) -> None:
        pin = child_pin(r.child)
        known = self.pseudonyms.get(r.child)
        if known is None:
            parsed = parse_personal_identity_number(pin, today=self.until.date())
            known = (self.runtime.pseudonymizer.pseudonym(parsed), str(uuid.UUID(int=r.id.int ^ 1, version=4)))
            self.pseudonyms[r.child] = known
            self.consents.append(self._consent(known, r))
        pseudonym, consent_id = known
        changed = r.changed_at
        payload = key_id = purged_at = None
        if changed + self.retention <= self.until:
            purged_at = changed + self.retention  # as the worker's purge would have left it
        else:
            document = {
                "child": {"personal_identity_number": pin, "birth_date": f"{pin[:4]}-{pin[4:6]}-{pin[6:8]}"},
                "concern": {"dimensions": r.dimensions, "local_codes": [], "trappan_step": r.trappan_step},
                "information": {},
            }
            payload, key_id = self.runtime.cipher.encrypt(document, bound_to=str(r.id))
        received = next((e.at for e in r.events if e.to_status == "received"), None)
        cancellation = next((e.at for e in r.events if e.type == "cancellation-requested"), None)
        report = r.kind == "orosanmalan"
        self.referrals.append(
            (
                r.id, r.sender, r.recipient, None, r.kind, r.status, cancellation, received, pseudonym, r.dimensions,
                r.trappan_step, CATEGORIES, CATEGORIES, "report-of-concern" if report else "consent",
                None if report else consent_id, uuid.UUID(int=r.id.int ^ 2, version=4), f"synth:{self.seed}:{r.id}",
                hashlib.sha256(r.id.bytes).hexdigest(), payload, key_id, purged_at, r.created_at, changed,
            )
        )  # fmt: skip
        for e in r.events:
            self.events.append(
                (
                    uuid.UUID(int=r.id.int ^ (e.seq + 16), version=4), r.id, e.seq, e.type, e.from_status,
                    e.to_status, e.by, None if e.by is None else "hub-synth", e.reason_code,
                    e.suggested_organisation, None, None, None, None, e.at,
                )
            )  # fmt: skip

    def _consent(self, known: tuple[str, str], r: Referral) -> tuple[object, ...]:
        pseudonym, consent_id = known
        at = r.created_at - timedelta(days=1)
        draft = _consent(r.child, pin="", recorder=r.sender, at=at)
        document = {
            "id": consent_id, "child_pseudonym": pseudonym, "recording_organisation_id": r.sender,
            "grantors": draft.grantors, "guardian_count": 2, "data_categories": CATEGORIES,
            "from_parties": {"organisation_ids": [], "organisation_types": PARTY_TYPES},
            "to_parties": {"organisation_ids": [], "organisation_types": PARTY_TYPES}, "purposes": KINDS,
            "valid_from": at.isoformat(), "valid_until": draft.valid_until.isoformat(),
            "information_given": draft.information_given, "evidence_reference": draft.evidence_reference,
        }  # fmt: skip
        return (
            uuid.UUID(consent_id), pseudonym, r.sender, at, draft.valid_until, None, [r.sender], PARTY_TYPES,
            json.dumps(document), at, "hub-synth",
        )  # fmt: skip

    def take(self) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
        out = (self.referrals, self.events, self.consents)
        self.totals = [self.totals[0] + len(out[0]), self.totals[1] + len(out[1]), self.totals[2] + len(out[2])]
        self.referrals, self.events, self.consents = [], [], []
        return out


async def _bulk(
    runtime: Runtime,
    plan: Iterator[Referral],
    until: datetime,
    *,
    seed: int,
    batch: int,
    progress: Callable[[int], None] | None,
) -> SynthResult:
    rows = _Rows(runtime, until, seed)
    started = time.perf_counter()
    async with runtime.sessions() as session, driver(session, own_transaction=True) as connection:
        for r in plan:
            rows.add(r)
            if len(rows.referrals) >= batch:
                referrals, events, consents = rows.take()
                await synth_bulk.copy_batch(connection, referrals=referrals, events=events, consents=consents)
                if progress:
                    progress(rows.totals[0])
        referrals, events, consents = rows.take()
        if referrals:
            await synth_bulk.copy_batch(connection, referrals=referrals, events=events, consents=consents)
        loaded = time.perf_counter()
        await synth_bulk.rebuild_rollups(connection)
        rebuilt = time.perf_counter()
    total_referrals, total_events, total_consents = rows.totals
    return SynthResult(
        total_referrals, total_events, len(rows.pseudonyms), total_consents, loaded - started, rebuilt - loaded
    )
