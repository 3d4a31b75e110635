"""Test harness: one real embedded PostgreSQL for the run, migrated with alembic, and the real ASGI app.

Tests talk HTTP to the app through httpx's ASGI transport; nothing about the database is mocked.
Tables are emptied before each test that asks for ``db`` (and every API test gets it through ``client``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import NullPool, text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.api.auth import mint_dev_token
from hub.config import Settings
from hub.db.embedded import runtime_role_url, start_embedded
from hub.db.engine import migrations_database_url
from hub.logging import quiet_libraries
from hub.main import create_app
from hub.runtime import Runtime, open_runtime
from hub.services.organisations import forget_standing
from tests.logscan import CapturingHandler, personal_identity_numbers_in

# Reference data: of a migration (coordinating_organisation_type), of the domain (referral_status_class).
KEEP_TABLES = {"alembic_version", "coordinating_organisation_type", "referral_status_class"}


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hub-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(data_dir: Path) -> Iterator[str]:
    """A real PostgreSQL 18 (the embedded one), deleted after the run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        url = start_embedded(data_dir / "pg", cleanup="delete")
    yield url


@pytest.fixture(scope="session")
def settings(data_dir: Path, pg_url: str) -> Settings:
    os.environ.pop("HUB_DATABASE_URL", None)
    return Settings(
        data_dir=data_dir,
        # As in production: the hub runs as a role that cannot alter the audit trail; the owner migrates.
        database_url=runtime_role_url(pg_url),
        migrations_database_url=pg_url,
        dev_mode=True,
        public_url="http://hub.test",
        # Tests seal when they mean to (seal_all, or a sealer of their own): a background sealer in every
        # loopback server would race their assertions and hold tables the next test's truncate locks.
        audit_sealer=False,
        # Likewise the flows' folder: the flows' reads fold first, and tests fold when they look at the tables.
        flow_folder=False,
    )


@pytest.fixture(scope="session")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as rt:
        yield rt


@pytest.fixture(scope="session")
def app(runtime: Runtime):  # type: ignore[no-untyped-def]
    return create_app(runtime=runtime)


@pytest.fixture(scope="session")
async def owner_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The hub connected as the tables' owner, for what its runtime role may not do: ``hub synth``'s bulk
    load (it switches triggers off), and tests that tamper with the audit trail behind the hub's back."""
    async with open_runtime(settings, owner=True) as rt:
        yield rt


async def empty_database(runtime: Runtime) -> None:
    """Every table but alembic's (and reference data) truncated, as the tables' owner."""
    engine = create_async_engine(migrations_database_url(runtime.settings), poolclass=NullPool)
    async with engine.begin() as conn:
        names = (await conn.execute(text("select tablename from pg_tables where schemaname = 'public'"))).scalars()
        tables = [n for n in names if n not in KEEP_TABLES]
        if tables:
            await conn.execute(text(f"truncate {', '.join(tables)} restart identity cascade"))
    await engine.dispose()
    forget_standing()  # the token verifier's cache of the organisations just removed


@pytest.fixture
async def db(runtime: Runtime) -> AsyncIterator[Runtime]:
    """An empty database (every table but alembic's truncated) before the test."""
    await empty_database(runtime)
    yield runtime


@pytest.fixture
async def client(app, db: Runtime) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
            yield c


@pytest.fixture
def token(settings: Settings) -> Callable[..., str]:
    def make(org: str = "nora-grundskola", *roles: str, **kw: object) -> str:
        return mint_dev_token(settings, organisation_id=org, roles=list(roles or ("system",)), **kw)  # type: ignore[arg-type]

    return make


def dev_auth(settings: Settings) -> Callable[..., dict[str, str]]:
    """``auth(org, *roles)``: a bearer header with a dev token (role ``system`` if none), for fixtures of
    any scope."""

    def make(org: str = "nora-grundskola", *roles: str) -> dict[str, str]:
        token = mint_dev_token(settings, organisation_id=org, roles=list(roles or ("system",)))
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def auth(settings: Settings) -> Callable[..., dict[str, str]]:
    return dev_auth(settings)


# --- no personal data in logs, for the whole run -----------------------------------------------------------
# Every record any logger emits during the run is formatted exactly as production formats it and kept; at
# the end of the session it is scanned for personal identity numbers (`tests/logscan.py`). One found fails
# the run, whichever test caused it.

_CAPTURED = CapturingHandler()


@pytest.fixture(scope="session", autouse=True)
def capture_all_logs() -> Iterator[CapturingHandler]:
    root = logging.getLogger()
    previous = root.level
    root.addHandler(_CAPTURED)
    root.setLevel(logging.INFO)  # the production default; DEBUG would only add library chatter
    quiet_libraries()  # as production does
    yield _CAPTURED
    root.removeHandler(_CAPTURED)
    root.setLevel(previous)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    found = personal_identity_numbers_in(_CAPTURED.lines)
    if found:
        print(f"\nPERSONAL IDENTITY NUMBERS IN THE LOGS of this run: {len(found)} line(s), e.g. {found[0]!r}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
