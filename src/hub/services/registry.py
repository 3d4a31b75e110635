"""The registry: organisations, where each receives (its endpoint) and what each offers (the service
directory, "Vägvisaren").

Who may change what: an ``admin`` of a ``regional-samordning`` organisation, the whole registry (and
(de)activates organisations: a deactivated one's tokens are refused, referral routing skips it); an
organisation's own ``admin``, its endpoint and its services; its own ``system``, its services' waiting
times (every update confirms the time). Any authenticated caller reads organisations and searches
services. Every change is audited as ``admin-change``, in the change's own transaction.

The referral service calls :func:`resolve_target` and :func:`active_endpoint`.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.adapters.addresses import AddressPolicy, url_refusal
from hub.adapters.registry import UnknownAdapter, adapter_class, available
from hub.db.registry import (
    Endpoint,
    EndpointRepository,
    OrganisationDirectory,
    RankKey,
    Service,
    ServiceFilter,
    ServiceRepository,
    stale_position,
)
from hub.db.repositories import OrganisationRepository
from hub.db.tables import Organisation
from hub.domain.audit import AuditAction
from hub.domain.errors import Conflict, FieldError, InvalidInput, NotFound, NotPermitted
from hub.domain.hsa import InvalidHsaId, InvalidOrganisationNumber, parse_hsa_id, parse_organisation_number
from hub.domain.principal import Role
from hub.domain.vocabulary import InterventionLevelsDoc, Vocabulary
from hub.services.auditing import audit
from hub.services.codes import unknown_codes
from hub.services.context import Actor, utcnow
from hub.services.organisations import forget_standing

__all__ = [
    "Endpoint",
    "Organisation",
    "OrganisationDraft",
    "Page",
    "ResolvedTarget",
    "Service",
    "ServiceDraft",
    "ServiceFilter",
    "ServiceView",
    "active_endpoint",
    "confirm_waiting_time",
    "create_service",
    "deactivate_service",
    "endpoint_address_errors",
    "get_endpoint",
    "get_registered_organisation",
    "get_service",
    "list_organisations",
    "put_endpoint",
    "put_organisation",
    "resolve_target",
    "search_services",
    "service_errors",
    "stale_services",
    "update_service",
    "validate_endpoint_config",
]

REGIONAL_TYPE = "regional-samordning"
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
# Config keys that name a secret value. A secret is configured by reference: a key ending in ``_ref``.
_SECRET_KEY = re.compile(r"(secret|password|passwd|api_?key|private_?key|token|credentials?)$", re.IGNORECASE)

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class ServiceView:
    """A service with its organisation; ``confirmed`` is false when the waiting time was never confirmed
    or not within the configured maximum age."""

    service: Service
    organisation: Organisation
    confirmed: bool


@dataclass(frozen=True)
class OrganisationDraft:
    name: str
    type: str
    municipality_code: str | None  # None: a county-wide unit of the region
    region_code: str
    parent_id: str | None = None
    hsa_id: str | None = None  # Inera's format (hub.domain.hsa); one organisation per HSA-id
    active: bool = True  # False: its tokens are refused, referral routing skips it (history kept)
    organisation_number: str | None = None  # NNNNNN-NNNN or ten digits; stored as ten digits


@dataclass(frozen=True)
class ServiceDraft:
    name: str
    description: str = ""
    intervention_level: str | None = None
    trappan_step: int | None = None
    age_min: int = 0
    age_max: int = 18
    referral_kinds: tuple[str, ...] = ()
    dimensions: tuple[str, ...] = ()
    municipality_codes: tuple[str, ...] = ()
    active: bool = True


@dataclass(frozen=True)
class ResolvedTarget:
    """Who receives a referral: the organisation, and the service when the sender named one."""

    organisation: Organisation
    service: Service | None = None


# ------------------------------------------------------------------------------------------- helpers
def is_confirmed(confirmed_at: datetime | None, *, now: datetime, max_age_days: int) -> bool:
    return confirmed_at is not None and confirmed_at >= now - timedelta(days=max_age_days)


def _view(pair: tuple[Service, Organisation], *, now: datetime, max_age_days: int) -> ServiceView:
    service, org = pair
    return ServiceView(service, org, is_confirmed(service.waiting_confirmed_at, now=now, max_age_days=max_age_days))


def _encode_cursor(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _bad_cursor() -> InvalidInput:
    return InvalidInput("The cursor is not one this hub issued.", errors=[FieldError("cursor", "invalid cursor")])


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise _bad_cursor() from None
    if not isinstance(payload, dict):
        raise _bad_cursor()
    return payload


def _pointer(*parts: object) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


async def _is_regional_admin(session: AsyncSession, actor: Actor) -> bool:
    if not actor.principal.has_any(Role.ADMIN):
        return False
    org = await OrganisationRepository(session).get(actor.organisation_id)
    return org is not None and org.type == REGIONAL_TYPE


async def _require_manager(session: AsyncSession, actor: Actor, organisation_id: str, *, system: bool = False) -> None:
    """The organisation's own admin (or, with ``system``, its own system) or a regional admin."""
    own_roles = (Role.ADMIN, Role.SYSTEM) if system else (Role.ADMIN,)
    if actor.organisation_id == organisation_id and actor.principal.has_any(*own_roles):
        return
    if not await _is_regional_admin(session, actor):
        who = "its own admin or system" if system else "its own admin"
        raise NotPermitted(f"Only {who} or a regional admin may manage {organisation_id}'s registry entries.")


async def _audit_change(
    session: AsyncSession, actor: Actor, change: str, entity: str, entity_id: str, org_id: str, **details: Any
) -> None:
    await audit(
        session,
        actor,
        AuditAction.ADMIN_CHANGE,
        entity_type=entity,
        entity_id=entity_id,
        counterpart_organisation=org_id if org_id != actor.organisation_id else None,
        details={"change": change, **details},
    )


# ------------------------------------------------------------------------------------- organisations
def checked_identifiers(draft: OrganisationDraft) -> tuple[OrganisationDraft, list[FieldError]]:
    """The draft with its organisation number as ten digits, and what is wrong with its HSA-id and
    organisation number (each error says which part: country code, number, check digit, suffix)."""
    errors: list[FieldError] = []
    if draft.hsa_id is not None:
        try:
            parse_hsa_id(draft.hsa_id)
        except InvalidHsaId as exc:
            errors.append(FieldError("/hsa_id", exc.message, f"hsa-id-{exc.reason}"))
    number = draft.organisation_number
    if number is not None:
        try:
            number = parse_organisation_number(number)
        except InvalidOrganisationNumber as exc:
            errors.append(FieldError("/organisation_number", exc.message, f"organisation-number-{exc.reason}"))
    return replace(draft, organisation_number=number), errors


def _hsa_id_taken(organisation_id: str) -> Conflict:
    return Conflict(
        "Another organisation in the registry carries this HSA-id.",
        errors=[FieldError("/hsa_id", f"already the HSA-id of {organisation_id}", "hsa-id-taken")],
    )


async def list_organisations(
    session: AsyncSession,
    *,
    type: str | None,
    municipality_code: str | None,
    cursor: str | None,
    limit: int,
    hsa_id: str | None = None,
) -> Page[Organisation]:
    """A page of organisations by id; ``hsa_id`` finds the one carrying it (a malformed one is a 422)."""
    if hsa_id is not None:
        try:
            parse_hsa_id(hsa_id)
        except InvalidHsaId as exc:
            error = FieldError("hsa_id", exc.message, f"hsa-id-{exc.reason}")
            raise InvalidInput("The HSA-id is not valid.", errors=[error]) from None
    after = _decode_cursor(cursor).get("after") if cursor is not None else None
    if cursor is not None and not isinstance(after, str):
        raise _bad_cursor()
    rows = await OrganisationDirectory(session).page(
        type=type, municipality_code=municipality_code, after_id=after, limit=limit + 1, hsa_id=hsa_id
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, _encode_cursor({"after": rows[-1].id}) if more else None)


async def get_registered_organisation(session: AsyncSession, *, organisation_id: str) -> Organisation:
    org = await OrganisationDirectory(session).fresh(organisation_id)
    if org is None:
        raise NotFound(f"No organisation {organisation_id!r} in the registry.")
    return org


async def organisation_problems(
    session: AsyncSession, *, actor: Actor, vocabulary: Vocabulary, organisation_id: str, draft: OrganisationDraft
) -> tuple[OrganisationDraft, list[FieldError], Conflict | None]:
    """The draft as it would be stored (organisation number as ten digits), what is wrong with it, and the
    clash when another organisation carries its HSA-id. Shared by :func:`put_organisation` and the import."""
    draft, errors = checked_identifiers(draft)
    if not SLUG.match(organisation_id):
        errors.append(FieldError("organisation_id", "lower-case letters, digits and '-', 2 to 64 characters"))
    if draft.type not in vocabulary.codes("organisation-types"):
        errors.append(FieldError("/type", f"{draft.type!r} is not an organisation-type code", "unknown-code"))
    if draft.municipality_code is not None and draft.municipality_code[:2] != draft.region_code:
        errors.append(FieldError("/municipality_code", f"not a municipality of region {draft.region_code}"))
    directory = OrganisationDirectory(session)
    parent = draft.parent_id
    if parent is not None and (parent == organisation_id or await directory.fresh(parent) is None):
        errors.append(FieldError("/parent_id", "no such (other) organisation in the registry", "unknown-organisation"))
    if not draft.active and organisation_id == actor.organisation_id:
        errors.append(FieldError("/active", "an organisation cannot deactivate itself (its admins would lose access)"))
    holder = await directory.by_hsa_id(draft.hsa_id) if draft.hsa_id is not None and not errors else None
    clash = _hsa_id_taken(holder.id) if holder is not None and holder.id != organisation_id else None
    return draft, errors, clash


async def write_organisation(
    session: AsyncSession, *, actor: Actor, organisation_id: str, draft: OrganisationDraft
) -> bool:
    """Store a checked draft and audit the change, without committing; True when it was created."""
    created = await OrganisationDirectory(session).lock(organisation_id) is None
    await OrganisationRepository(session).upsert(Organisation(id=organisation_id, **asdict(draft)))
    change = "organisation-created" if created else "organisation-updated"
    await _audit_change(session, actor, change, "Organisation", organisation_id, organisation_id, **asdict(draft))
    return created


async def require_regional_admin(session: AsyncSession, actor: Actor) -> None:
    if not await _is_regional_admin(session, actor):
        raise NotPermitted("Only an admin of a regional coordination organisation may change organisations.")


async def put_organisation(
    session: AsyncSession, *, actor: Actor, vocabulary: Vocabulary, organisation_id: str, draft: OrganisationDraft
) -> tuple[Organisation, bool]:
    """Create or replace an organisation (regional admins). Returns it and whether it was created."""
    await require_regional_admin(session, actor)
    draft, errors, clash = await organisation_problems(
        session, actor=actor, vocabulary=vocabulary, organisation_id=organisation_id, draft=draft
    )
    if errors:
        raise InvalidInput("The organisation cannot be registered as given.", errors=errors)
    if clash is not None:
        raise clash
    try:
        created = await write_organisation(session, actor=actor, organisation_id=organisation_id, draft=draft)
        await session.commit()
    except IntegrityError as exc:  # another request registered the HSA-id since the check: still a 409
        await session.rollback()
        if "organisation_hsa_id" not in str(exc.orig):
            raise
        raise _hsa_id_taken("another organisation") from None
    forget_standing(organisation_id)  # honoured at once here; other processes within their cache's TTL
    return await get_registered_organisation(session, organisation_id=organisation_id), created


# ----------------------------------------------------------------------------------------- endpoints
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
    await _require_manager(session, actor, organisation_id)
    endpoint = await EndpointRepository(session).active_for(organisation_id)
    if endpoint is None:
        raise NotFound(f"{organisation_id} has no active endpoint.")
    return endpoint


async def put_endpoint(
    session: AsyncSession,
    *,
    actor: Actor,
    organisation_id: str,
    adapter: str,
    config: dict[str, Any],
    addresses: AddressPolicy,
) -> Endpoint:
    """Make ``adapter`` + ``config`` the organisation's one active endpoint; the previous one is retired.
    Its URLs must be ones ``addresses`` allows (the worker checks each connection again)."""
    await _require_manager(session, actor, organisation_id)
    stored = validate_endpoint_config(adapter, config)
    refused = await endpoint_address_errors(stored, addresses)  # name lookups: before any row is locked
    if refused:
        raise InvalidInput("The endpoint points where the hub does not deliver.", errors=refused)
    if await OrganisationDirectory(session).lock(organisation_id) is None:
        raise NotFound(f"No organisation {organisation_id!r} in the registry.")
    repo = EndpointRepository(session)
    previous = await repo.active_for(organisation_id)
    endpoint = await repo.replace(organisation_id, adapter=adapter, config=stored, now=actor.now)
    await _audit_change(
        session,
        actor,
        "endpoint-set",
        "Endpoint",
        str(endpoint.id),
        organisation_id,
        adapter=adapter,
        config_keys=sorted(stored),
        previous_endpoint=str(previous.id) if previous else None,
    )
    await session.commit()
    return endpoint


async def active_endpoint(session: AsyncSession, organisation_id: str) -> tuple[str, dict[str, Any]] | None:
    """The adapter name and config of the organisation's active endpoint, or None when it has none.
    The config holds secret *references* only; resolve them through ``AdapterContext.secret``."""
    endpoint = await EndpointRepository(session).active_for(organisation_id)
    return (endpoint.adapter, dict(endpoint.config)) if endpoint else None


# ------------------------------------------------------------------------------------------ services
def service_errors(draft: ServiceDraft, vocabulary: Vocabulary) -> list[FieldError]:
    """What is wrong with a service description against the shared vocabulary (empty: nothing)."""
    errors: list[FieldError] = []
    if draft.age_min > draft.age_max:
        errors.append(FieldError("/age_min", "must not be greater than age_max"))
    levels = vocabulary.get("intervention-levels")
    assert isinstance(levels, InterventionLevelsDoc)
    level = draft.intervention_level
    if level is not None and level not in {p.code for p in levels.prevention_levels}:
        errors.append(FieldError("/intervention_level", f"{level!r} is not a prevention level", "unknown-code"))
    elif level is not None and draft.trappan_step is not None:
        fits = {r.step: r.levels for r in levels.relations}.get(f"step-{draft.trappan_step}", ())
        if level not in fits:
            msg = f"TABB-Trappan step {draft.trappan_step} goes with {', '.join(fits)}"
            errors.append(FieldError("/intervention_level", msg, "inconsistent"))
    errors += unknown_codes(vocabulary, "referral-kind", draft.referral_kinds, "/referral_kinds")
    indicators = vocabulary.indicator_codes()
    errors += [
        FieldError(f"/dimensions/{i}", f"{code!r} is not a wellbeing indicator", "unknown-code")
        for i, code in enumerate(draft.dimensions)
        if code not in indicators
    ]
    return errors


def _service_values(draft: ServiceDraft) -> dict[str, Any]:
    values = asdict(draft)
    for name in ("referral_kinds", "dimensions", "municipality_codes"):
        values[name] = list(dict.fromkeys(values[name]))  # keep order, drop repeats
    return values


async def get_service(session: AsyncSession, *, service_id: str, max_age_days: int) -> ServiceView:
    found = await ServiceRepository(session).get(service_id)
    if found is None:
        raise NotFound(f"No service {service_id!r} in the registry.")
    return _view(found, now=utcnow(), max_age_days=max_age_days)


async def create_service(
    session: AsyncSession,
    *,
    actor: Actor,
    vocabulary: Vocabulary,
    organisation_id: str,
    draft: ServiceDraft,
    service_id: str | None = None,
    max_age_days: int,
) -> ServiceView:
    await _require_manager(session, actor, organisation_id)
    if await OrganisationDirectory(session).fresh(organisation_id) is None:
        raise InvalidInput("No such organisation.", errors=[FieldError("/organisation_id", "not in the registry")])
    errors = service_errors(draft, vocabulary)
    if service_id is not None and not SLUG.match(service_id):
        errors.append(FieldError("/id", "lower-case letters, digits and '-', 2 to 64 characters"))
    if errors:
        raise InvalidInput("The service cannot be registered as given.", errors=errors)
    sid = service_id or f"svc-{uuid.uuid4().hex[:12]}"
    values = _service_values(draft)
    service = Service(id=sid, organisation_id=organisation_id, created_at=actor.now, updated_at=actor.now, **values)
    if not await ServiceRepository(session).add(service):
        raise Conflict(f"A service with id {sid!r} already exists.")
    await _audit_change(session, actor, "service-created", "Service", sid, organisation_id, **values)
    await session.commit()
    return await get_service(session, service_id=sid, max_age_days=max_age_days)


async def update_service(
    session: AsyncSession,
    *,
    actor: Actor,
    vocabulary: Vocabulary,
    service_id: str,
    draft: ServiceDraft,
    max_age_days: int,
) -> ServiceView:
    """Replace a service's description (everything but its waiting time, which has its own use case)."""
    repo = ServiceRepository(session)
    found = await repo.get(service_id, for_update=True)
    if found is None:
        raise NotFound(f"No service {service_id!r} in the registry.")
    await _require_manager(session, actor, found[0].organisation_id)
    errors = service_errors(draft, vocabulary)
    if errors:
        raise InvalidInput("The service cannot be changed as given.", errors=errors)
    values = _service_values(draft)
    old = found[0].model_dump(include=set(values))
    changed = {k: v for k, v in values.items() if old.get(k) != v}
    await repo.update(service_id, now=actor.now, **values)
    await _audit_change(session, actor, "service-updated", "Service", service_id, found[0].organisation_id, **changed)
    await session.commit()
    return await get_service(session, service_id=service_id, max_age_days=max_age_days)


async def deactivate_service(session: AsyncSession, *, actor: Actor, service_id: str) -> None:
    """Take a service out of the directory. It stays (referrals may name it) but is no longer found."""
    repo = ServiceRepository(session)
    found = await repo.get(service_id, for_update=True)
    if found is None:
        raise NotFound(f"No service {service_id!r} in the registry.")
    await _require_manager(session, actor, found[0].organisation_id)
    if found[0].active:
        await repo.update(service_id, now=actor.now, active=False)
        await _audit_change(session, actor, "service-deactivated", "Service", service_id, found[0].organisation_id)
    await session.commit()


async def confirm_waiting_time(
    session: AsyncSession, *, actor: Actor, service_id: str, waiting_days: int, max_age_days: int
) -> ServiceView:
    """Set the current waiting time and mark it confirmed now (the organisation's system keeps it current)."""
    repo = ServiceRepository(session)
    found = await repo.get(service_id, for_update=True)
    if found is None:
        raise NotFound(f"No service {service_id!r} in the registry.")
    service = found[0]
    await _require_manager(session, actor, service.organisation_id, system=True)
    await repo.update(service_id, now=actor.now, waiting_days=waiting_days, waiting_confirmed_at=actor.now)
    await _audit_change(
        session,
        actor,
        "service-waiting-time",
        "Service",
        service_id,
        service.organisation_id,
        waiting_days=waiting_days,
        previous_waiting_days=service.waiting_days,
    )
    await session.commit()
    return await get_service(session, service_id=service_id, max_age_days=max_age_days)


async def search_services(
    session: AsyncSession,
    *,
    vocabulary: Vocabulary,
    query: ServiceFilter,
    cursor: str | None,
    limit: int,
    max_age_days: int,
) -> Page[ServiceView]:
    """Active services that match, ranked as ``ServiceRepository.search`` describes."""
    checks = [
        ("referral_kind", [query.referral_kind] if query.referral_kind else [], vocabulary.codes("referral-kinds")),
        (
            "organisation_type",
            [query.organisation_type] if query.organisation_type else [],
            vocabulary.codes("organisation-types"),
        ),
        ("dimension", list(query.dimensions), vocabulary.indicator_codes()),
    ]
    errors = [
        FieldError(param, f"{code!r} is not a known {param.replace('_', ' ')} code", "unknown-code")
        for param, codes, known in checks
        for code in codes
        if code not in known
    ]
    if query.municipality_code is not None and not re.fullmatch(r"[0-9]{4}", query.municipality_code):
        errors.append(FieldError("municipality", "an SCB municipality code: four digits"))
    if query.trappan_step is not None and not 0 <= query.trappan_step <= 3:
        errors.append(FieldError("trappan_step", "a TABB-Trappan step: 0 to 3"))
    if errors:
        raise InvalidInput("The search is not valid.", errors=errors)
    now = utcnow()
    state = _decode_cursor(cursor) if cursor is not None else None
    try:
        # The confirmation cut-off travels in the cursor, so rows keep their rank from page to page.
        since = datetime.fromisoformat(state["since"]) if state is not None else now - timedelta(days=max_age_days)
        after: RankKey | None = None
        if state is not None:
            local, confirmed, wait, name, sid = state["after"]
            after = (int(local), int(confirmed), int(wait), str(name), str(sid))
    except (KeyError, TypeError, ValueError):
        raise _bad_cursor() from None
    rows = await ServiceRepository(session).search(query, confirmed_since=since, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [ServiceView(s, o, key[1] == 0) for s, o, key in rows]
    next_cursor = _encode_cursor({"since": since.isoformat(), "after": list(rows[-1][2])}) if more else None
    return Page(items, next_cursor)


async def stale_services(
    session: AsyncSession,
    *,
    actor: Actor,
    organisation_id: str | None,
    cursor: str | None,
    limit: int,
    max_age_days: int,
) -> Page[ServiceView]:
    """Services whose waiting time needs confirming: the caller's own (a regional admin: any one
    organisation's, or all when ``organisation_id`` is None)."""
    if not actor.principal.has_any(Role.ADMIN, Role.SYSTEM):
        raise NotPermitted("This needs one of the roles: admin, system.")
    if organisation_id is None and not await _is_regional_admin(session, actor):
        organisation_id = actor.organisation_id
    elif organisation_id is not None:
        await _require_manager(session, actor, organisation_id, system=True)
    now = utcnow()
    state = _decode_cursor(cursor) if cursor is not None else None
    try:
        before = datetime.fromisoformat(state["before"]) if state is not None else now - timedelta(days=max_age_days)
        after = (datetime.fromisoformat(state["after"][0]), str(state["after"][1])) if state is not None else None
    except (KeyError, TypeError, ValueError, IndexError):
        raise _bad_cursor() from None
    rows = await ServiceRepository(session).stale(
        organisation_id=organisation_id, confirmed_before=before, after=after, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        at, sid = stale_position(rows[-1][0])
        next_cursor = _encode_cursor({"before": before.isoformat(), "after": [at.isoformat(), sid]})
    return Page([ServiceView(s, o, False) for s, o in rows], next_cursor)


# ---------------------------------------------------------------------------------- referral targets
async def resolve_target(
    session: AsyncSession,
    *,
    organisation_id: str | None = None,
    service_id: str | None = None,
    organisation_type: str | None = None,
    municipality_code: str | None = None,
    referral_kind: str | None = None,
) -> ResolvedTarget:
    """Who a referral goes to, named in exactly one way: an organisation; a service (which must be
    active and, when ``referral_kind`` is given, accept it); or an organisation type in a municipality
    (the one unit of that type there, else the county-wide unit of that type; ``referral_kind`` narrows
    several candidates to those with a service accepting it). Anything else is ``InvalidInput`` at
    ``/target``: none or several ways given, nothing found, or more than one candidate."""

    def invalid(message: str) -> InvalidInput:
        detail = f"The referral's target cannot be resolved: {message}."
        return InvalidInput(detail, errors=[FieldError("/target", message)])

    by_type = organisation_type is not None or municipality_code is not None
    if sum([organisation_id is not None, service_id is not None, by_type]) != 1:
        raise invalid("name exactly one of an organisation, a service, or an organisation type and municipality")
    if organisation_id is not None:
        org = await OrganisationDirectory(session).fresh(organisation_id)
        if org is None:
            raise invalid(f"no organisation {organisation_id!r} in the registry")
        if not org.active:
            raise invalid(f"organisation {organisation_id!r} is deactivated in the registry")
        return ResolvedTarget(org)
    if service_id is not None:
        found = await ServiceRepository(session).get(service_id)
        if found is None or not found[0].active:
            raise invalid(f"no active service {service_id!r} in the registry")
        if referral_kind is not None and referral_kind not in found[0].referral_kinds:
            raise invalid(f"service {service_id!r} does not accept {referral_kind!r}")
        return ResolvedTarget(found[1], found[0])
    if organisation_type is None or municipality_code is None:
        raise invalid("an organisation type needs a municipality, and a municipality an organisation type")
    directory = OrganisationDirectory(session)
    candidates = await directory.of_type(organisation_type, municipality_code=municipality_code)
    if not candidates:
        candidates = await directory.of_type(
            organisation_type, municipality_code=None, region_code=municipality_code[:2]
        )
    if len(candidates) > 1 and referral_kind is not None:
        accepting = await ServiceRepository(session).accepting([c.id for c in candidates], referral_kind=referral_kind)
        candidates = [c for c in candidates if c.id in accepting] or candidates
    if not candidates:
        raise invalid(f"no {organisation_type} in municipality {municipality_code} or its county")
    if len(candidates) > 1:
        raise invalid(
            f"{len(candidates)} organisations of type {organisation_type} serve {municipality_code}; name one"
        )
    return ResolvedTarget(candidates[0])
