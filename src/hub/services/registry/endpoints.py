"""Where each organisation receives: its one active endpoint (an adapter and its config), set by its own
admin or a regional admin. The config holds secret *references* only, never a secret's value."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.adapters.addresses import AddressPolicy, url_refusal
from hub.adapters.registry import UnknownAdapter, adapter_class, available
from hub.db.registry import Endpoint, EndpointRepository, OrganisationDirectory
from hub.db.uow import UnitOfWork
from hub.domain.errors import FieldError, InvalidInput, NotFound
from hub.runtime import Runtime
from hub.services.context import Actor
from hub.services.registry.access import audit_change, require_manager

# Config keys that name a secret value. A secret is configured by reference: a key ending in ``_ref``.
_SECRET_KEY = re.compile(r"(secret|password|passwd|api_?key|private_?key|token|credentials?)$", re.IGNORECASE)


def _pointer(*parts: object) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def validate_endpoint_config(adapter: str, config: dict[str, Any]) -> dict[str, Any]:
    """Check ``config`` against the adapter's ``Config``; return it as stored (normalised, only the keys
    given). A key the adapter does not declare and that names a secret (``password``, ``…_secret``…) is
    refused with a hint: secrets are referenced by name (``…_ref``), never stored."""
    try:
        cls = adapter_class(adapter)
    except UnknownAdapter:
        installed = ", ".join(sorted(available()))
        raise InvalidInput(
            f"No adapter {adapter!r} is installed.",
            errors=[FieldError("/adapter", f"unknown adapter; installed: {installed}", "unknown-adapter")],
        ) from None
    errors = [
        FieldError(
            _pointer("config", key),
            "looks like a secret value: reference the secret by name instead "
            "(a '<name>_ref' field) and keep the value in the hub's secret store",
            "inline-secret",
        )
        for key in config
        if key not in cls.Config.model_fields and _SECRET_KEY.search(key) and not key.endswith("_ref")
    ]
    try:
        validated = cls.Config.model_validate(config)
    except ValidationError as exc:
        seen = {e.pointer for e in errors}
        for err in exc.errors():
            pointer = _pointer("config", *err["loc"])
            if pointer not in seen:
                errors.append(FieldError(pointer, err["msg"], err["type"]))
    if errors:
        raise InvalidInput(f"The config does not fit the {adapter} adapter.", errors=errors)
    stored: dict[str, Any] = validated.model_dump(mode="json", exclude_unset=True)
    return stored


async def endpoint_address_errors(stored: dict[str, Any], addresses: AddressPolicy) -> list[FieldError]:
    """Every URL an endpoint's config holds (any adapter's) must point where the hub may deliver: not
    loopback, private, link-local or cloud metadata outside dev mode (``hub.adapters.addresses``)."""
    errors = []
    for key, value in stored.items():
        if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
            refused = await url_refusal(value, addresses)
            if refused is not None:
                why = f"{refused}: the hub does not deliver there (on-premise networks: HUB_ENDPOINT_ALLOWED_NETWORKS)"
                errors.append(FieldError(_pointer("config", key), why, "forbidden-address"))
    return errors


async def get_endpoint(session: AsyncSession, *, actor: Actor, organisation_id: str) -> Endpoint:
    await require_manager(session, actor, organisation_id)
    endpoint = await EndpointRepository(session).active_for(organisation_id)
    if endpoint is None:
        raise NotFound(f"{organisation_id} has no active endpoint.")
    return endpoint


async def put_endpoint(
    *, actor: Actor, organisation_id: str, adapter: str, config: dict[str, Any], runtime: Runtime
) -> Endpoint:
    """Make ``adapter`` + ``config`` the organisation's one active endpoint, audited, one commit; the
    previous one is retired. Its URLs must be ones the runtime's address policy allows (the worker checks
    each connection again)."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        await require_manager(uow.session, actor, organisation_id)
        stored = validate_endpoint_config(adapter, config)
        # Name lookups: before any row is locked (the authorisation read holds no lock).
        refused = await endpoint_address_errors(stored, runtime.address_policy)
        if refused:
            raise InvalidInput("The endpoint points where the hub does not deliver.", errors=refused)
        if await OrganisationDirectory(uow.session).lock(organisation_id) is None:
            raise NotFound(f"No organisation {organisation_id!r} in the registry.")
        repo = EndpointRepository(uow.session)
        previous = await repo.active_for(organisation_id)
        endpoint = await repo.replace(organisation_id, adapter=adapter, config=stored, now=actor.now)
        await audit_change(
            uow.session,
            actor,
            "endpoint-set",
            "Endpoint",
            str(endpoint.id),
            organisation_id,
            adapter=adapter,
            config_keys=sorted(stored),
            previous_endpoint=str(previous.id) if previous else None,
        )
        await uow.commit()
    return endpoint


async def active_endpoint(session: AsyncSession, organisation_id: str) -> tuple[str, dict[str, Any]] | None:
    """The adapter name and config of the organisation's active endpoint, or None when it has none.
    The config holds secret *references* only; resolve them through ``AdapterContext.secret``."""
    endpoint = await EndpointRepository(session).active_for(organisation_id)
    return (endpoint.adapter, dict(endpoint.config)) if endpoint else None
