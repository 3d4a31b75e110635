"""The registry: organisations, where each receives (its endpoint) and what each offers (the service
directory, "Vägvisaren").

Who may change what: an ``admin`` of a ``regional-samordning`` organisation, the whole registry (and
(de)activates organisations: a deactivated one's tokens are refused, referral routing skips it); an
organisation's own ``admin``, its endpoint and its services; its own ``system``, its services' waiting
times (every update confirms the time). Any authenticated caller reads organisations and searches
services. Every change is a use case with its own unit of work: the change and its ``admin-change``
audit entry, one commit.

One module per capability: ``organisations``, ``endpoints``, ``services`` (the directory's entries),
``directory`` (finding them), ``targets`` (a referral's recipient); ``access`` says who may change what.
The referral service calls :func:`resolve_target` and :func:`active_endpoint`.
"""

from hub.db.registry import Endpoint, Service, ServiceFilter
from hub.db.tables import Organisation
from hub.services.registry.access import REGIONAL_TYPE, SLUG
from hub.services.registry.directory import search_services, stale_services
from hub.services.registry.endpoints import (
    active_endpoint,
    endpoint_address_errors,
    get_endpoint,
    put_endpoint,
    validate_endpoint_config,
)
from hub.services.registry.organisations import (
    OrganisationDraft,
    get_registered_organisation,
    list_organisations,
    put_organisation,
)
from hub.services.registry.paging import Page
from hub.services.registry.services import (
    ServiceDraft,
    ServiceView,
    confirm_waiting_time,
    create_service,
    deactivate_service,
    get_service,
    is_confirmed,
    service_errors,
    update_service,
)
from hub.services.registry.targets import ResolvedTarget, resolve_target

__all__ = [
    "REGIONAL_TYPE",
    "SLUG",
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
    "is_confirmed",
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
