"""HTTP delivery helpers for adapters that talk HTTP: one request, with the contract's error mapping.

How an HTTP exchange maps onto the adapter contract (the webhook adapter and the example adapter use this;
so can yours, through ``hub.adapters``)::

    2xx                                   → the caller builds a Receipt
    408, 429, 5xx                         → DeliveryError (retried), retry_after_seconds from Retry-After
    timeout, connection refused/reset,    → DeliveryError (retried)
      TLS or protocol error
    3xx (redirects are not followed)      → AdapterConfigError (dead-lettered): configure the final URL
    any other 4xx                         → PermanentDeliveryError

An error's detail names the status (with the standard reason phrase, not the receiver's) and, from an
RFC 9457 problem document, only its ``type``, when it looks like an identifier: never the response body, the
problem's ``title`` or ``detail``, or anything else a receiver wrote in words. A receiver may echo the
message back, personal data included, and error details end up in logs, dead-letter records and the
sender's view of its delivery: the sender must not learn from the receiver's system what no legal decision
shared.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import httpx

from hub.adapters.base import AdapterConfigError, AdapterContext, DeliveryError, PermanentDeliveryError

RETRYABLE_STATUSES = frozenset({408, 425, 429})
_KNOWN_STATUSES = frozenset(s.value for s in HTTPStatus)
# A problem type as an identifier: a URI reference without query or fragment, short, and without a run of
# digits that could be a date of birth or a personal identity number.
_PROBLEM_TYPE = re.compile(r"(?!.*\d{6})[A-Za-z0-9:/._~-]{1,120}")


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
    """``HTTP 422 Unprocessable Entity`` plus a problem document's type when it is an identifier."""
    status = response.status_code
    phrase = HTTPStatus(status).phrase if status in _KNOWN_STATUSES else ""
    text = f"HTTP {status} {phrase}".rstrip()
    if "json" not in response.headers.get("content-type", ""):
        return text
    try:
        problem = json.loads(response.content[:65536])
    except (ValueError, UnicodeDecodeError):
        return text
    kind = problem.get("type") if isinstance(problem, dict) else None
    return f"{text} [{kind}]" if isinstance(kind, str) and _PROBLEM_TYPE.fullmatch(kind) else text


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
