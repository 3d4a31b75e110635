"""The built-in ``webhook`` adapter: a signed JSON POST to the receiver's URL, and the receiver's check.

On the wire (see docs/adapters.md, "Signing and verification")::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <Message.idempotency_key>   (stable across retries: dedupe on it)
    Hub-Message-Id: <Message.message_id>
    Hub-Message-Kind: referral | status-event
    Hub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

    <Message.body as UTF-8 JSON>

The receiver verifies the signature over the raw bytes it received (never over re-serialised JSON) with
``verify_signature``, rejects timestamps outside a five-minute window, answers 2xx once it has stored the
message (JSON ``{"id": ...}`` optional: it becomes the receipt's ``remote_id``), and answers a replayed
``Idempotency-Key`` with the same 2xx as the first time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, ClassVar
from uuid import UUID

import httpx
from pydantic import Field, field_validator

from hub.adapters._kit_http import http_request, remote_id
from hub.adapters.addresses import is_loopback_host
from hub.adapters.base import (
    Adapter,
    AdapterConfig,
    DeliveryError,
    Health,
    Message,
    Receipt,
)

SIGNATURE_HEADER = "Hub-Signature"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300

__all__ = [
    "SIGNATURE_HEADER",
    "SignatureError",
    "WebhookAdapter",
    "WebhookConfig",
    "encode_body",
    "sign",
    "verify_signature",
]


def _check_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError("must be an absolute https:// URL")
    if url.scheme == "http" and not is_loopback_host(url.host):
        raise ValueError("must use https (plain http only for loopback hosts: localhost, 127.0.0.1, ::1)")
    if url.userinfo:
        raise ValueError("must not carry credentials; name a secret in secret_ref instead")
    if url.fragment:
        raise ValueError("must not have a #fragment")
    return value


class WebhookConfig(AdapterConfig):
    """Where to POST and which secret signs the requests."""

    url: str = Field(description="The receiver's endpoint: https, or http on a loopback host (development).")
    secret_ref: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        description="The name of the signing secret (resolved by the hub, e.g. from HUB_SECRET_<NAME>); "
        "never the secret itself.",
        json_schema_extra={"x-secret-ref": True},
    )
    timeout_seconds: float | None = Field(
        default=None, gt=0, le=120, description="Per-request timeout; default: the hub's delivery timeout."
    )
    health_url: str | None = Field(
        default=None,
        description="Optional GET endpoint for health(): 2xx is healthy. Without it, health() sends HEAD to url.",
    )

    @field_validator("url", "health_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)


class WebhookAdapter(Adapter):
    """POST each message as signed JSON to one URL. Status changes come back through the hub's API
    (``reply_to`` in the referral), so there is no ``poll``."""

    name: ClassVar[str] = "webhook"
    Config: ClassVar[type[AdapterConfig]] = WebhookConfig
    target_url_field: ClassVar[str | None] = "url"

    @property
    def settings(self) -> WebhookConfig:
        assert isinstance(self.config, WebhookConfig)
        return self.config

    def _secret(self) -> str:
        try:
            return self.context.secret(self.settings.secret_ref)
        except KeyError:
            # Retried, not dead-lettered: an operator adding the secret lets the queued messages through.
            raise DeliveryError(f"the signing secret {self.settings.secret_ref!r} is not configured") from None

    def _timeout(self) -> float:
        return self.settings.timeout_seconds or self.context.timeout_seconds

    async def deliver(self, message: Message) -> Receipt:
        secret = self._secret()
        raw = encode_body(message.body)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.idempotency_key,
            "Hub-Message-Id": message.message_id,
            "Hub-Message-Kind": message.kind,
            SIGNATURE_HEADER: sign(secret, raw, timestamp=int(time.time())),
            "User-Agent": "hub-webhook/1",
        }
        response = await http_request(
            self.context, "POST", self.settings.url, content=raw, headers=headers, timeout_seconds=self._timeout()
        )
        return Receipt(remote_id=remote_id(response), detail=f"HTTP {response.status_code}")

    async def health(self) -> Health:
        """Healthy when the secret resolves and the receiver answers: a 2xx from ``health_url``, or
        anything but 404/410/5xx to a HEAD on ``url`` (a POST-only endpoint may well answer 405)."""
        try:
            self.context.secret(self.settings.secret_ref)
        except KeyError:
            return Health(ok=False, detail=f"the signing secret {self.settings.secret_ref!r} is not configured")
        url = self.settings.health_url or self.settings.url
        method = "GET" if self.settings.health_url else "HEAD"
        try:
            response = await self.context.http.request(
                method, url, timeout=httpx.Timeout(self._timeout()), follow_redirects=False
            )
        except httpx.HTTPError as exc:
            return Health(ok=False, detail=f"{method} {url}: {type(exc).__name__}")
        except DeliveryError as exc:  # a refused address (hub.adapters.addresses)
            return Health(ok=False, detail=f"{method} {url}: {exc.detail}")
        status = response.status_code
        ok = 200 <= status < 300 if self.settings.health_url else status < 500 and status not in (404, 410)
        return Health(ok=ok, detail=f"{method} {url}: HTTP {status}")


# --- signing ------------------------------------------------------------------------------------------


class SignatureError(ValueError):
    """A request's ``Hub-Signature`` is missing, malformed, stale or does not match: answer 401."""


def encode_body(body: dict[str, Any]) -> bytes:
    """The exact bytes the webhook sends (and signs): compact UTF-8 JSON with sorted keys."""
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=_json_default).encode()


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _mac(secret: str | bytes, timestamp: int, raw_body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode() + b"." + raw_body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, raw_body: bytes, *, timestamp: int) -> str:
    """The ``Hub-Signature`` value for ``raw_body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},{SIGNATURE_SCHEME}={_mac(secret, timestamp, raw_body)}"


def verify_signature(
    secret: str | bytes | Sequence[str | bytes],
    header: str | None,
    raw_body: bytes,
    *,
    now: float | datetime,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check a ``Hub-Signature`` header against the raw request body; return its timestamp.

    ``secret`` may be several (while you rotate: the old and the new). Raises ``SignatureError`` when the
    header is missing or malformed, when its timestamp is more than ``tolerance_seconds`` from ``now``
    (either way: a replayed or badly clocked request), or when no ``v1`` signature matches. Comparison is
    constant-time. Unknown schemes in the header (a future ``v2``) are ignored.
    """
    if not header:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER} header")
        if key == "t":
            if timestamp is not None or not value.isdigit():
                raise SignatureError(f"malformed timestamp in {SIGNATURE_HEADER}")
            timestamp = int(value)
        elif key == SIGNATURE_SCHEME:
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise SignatureError(f"{SIGNATURE_HEADER} needs t= and {SIGNATURE_SCHEME}=")
    now_seconds = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(now_seconds - timestamp) > tolerance_seconds:
        raise SignatureError("timestamp outside the tolerance window (replayed or clock skew)")
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    matched = False
    for s in secrets:
        expected = _mac(s, timestamp, raw_body)
        for candidate in candidates:
            # Evaluate every pair (no short-circuit) so timing does not tell which one matched.
            matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise SignatureError("signature does not match")
    return timestamp
