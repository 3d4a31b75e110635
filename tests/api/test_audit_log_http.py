"""The audit log over HTTP: entries marked sealed or not, the signed checkpoints, and inclusion and
consistency proofs an auditor checks with nothing but hashlib and an Ed25519 verifier."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.domain.merkle import verify_consistency, verify_inclusion
from hub.main import create_app
from hub.runtime import Runtime
from hub.services.audit_sealer import seal_all
from tests.api.test_auth_and_problems import assert_problem
from tests.api.test_lawful_sharing_http import ask, record_consent

Auth = Callable[..., dict[str, str]]
ORG, OTHER, REGIONAL = "nora-elevhalsa", "orebro-grundskola", "region-samordning"


@pytest.fixture
async def client(db: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own (so sharing-limit counters of its own) with limits above what these tests ask:
    they ask about one child many times in a few seconds."""
    tuned = dataclasses.replace(db, settings=db.settings.model_copy(update={"sharing_limit_per_child": 10_000}))
    app = create_app(runtime=tuned)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            yield c


@pytest.fixture
async def demo(runtime: Runtime) -> None:
    from hub.devtools.demo import load_demo

    async with runtime.sessions() as session:
        await load_demo(session)


async def entries(client: httpx.AsyncClient, auth: Auth, org: str = ORG) -> list[dict[str, Any]]:
    r = await client.get("/v1/audit", headers=auth(org, "auditor"))
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def latest_checkpoint(client: httpx.AsyncClient, auth: Auth, org: str = ORG) -> dict[str, Any]:
    r = await client.get("/v1/audit/checkpoints", params={"limit": 1}, headers=auth(org, "auditor"))
    assert r.status_code == 200, r.text
    checkpoint: dict[str, Any] = r.json()[0]
    return checkpoint


def signed(checkpoint: dict[str, Any]) -> tuple[int, bytes]:
    """As an external auditor: check the signature, read size and root from the signed body."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(checkpoint["public_key"]))
    key.verify(base64.b64decode(checkpoint["signature"]), checkpoint["body"].encode())  # raises if forged
    _origin, size, root, _at, _ = checkpoint["body"].split("\n")
    return int(size), base64.b64decode(root)


async def test_entries_are_marked_sealed_once_the_sealer_has_placed_them(client, auth, demo, runtime) -> None:
    await record_consent(client, auth)
    [unsealed] = [e for e in await entries(client, auth) if e["action"] == "consent-recorded"]
    assert unsealed["sealed"] is False and unsealed["seq"] is None and unsealed["hash"] is None

    await seal_all(runtime.engine, runtime.settings)
    [sealed] = [e for e in await entries(client, auth) if e["action"] == "consent-recorded"]
    assert sealed["sealed"] is True and sealed["seq"] == 0 and len(sealed["hash"]) == 64


async def test_an_inclusion_proof_verifies_against_the_signed_checkpoint(client, auth, demo, runtime) -> None:
    await record_consent(client, auth)
    for org in (ORG, OTHER, ORG):
        await ask(client, auth, org=org)
    await seal_all(runtime.engine, runtime.settings, checkpoint=True)
    size, root = signed(await latest_checkpoint(client, auth, OTHER))  # any organisation's auditor may read it

    for entry in await entries(client, auth):
        r = await client.get(f"/v1/audit/{entry['id']}/proof", headers=auth(ORG, "auditor"))
        assert r.status_code == 200, r.text
        proof = r.json()
        leaf = hashlib.sha256(b"\x00" + entry["id"].to_bytes(8, "big") + proof["canonical"].encode()).digest()
        assert leaf.hex() == proof["leaf_hash"] == entry["hash"]
        path = [base64.b64decode(h) for h in proof["audit_path"]]
        assert proof["tree_size"] == size
        assert verify_inclusion(proof["leaf_index"], size, leaf, path, root)
        assert not verify_inclusion(proof["leaf_index"], size, hashlib.sha256(b"forged").digest(), path, root)


async def test_only_the_entrys_auditors_learn_it_exists(client, auth, demo, runtime) -> None:
    await ask(client, auth, org=ORG)
    await seal_all(runtime.engine, runtime.settings, checkpoint=True)
    [entry] = [e for e in await entries(client, auth) if e["action"] == "sharing-decision"]

    other = await client.get(f"/v1/audit/{entry['id']}/proof", headers=auth(OTHER, "auditor"))
    missing = await client.get("/v1/audit/999999/proof", headers=auth(OTHER, "auditor"))
    assert_problem(other, 404, "not-found")
    assert_problem(missing, 404, "not-found")
    assert other.json()["detail"] == missing.json()["detail"]
    assert_problem(
        await client.get(f"/v1/audit/{entry['id']}/proof", headers=auth(ORG, "professional")), 403, "forbidden"
    )
    regional = await client.get(f"/v1/audit/{entry['id']}/proof", headers=auth(REGIONAL, "auditor"))
    assert regional.status_code == 200, regional.text


async def test_checkpoints_are_for_auditors_and_coordinators(client, auth, demo, runtime) -> None:
    await ask(client, auth, org=ORG)
    await seal_all(runtime.engine, runtime.settings, checkpoint=True)
    for role in ("auditor", "coordinator"):
        r = await client.get("/v1/audit/checkpoints", headers=auth(REGIONAL, role))
        assert r.status_code == 200 and r.json()[0]["format"] == "hub-audit-checkpoint/1", r.text
    assert_problem(await client.get("/v1/audit/checkpoints", headers=auth(ORG, "professional")), 403, "forbidden")


async def test_an_entry_sealed_after_the_checkpoint_is_not_in_it(client, auth, demo, runtime) -> None:
    await ask(client, auth, org=ORG)
    first = (await seal_all(runtime.engine, runtime.settings, checkpoint=True)).checkpoint
    assert first is not None
    await ask(client, auth, org=ORG)
    await seal_all(runtime.engine, runtime.settings, checkpoint=True)
    newest = max(e["id"] for e in await entries(client, auth))
    r = await client.get(
        f"/v1/audit/{newest}/proof", params={"checkpoint": first.head.size}, headers=auth(ORG, "auditor")
    )
    body = assert_problem(r, 409, "conflict")
    assert body["errors"][0]["pointer"] == "checkpoint"
    assert (await client.get(f"/v1/audit/{newest}/proof", headers=auth(ORG, "auditor"))).status_code == 200


async def test_a_later_checkpoint_provably_extends_an_earlier_one(client, auth, demo, runtime) -> None:
    sizes = []
    for _ in range(3):
        await ask(client, auth, org=ORG)
        await ask(client, auth, org=OTHER)
        result = await seal_all(runtime.engine, runtime.settings, checkpoint=True)
        assert result.checkpoint is not None
        sizes.append(result.checkpoint.head.size)
    listed = (await client.get("/v1/audit/checkpoints", headers=auth(OTHER, "auditor"))).json()
    roots = dict(signed(cp) for cp in listed)
    for first, second in ((sizes[0], sizes[2]), (sizes[1], sizes[2]), (sizes[0], sizes[1])):
        r = await client.get(
            "/v1/audit/checkpoints/consistency",
            params={"first": first, "second": second},
            headers=auth(OTHER, "auditor"),
        )
        assert r.status_code == 200, r.text
        proof = [base64.b64decode(h) for h in r.json()["proof"]]
        assert verify_consistency(first, second, roots[first], roots[second], proof)
        assert not verify_consistency(first, second, roots[second], roots[second], proof)
