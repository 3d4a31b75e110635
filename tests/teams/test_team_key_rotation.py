"""A referral sent before a pseudonym key rotation, accepted after it: the receiver joins the child's team
stored under the new key (matched through the number the referral holds), not a second team."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from hub.domain.identity import Pseudonymizer
from hub.domain.principal import Principal, Role
from hub.runtime import Runtime
from hub.services import referrals as referral_svc
from hub.services import teams
from hub.services.context import Actor
from tests.loopback import serve
from tests.referrals.helpers import CHILD, RECEIVER, sent, set_endpoint, worker_for
from tests.teams.test_team_story import SCHOOL, System, county  # noqa: F401  (the fixture)

pytestmark = pytest.mark.usefixtures("county")


def rotated(runtime: Runtime) -> Runtime:
    """The same hub after a rotation: a new current key, the old one kept for matching."""
    keys = dict(runtime.pseudonymizer._keys)  # the test reuses the configured key as the old one
    keys["rot2"] = b"a-new-pseudonym-key-after-rotation"
    return dataclasses.replace(runtime, pseudonymizer=Pseudonymizer(keys, "rot2"))


def actor(org: str) -> Actor:
    return Actor(Principal(subject=f"{org}-system", organisation_id=org, roles=frozenset({Role.SYSTEM})))


async def test_a_referral_accepted_after_a_key_rotation_joins_the_team_stored_under_the_new_key(
    client: httpx.AsyncClient, auth: Any, runtime: Runtime
) -> None:
    bup = System()
    with serve(bup) as url:
        await set_endpoint(runtime, RECEIVER, "webhook", {"url": url + "/hub", "secret_ref": "demo-webhook"})
        rid = await sent(client, auth)  # pseudonym under the old key
        async with httpx.AsyncClient() as http:
            await worker_for(runtime, http).run_until_idle()
    after = rotated(runtime)
    await teams.name_person(after, actor(SCHOOL), pin=CHILD, stage="school", professional_ref=None, period=(None, None))
    await referral_svc.record_event(
        actor=actor(RECEIVER),
        referral_id=rid,
        draft=referral_svc.EventDraft(type="status", status="accepted"),
        idempotency_key=None,
        runtime=after,
    )
    view = await teams.read_team(after, actor(SCHOOL), pin=CHILD)
    assert [m.organisation.organisation_id for m in view.members] == [SCHOOL, RECEIVER]
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(text("select count(*) from team")) == 1
