"""Coordinators' flow queries over HTTP (REST and GraphQL) on the workload of ``tests/flows/workload.py``:
who may ask, what comes back, what is hidden, and that nothing about a child ever does."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from sqlalchemy import text

from hub.domain.disclosure import adjustment
from tests.api.test_auth_and_problems import assert_problem
from tests.flows import workload
from tests.flows.conftest import Flows
from tests.logscan import personal_identity_numbers_in

K = 5  # the default disclosure threshold
ENDPOINTS = ["counts", "matrix", "lead-times", "rejections", "stalls", "trends"]


def consistent(published: float | None, expected: tuple[int, int], k: int = K) -> bool:
    """A count as the method publishes it (``hub.domain.disclosure``): ``expected`` is its base cells'
    adjusted value and adjusted children (``workload.adjusted``). Hidden when the children are under k;
    otherwise the adjusted value, or hidden as a complement."""
    value, children = expected
    return published is None if children < k else published in (None, value)


async def base(county: Flows) -> list[workload.BaseCell]:
    async with county.runtime.engine.connect() as conn:
        return await workload.base_cells(conn)


async def table(county: Flows, endpoint: str, **params: Any) -> dict[str, Any]:
    r = await county.client.get(f"/v1/flows/{endpoint}", params=params, headers=county.coordinator())
    assert r.status_code == 200, r.text
    return dict(r.json())


def rows(answer: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(row["key"][g] for g in answer["by"]): row["values"] for row in answer["rows"]}


def lines_hold(answer: dict[str, Any], column: str) -> None:
    """In every line of a table (a row or column with its total, the totals with the grand total), no
    hidden value is alone: otherwise the total minus the published parts would give it away."""
    found = rows(answer)
    lines: dict[tuple[int, str], list[Any]] = {}
    for key, values in found.items():
        for position in range(len(key)):
            other = tuple(p for i, p in enumerate(key) if i != position)
            lines.setdefault((position, "|".join(other)), []).append(values[column])
    for line, values in lines.items():
        assert sum(v is None for v in values) != 1, (line, values)


# --- who may ask ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_only_coordinators_may_ask(county: Flows, endpoint: str) -> None:
    for org, role in (
        (workload.BUP, "system"),
        (workload.ELEVHALSA, "professional"),
        (workload.COORDINATOR, "auditor"),
    ):
        r = await county.client.get(f"/v1/flows/{endpoint}", headers=county.auth(org, role))
        assert_problem(r, 403, "forbidden")
    assert_problem(await county.client.get(f"/v1/flows/{endpoint}"), 401, "unauthenticated")


async def test_graphql_answers_with_problem_types(county: Flows) -> None:
    query = "{ flowMatrix { __typename ... on ForbiddenProblem { detail } ... on AuthenticationProblem { detail } } }"
    r = await county.client.post("/graphql", json={"query": query}, headers=county.auth(workload.BUP, "system"))
    assert r.status_code == 403 and r.json()["errors"][0]["extensions"]["type"] == "/problems/forbidden"
    r = await county.client.post("/graphql", json={"query": query})
    assert r.status_code == 401 and r.json()["errors"][0]["extensions"]["type"] == "/problems/unauthenticated"
    # Beside a public field the request runs, and the flow table says why it is not there.
    mixed = {"query": "{ vocabularies { name } " + query[1:]}
    r = await county.client.post("/graphql", json=mixed, headers=county.auth(workload.BUP, "system"))
    assert r.json()["data"]["flowMatrix"]["__typename"] == "ForbiddenProblem"
    bad = '{ flowCounts(by: ["shoe size"]) { __typename ... on InvalidInputProblem { fields } } }'
    r = await county.client.post("/graphql", json={"query": bad}, headers=county.coordinator())
    assert r.json()["data"]["flowCounts"] == {"__typename": "InvalidInputProblem", "fields": ["by"]}


# --- what is counted and what is hidden --------------------------------------------------------------------


async def test_counts_are_sums_of_adjusted_base_cells_and_small_ones_are_hidden(county: Flows) -> None:
    answer = await table(county, "counts", by="kind")
    found = rows(answer)
    cells = await base(county)
    assert consistent(found[("orosanmalan",)]["sent"], workload.adjusted(cells, kind="orosanmalan"))
    assert consistent(found[("remiss",)]["sent"], workload.adjusted(cells, kind="remiss"))
    assert found[("*",)]["sent"] == workload.adjusted(cells)[0], "thirteen referrals, twelve children: shown"
    lines_hold(answer, "sent")
    parts = [found[(kind,)]["sent"] for kind in ("orosanmalan", "remiss")]
    if None not in parts:
        assert sum(parts) == found[("*",)]["sent"], "sums of the same adjusted cells add up"
    assert {n["code"] for n in answer["notes"]} >= {"disclosure.threshold", "disclosure.noise"}
    assert answer["k"] == K and answer["columns"] == ["sent"]


async def test_overlapping_answers_differ_by_adjusted_base_cells_only(county: Flows) -> None:
    """The difference of two overlapping answers is the adjusted count of the cells between them: the
    same number however it is asked, so asking again and again adds nothing."""
    cells = await base(county)
    everything = rows(await table(county, "counts", by="step"))[("*",)]["sent"]
    students = rows(await table(county, "counts", by="step", sender_type="elevhalsa"))[("*",)]["sent"]
    assert (
        everything == workload.adjusted(cells)[0] and students == workload.adjusted(cells, sender_type="elevhalsa")[0]
    )
    assert everything - students == workload.adjusted(cells, sender_type="grundskola")[0]
    again = rows(await table(county, "counts", by="kind", sender_type=["elevhalsa", "grundskola"]))[("*",)]["sent"]
    assert again == everything, "the same referrals in other words: the same base cells, the same number"


async def test_the_flow_matrix_by_type_and_by_municipality(county: Flows) -> None:
    answer = await table(county, "matrix")
    assert answer["by"] == ["sender_type", "recipient_type"]
    found = rows(answer)
    cells = await base(county)
    for (sender, recipient), values in found.items():
        where = {"sender_type": sender, "recipient_type": recipient}
        expected = workload.adjusted(cells, **{n: v for n, v in where.items() if v != "*"})
        assert consistent(values["sent"], expected), (sender, recipient)
    assert found[("elevhalsa", "forsta-linjen")]["sent"] is None, "one child: at most 2 after the adjustment"
    lines_hold(answer, "sent")
    places = rows(await table(county, "matrix", level="municipality"))
    assert ("1884", "county") in places and ("1884", "1884") in places, "Nora → the region; Nora → Nora"


async def test_counts_by_status_add_up_to_the_referrals_sent(county: Flows) -> None:
    answer = await table(county, "counts", by="status")
    found = rows(answer)
    statuses = {"requested", "received", "accepted", "in-progress", "completed", "rejected", "cancelled", "*"}
    assert set(found) == {(s,) for s in statuses}
    cells = await base(county)
    each = {status: workload.adjusted(cells, f"status:{status}") for (status,) in found if status != "*"}
    for status, expected in each.items():
        assert consistent(found[(status,)]["sent"], expected), status
    # Each referral is in one status: the total is the sum of the status cells (its own base cells, not
    # those of the referrals sent: its adjustment is theirs, not the sent count's).
    assert found[("*",)]["sent"] == sum(value for value, _ in each.values())
    lines_hold(answer, "sent")


async def test_two_groupings_have_every_total(county: Flows) -> None:
    answer = await table(county, "counts", by=["municipality", "step"])
    found = rows(answer)
    assert {("1884", "2"), ("1884", "1"), ("1884", "none"), ("1884", "*"), ("*", "2"), ("*", "*")} <= set(found)
    cells = await base(county)
    assert found[("1884", "*")]["sent"] == found[("*", "*")]["sent"] == workload.adjusted(cells)[0]
    for step in ("2", "1", "none"):
        assert consistent(found[("1884", step)]["sent"], workload.adjusted(cells, step=step)), step
    lines_hold(answer, "sent")


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"municipality": "1884"}, {"municipality": "1884"}),
        ({"municipality": "1880"}, None),
        ({"sender_type": "elevhalsa"}, {"sender_type": "elevhalsa"}),
        ({"step": "2"}, {"step": "2"}),
        ({"kind": "orosanmalan"}, {"kind": "orosanmalan"}),  # three children
        ({"dimension": "healthy"}, {"dimension": "healthy"}),  # four
        ({"from": "2020-01-01", "to": "2020-12-31"}, None),
    ],
    ids=["nora", "orebro", "sender-type", "step", "kind", "dimension", "period"],
)
async def test_filters(county: Flows, params: dict[str, str], where: dict[str, str] | None) -> None:
    total = rows(await table(county, "counts", by="kind", **params)).get(("*",), {"sent": 0})["sent"]
    if where is None:
        assert total == 0, "no referral: a true zero, never adjusted"
    else:
        assert consistent(total, workload.adjusted(await base(county), **where))


async def test_invalid_filters_name_the_parameter(county: Flows) -> None:
    for params, pointer in (
        ({"sender_type": "bakery"}, "sender_type/0"),
        ({"municipality": "Nora"}, "municipality/0"),
        ({"by": "colour"}, "by"),
        ({"by": ["dimension", "kind"]}, "by"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
        ({"step": "7"}, "step"),
    ):
        r = await county.client.get("/v1/flows/counts", params=params, headers=county.coordinator())
        body = assert_problem(r, 422, "invalid-input")
        assert pointer in [e["pointer"] for e in body["errors"]], body


async def test_dimensions_each_referral_in_each_of_its_dimensions(county: Flows) -> None:
    found = rows(await table(county, "counts", by="dimension"))
    assert {k[0] for k in found} == {"healthy", "achieving", "included", "safe", "*"}
    cells = await base(county)
    assert found[("*",)]["sent"] == workload.adjusted(cells)[0], "the total counts every referral once"
    for (dimension,), values in found.items():
        if dimension != "*":
            assert consistent(values["sent"], workload.adjusted(cells, dimension=dimension)), dimension


async def test_lead_times_are_shown_only_for_enough_children(county: Flows) -> None:
    # Grouped by week, so every row is read from the weekly rollup (whose adjustments the test computes).
    answer = await table(county, "lead-times", by=["recipient_type", "week"], recipient_type="bup")
    bup = rows(answer)[("bup", "*")]
    cells = await base(county)
    assert bup["sent"] == workload.adjusted(cells, recipient_type="bup")[0], "nine referrals, eight children"
    received = workload.adjusted(cells, "lead:received", recipient_type="bup")[1]  # eight children
    assert bup["received_median_days"] == (0.0 if received >= K else None), "delivered within seconds"
    assert bup["received_p90_days"] == (0.0 if received >= 2 * K else None), "a 90th percentile needs 2k"
    accepted = workload.adjusted(cells, "lead:accepted", recipient_type="bup")[1]  # four children
    assert (bup["accepted_median_days"] is None) == (accepted < K)
    assert "disclosure.statistics" in {n["code"] for n in answer["notes"]}


async def test_rejections_with_reasons_and_redirections(county: Flows) -> None:
    answer = await table(county, "rejections")
    assert answer["by"] == ["recipient_type", "reason"]
    found = rows(answer)
    bup = found[("bup", "*")]
    assert bup["rejected"] is None and bup["rejection_rate"] is None and bup["redirection_rate"] is None
    assert found[("bup", "wrong-recipient")] == {"rejected": None}
    assert ("socialtjanst-myndighet", "outside-mandate") in found
    async with county.runtime.engine.connect() as conn:
        redirected = await conn.scalar(
            text("select sum(value) from flow_rollup where measure = 'redirected' and dimension = '*'")
        )
    assert redirected == 1, "the child BUP turned away was then sent where BUP suggested"


async def test_stalls_are_open_referrals_without_a_transition(county: Flows) -> None:
    async with county.runtime.engine.begin() as conn:  # time passes
        await conn.execute(text("update flow_referral set changed_at = changed_at - interval '40 days'"))
    try:
        answer = await table(county, "stalls", by="recipient_type")
        found = rows(answer)
        # At step 2 and open: c1 in progress, c2 and c3 accepted, c7 received and again requested (BUP);
        # c4 at the first line. Six referrals, five children; a stall's base cell is its cell, status and day.
        expected = await stalled(county, step=2)
        for (recipient,), values in found.items():
            assert consistent(values["stalled"], expected[recipient]), recipient
        assert found[("forsta-linjen",)]["stalled"] is None, "one child"
        shown = found[("*",)]["stalled"] is not None
        median = found[("*",)]["median_days_waiting"]
        assert median is None if not shown else 40 <= median <= 41, "whole days since the day of the last change"
        assert rows(await table(county, "stalls", days=60)) == {("*",): {"stalled": 0, "median_days_waiting": None}}
        by_status = rows(await table(county, "stalls", by="status", step="1"))
        assert set(by_status) == {("received",), ("accepted",), ("*",)}, "at step 1: reports of concern open"
    finally:
        async with county.runtime.engine.begin() as conn:
            await conn.execute(text("update flow_referral set changed_at = changed_at + interval '40 days'"))


async def stalled(county: Flows, *, step: int) -> dict[str, tuple[int, int]]:
    """Open referrals at ``step`` last changed before today, by recipient type and in all ("*"), as the
    hub publishes them: base cells of cell, status and day, each adjusted."""
    async with county.runtime.engine.connect() as conn:
        found = (
            await conn.execute(
                text(
                    """select recipient_type, count(*), count(distinct child_key)::int,
                              (hashint8extended((sum(distinct child_key) % 4294967296)::bigint,
                                                count(distinct child_key)::int) & 2147483647) % 100
                       from flow_referral
                       where trappan_step = :step and changed_at < current_date
                         and status in ('requested', 'received', 'accepted', 'in-progress', 'on-hold')
                       group by cell, recipient_type, status, extract(epoch from changed_at)::bigint / 86400"""
                ),
                {"step": step},
            )
        ).all()
    sums: dict[str, list[int]] = {}
    for recipient, value, children, draw in found:
        noise = adjustment(children, draw)
        for key in (recipient, "*"):
            total = sums.setdefault(key, [0, 0])
            total[0] += value + noise
            total[1] += children + noise
    return {key: (value, children) for key, (value, children) in sums.items()}


async def test_trends_per_period_and_municipality_against_the_county(county: Flows) -> None:
    answer = await table(county, "trends", period="month")
    assert answer["by"] == ["month"] and len(answer["rows"]) == 2
    both = await table(county, "trends", period="quarter", by_municipality="true")
    assert both["by"] == ["municipality", "quarter"]
    found = rows(both)
    assert found[("*", "*")]["sent"] == workload.adjusted(await base(county))[0]
    assert any(k[0] == "1884" for k in found)
    r = await county.client.get("/v1/flows/trends", params={"period": "day"}, headers=county.coordinator())
    assert_problem(r, 422, "invalid-input")


# --- CSV ------------------------------------------------------------------------------------------------


async def test_csv_on_request(county: Flows) -> None:
    by_header = await county.client.get("/v1/flows/matrix", headers={**county.coordinator(), "Accept": "text/csv"})
    by_param = await county.client.get("/v1/flows/matrix", params={"format": "csv"}, headers=county.coordinator())
    for r in (by_header, by_param):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert 'filename="flows-matrix.csv"' in r.headers["content-disposition"]
    body = by_param.text
    notes = [line for line in body.splitlines() if line.startswith("#")]
    assert any("färre än 5 barn" in line and "fewer than 5 children" in line for line in notes)
    table_lines = [line for line in body.splitlines() if not line.startswith("#")]
    parsed = list(csv.DictReader(io.StringIO("\n".join(table_lines))))
    assert list(parsed[0]) == ["sender_type", "recipient_type", "sent"]
    cells = {(r["sender_type"], r["recipient_type"]): r["sent"] for r in parsed}
    as_json = rows(await table(county, "matrix"))
    assert cells == {key: ".." if v["sent"] is None else str(v["sent"]) for key, v in as_json.items()}
    assert ".." in cells.values(), "hidden values read .., as Statistics Sweden writes them"


# --- GraphQL --------------------------------------------------------------------------------------------


async def test_graphql_mirrors_rest(county: Flows) -> None:
    query = """query ($f: FlowFilterInput) {
      flowCounts(by: ["kind"], filter: $f) {
        __typename
        ... on FlowTable { table by k weekFrom weekTo rows { total key { grouping value } values { name value hidden } }
                           notes { code sv en } }
      }
    }"""
    r = await county.client.post(
        "/graphql",
        json={"query": query, "variables": {"f": {"municipalities": ["1884"]}}},
        headers=county.coordinator(),
    )
    answer = r.json()["data"]["flowCounts"]
    assert answer["__typename"] == "FlowTable" and answer["by"] == ["kind"] and answer["k"] == K
    values = {row["key"][0]["value"]: row["values"][0] for row in answer["rows"]}
    rest = rows(await table(county, "counts", by="kind", municipality="1884"))
    assert values == {
        key: {"name": "sent", "value": v["sent"], "hidden": v["sent"] is None} for (key,), v in rest.items()
    }
    assert {"disclosure.threshold", "disclosure.noise"} <= {n["code"] for n in answer["notes"]}


# --- nothing personal, and audited ---------------------------------------------------------------------------


async def test_nothing_about_a_child_in_any_answer(county: Flows) -> None:
    async with county.runtime.engine.connect() as conn:
        pseudonyms = list((await conn.execute(text("select child_pseudonym from referral"))).scalars())
        keys = [str(k) for k in (await conn.execute(text("select child_key from flow_referral"))).scalars()]
        ids = [str(i) for i in (await conn.execute(text("select id from referral"))).scalars()]
    answers = []
    for endpoint, params in (
        ("counts", {"by": ["status", "kind"]}),
        ("counts", {"by": "dimension"}),
        ("matrix", {"level": "municipality"}),
        ("lead-times", {"by": ["municipality", "month"]}),
        ("rejections", {}),
        ("stalls", {"days": 1, "by": ["recipient_type", "status"]}),
        ("trends", {"by_municipality": "true", "period": "week"}),
    ):
        for fmt in ("json", "csv"):
            r = await county.client.get(
                f"/v1/flows/{endpoint}", params={**params, "format": fmt}, headers=county.coordinator()
            )
            assert r.status_code == 200, r.text
            answers.append(r.text)
    everything = "\n".join(answers)
    assert not personal_identity_numbers_in(answers)
    assert not any(secret in everything for secret in [*pseudonyms, *keys, *ids, *county.sent.pins])
    for text_ in answers[::2]:  # JSON: only codes, counts, shares and days
        assert set(json.loads(text_)) == {
            "table",
            "by",
            "columns",
            "week_from",
            "week_to",
            "k",
            "filters",
            "rows",
            "notes",
        }


async def test_reads_are_audited_with_what_was_hidden_and_no_child(county: Flows) -> None:
    answer = rows(await table(county, "matrix"))
    async with county.runtime.engine.connect() as conn:
        entry = (
            await conn.execute(
                text(
                    """select child_pseudonym, actor_organisation, canonical from audit_event
                       where action = 'flows-read' order by id desc limit 1"""
                )
            )
        ).one()
    assert entry.child_pseudonym is None and entry.actor_organisation == workload.COORDINATOR
    details = json.loads(entry.canonical)["details"]
    assert details["k"] == K and details["by"] == ["sender_type", "recipient_type"]
    assert set(details["hidden"]) == {"|".join(key) for key, values in answer.items() if values["sent"] is None}
    assert details["hidden"]["elevhalsa|forsta-linjen"] == "primary"


# --- the hub's settings -----------------------------------------------------------------------------------


async def test_the_threshold_and_the_finest_period_are_the_hubs(county: Flows) -> None:
    from hub.domain.errors import InvalidInput
    from hub.domain.principal import Principal, Role
    from hub.services import flows as svc
    from hub.services.context import Actor

    actor = Actor(Principal("dev:coordinator", workload.COORDINATOR, frozenset({Role.COORDINATOR})))
    settings = county.runtime.settings.model_copy(update={"disclosure_k": 3, "flows_finest_period": "month"})
    ctx = svc.Context(actor, settings, county.runtime.vocabulary, county.runtime.sessions)
    async with county.runtime.sessions() as session:
        answer = await svc.counts(session, ctx=ctx, flt=svc.FlowFilter(), by=["kind"])
        with pytest.raises(InvalidInput):
            await svc.counts(session, ctx=ctx, flt=svc.FlowFilter(), by=["week"])
    found = {row.key[0][1]: row.values["sent"] for row in answer.rows}
    concerns = workload.adjusted(await base(county), kind="orosanmalan")
    assert answer.k == 3 and consistent(found["orosanmalan"], concerns, k=3), "three children: against 3"
    assert (answer.week_to - answer.week_from).days % 7 == 0
