"""Each use case commits once, through its unit of work (``hub.db.uow.UnitOfWork``): over real HTTP and
PostgreSQL, every row a use case writes (its entity and its audit entry) carries the one transaction id
of that commit, the ORM commits at most once (none on the fast path, whose one statement commits by
itself), and a use case that fails after a write leaves nothing written. Stores and repositories never
commit: a second commit would show as a second transaction id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import NullPool, event, text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.db.engine import migrations_database_url
from hub.db.uow import UnitOfWork
from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.api.test_lawful_sharing_http import CHILD, consent_body, question
from tests.conftest import KEEP_TABLES
from tests.sip.test_sip_meetings import SCHOOL as SIP_INVITEE
from tests.sip.test_sip_meetings import SOCIAL as SIP_INVITER
from tests.sip.test_sip_meetings import invite, sip_consent

Auth = Callable[..., dict[str, str]]
SCHOOL, ELEVHALSA, BUP, REGION = "nora-grundskola", "nora-elevhalsa", "region-bup", "region-samordning"
NEW_ORG = {"name": "Ny enhet", "type": "kultur-fritid", "municipality_code": "1884", "region_code": "18"}
SERVICE = {
    "name": "Samtalsstöd",
    "intervention_level": "selective",
    "trappan_step": 2,
    "age_min": 6,
    "age_max": 17,
    "referral_kinds": ["samverkansforfragan"],
    "dimensions": ["included"],
}
ASSESSMENT = {
    "child": {"personal_identity_number": CHILD},
    "recipient_organisation": BUP,
    "decided_by_person": "SE2321000016-ABCD",
    "decided_by_role": "rektor",
    "justification": "Akut risk; BUP behöver skolans bild i dag.",
    "case_reference": "EH-2026-77",
    "data_categories": ["identity", "school-situation"],
}


@dataclass
class Tally:
    uow_commits: int = 0  # UnitOfWork.commit
    statements: int = 0  # UnitOfWork.statement: the fast path, whose statement commits by itself
    orm_commits: int = 0  # COMMITs the engine's connections ran (a session's, or a store's)
    transactions: set[str] = field(default_factory=set)  # ids of the transactions that wrote a row


async def _row_versions(runtime: Runtime) -> set[tuple[str, str, str]]:
    """(table, row, transaction id that wrote it) of every row of every table, read as the owner."""
    engine = create_async_engine(migrations_database_url(runtime.settings), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            names = (await conn.execute(text("select tablename from pg_tables where schemaname = 'public'"))).scalars()
            versions: set[tuple[str, str, str]] = set()
            for name in [n for n in names if n not in KEEP_TABLES]:
                rows = await conn.execute(text(f"select ctid::text, xmin::text from {name}"))
                versions |= {(name, ctid, xmin) for ctid, xmin in rows}
            return versions
    finally:
        await engine.dispose()


@pytest.fixture
def tally(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Callable[[], AbstractAsyncContextManager[Tally]]:
    """``async with tally() as t``: what the block's use case committed, and in how many transactions."""
    commit, statement = UnitOfWork.commit, UnitOfWork.statement

    @asynccontextmanager
    async def measure() -> AsyncIterator[Tally]:
        t = Tally()

        async def counted_commit(self: UnitOfWork) -> None:
            t.uow_commits += 1
            await commit(self)

        def counted_statement(self: UnitOfWork) -> AbstractAsyncContextManager[Any]:
            t.statements += 1
            return statement(self)

        def on_commit(_connection: Any) -> None:
            t.orm_commits += 1

        before = await _row_versions(runtime)
        monkeypatch.setattr(UnitOfWork, "commit", counted_commit)
        monkeypatch.setattr(UnitOfWork, "statement", counted_statement)
        event.listen(runtime.engine.sync_engine, "commit", on_commit)
        try:
            yield t
        finally:
            event.remove(runtime.engine.sync_engine, "commit", on_commit)
            monkeypatch.setattr(UnitOfWork, "commit", commit)
            monkeypatch.setattr(UnitOfWork, "statement", statement)
        t.transactions = {xmin for _, _, xmin in await _row_versions(runtime) - before}

    return measure


@pytest.fixture
async def demo(client: httpx.AsyncClient, runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        await load_demo(session)


async def _consent(client: httpx.AsyncClient, auth: Auth) -> str:
    r = await client.post("/v1/consents", json=consent_body(), headers=auth(ELEVHALSA, "system"))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _service(client: httpx.AsyncClient, auth: Auth, sid: str = "nora-samtal") -> str:
    body = {**SERVICE, "id": sid, "organisation_id": ELEVHALSA}
    r = await client.post("/v1/registry/services", json=body, headers=auth(REGION, "admin"))
    assert r.status_code == 201, r.text
    return sid


Act = Callable[[httpx.AsyncClient, Auth], Awaitable[Callable[[], Awaitable[httpx.Response]]]]


async def record_consent(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    return lambda: client.post("/v1/consents", json=consent_body(), headers=auth(ELEVHALSA, "system"))


async def read_consent(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    cid = await _consent(client, auth)
    return lambda: client.get(f"/v1/consents/{cid}", headers=auth(ELEVHALSA, "system"))


async def search_consents(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    await _consent(client, auth)
    body = {"child": {"personal_identity_number": CHILD}}
    return lambda: client.post("/v1/consents/search", json=body, headers=auth(ELEVHALSA, "system"))


async def withdraw_consent(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    cid = await _consent(client, auth)
    body = {"withdrawn_by": "vh2", "reason": "Vårdnadshavaren ångrade sig."}
    return lambda: client.post(f"/v1/consents/{cid}/withdraw", json=body, headers=auth(ELEVHALSA, "system"))


async def decide_share(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    await _consent(client, auth)
    return lambda: client.post("/v1/sharing-decisions", json=question(), headers=auth(ELEVHALSA, "system"))


def _request_body() -> dict[str, Any]:
    body = {k: v for k, v in consent_body().items() if k not in ("grantors", "evidence_reference")}
    return {**body, "guardians": ["vh1", "vh2"]}


async def _request(client: httpx.AsyncClient, auth: Auth) -> str:
    r = await client.post("/v1/consent-requests", json=_request_body(), headers=auth(ELEVHALSA, "system"))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _answer(reference: str) -> dict[str, Any]:
    return {"role": "guardian", "reference": reference, "agreed": True, "evidence_reference": "e:1", "method": "bankid"}


async def request_consent(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    return lambda: client.post("/v1/consent-requests", json=_request_body(), headers=auth(ELEVHALSA, "system"))


async def answer_completing_a_request(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    """The answer that completes a request: the answer, the consent and three audit entries, one commit."""
    rid = await _request(client, auth)
    r = await client.post(f"/v1/consent-requests/{rid}/answers", json=_answer("vh1"), headers=auth(ELEVHALSA))
    assert r.status_code == 200, r.text
    return lambda: client.post(f"/v1/consent-requests/{rid}/answers", json=_answer("vh2"), headers=auth(ELEVHALSA))


async def read_consent_request(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    rid = await _request(client, auth)
    return lambda: client.get(f"/v1/consent-requests/{rid}", headers=auth(ELEVHALSA))


async def record_assessment(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    return lambda: client.post("/v1/necessity-assessments", json=ASSESSMENT, headers=auth(ELEVHALSA, "professional"))


async def put_organisation(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    return lambda: client.put("/v1/registry/organisations/nora-ny-enhet", json=NEW_ORG, headers=auth(REGION, "admin"))


async def put_endpoint(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    body = {"adapter": "mailbox", "config": {}}
    return lambda: client.put(f"/v1/registry/organisations/{BUP}/endpoint", json=body, headers=auth(BUP, "admin"))


async def create_service(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    body = {**SERVICE, "id": "nora-ny-tjanst", "organisation_id": ELEVHALSA}
    return lambda: client.post("/v1/registry/services", json=body, headers=auth(REGION, "admin"))


async def update_service(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    sid = await _service(client, auth)
    body = {**SERVICE, "name": "Samtalsstöd för unga"}
    return lambda: client.put(f"/v1/registry/services/{sid}", json=body, headers=auth(ELEVHALSA, "admin"))


async def confirm_waiting_time(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    sid = await _service(client, auth)
    body = {"waiting_days": 12}
    return lambda: client.post(f"/v1/registry/services/{sid}/waiting-time", json=body, headers=auth(ELEVHALSA))


async def deactivate_service(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    sid = await _service(client, auth)
    return lambda: client.delete(f"/v1/registry/services/{sid}", headers=auth(ELEVHALSA, "admin"))


async def clear_protected_identity(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    body = {"child": {"personal_identity_number": CHILD}}
    social = "nora-socialtjanst-myndighet"  # the default policy names social services' statutory unit
    return lambda: client.post("/v1/protected-identity/clearances", json=body, headers=auth(social, "system"))


async def invite_to_sip_meeting(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    """Three invitees, three decisions with their audit entries, the meeting and its deliveries: one commit."""
    await sip_consent(client, auth)
    return lambda: invite(client, auth)


async def _sip_meeting(client: httpx.AsyncClient, auth: Auth) -> str:
    await sip_consent(client, auth)
    r = await invite(client, auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def answer_sip_invitation(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    mid = await _sip_meeting(client, auth)
    body = {"answer": "accepted"}
    return lambda: client.post(f"/v1/sip-meetings/{mid}/answers", json=body, headers=auth(SIP_INVITEE))


async def cancel_sip_meeting(client: httpx.AsyncClient, auth: Auth) -> Callable[[], Awaitable[httpx.Response]]:
    mid = await _sip_meeting(client, auth)
    return lambda: client.post(f"/v1/sip-meetings/{mid}/cancel", headers=auth(SIP_INVITER))


@pytest.mark.parametrize(
    "use_case",
    [
        record_consent,
        read_consent,
        search_consents,
        withdraw_consent,
        request_consent,
        answer_completing_a_request,
        read_consent_request,
        record_assessment,
        put_organisation,
        put_endpoint,
        create_service,
        update_service,
        confirm_waiting_time,
        deactivate_service,
        clear_protected_identity,
        invite_to_sip_meeting,
        answer_sip_invitation,
        cancel_sip_meeting,
    ],
)
async def test_a_use_case_commits_once_through_its_unit_of_work(
    client: httpx.AsyncClient,
    auth: Auth,
    demo: None,
    tally: Callable[[], AbstractAsyncContextManager[Tally]],
    use_case: Act,
) -> None:
    act = await use_case(client, auth)
    async with tally() as t:
        r = await act()
        assert r.status_code < 300, r.text
    assert (t.uow_commits, t.orm_commits) == (1, 1)
    assert len(t.transactions) == 1, "everything the use case wrote (its entity and its audit entry), one commit"


async def test_a_sharing_decision_is_one_statement_that_commits_by_itself(
    client: httpx.AsyncClient, auth: Auth, demo: None, tally: Callable[[], AbstractAsyncContextManager[Tally]]
) -> None:
    act = await decide_share(client, auth)
    async with tally() as t:
        r = await act()
        assert r.status_code == 200, r.text
    # The fast path: no ORM transaction at all; the decision and its audit entry in the statement's commit.
    assert (t.statements, t.uow_commits, t.orm_commits) == (1, 0, 0)
    assert len(t.transactions) == 1


class Boom(Exception):
    """A failure between a use case's write and its commit (here: at its audit entry)."""


@pytest.mark.parametrize(
    ("use_case", "table"),
    [
        (record_consent, "consent"),
        (withdraw_consent, "consent"),
        (request_consent, "consent_request"),
        (answer_completing_a_request, "consent"),
        (record_assessment, "necessity_assessment"),
        (put_organisation, "organisation"),
        (put_endpoint, "endpoint"),
        (create_service, "service"),
        (confirm_waiting_time, "service"),
        (answer_sip_invitation, "sip_meeting"),
        (cancel_sip_meeting, "sip_meeting"),
    ],
)
async def test_a_use_case_that_fails_after_a_write_leaves_nothing_written(
    client: httpx.AsyncClient,
    auth: Auth,
    demo: None,
    runtime: Runtime,
    tally: Callable[[], AbstractAsyncContextManager[Tally]],
    use_case: Act,
    table: str,
) -> None:
    act = await use_case(client, auth)
    written: list[str] = []

    def fail_at_the_audit_entry(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sql = " ".join(statement.lower().split())
        if "insert into audit_event" in sql:
            raise Boom
        if sql.startswith((f"insert into {table} ", f"update {table} ")):
            written.append(sql)

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", fail_at_the_audit_entry)
    try:
        async with tally() as t:
            r = await act()
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", fail_at_the_audit_entry)
    assert r.status_code == 500, r.text
    assert written, f"the use case wrote to {table} before its audit entry"
    assert (t.uow_commits, t.orm_commits, t.transactions) == (0, 0, set()), f"{table} written without its audit"
