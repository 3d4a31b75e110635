"""A mixed referral workload through the API, and the flow rollups computed from scratch over the raw
referral tables (independently of the triggers) to compare them with."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.devtools.demo import load_demo
from hub.domain.disclosure import CELL_KEY_MODULUS, adjustment, combine_record_keys, record_key
from hub.domain.identity import luhn_check_digit
from hub.runtime import Runtime
from tests.referrals.helpers import ack, consent_body, event, mailbox, set_endpoint, worker_for

SWEDEN = ZoneInfo("Europe/Stockholm")
ELEVHALSA, BUP, FORSTA_LINJEN = "nora-elevhalsa", "region-bup", "region-forsta-linjen"
GRUNDSKOLA, SOCIALTJANST = "nora-grundskola", "nora-socialtjanst-myndighet"
COORDINATOR = "region-samordning"
CHILDREN = 8

Auth = Callable[..., dict[str, str]]


def pin(n: int) -> str:
    """A valid personnummer for test child ``n`` (born in 2015)."""
    nine = f"15{1 + n // 28:02d}{1 + n % 28:02d}{100 + n:03d}"
    return f"20{nine[:6]}-{nine[6:]}{luhn_check_digit(nine)}"


@dataclass
class Workload:
    """What was sent: referral ids per child (BUP remisses), the reports of concern, the redirect."""

    remiss: dict[int, str] = field(default_factory=dict)
    concern: dict[int, str] = field(default_factory=dict)
    redirect: str = ""
    pending: str = ""
    pins: list[str] = field(default_factory=list)


async def _send(client: httpx.AsyncClient, auth: Auth, org: str, body: dict[str, Any], key: str) -> str:
    r = await client.post("/v1/referrals", json=body, headers={**auth(org, "system"), "Idempotency-Key": key})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _remiss(n: int, *, step: int | None, dimensions: list[str], target: str = BUP) -> dict[str, Any]:
    return {
        "kind": "remiss",
        "target": {"organisation_id": target},
        "child": {"personal_identity_number": pin(n)},
        "concern": {"dimensions": dimensions, "trappan_step": step, "text": "Oro för sömn och skolfrånvaro."},
        "data_categories": ["identity", "school-situation", "concern-text"],
        "information": {"school-situation": {"attendance_percent": 62}},
    }


async def _ok(response: httpx.Response) -> None:
    assert response.status_code == 201, response.text


async def _receive(client: httpx.AsyncClient, auth: Auth, *orgs: str) -> None:
    """Each receiver fetches its mailbox and acknowledges the referrals: they become received."""
    for org in orgs:
        for message in await mailbox(client, auth, org):
            await ack(client, auth, org, message["id"])


async def run(client: httpx.AsyncClient, auth: Auth, runtime: Runtime) -> Workload:
    """Eight children: a remiss each from Nora's student health team to BUP (steps 2, 1 and none;
    dimensions healthy, or achieving + included), reports of concern for three of them from Nora's
    school to social services; delivered; BUP accepts four, rejects two (one suggesting the first line,
    where that child is then sent: a redirection), completes one, and confirms one cancellation the
    sender asked for; social services accept one and reject one; child 7 is sent to BUP a second time
    (still requested). Every status event goes through the API and the worker."""
    async with runtime.sessions() as session:
        await load_demo(session)
    for org in (ELEVHALSA, BUP, FORSTA_LINJEN, GRUNDSKOLA, SOCIALTJANST):
        await set_endpoint(runtime, org, "mailbox", {})
    done = Workload(pins=[pin(n) for n in range(CHILDREN)])
    for n in range(CHILDREN):
        consent = consent_body(
            child={"personal_identity_number": pin(n)},
            to_parties={"organisation_types": ["bup", "forsta-linjen"]},
        )
        r = await client.post("/v1/consents", json=consent, headers=auth(ELEVHALSA, "system"))
        assert r.status_code == 201, r.text
        step = 2 if n < 5 or n == 7 else 1 if n == 5 else None
        dimensions = ["healthy"] if n < 4 else ["achieving", "included"]
        done.remiss[n] = await _send(client, auth, ELEVHALSA, _remiss(n, step=step, dimensions=dimensions), f"r{n}")
    for n in range(3):
        body = {
            "kind": "orosanmalan",
            "target": {"organisation_id": SOCIALTJANST},
            "child": {"personal_identity_number": pin(n)},
            "concern": {"dimensions": ["safe"], "trappan_step": 1, "text": "Orosanmälan."},
            "data_categories": ["identity", "concern-text"],
            "information": {},
        }
        done.concern[n] = await _send(client, auth, GRUNDSKOLA, body, f"c{n}")

    async with httpx.AsyncClient() as http:
        worker = worker_for(runtime, http, delivery_backoff_base_seconds=0.001, delivery_backoff_max_seconds=0.002)
        await worker.run_until_idle()
        await _receive(client, auth, BUP, SOCIALTJANST)
        for n in range(4):
            await _ok(await event(client, auth, BUP, done.remiss[n], status="accepted"))
        await _ok(
            await event(
                client,
                auth,
                BUP,
                done.remiss[4],
                status="rejected",
                reason_code="wrong-recipient",
                suggested_organisation=FORSTA_LINJEN,
            )
        )
        await _ok(await event(client, auth, BUP, done.remiss[5], status="rejected", reason_code="no-capacity"))
        for n in range(2):
            await _ok(await event(client, auth, BUP, done.remiss[n], status="in-progress"))
        await _ok(await event(client, auth, BUP, done.remiss[0], status="completed", feedback="Klart."))
        await _ok(await event(client, auth, ELEVHALSA, done.remiss[6], type="cancellation-requested", reason_text="x"))
        await _ok(await event(client, auth, BUP, done.remiss[6], status="cancelled", reason_text="Bekräftat."))
        await _ok(await event(client, auth, SOCIALTJANST, done.concern[0], status="accepted"))
        await _ok(
            await event(client, auth, SOCIALTJANST, done.concern[1], status="rejected", reason_code="outside-mandate")
        )
        done.redirect = await _send(
            client, auth, ELEVHALSA, _remiss(4, step=2, dimensions=["achieving"], target=FORSTA_LINJEN), "r4b"
        )
        await worker.run_until_idle()
        await _receive(client, auth, FORSTA_LINJEN)
        await worker.run_until_idle()
    # Child 7 again, to BUP in the same week, kind and step (the same cell): not delivered yet.
    body = _remiss(7, step=2, dimensions=["achieving", "included"])
    done.pending = await _send(client, auth, ELEVHALSA, body, "r7b")
    return done


# --- from scratch --------------------------------------------------------------------------------------


def bucket(seconds: float) -> int:
    return 0 if seconds < 60 else min(83, 1 + math.floor(4 * math.log2(seconds / 60)))


async def secret(conn: AsyncConnection) -> bytes:
    """The record-key secret, recovered from its HMAC inner pad (for the test's own computation)."""
    inner = (await conn.execute(text("select inner_pad from flow_state"))).scalar_one()
    return bytes(b ^ 0x36 for b in inner[:32])


RollupKey = tuple[str, str, str, str, str, str, str, str, str, int]


async def from_scratch(conn: AsyncConnection) -> dict[RollupKey, tuple[int, int, int, dict[int, int]]]:
    """Every non-empty rollup row as the triggers should have it, from referral, referral_event and
    organisation alone: (measure, dimension, week, municipality, sender municipality, sender type,
    recipient municipality, recipient type, kind, step) -> (value, children, cell key, histogram)."""
    key = await secret(conn)
    referrals = (
        await conn.execute(
            text(
                """select r.id, r.created_at, r.kind, r.status, r.dimensions, r.trappan_step, r.child_pseudonym,
                          r.recipient_organisation, r.service_id, so.type, so.municipality_code, ro.type,
                          ro.municipality_code
                   from referral r join organisation so on so.id = r.sender_organisation
                   join organisation ro on ro.id = r.recipient_organisation
                   order by r.created_at"""
            )
        )
    ).all()
    events = (
        await conn.execute(
            text(
                """select referral_id, type, to_status, reason_code, suggested_organisation, suggested_service,
                          occurred_at from referral_event where from_status is not null order by occurred_at, seq"""
            )
        )
    ).all()
    facts: dict[Any, dict[str, Any]] = {}
    for r in referrals:
        local = r.created_at.astimezone(SWEDEN)
        monday = (local - timedelta(days=local.weekday())).date()
        facts[r.id] = {
            "cell": (
                monday.isoformat(),
                r[10] or r[12] or "county",
                r[10] or "county",
                r[9],
                r[12] or "county",
                r[11],
                r.kind,
                -1 if r.trappan_step is None else r.trappan_step,
            ),
            "dims": ["*", *(sorted(set(r.dimensions)) or ["none"])],
            "child": record_key(key, r.child_pseudonym),
            # requested is not kept in the rollups (read from flow_referral: see migration 0005)
            "measures": [("sent", None)] + ([] if r.status == "requested" else [(f"status:{r.status}", None)]),
            "created": r.created_at,
            "row": r,
        }
    suggestions: list[tuple[datetime, Any, Any]] = []  # (rejected at, referral id, event)
    for e in events:
        f = facts[e.referral_id]
        if e.type != "status":
            continue
        if e.to_status in ("received", "accepted", "completed"):
            f["measures"].append((f"lead:{e.to_status}", bucket((e.occurred_at - f["created"]).total_seconds())))
        if e.to_status == "rejected":
            f["measures"].append((f"rejected:{e.reason_code or 'unspecified'}", None))
            if e.suggested_organisation or e.suggested_service:
                f["measures"].append(("suggested", None))
                suggestions.append((e.occurred_at, e.referral_id, e))
    followed: set[Any] = set()
    by_child: dict[str, list[tuple[datetime, Any, Any]]] = {}
    for at, rid, e in sorted(suggestions, key=lambda s: s[0]):
        by_child.setdefault(facts[rid]["row"].child_pseudonym, []).append((at, rid, e))
    for r in referrals:  # each new referral follows the earliest open matching suggestion for its child
        for at, rid, e in by_child.get(r.child_pseudonym, []):
            if rid in followed or at > r.created_at:
                continue
            if e.suggested_organisation == r.recipient_organisation or (
                e.suggested_service is not None and e.suggested_service == r.service_id
            ):
                followed.add(rid)
                facts[rid]["measures"].append(("redirected", None))
                break

    values: Counter[RollupKey] = Counter()
    members: dict[RollupKey, set[int]] = {}
    histograms: dict[RollupKey, Counter[int]] = {}
    for f in facts.values():
        for measure, hist_bucket in f["measures"]:
            for dimension in f["dims"]:
                k = (measure, dimension, *f["cell"])
                values[k] += 1
                members.setdefault(k, set()).add(f["child"])
                if hist_bucket is not None:
                    histograms.setdefault(k, Counter())[hist_bucket] += 1
    return {
        k: (values[k], len(members[k]), combine_record_keys(members[k]) % CELL_KEY_MODULUS, dict(histograms.get(k, {})))
        for k in values
    }


# A base cell's rollup row: its slots' rows summed (migration 0025).
SUMMED_ROLLUP = """select measure, dimension, week::text, municipality, sender_municipality, sender_type,
                          recipient_municipality, recipient_type, kind, trappan_step, sum(value)::integer as value,
                          sum(children)::integer as children, (sum(cell_key) % 4294967296)::bigint as cell_key
                   from flow_rollup
                   group by measure, dimension, week, cell, municipality, sender_municipality, sender_type,
                            recipient_municipality, recipient_type, kind, trappan_step"""


async def rollups(conn: AsyncConnection) -> dict[RollupKey, tuple[int, int, int, dict[int, int]]]:
    """The non-empty base cells as stored, each the sum of its slots' rows, histograms summed per bucket
    (a base cell a status has been left behind by must be all zero). What is queued is folded first (in
    ``conn``'s transaction), as every reader does (migration 0030)."""
    await conn.execute(text("select flow_fold(1000000)"))
    rows = (
        await conn.execute(
            text(
                """select measure, dimension, week::text, municipality, sender_municipality, sender_type,
                          recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key, hist
                   from flow_rollup"""
            )
        )
    ).all()
    cells: dict[tuple[Any, ...], list[Any]] = {}
    for *k, value, children, cell_key, hist in rows:
        cell = cells.setdefault(tuple(k), [0, 0, 0, Counter()])
        cell[0] += value
        cell[1] += children
        cell[2] = (cell[2] + cell_key) % CELL_KEY_MODULUS
        for e in hist or []:
            cell[3][e >> 32] += e & 0xFFFFFFFF
    out = {}
    for k, (value, children, cell_key, hist) in cells.items():
        if value == 0:
            assert children == 0 and cell_key == 0 and not hist, k
            continue
        out[k] = (value, children, cell_key, dict(hist))
    return out  # type: ignore[return-value]


# --- the base table as the disclosure module sees it ------------------------------------------------------

SECRET = bytes(range(100, 132))  # a fixed record-key secret, so that the adjustments are the same every run


async def fix_secret(conn: AsyncConnection, secret: bytes = SECRET) -> None:
    """The record-key secret as migration 0005 keeps it (HMAC pads), before anything is counted."""
    padded = secret + bytes(32)
    pads = {"i": bytes(b ^ 0x36 for b in padded), "o": bytes(b ^ 0x5C for b in padded)}
    await conn.execute(text("insert into flow_state (id, inner_pad, outer_pad) values (1, :i, :o)"), pads)


@dataclass(frozen=True)
class BaseCell:
    """A rollup row (or the requested referrals of a cell) with its adjustment, computed here from the
    cell key independently of the query layer's SQL: PostgreSQL's hash gives the draw, the disclosure
    module the adjustment."""

    measure: str
    dimension: str
    week: str
    municipality: str
    sender_type: str
    recipient_type: str
    kind: str
    step: str
    value: int
    children: int
    adjustment: int


async def base_cells(conn: AsyncConnection) -> list[BaseCell]:
    await conn.execute(text("select flow_fold(1000000)"))  # what is queued, as every reader (migration 0030)
    draw = "(hashint8extended(cell_key, children) & 2147483647) % 100"
    rows = (
        await conn.execute(
            text(
                f"""select measure, dimension, week::text, municipality, sender_type, recipient_type, kind,
                           trappan_step, value, children, {draw}
                    from ({SUMMED_ROLLUP}) b where value > 0
                    union all
                    select 'status:requested', d, week::text, municipality, sender_type, recipient_type, kind,
                           trappan_step, value, children, {draw}
                    from (select d, week, municipality, sender_type, recipient_type, kind, trappan_step,
                                 count(*) as value, count(distinct child_key)::int as children,
                                 (sum(distinct child_key) % 4294967296)::bigint as cell_key
                          from flow_referral cross join unnest(dimensions) as d
                          where status = 'requested'
                          group by cell, d, week, municipality, sender_type, recipient_type, kind, trappan_step) r"""
            )
        )
    ).all()
    return [
        BaseCell(*row[:7], "none" if row[7] < 0 else str(row[7]), row[8], row[9], adjustment(row[9], row[10]))
        for row in rows
    ]


def adjusted(cells: list[BaseCell], measure: str = "sent", dimension: str = "*", **where: str) -> tuple[int, int]:
    """A count as the hub publishes it, from the base cells matching ``where``: (its value plus their
    adjustments, its per-cell children plus their adjustments: what the threshold sees)."""
    chosen = [
        c
        for c in cells
        if c.measure == measure and c.dimension == dimension and all(getattr(c, n) == v for n, v in where.items())
    ]
    noise = sum(c.adjustment for c in chosen)
    return sum(c.value for c in chosen) + noise, sum(c.children for c in chosen) + noise
