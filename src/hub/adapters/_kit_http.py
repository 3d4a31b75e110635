"""HTTP delivery helpers for adapters that talk HTTP: one request, with the contract's error mapping.

How an HTTP exchange maps onto the adapter contract (the webhook adapter and the example adapter use this;
so can yours, through ``hub.adapters``)::

    2xx                                   → the caller builds a Receipt
    408, 429, 5xx                         → DeliveryError (retried), retry_after_seconds from Retry-After
    timeout, connection refused/reset,    → DeliveryError (retried)
      TLS or protocol error
    3xx (redirects are not followed)      → AdapterConfigError (dead-lettered): configure the final URL
    any other 4xx                         → PermanentDeliveryError

An error's detail names the status and, from an RFC 9457 problem document, only its ``type`` and
``title``: never the response body or the problem's ``detail`` (a receiver may echo the message back,
personal data included, and error details end up in logs and dead-letter records).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from hub.adapters.base import AdapterConfigError, AdapterContext, DeliveryError, PermanentDeliveryError

RETRYABLE_STATUSES = frozenset({408, 425, 429})
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\u024f]+")


async def http_request(
    context: AdapterContext,
    method: str,
    url: str,
    *,
    timeout_seconds: float | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Make one request with ``context.http``; return a 2xx response or raise the contract's error."""
    seconds = timeout_seconds if timeout_seconds is not None else context.timeout_seconds
    try:
        response = await context.http.request(
            method, url, timeout=httpx.Timeout(seconds), follow_redirects=False, **kwargs
        )
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"no answer within {seconds:g} s ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise DeliveryError(f"could not reach the receiver ({type(exc).__name__})") from None
    raise_for_delivery(response)
    return response


def raise_for_delivery(response: httpx.Response, *, now: datetime | None = None) -> None:
    """Return for a 2xx; otherwise raise ``DeliveryError`` or ``PermanentDeliveryError`` (see the module)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = describe(response)
    if status in RETRYABLE_STATUSES or status >= 500:
        raise DeliveryError(detail, retry_after_seconds=retry_after_seconds(response.headers.get("retry-after"), now))
    if 300 <= status < 400:
        raise AdapterConfigError(f"{detail}: redirects are not followed; configure the final URL")
    raise PermanentDeliveryError(detail)


def describe(response: httpx.Response) -> str:
    """``HTTP 422 Unprocessable Entity`` plus a problem document's type and title, short and printable."""
    text = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type:
        return text
    try:
        problem = json.loads(response.content[:65536])
    except (ValueError, UnicodeDecodeError):
        return text
    if not isinstance(problem, dict):
        return text
    parts = [_short(problem.get(key)) for key in ("title", "type")]
    extra = " ".join(f"[{p}]" if i else p for i, p in enumerate(parts) if p)
    return f"{text}: {extra}" if extra else text


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Parse ``Retry-After``: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def remote_id(response: httpx.Response, *keys: str) -> str | None:
    """The receiver's id for what it stored: the first of ``keys`` (default ``id``) in a JSON object
    answer, else the last segment of a ``Location`` header; None when there is neither."""
    try:
        data = response.json() if response.content else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        for key in keys or ("id",):
            value = data.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
    location = response.headers.get("location")
    if location:
        return location.rstrip("/").rsplit("/", 1)[-1] or None
    return None


def _short(value: object, limit: int = 120) -> str:
    if not isinstance(value, str):
        return ""
    value = _UNPRINTABLE.sub(" ", value).strip()
    return value if len(value) <= limit else value[: limit - 1] + "…"
