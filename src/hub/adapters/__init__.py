"""The integrator SDK: what an adapter package imports (docs/adapters.md).

``from hub.adapters import Adapter, AdapterConfig, Message, Receipt, DeliveryError, ...`` is the contract
(``hub.adapters.base``) plus the HTTP helpers that map an HTTP exchange onto it. The conformance kit is
``hub.adapters.conformance``; the built-in adapters are ``hub.adapters.webhook``, ``.fhir_r4`` and
``.mailbox``; ``hub.adapters.registry`` finds installed adapters through the ``hub.adapters`` entry points.

Errors, by how the worker recovers::

    DeliveryError                 retried with backoff (retry_after_seconds, when the receiver said)
    └── PermanentDeliveryError    dead-lettered at once: retrying cannot help
        └── AdapterConfigError    the endpoint's configuration is wrong: dead-lettered, fix the endpoint
            └── RefusedAddress    its address is one the hub may not connect to (hub.adapters.addresses)
"""

from hub.adapters._kit_http import http_request, raise_for_delivery, remote_id, retry_after_seconds
from hub.adapters.addresses import RefusedAddress
from hub.adapters.base import (
    Adapter,
    AdapterConfig,
    AdapterConfigError,
    AdapterContext,
    DeliveryError,
    Health,
    InboundStatus,
    Message,
    MessageKind,
    OpenReferral,
    PermanentDeliveryError,
    Receipt,
)

__all__ = [
    "Adapter",
    "AdapterConfig",
    "AdapterConfigError",
    "AdapterContext",
    "DeliveryError",
    "Health",
    "InboundStatus",
    "Message",
    "MessageKind",
    "OpenReferral",
    "PermanentDeliveryError",
    "Receipt",
    "RefusedAddress",
    "http_request",
    "raise_for_delivery",
    "remote_id",
    "retry_after_seconds",
]
