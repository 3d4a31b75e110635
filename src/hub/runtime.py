"""What a running hub holds: settings, the database, the token verifier, the vocabulary."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hub.adapters.addresses import AddressPolicy
from hub.adapters.registry import enable as enable_adapters
from hub.config import Settings
from hub.db import migrate
from hub.db.engine import (
    database_url,
    flows_database_url,
    make_engine,
    make_sessionmaker,
    migrations_database_url,
)
from hub.domain.identity import Pseudonymizer
from hub.domain.policy import Policy
from hub.domain.referrals import Lifecycle
from hub.domain.vocabulary import Vocabulary
from hub.keys import PayloadCipher, payload_cipher, pseudonymizer
from hub.policy import check_policy_codes, load_policy
from hub.vocabulary import load_vocabulary

log = logging.getLogger("hub")


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # Coordinators' flow reads: read-only sessions on HUB_FLOWS_DATABASE_URL (a replica), else ``sessions``.
    flows_sessions: async_sessionmaker[AsyncSession]
    vocabulary: Vocabulary
    policy: Policy
    pseudonymizer: Pseudonymizer
    cipher: PayloadCipher
    head_revision: str | None
    # The time the hub sees: each request's ``Actor.now`` (hub.api.deps.actor_for) and the delivery
    # worker's re-checks read it. The system clock; tests set another to decide on a chosen day (which
    # statute and dated policy rule were in force) without waiting for it.
    clock: Callable[[], datetime] = system_clock

    @property
    def address_policy(self) -> AddressPolicy:
        """Where deliveries may connect (``hub.adapters.addresses``)."""
        return address_policy(self.settings)

    async def current_revision(self) -> str | None:
        """The database's migration revision now (``/readyz`` compares it with ``head_revision``)."""
        return await migrate.current_revision(self.engine)


def address_policy(settings: Settings) -> AddressPolicy:
    return AddressPolicy(dev_mode=settings.dev_mode, allowed_networks=tuple(settings.endpoint_allowed_networks))


def configuration_problems(settings: Settings) -> list[str]:
    """What a hub outside dev mode lacks to serve (dev mode makes its own keys): empty when nothing."""
    if settings.dev_mode:
        return []
    problems = []
    if settings.jwks_url is None and settings.jwt_public_key_file is None and settings.trusted_issuers_file is None:
        problems.append("the token keys: set HUB_TRUSTED_ISSUERS_FILE, HUB_JWKS_URL or HUB_JWT_PUBLIC_KEY_FILE")
    if settings.pseudonym_keys is None:
        problems.append("the pseudonym keys: set HUB_PSEUDONYM_KEYS")
    if settings.payload_keys is None:
        problems.append("the payload encryption keys: set HUB_PAYLOAD_KEYS")
    if settings.audit_signing_key is None:
        problems.append("the audit log's signing key: set HUB_AUDIT_SIGNING_KEY")
    return problems


@asynccontextmanager
async def open_runtime(settings: Settings, *, url: str | None = None, owner: bool = False) -> AsyncIterator[Runtime]:
    """Start (or connect to) the database, migrate if configured, load the vocabulary.

    The runtime connects as ``HUB_DATABASE_URL``'s role (``url`` if given), which cannot alter the audit
    trail; ``owner``: as the tables' owner instead, for bulk maintenance that switches triggers off
    (``hub synth``)."""
    enable_adapters(settings.adapters)  # AdapterLoadError: a listed adapter does not load; do not start
    vocabulary = load_vocabulary(settings.vocabulary_dirs)
    policy = load_policy(settings.policy_file)
    check_policy_codes(policy, vocabulary)
    pseudonyms = pseudonymizer(settings)
    cipher = payload_cipher(settings)
    runtime_url = url or database_url(settings)
    owner_url = migrations_database_url(settings)
    if settings.apply_migrations_on_start:
        await migrate.upgrade_async(
            owner_url,
            settings.migrations_dir,
            runtime_url=runtime_url,
            status_classes=Lifecycle.of(vocabulary).classes(),
        )
    url = owner_url if owner else runtime_url
    engine = make_engine(url, settings)
    flows_url = flows_database_url(settings)
    flows_engine = None if flows_url is None else make_engine(flows_url, settings, read_only=True)
    sessions = make_sessionmaker(engine)
    try:
        yield Runtime(
            settings=settings,
            url=url,
            engine=engine,
            sessions=sessions,
            flows_sessions=sessions if flows_engine is None else make_sessionmaker(flows_engine),
            vocabulary=vocabulary,
            policy=policy,
            pseudonymizer=pseudonyms,
            cipher=cipher,
            head_revision=migrate.head_revision(settings.migrations_dir),
        )
    finally:
        await engine.dispose()
        if flows_engine is not None:
            await flows_engine.dispose()
