"""A coordinator who attacks small counts adaptively, through ``GET /v1/flows/counts`` on real PostgreSQL.

**The history** (written in bulk as ``hub synth`` writes it, then the rollups rebuilt): in week W each
of eleven municipalities sends six referrals from its student health team to BUP in every cell of kind
× Trappan step (4 × 4 = 16 cells), and Ljusnarsberg, the target, sends 1–4 (:data:`TRUTH`, each value
in four cells). Around them, background referrals in the weeks before and after and from two other
sender types, so that date ranges and sender-type filters select different referrals. Every child is
another child.

**The attacker** wants Ljusnarsberg's 16 counts. It asks the same table (referrals by kind × step) for a
filter without Ljusnarsberg and for the same filter with it; both answers rest on dozens of children
and are published, and their difference is one observation of each of the 16 counts. It repeats this
over random filters and combines its observations with a decision rule:

- *averaging*: random subsets of the other municipalities, the week W; the rule is the rounded mean;
- *differencing*: random subsets of the other municipalities, random date ranges around W and random
  sets of sender types; the rule is the median (robust to a few wild differences).

**"Recovered at ≥ 90 % confidence"** means: the attacker has a rule whose guess is right at least 90 %
of the time. Over the 16 planted values the test lets each rule be right at most 12 times (75 %). The
hub publishes every count as a sum of base cells each adjusted once (``hub.domain.disclosure``), so all
the attacker's differences for one target are the same number, the true count plus one adjustment: the
rule is right when that adjustment is 0, about 40 % of the time. Being right 13 times or more in 16 at
40 % happens about once in 10,000 runs (each run draws a new secret); the test fails far more surely
on a hub whose overlapping answers carry independent noise, where 60 pairs of questions pin each
count. Before the base table, this test recovered all 16 counts with both rules.

Each attack asks 120 questions (the issue's threat: up to 1,000), about ten seconds in all.
"""

from __future__ import annotations

import math
import random
import statistics
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text

from hub.config import Settings
from hub.devtools.demo import MUNICIPALITIES
from hub.devtools.synth import _bulk, ensure_demo
from hub.devtools.synth_plan import Event, Referral
from hub.domain.disclosure import ADJUSTMENTS, DRAWS, NOISE_TABLE
from hub.domain.identity import Pseudonymizer
from hub.runtime import Runtime
from tests.conftest import dev_auth, empty_database

SWEDEN = ZoneInfo("Europe/Stockholm")
COORDINATOR = "region-samordning"
TARGET = "ljusnarsberg"
KINDS = ("remiss", "begaran-om-insats", "samverkansforfragan", "sip-kallelse", "orosanmalan")
STEPS = ("0", "1", "2", "3", "none")
CELLS = [(kind, step) for kind in KINDS for step in STEPS]
# Ljusnarsberg's counts: each of 1-4 in six or seven cells, spread over kinds and steps.
TRUTH: dict[tuple[str, str], int] = {cell: 1 + (i + i // 5) % 4 for i, cell in enumerate(CELLS)}
OTHERS = [slug for slug, _, _ in MUNICIPALITIES if slug != TARGET]
CODE = {slug: code for slug, _, code in MUNICIPALITIES}
RIGHT_AT_MOST = 18  # of 25: 72 %, below the 90 % that would count as recovered
SECRET = bytes(range(32))  # the record-key secret, fixed so that the run is the same every time


@dataclass
class Attacked:
    client: httpx.AsyncClient
    headers: dict[str, str]
    week: date  # Monday of W

    async def table(self, params: list[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
        query = [("by", "kind"), ("by", "step"), *params]
        r = await self.client.get("/v1/flows/counts", params=query, headers=self.headers)
        assert r.status_code == 200, r.text
        return {
            (row["key"]["kind"], row["key"]["step"]): row["values"]["sent"]
            for row in r.json()["rows"]
            if not row["total"]
        }


def _plan(week: date) -> list[Referral]:
    """The history above: one referral per child, each requested and received."""
    made: list[Referral] = []
    rng = random.Random(9)

    def send(slug: str, sender_type: str, kind: str, step: str, monday: date) -> None:
        at = datetime.combine(monday + timedelta(days=2), time(10), SWEDEN) + timedelta(minutes=len(made))
        sender = f"{slug}-{sender_type}"
        referral = Referral(
            uuid.UUID(int=rng.getrandbits(128), version=4), len(made), sender, "region-bup", kind,
            None if step == "none" else int(step), ["healthy"], at,
        )  # fmt: skip
        referral.events += [
            Event(1, None, "requested", at, sender),
            Event(2, "requested", "received", at + timedelta(minutes=3), None),
        ]
        made.append(referral)

    for kind, step in CELLS:
        for slug in OTHERS:
            for monday, sender_type, n in (
                (week, "elevhalsa", 6),
                (week - timedelta(weeks=1), "elevhalsa", 3),
                (week + timedelta(weeks=1), "elevhalsa", 3),
                (week, "grundskola", 2),
                (week, "bvc", 2),
            ):
                for _ in range(n):
                    send(slug, sender_type, kind, step, monday)
        for _ in range(TRUTH[(kind, step)]):
            send(TARGET, "elevhalsa", kind, step, week)
    return made


@pytest.fixture(scope="module")
async def attacked(app: Any, owner_runtime: Runtime, settings: Settings) -> AsyncIterator[Attacked]:
    today = datetime.now(SWEDEN).date()
    week = today - timedelta(days=today.weekday(), weeks=3)
    await empty_database(owner_runtime)
    async with owner_runtime.engine.begin() as conn:  # as migration 0005 keeps it: the secret's HMAC pads
        padded = SECRET + bytes(32)
        pads = {"i": bytes(b ^ 0x36 for b in padded), "o": bytes(b ^ 0x5C for b in padded)}
        await conn.execute(text("insert into flow_state (id, inner_pad, outer_pad) values (1, :i, :o)"), pads)
    await ensure_demo(owner_runtime)  # bulk writes switch the flow triggers off: the tables' owner only
    # Fixed pseudonyms too (the session's key is random), so the record keys and the run are always the same.
    fixed = replace(owner_runtime, pseudonymizer=Pseudonymizer({"attack": bytes(32)}, "attack"))
    await _bulk(fixed, iter(_plan(week)), datetime.now(SWEDEN), seed=9, batch=10_000, progress=None)
    headers = dev_auth(settings)(COORDINATOR, "coordinator")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            yield Attacked(client, headers, week)
    await empty_database(owner_runtime)


def _period(monday: date, sunday: date) -> list[tuple[str, str]]:
    return [("from", monday.isoformat()), ("to", sunday.isoformat())]


async def _observe(
    attacked: Attacked, filters: Callable[[random.Random], list[tuple[str, str]]], *, pairs: int, seed: int
) -> dict[tuple[str, str], list[int]]:
    """``pairs`` pairs of questions, each a random filter without and with the target, never the same
    filter twice (an answer asked again is the same answer); per cell the differences of the two counts."""
    rng = random.Random(seed)
    seen: dict[tuple[str, str], list[int]] = {cell: [] for cell in CELLS}
    asked: set[tuple[tuple[str, str], ...]] = set()
    while len(asked) < pairs:
        common = filters(rng)
        others = sorted(rng.sample(OTHERS, rng.randint(3, len(OTHERS) - 1)))
        if (question := tuple([*common, *(("municipality", s) for s in others)])) in asked:
            continue
        asked.add(question)
        without = await attacked.table([*common, *(("municipality", CODE[s]) for s in others)])
        with_target = await attacked.table([*common, *(("municipality", CODE[s]) for s in [*others, TARGET])])
        for cell in CELLS:
            low, high = without[cell], with_target[cell]
            assert low is not None and high is not None, "both answers rest on dozens of children"
            seen[cell].append(high - low)
    return seen


def _posterior(observations: Sequence[int]) -> dict[int, float]:
    """What an attacker who knows the published method concludes about a count from its observations,
    knowing nothing of the count but that it is at least 1 (the cell is not empty): a flat prior over
    1-20. If the observations differ, they are independent noisy differences (each published count
    adjusted on its own, from NOISE_TABLE); if all are the same, they are one reading: the true count
    plus the one adjustment of its base cell (ADJUSTMENTS, by the cell's children: here the count)."""
    counts = range(1, 21)
    if len(set(observations)) == 1:
        likelihood = {c: ADJUSTMENTS[min(c, 3)].count(observations[0] - c) / DRAWS for c in counts}
    else:
        pairs = Counter(a - b for a in NOISE_TABLE for b in NOISE_TABLE)
        likelihood = {c: math.prod(pairs[d - c] / DRAWS**2 for d in observations) for c in counts}
    total = sum(likelihood.values())
    return {c: p / total for c, p in likelihood.items()}


def _verdict(
    name: str, observed: dict[tuple[str, str], list[int]], rule: Callable[[Sequence[int]], float]
) -> tuple[int, int]:
    """How often ``rule`` names the true count, and how often an attacker knowing the method is right
    with a posterior of 90 % or more."""
    guesses = {cell: round(rule(values)) for cell, values in observed.items()}
    beliefs = {cell: _posterior(values) for cell, values in observed.items()}
    right = sum(guesses[cell] == TRUTH[cell] for cell in CELLS)
    sure = sum(max(b, key=b.__getitem__) == TRUTH[cell] and max(b.values()) >= 0.9 for cell, b in beliefs.items())
    print(f"\n{name}: right {right} of {len(CELLS)}, right with a posterior of 90 % or more {sure}")
    print(f"{name}: guesses {[guesses[c] for c in CELLS]}\n{name}: truth   {[TRUTH[c] for c in CELLS]}")
    print(f"{name}: highest posterior {max(max(b.values()) for b in beliefs.values()):.2f}")
    return right, sure


async def test_averaging_over_subsets_of_municipalities_does_not_recover_small_counts(attacked: Attacked) -> None:
    week = _period(attacked.week, attacked.week + timedelta(days=6))
    observed = await _observe(attacked, lambda rng: week, pairs=100, seed=1)
    right, sure = _verdict("averaging", observed, statistics.fmean)
    assert right <= RIGHT_AT_MOST and sure == 0


async def test_differencing_over_random_filters_does_not_recover_small_counts(attacked: Attacked) -> None:
    monday = attacked.week

    def filters(rng: random.Random) -> list[tuple[str, str]]:
        first = monday - timedelta(weeks=rng.randint(0, 2))
        last = monday + timedelta(weeks=rng.randint(0, 2), days=6)
        senders = rng.choice([[], ["elevhalsa"], ["elevhalsa", "grundskola"], ["elevhalsa", "bvc"]])
        return [*_period(first, last), *(("sender_type", s) for s in senders)]

    observed = await _observe(attacked, filters, pairs=60, seed=2)
    right, sure = _verdict("differencing", observed, statistics.median)
    assert right <= RIGHT_AT_MOST and sure == 0
