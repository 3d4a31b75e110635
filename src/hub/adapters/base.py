"""The adapter contract: how the hub hands a message to a journal or case system, and hears back.

An adapter is a class with a ``name``, a pydantic ``Config`` model (validated when an organisation's
endpoint is registered, so a bad configuration is refused at the API, not at 3 a.m. in the worker), and
three coroutines: ``deliver`` (required), ``poll`` (optional: status changes the receiver's system made
that the hub has to fetch) and ``health``. Adapters are discovered through the ``hub.adapters`` entry-point
group (``hub.adapters.registry``), so an integrator ships one as its own pip package.

The worker calls ``deliver`` at least once per message, possibly more (a crash after the receiver stored
the message but before the hub recorded the receipt). ``Message.idempotency_key`` is stable across every
retry of the same message: adapters must pass it on, and receivers dedupe on it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Self

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

MessageKind = Literal[
    "referral",
    "status-event",
    "team-offer",
    "plan-version",
    "plan-notice",
    "plan-review",
    "sip-invitation",
    "sip-answer",
]


@dataclass(frozen=True)
class Message:
    """One thing to hand over: a referral, a change of a referral's status for the other party, or a
    team offer's news (``team-offer``: the named person's role offered to the receiver, or the answer to
    an offer it made; ``body["team_offer"]``, docs/team-and-plan.md). ``referral_id`` is None for a team
    offer: it concerns no referral. A child's plan travels as ``plan-version`` (the sections the receiver's
    legal basis covers, ``body["plan_version"]``), ``plan-notice`` (no content: a plan exists and whom to
    ask, ``body["plan_notice"]``) and ``plan-review`` (a review for the plan's author, ``body["plan_review"]``);
    ``referral_id`` is None for them too. A SIP meeting's news travels as ``sip-invitation`` (an invitation,
    or its cancellation, to an invitee: ``body["sip_invitation"]``) and ``sip-answer`` (an invitee's answer
    to the inviter: ``body["sip_answer"]``; docs/team-and-plan.md); no referral either."""

    kind: MessageKind
    message_id: str  # the hub's id for this message (stable across retries)
    idempotency_key: str  # what the receiver dedupes on (stable across retries)
    referral_id: str | None
    sender_organisation: str  # who the message is from (for a status event: the party that made it)
    recipient_organisation: str
    body: dict[str, Any]  # the JSON document, already stripped to the permitted data categories
    created_at: datetime


@dataclass(frozen=True)
class Receipt:
    """The hand-over succeeded. ``remote_id`` is the receiver's id for the message, where it has one.
    ``acknowledged`` is false when the message is only stored for the receiver (the mailbox): the referral
    becomes *received* when the receiver's system acknowledges it, not before."""

    remote_id: str | None = None
    detail: str | None = None
    acknowledged: bool = True


@dataclass(frozen=True)
class InboundStatus:
    """A status change made in the receiver's system, found by ``poll``."""

    referral_id: str
    status: str  # a referral-statuses code
    occurred_at: datetime
    reason_code: str | None = None
    reason_text: str | None = None
    remote_id: str | None = None


@dataclass(frozen=True)
class OpenReferral:
    """A delivered referral whose status the hub follows: what ``poll`` is asked about."""

    referral_id: str
    remote_id: str | None
    status: str


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str = ""


class DeliveryError(Exception):
    """Delivery failed for now (timeout, connection refused, 5xx, 429): the worker retries with backoff."""

    def __init__(self, detail: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_seconds = retry_after_seconds


class PermanentDeliveryError(DeliveryError):
    """The receiver refused the message itself (4xx other than 408/429): retrying cannot help, so the
    worker dead-letters it at once for a person to look at."""


class AdapterConfigError(PermanentDeliveryError):
    """The endpoint's configuration is wrong, found at delivery time: an address the hub may not connect
    to, a URL that redirects, a stored config this version of the adapter no longer accepts. Retrying
    cannot help until someone fixes the endpoint (``PUT …/endpoint``), so the worker dead-letters the
    message at once; the detail says what to fix (and, as every error's, never carries the message)."""


@dataclass
class AdapterContext:
    """What the hub lends an adapter. Secrets are referenced by name in the config and resolved here,
    never stored in the registry or returned by the API."""

    hub_url: str
    secret: Callable[[str], str]  # name → value; raises KeyError for an unknown name
    http: httpx.AsyncClient
    timeout_seconds: float = 10.0
    extras: dict[str, Any] = field(default_factory=dict)


class AdapterConfig(BaseModel):
    """Base for adapter configs: strict, so a typo in a key is an error rather than a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Adapter(abc.ABC):
    name: ClassVar[str]
    Config: ClassVar[type[AdapterConfig]]
    # The Config field holding the http(s) URL the adapter talks to, if it has one: the conformance kit
    # (hub.adapters.conformance) points it at a fault-injecting proxy to test the error mapping.
    target_url_field: ClassVar[str | None] = None

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        self.config = config
        self.context = context

    @classmethod
    def configured(cls, config: dict[str, Any], context: AdapterContext) -> Self:
        """The adapter for an endpoint's stored ``config``; :class:`AdapterConfigError` if the ``Config``
        refuses it (stored before a rule this version has, or written to the database by hand)."""
        try:
            return cls(cls.Config.model_validate(config), context)
        except ValidationError as exc:
            fields = ", ".join(sorted({".".join(map(str, e["loc"])) or "config" for e in exc.errors()}))
            raise AdapterConfigError(f"the endpoint's {cls.name} config is not valid ({fields})") from None

    @abc.abstractmethod
    async def deliver(self, message: Message) -> Receipt:
        """Hand ``message`` over. Return a receipt, or raise ``DeliveryError``/``PermanentDeliveryError``."""

    async def poll(self, open_referrals: Sequence[OpenReferral]) -> list[InboundStatus]:
        """Status changes the receiver's system made to these referrals (delivered, not yet terminal).
        Most adapters hear of changes through the hub's API instead and keep this default."""
        return []

    async def health(self) -> Health:
        return Health(ok=True, detail="no health check")
