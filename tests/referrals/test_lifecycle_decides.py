"""The domain decides every lifecycle consequence storage applies: which referrals are purged, which
changes stop a queued delivery, what a receipt moves a referral to. Storage applies the answer and holds no
status of its own (the SQL under hub.db.referrals names none)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hub.db import referrals as referrals_db
from hub.db.uow import UnitOfWork
from hub.devtools.demo import load_demo
from hub.domain.referrals import Change, Lifecycle, Purge, Referral, Rule
from hub.runtime import Runtime
from hub.services.referrals import lifecycle
from hub.vocabulary import load_vocabulary
from tests.referrals.helpers import RECEIVER, SENDER, record_consent, referral, sent, set_endpoint

LIFE = lifecycle(load_vocabulary())
NOW = datetime(2026, 3, 1, tzinfo=UTC)

# A lifecycle other than the published one: its final statuses are not the vocabulary's.
OTHER = Lifecycle(
    {
        ("new", "delivered"): Rule("hub"),
        ("new", "withdrawn"): Rule("sender"),
        ("new", "undeliverable"): Rule("hub"),
        ("delivered", "closed"): Rule("receiver"),
    },
    terminal=["withdrawn", "undeliverable", "closed"],
)


def test_the_retention_rule_is_the_domains() -> None:
    purge = LIFE.purge(NOW, timedelta(days=30))
    assert purge == Purge(statuses=LIFE.terminal, before=NOW - timedelta(days=30), at=NOW)
    assert purge.applies_to("completed", NOW - timedelta(days=31))
    assert not purge.applies_to("completed", NOW - timedelta(days=29)), "within retention"
    assert not purge.applies_to("in-progress", NOW - timedelta(days=400)), "an open referral keeps its data"
    assert OTHER.purge(NOW, timedelta(days=1)).statuses == {"withdrawn", "undeliverable", "closed"}
    assert OTHER.open == {"new", "delivered"} and LIFE.open == {
        "requested",
        "received",
        "accepted",
        "in-progress",
        "on-hold",
    }


def test_ending_before_delivery_stops_the_delivery_whatever_the_final_status_is_called() -> None:
    new = Referral("s", "r", "new", False, False, OTHER)
    withdrawn = new.change(Change("withdrawn", "sender"))
    assert withdrawn.abandon_delivery == "referral withdrawn before delivery" and withdrawn.event.notify is None
    assert new.hub_change("undeliverable").abandon_delivery == "referral undeliverable before delivery"
    assert new.hub_change("delivered").abandon_delivery is None
    closed = Referral("s", "r", "delivered", True, False, OTHER).change(Change("closed", "receiver"))
    assert closed.abandon_delivery is None, "delivered already: nothing queued to stop"


def test_the_hub_giving_up_delivery_stops_it_with_its_reason() -> None:
    failed = Referral("s", "r", "requested", False, False, LIFE).delivery_failed(
        "no-legal-basis", "Not delivered.", final=True
    )
    assert failed is not None and failed.status == "failed" and failed.event.notify == "s"
    assert failed.abandon_delivery == "no legal basis at send time"
    assert (
        Referral("s", "r", "cancelled", False, False, LIFE).delivery_failed("no-legal-basis", "x", final=True) is None
    )
    dead = Referral("s", "r", "requested", False, False, LIFE).delivery_failed("receiver-refused", "x", final=False)
    assert dead is not None and dead.status == "requested" and dead.abandon_delivery is None, "it may be requeued"
    receipt = Referral("s", "r", "requested", False, False, LIFE).receipt()
    assert receipt is not None and receipt.abandon_delivery is None


@pytest.fixture
async def county(client: httpx.AsyncClient, runtime: Runtime) -> Runtime:
    async with runtime.sessions() as session:
        await load_demo(session)
    for org in (SENDER, RECEIVER):
        await set_endpoint(runtime, org, "mailbox", {})
    return runtime


async def test_storage_purges_exactly_what_the_domains_rule_names(client, auth, county) -> None:
    """The statement applies the rule it is given: a rule naming the initial status purges a referral
    that is only requested, one naming none purges nothing. Storage has no final statuses of its own."""
    await record_consent(client, auth)
    rid = await sent(client, auth)
    later = datetime.now(UTC) + timedelta(days=1)
    async with UnitOfWork.of(county.sessions) as uow:
        assert await referrals_db.purge_payloads(uow.session, Purge(frozenset({"cancelled"}), later, later)) == 0
        assert await referrals_db.purge_payloads(uow.session, Purge(frozenset({LIFE.initial}), later, later)) == 1
        await uow.commit()
    shown = await referral(client, auth, SENDER, rid)
    assert shown["document"] is None and shown["status"] == "requested"


STATUS_LITERAL = re.compile(r"'(" + "|".join(map(re.escape, sorted({s for pair in LIFE.rules for s in pair}))) + r")'")


def test_no_sql_under_the_referral_stores_names_a_status() -> None:
    """A status in SQL text would be a lifecycle rule storage holds of its own."""
    root = Path(__file__).resolve().parents[2] / "src" / "hub"
    found = [
        f"{path.relative_to(root)}: {m.group(0)}"
        for path in [*(root / "db" / "referrals").glob("*.py"), *(root / "services" / "referrals").glob("*.py")]
        for m in STATUS_LITERAL.finditer(path.read_text())
    ]
    assert found == []
