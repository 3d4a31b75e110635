"""A child's referrals in one cell, each with its own dimensions: the trigger (``flow_enter``, migration 0026)
counts the child once per rollup row whichever referrals share which dimensions, as a computation from
scratch, the rebuilds and the row-by-row replay do. Runs after the workload's own tests: it adds referrals."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.flows import workload
from tests.flows.conftest import Flows
from tests.referrals.helpers import consent_body

# Children 20 and up (the workload's are 0-7), each sent to BUP at step 2 in this week (one cell), in turn.
SHARING: dict[int, list[list[str]]] = {
    20: [["achieving"], ["included"], ["achieving", "included"]],  # the third shares each with another one
    21: [["achieving", "included"], ["achieving", "healthy"]],  # shares achieving, not healthy
    22: [[], ["healthy"], []],  # none and healthy; the third shares none only
    23: [["safe", "achieving", "safe"], ["achieving"]],  # repeated and unsorted; the second shares all
}


async def _send_all(county: Flows) -> list[str]:
    ids = []
    for child, referrals in SHARING.items():
        consent = consent_body(child={"personal_identity_number": workload.pin(child)})
        r = await county.client.post("/v1/consents", json=consent, headers=county.auth(workload.ELEVHALSA, "system"))
        assert r.status_code == 201, r.text
        for i, dimensions in enumerate(referrals):
            body = workload._remiss(child, step=2, dimensions=dimensions)
            key = f"shared-{child}-{i}"
            ids.append(await workload._send(county.client, county.auth, workload.ELEVHALSA, body, key))
    return ids


async def _flow_rows(county: Flows, ids: list[str]) -> list[Any]:
    async with county.runtime.engine.connect() as conn:
        await conn.execute(text("select flow_fold(1000000)"))  # what is queued (migration 0030)
        rows = await conn.execute(
            text("select * from flow_referral where referral_id = any(cast(:ids as uuid[])) order by referral_id"),
            {"ids": ids},
        )
        return [tuple(r) for r in rows.all()]


async def test_a_child_is_counted_once_per_row_whichever_referrals_share_its_dimensions(county: Flows) -> None:
    ids = await _send_all(county)
    entered = await _flow_rows(county, ids)
    assert [row[10] for row in entered if row[10][-1] == "safe"] == [["*", "achieving", "safe"]]
    async with county.runtime.engine.connect() as conn:
        stored = await workload.rollups(conn)
        assert stored == await workload.from_scratch(conn)
    none = [v for k, v in stored.items() if k[0] == "sent" and k[1] == "none" and k[9] == 2]
    assert [v[:2] for v in none] == [(2, 1)], "child 22's two referrals without a dimension: one child"

    for rebuild in ("flow_rebuild", "flow_rebuild_bulk"):
        async with county.runtime.engine.begin() as conn:
            await conn.execute(text(f"select {rebuild}()"))
        async with county.runtime.engine.connect() as conn:
            assert await workload.rollups(conn) == stored, rebuild
        assert await _flow_rows(county, ids) == entered, rebuild


async def test_a_referral_without_its_organisations_is_not_entered_and_the_secret_is_made_on_first_use(
    county: Flows,
) -> None:
    async with county.runtime.engine.connect() as conn, conn.begin() as transaction:
        referral = "select * into r from referral order by created_at limit 1; r.id := gen_random_uuid();"
        await conn.execute(
            text(
                f"""do $$ declare r referral; begin {referral}
                    r.sender_organisation := 'no-such-organisation';
                    perform flow_enter(r, 'requested');
                    if exists (select from flow_referral where referral_id = r.id) then
                        raise 'entered without its sender';
                    end if; end $$"""
            )
        )
        await conn.execute(text("delete from flow_state"))
        await conn.execute(
            text(
                f"""do $$ declare r referral; begin {referral}
                    perform flow_enter(r, 'requested');
                    if not exists (select from flow_referral f join flow_state s on true
                                   where f.referral_id = r.id
                                     and f.child_key = flow_record_key(r.child_pseudonym, s.inner_pad, s.outer_pad))
                    then
                        raise 'not entered with a new secret';
                    end if; end $$"""
            )
        )
        await transaction.rollback()
