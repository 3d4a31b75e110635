"""What coordinators see of the teams around children (issue 12, section 4), through HTTP with the hub's
clock set: children with a named person and a lead professional per stage and municipality, and the
handover gaps (offers unanswered after N days, stage transitions passed without a new named person). Every
number is checked against base cells and adjustments computed here from the children's pseudonyms with the
fixed record-key secret; small counts are hidden; only coordinators may ask; every read is audited."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from hub.devtools.demo import load_demo
from hub.domain.disclosure import CELL_KEY_MODULUS, adjustment, combine_record_keys, record_key
from hub.domain.identity import luhn_check_digit, parse_personal_identity_number
from hub.runtime import Runtime
from tests.flows import workload

K = 5
COORDINATOR = workload.COORDINATOR
NORA_SCHOOL, NORA_PRESCHOOL, NORA_UPPER = "nora-grundskola", "nora-forskola", "nora-gymnasieskola"
NORA_SOCIAL, KUMLA_SCHOOL = "nora-socialtjanst-myndighet", "kumla-grundskola"
T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)  # the teams are formed, the offers made
SUMMER = datetime(2027, 7, 20, 9, 0, tzinfo=UTC)  # school ended 1 July for children born 2011
AUTUMN = datetime(2027, 8, 20, 9, 0, tzinfo=UTC)  # preschool ended 1 August for children born 2021

Auth = Callable[..., dict[str, str]]
Cell = tuple[str, str, str]  # stage, municipality, organisation type


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def pin(year: int, n: int) -> str:
    nine = f"{year % 100:02d}{1 + n // 28:02d}{1 + n % 28:02d}{200 + n:03d}"
    return f"{year // 100}{nine[:6]}-{nine[6:]}{luhn_check_digit(nine)}"


SCHOOL_2011 = [pin(2011, n) for n in range(9)]  # Nora's school; eight keep it past 1 July (always shown)
PRESCHOOL_2021 = [pin(2021, n) for n in range(2)]  # Nora's preschool: two children, always hidden
KUMLA_2015 = [pin(2015, n) for n in range(6)]  # Kumla's school, years from a transition


@pytest.fixture
def clock(runtime: Runtime) -> Iterator[Clock]:
    kept = runtime.clock
    runtime.clock = Clock(T0)
    try:
        yield runtime.clock  # type: ignore[misc]
    finally:
        runtime.clock = kept


def child(number: str, **more: Any) -> dict[str, Any]:
    return {"child": {"personal_identity_number": number}, **more}


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    r = await client.post(f"/v1/children/team{path}", json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


@pytest.fixture
async def teams(client: httpx.AsyncClient, auth: Auth, runtime: Runtime, clock: Clock) -> dict[str, str]:
    """At T0: Nora's school names nine children born 2011 (school ends 1 July 2027), offers each to the
    upper-secondary school (one accepts the next day) and makes social services lead professional for
    eight; Nora's preschool names two born 2021; Kumla's school six born 2015. Returns offer ids by child."""
    async with runtime.engine.begin() as conn:
        await workload.fix_secret(conn)
    async with runtime.sessions() as session:
        await load_demo(session)
    for number in SCHOOL_2011:
        await post(client, "/named-person", child(number, stage="school"), auth(NORA_SCHOOL))
    for number in PRESCHOOL_2021:
        await post(client, "/named-person", child(number, stage="preschool"), auth(NORA_PRESCHOOL))
    for number in KUMLA_2015:
        await post(client, "/named-person", child(number, stage="school"), auth(KUMLA_SCHOOL))
    for number in SCHOOL_2011[1:]:
        added = child(number, organisation_id=NORA_SOCIAL, reason="samverkan")
        await post(client, "/participants", added, auth(NORA_SCHOOL))
        await post(client, "/lead-professional", child(number, organisation_id=NORA_SOCIAL), auth(NORA_SCHOOL))
    offers = {}
    for number in SCHOOL_2011:
        offered = child(number, to_organisation=NORA_UPPER, stage="upper-secondary")
        offers[number] = (await post(client, "/offers", offered, auth(NORA_SCHOOL)))["id"]
    clock.at = datetime(2027, 3, 2, 9, 0, tzinfo=UTC)
    await post(client, f"/offers/{offers[SCHOOL_2011[0]]}/accept", {}, auth(NORA_UPPER))
    return offers


async def adjusted(runtime: Runtime, cells: dict[Cell, list[str]]) -> dict[tuple[str, ...], tuple[int, int]]:
    """Per key of every grouping of (stage, municipality) — one, the other, both, and "*" — the published
    (value, children) of its base cells: their children, plus each cell's adjustment from its cell key."""
    sums: dict[tuple[str, ...], list[int]] = {}
    async with runtime.engine.connect() as conn:
        for (stage, municipality, _type), numbers in cells.items():
            keys = [
                record_key(
                    workload.SECRET,
                    runtime.pseudonymizer.pseudonym(parse_personal_identity_number(n, today=T0.date())),
                )
                for n in numbers
            ]
            cell_key = combine_record_keys(keys) % CELL_KEY_MODULUS
            draw = await conn.scalar(
                text("select (hashint8extended(:k, :n) & 2147483647) % 100"), {"k": cell_key, "n": len(keys)}
            )
            noise = adjustment(len(keys), int(draw))
            for key in ((stage,), (municipality,), (stage, municipality), ("*",), ("*", "*")):
                total = sums.setdefault(key, [0, 0])
                total[0] += len(keys) + noise
                total[1] += len(keys) + noise
    return {key: (value, children) for key, (value, children) in sums.items()}


def shown(published: float | None, expected: tuple[int, int]) -> bool:
    """Eight children or more in one base cell: at least five after the adjustment, so shown (alone in its
    table, nothing to hide it as a complement), as its adjusted value."""
    return expected[1] >= K and published == expected[0]


def consistent(published: float | None, expected: tuple[int, int]) -> bool:
    """Hidden when the adjusted children are under k; otherwise the adjusted value, or hidden as a
    complement."""
    value, children = expected
    return published is None if children < K else published in (value, None)


async def ask(client: httpx.AsyncClient, auth: Auth, endpoint: str, **params: Any) -> dict[tuple[str, ...], Any]:
    r = await client.get(f"/v1/flows/{endpoint}", params=params, headers=auth(COORDINATOR, "coordinator"))
    assert r.status_code == 200, r.text
    return {tuple(row["key"].values()): row["values"] for row in r.json()["rows"]}


async def test_children_with_a_named_person_and_a_lead_professional_per_stage(
    client: httpx.AsyncClient, auth: Auth, runtime: Runtime, clock: Clock, teams: dict[str, str]
) -> None:
    clock.at = SUMMER
    found = await ask(client, auth, "teams", by="stage")
    named = await adjusted(
        runtime,
        {
            ("school", "1884", "grundskola"): SCHOOL_2011[1:],
            ("upper-secondary", "1884", "gymnasieskola"): SCHOOL_2011[:1],
            ("preschool", "1884", "forskola"): PRESCHOOL_2021,
            ("school", "1881", "grundskola"): KUMLA_2015,
        },
    )
    for key, values in found.items():
        assert consistent(values["named_person"], named[key]), key
    assert found[("upper-secondary",)]["named_person"] is None, "one child: at most 2 after the adjustment"
    assert found[("preschool",)]["named_person"] is None, "two children: at most 4"
    lead = await adjusted(runtime, {("school", "1884", "grundskola"): SCHOOL_2011[1:]})
    assert shown(found[("school",)]["lead_professional"], lead[("school",)])
    assert found[("upper-secondary",)]["lead_professional"] == 0, "the lead stayed with the child's old team"
    assert found[("preschool",)]["lead_professional"] == 0, "no child there has one: a true zero"

    both = await ask(client, auth, "teams", by=["stage", "municipality"])
    assert consistent(both[("school", "1881")]["named_person"], named[("school", "1881")])
    assert both[("school", "1881")]["lead_professional"] == 0
    kumla = await ask(client, auth, "teams", by="municipality", municipality="1881")
    assert set(kumla) == {("1881",), ("*",)}, "the municipality filter"


async def test_handover_gaps_follow_the_clock(
    client: httpx.AsyncClient, auth: Auth, runtime: Runtime, clock: Clock, teams: dict[str, str]
) -> None:
    eight_offers = await adjusted(runtime, {("upper-secondary", "1884", "gymnasieskola"): SCHOOL_2011[1:]})
    eight_past = await adjusted(runtime, {("school", "1884", "grundskola"): SCHOOL_2011[1:]})

    # 13 days after the offers: none unanswered for 14 days yet; no stage has ended.
    clock.at = datetime(2027, 3, 14, 9, 0, tzinfo=UTC)
    assert await ask(client, auth, "handovers") == {
        ("*",): {
            "offers_unanswered": 0,
            "offers_unanswered_median_days": None,
            "past_transition": 0,
            "past_transition_median_days": None,
        }
    }
    # The 14th day: the eight offers nobody answered are gaps, open for 14 days.
    clock.at = datetime(2027, 3, 15, 9, 0, tzinfo=UTC)
    found = await ask(client, auth, "handovers")
    assert shown(found[("upper-secondary",)]["offers_unanswered"], eight_offers[("upper-secondary",)])
    assert found[("upper-secondary",)]["offers_unanswered_median_days"] == 14
    assert found[("*",)]["past_transition"] == 0

    # 19 days after school ended (1 July) the eight still held by the school are past the transition; with
    # days=30 they are not yet. The child whose handover was accepted is not a gap.
    clock.at = SUMMER
    found = await ask(client, auth, "handovers")
    assert shown(found[("school",)]["past_transition"], eight_past[("school",)])
    assert found[("school",)]["past_transition_median_days"] == 19
    later = await ask(client, auth, "handovers", days=30)
    assert later[("*",)]["past_transition"] == 0
    assert shown(later[("upper-secondary",)]["offers_unanswered"], eight_offers[("upper-secondary",)])

    # A month on, the preschool's two children are past theirs too: two children are never shown.
    clock.at = AUTUMN
    found = await ask(client, auth, "handovers")
    assert found[("preschool",)]["past_transition"] is None
    assert found[("preschool",)]["past_transition_median_days"] is None

    # An answered offer is no longer a gap.
    clock.at = SUMMER
    for number in SCHOOL_2011[1:]:
        await post(client, f"/offers/{teams[number]}/decline", {"reason": "no place"}, auth(NORA_UPPER))
    found = await ask(client, auth, "handovers")
    assert found[("*",)]["offers_unanswered"] == 0


async def test_only_coordinators_may_ask_and_every_read_is_audited(
    client: httpx.AsyncClient, auth: Auth, runtime: Runtime, clock: Clock, teams: dict[str, str]
) -> None:
    for endpoint in ("teams", "handovers"):
        assert (await client.get(f"/v1/flows/{endpoint}")).status_code == 401
        refused = await client.get(f"/v1/flows/{endpoint}", headers=auth(NORA_SCHOOL, "professional"))
        assert refused.status_code == 403 and refused.json()["type"].endswith("/problems/forbidden")
    query = '{ flowTeams(by: ["stage"]) { __typename ... on FlowTable { rows { total } } } }'
    r = await client.post("/graphql", json={"query": query}, headers=auth(NORA_SCHOOL))
    assert r.status_code == 403 and r.json()["errors"][0]["extensions"]["type"] == "/problems/forbidden"
    mixed = {"query": "{ vocabularies { name } " + query[1:]}  # beside a public field: a ForbiddenProblem
    r = await client.post("/graphql", json=mixed, headers=auth(NORA_SCHOOL))
    assert r.json()["data"]["flowTeams"]["__typename"] == "ForbiddenProblem"
    query = '{ flowHandovers(by: ["municipality"], days: 14) { __typename ... on FlowTable { table by } } }'
    r = await client.post("/graphql", json={"query": query}, headers=auth(COORDINATOR, "coordinator"))
    answer = r.json()["data"]["flowHandovers"]
    assert answer == {"__typename": "FlowTable", "table": "handovers", "by": ["municipality"]}

    clock.at = SUMMER
    found = await ask(client, auth, "teams", by="stage")
    async with runtime.engine.connect() as conn:
        entry = (
            await conn.execute(
                text(
                    """select child_pseudonym, actor_organisation, canonical from audit_event
                       where action = 'flows-read' order by id desc limit 1"""
                )
            )
        ).one()
    assert entry.child_pseudonym is None and entry.actor_organisation == COORDINATOR
    canonical = json.loads(entry.canonical)
    assert canonical["entity_id"] == "teams", canonical
    details = canonical["details"]
    assert details["by"] == ["stage"] and details["k"] == K and details["filters"]["as_of"].startswith("2027-07-20")
    hidden = {f"{key[0]}" for key, values in found.items() if values["named_person"] is None}
    assert hidden <= set(details["hidden"]) and "upper-secondary" in details["hidden"]
    assert set(details["hidden"].values()) <= {"primary", "secondary"}


async def test_filters_that_do_not_apply_and_days_out_of_bounds_are_refused(
    client: httpx.AsyncClient, auth: Auth, clock: Clock, teams: dict[str, str]
) -> None:
    coordinator = auth(COORDINATOR, "coordinator")
    r = await client.get("/v1/flows/teams", params={"kind": "remiss"}, headers=coordinator)
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "kind", r.text
    r = await client.get("/v1/flows/handovers", params={"days": 0}, headers=coordinator)
    assert r.status_code == 422
    r = await client.get("/v1/flows/teams", params={"by": "kind"}, headers=coordinator)
    assert r.status_code == 422


async def test_plans_with_a_lead_professional_and_reviews_per_plan(
    client: httpx.AsyncClient, auth: Auth, runtime: Runtime, clock: Clock, teams: dict[str, str]
) -> None:
    from tests.plans.helpers import plan_document, review_answers

    clock.at = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
    found = await ask(client, auth, "plans", by="stage")
    assert found == {
        ("*",): {
            "plans": 0,
            "with_lead_professional": 0,
            "reviews": 0,
            "reviews_per_plan": None,
            "concern_to_plan_median_days": None,
        }
    }, "no plan yet"
    for number in SCHOOL_2011[1:]:  # social services, the lead professional, writes each plan
        await post(client, "/../plan/versions", {**child(number), "plan": plan_document()}, auth(NORA_SOCIAL))
        review = child(number, answers=review_answers())
        await post(client, "/../plan/versions/1/reviews", review, auth(NORA_SCHOOL))
    found = await ask(client, auth, "plans", by="stage")
    eight = await adjusted(runtime, {("school", "1884", "grundskola"): SCHOOL_2011[1:]})
    assert shown(found[("school",)]["plans"], eight[("school",)])
    assert shown(found[("school",)]["with_lead_professional"], eight[("school",)]), "the same eight children"
    assert found[("school",)]["reviews"] is not None
    per_plan = found[("school",)]["reviews"] / found[("school",)]["plans"]
    assert found[("school",)]["reviews_per_plan"] == round(per_plan, 2), "from the published counts"
    assert found[("school",)]["concern_to_plan_median_days"] is None, "no referral about these children"

    # The lead role ends for all: plans remain, none with a lead professional.
    for number in SCHOOL_2011[1:]:
        await post(client, "/lead-professional/end", child(number), auth(NORA_SOCIAL))
    found = await ask(client, auth, "plans", by="stage")
    assert found[("school",)]["with_lead_professional"] == 0
    assert shown(found[("school",)]["plans"], eight[("school",)])


async def test_days_from_a_childs_first_referral_to_its_first_plan(
    client: httpx.AsyncClient, auth: Auth, runtime: Runtime, clock: Clock, teams: dict[str, str]
) -> None:
    from tests.plans.helpers import plan_document
    from tests.referrals.helpers import record_consent, sent

    # Eight children referred fourteen days before their plans; four of them referred again two days before:
    # the first referral counts. The ninth child, referred too, has no plan.
    clock.at = datetime(2027, 2, 24, 9, 0, tzinfo=UTC)
    grantors = [{"role": role, "reference": role} for role in ("guardian", "guardian-2", "child")]
    grantors[1]["role"] = "guardian"  # two guardians and, at sixteen, the child
    identity = {"data_categories": ["identity"], "information": {}, "concern": {"dimensions": ["healthy"]}}
    for number in SCHOOL_2011:
        await record_consent(client, auth, child={"personal_identity_number": number}, grantors=grantors)
        await sent(client, auth, child={"personal_identity_number": number}, **identity)
    clock.at = datetime(2027, 3, 8, 9, 0, tzinfo=UTC)
    for number in SCHOOL_2011[1:5]:
        await sent(client, auth, child={"personal_identity_number": number}, **identity)
    clock.at = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
    for number in SCHOOL_2011[1:]:
        await post(client, "/../plan/versions", {**child(number), "plan": plan_document()}, auth(NORA_SOCIAL))

    found = await ask(client, auth, "plans", by="stage")
    assert found[("school",)]["concern_to_plan_median_days"] == 14
    assert found[("*",)]["concern_to_plan_median_days"] == 14
    clock.at = datetime(2027, 3, 9, 9, 0, tzinfo=UTC)  # the day before the plans: none yet
    assert (await ask(client, auth, "plans", by="stage"))[("*",)]["concern_to_plan_median_days"] is None
