"""The webhook adapter against real receivers on loopback, and the receiver-side signature check."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from hub.adapters import AdapterContext, DeliveryError, PermanentDeliveryError
from hub.adapters._kit_samples import KIT_PERSONAL_IDENTITY_NUMBER, make_samples
from hub.adapters.webhook import (
    SignatureError,
    WebhookAdapter,
    WebhookConfig,
    encode_body,
    sign,
    verify_signature,
)
from tests.adapters.receivers import Inbox, webhook_receiver
from tests.loopback import Recorder, Reply, refused_url, serve

SECRET = "whsec-test-0123456789"
SECRETS = {"nora-bup": SECRET}


@pytest.fixture
async def context() -> AsyncIterator[AdapterContext]:
    async with httpx.AsyncClient() as http:
        yield AdapterContext(hub_url="https://hub.example", secret=lambda n: SECRETS[n], http=http, timeout_seconds=2)


def adapter(context: AdapterContext, url: str, **extra: object) -> WebhookAdapter:
    return WebhookAdapter(WebhookConfig.model_validate({"url": url, "secret_ref": "nora-bup", **extra}), context)


async def test_delivers_signed_json_that_the_receiver_verifies(context: AdapterContext) -> None:
    inbox = Inbox()
    message = make_samples("https://hub.example").referral
    with serve(webhook_receiver(SECRET, inbox)) as url:
        receipt = await adapter(context, url + "/hooks/hub").deliver(message)
    assert inbox.rejected == []
    [(record_id, record)] = inbox.records.items()
    assert receipt.remote_id == record_id
    assert record["key"] == message.idempotency_key
    assert record["message_id"] == message.message_id
    assert record["kind"] == "referral"
    assert record["body"] == encode_body(message.body)


async def test_the_wire_format(context: AdapterContext) -> None:
    recorder = Recorder()
    message = make_samples("https://hub.example").status_event
    with serve(recorder) as url:
        await adapter(context, url).deliver(message)
    [request] = recorder.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == message.idempotency_key
    assert request.headers["hub-message-id"] == message.message_id
    assert request.headers["hub-message-kind"] == "status-event"
    assert request.json() == message.body
    timestamp, mac = request.headers["hub-signature"].split(",")
    assert timestamp.startswith("t=") and abs(int(timestamp[2:]) - time.time()) < 5
    assert mac.startswith("v1=") and len(mac) == 3 + 64


def test_verify_signature_accepts_the_real_thing_and_rotated_secrets() -> None:
    body = b'{"referral":{"id":"r-1"}}'
    header = sign(SECRET, body, timestamp=1_700_000_000)
    assert verify_signature(SECRET, header, body, now=1_700_000_100) == 1_700_000_000
    assert verify_signature(["old-secret", SECRET], header, body, now=datetime.fromtimestamp(1_700_000_000, UTC))
    # A future scheme next to v1 is ignored.
    assert verify_signature(SECRET, header + ",v2=abc", body, now=1_700_000_000)


@pytest.mark.parametrize(
    ("header", "body", "now", "why"),
    [
        (sign(SECRET, b'{"a":1}', timestamp=1000), b'{"a":2}', 1000, "does not match"),  # tampered body
        (sign(SECRET, b'{"a":1}', timestamp=1000), b'{"a":1}', 1000 + 301, "outside"),  # stale: replayed
        (sign(SECRET, b'{"a":1}', timestamp=1000), b'{"a":1}', 1000 - 301, "outside"),  # from the future
        (sign("another-secret", b'{"a":1}', timestamp=1000), b'{"a":1}', 1000, "does not match"),
        ("t=1000,v1=" + sign(SECRET, b'{"a":1}', timestamp=1001)[-64:], b'{"a":1}', 1000, "does not match"),
        ("t=1000", b'{"a":1}', 1000, "needs"),
        ("v1=abc", b'{"a":1}', 1000, "needs"),
        ("t=soon,v1=abc", b'{"a":1}', 1000, "malformed"),
        ("t=1000,v1=ä", b'{"a":1}', 1000, "does not match"),
        ("garbage", b'{"a":1}', 1000, "malformed"),
        (None, b'{"a":1}', 1000, "no Hub-Signature"),
    ],
)
def test_verify_signature_rejects(header: str | None, body: bytes, now: float, why: str) -> None:
    with pytest.raises(SignatureError, match=why):
        verify_signature(SECRET, header, body, now=now)


async def test_receiver_refuses_a_stale_or_tampered_request() -> None:
    inbox = Inbox()
    body = encode_body({"referral": {"id": "r-1"}})
    stale = sign(SECRET, body, timestamp=int(time.time()) - 3600)
    fresh = sign(SECRET, body, timestamp=int(time.time()))
    headers = {"idempotency-key": "k", "hub-message-kind": "referral", "hub-message-id": "m"}
    with serve(webhook_receiver(SECRET, inbox)) as url:
        async with httpx.AsyncClient() as http:
            replayed = await http.post(url + "/hooks/hub", content=body, headers={**headers, "hub-signature": stale})
            tampered = await http.post(
                url + "/hooks/hub", content=body + b" ", headers={**headers, "hub-signature": fresh}
            )
    assert (replayed.status_code, tampered.status_code) == (401, 401)
    assert inbox.records == {}


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422, 301])
async def test_a_refusal_is_permanent_and_names_the_status_but_not_the_message(
    context: AdapterContext, status: int
) -> None:
    problem = {"type": "/problems/invalid", "title": "Invalid referral", "detail": KIT_PERSONAL_IDENTITY_NUMBER}
    headers = {"location": "https://elsewhere.example/"} if status == 301 else {}
    message = make_samples("https://hub.example").referral
    with serve(
        Recorder(lambda r: Reply(status, problem, {"content-type": "application/problem+json", **headers}))
    ) as url:
        with pytest.raises(PermanentDeliveryError) as caught:
            await adapter(context, url).deliver(message)
    assert f"HTTP {status}" in caught.value.detail
    assert "[/problems/invalid]" in caught.value.detail
    assert "Invalid referral" not in caught.value.detail  # the receiver's words reach no one: only the type
    assert KIT_PERSONAL_IDENTITY_NUMBER not in str(caught.value)
    assert caught.value.retry_after_seconds is None


@pytest.mark.parametrize(
    "problem_type",
    [f"/problems/{KIT_PERSONAL_IDENTITY_NUMBER}", "/problems/x?child=Anna", "/problems/unknown child", 7, "x" * 200],
)
async def test_a_refusal_keeps_no_text_of_the_receivers(context: AdapterContext, problem_type: object) -> None:
    """What a receiver writes in words (a title, a type that is not an identifier) could name the child; the
    detail ends up in the sender's view of its delivery, logs and dead-letter records."""
    problem = {"type": problem_type, "title": f"Barnet {KIT_PERSONAL_IDENTITY_NUMBER} är redan aktuellt"}
    with serve(Recorder(lambda r: Reply(422, problem, {"content-type": "application/problem+json"}))) as url:
        with pytest.raises(PermanentDeliveryError) as caught:
            await adapter(context, url).deliver(make_samples("https://hub.example").referral)
    assert caught.value.detail == f"HTTP 422 {HTTPStatus(422).phrase}"


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(500, None, None), (502, None, None), (503, "30", 30.0), (429, "5", 5.0), (408, None, None), (503, "soon", None)],
)
async def test_a_failure_of_the_receiver_is_retryable(
    context: AdapterContext, status: int, retry_after: str | None, expected: float | None
) -> None:
    headers = {"retry-after": retry_after} if retry_after else {}
    with serve(Recorder(lambda r: Reply(status, {"title": "Busy"}, headers))) as url:
        with pytest.raises(DeliveryError) as caught:
            await adapter(context, url).deliver(make_samples("https://hub.example").referral)
    assert not isinstance(caught.value, PermanentDeliveryError)
    assert caught.value.retry_after_seconds == expected
    assert f"HTTP {status}" in caught.value.detail


async def test_retry_after_as_an_http_date(context: AdapterContext) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    with serve(Recorder(lambda r: Reply(503, None, {"retry-after": when}))) as url:
        with pytest.raises(DeliveryError) as caught:
            await adapter(context, url).deliver(make_samples("https://hub.example").referral)
    assert caught.value.retry_after_seconds is not None and 80 <= caught.value.retry_after_seconds <= 91


async def test_a_receiver_that_does_not_answer_in_time_is_retryable(context: AdapterContext) -> None:
    started = time.monotonic()
    with serve(Recorder(lambda r: Reply(200, {"id": "late"}, delay=10))) as url:
        with pytest.raises(DeliveryError, match=r"no answer within 0\.3 s") as caught:
            await adapter(context, url, timeout_seconds=0.3).deliver(make_samples("https://hub.example").referral)
    assert not isinstance(caught.value, PermanentDeliveryError)
    assert time.monotonic() - started < 5


async def test_connection_refused_is_retryable(context: AdapterContext) -> None:
    with pytest.raises(DeliveryError, match="could not reach") as caught:
        await adapter(context, refused_url()).deliver(make_samples("https://hub.example").referral)
    assert not isinstance(caught.value, PermanentDeliveryError)


def no_secret(name: str) -> str:
    raise KeyError(name)


async def test_a_missing_secret_is_retryable_and_unhealthy() -> None:
    async with httpx.AsyncClient() as http:
        context = AdapterContext(hub_url="https://hub.example", secret=no_secret, http=http)
        hook = adapter(context, "http://127.0.0.1:9/")
        with pytest.raises(DeliveryError, match="'nora-bup' is not configured") as caught:
            await hook.deliver(make_samples("https://hub.example").referral)
        assert not isinstance(caught.value, PermanentDeliveryError)
        assert not (await hook.health()).ok


async def test_health(context: AdapterContext) -> None:
    recorder = Recorder(lambda r: Reply(200 if r.path == "/healthz" else 405))
    with serve(recorder) as url:
        assert (await adapter(context, url + "/hooks").health()).ok  # HEAD → 405: reachable
        assert (await adapter(context, url + "/hooks", health_url=url + "/healthz").health()).ok
        assert not (await adapter(context, url + "/hooks", health_url=url + "/nope").health()).ok
    assert [(r.method, r.path) for r in recorder.requests] == [
        ("HEAD", "/hooks"),
        ("GET", "/healthz"),
        ("GET", "/nope"),
    ]
    assert not (await adapter(context, refused_url()).health()).ok


@pytest.mark.parametrize(
    "config",
    [
        {"url": "http://receiver.example/hook", "secret_ref": "s"},  # plain http off loopback
        {"url": "ftp://receiver.example/hook", "secret_ref": "s"},
        {"url": "https://user:pw@receiver.example/hook", "secret_ref": "s"},  # credentials in the URL
        {"url": "https://receiver.example/hook", "secret_ref": "not a name"},
        {"url": "https://receiver.example/hook", "secret_ref": "s", "secret": "x"},  # extra keys are typos
        {"url": "https://receiver.example/hook", "secret_ref": "s", "timeout_seconds": 0},
        {"url": "https://receiver.example/hook"},
    ],
)
def test_config_refuses(config: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WebhookConfig.model_validate(config)


@pytest.mark.parametrize(
    "url",
    [
        "https://receiver.example/hook?tenant=4",
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]:81/",
    ],
)
def test_config_accepts(url: str) -> None:
    assert WebhookConfig.model_validate({"url": url, "secret_ref": "nora-bup.v2"}).url == url


def test_the_guides_standalone_verifier_agrees() -> None:
    """docs/adapters.md shows a verifier without the hub; it must accept and refuse what ours does."""
    guide = (Path(__file__).resolve().parents[2] / "docs" / "adapters.md").read_text()
    [code] = [block for block in re.findall(r"```python\n(.*?)```", guide, re.S) if "def verify(" in block]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    verify = namespace["verify"]
    body = encode_body(make_samples("https://hub.example").referral.body)
    header = sign(SECRET, body, timestamp=1000)
    assert verify(SECRET, header, body, 1000)
    assert verify(SECRET, header + ",v2=xyz", body, 1200)
    assert not verify(SECRET, header, body + b" ", 1000)
    assert not verify(SECRET, header, body, 1301)
    assert not verify("other", header, body, 1000)
    assert not verify(SECRET, "t=1000", body, 1000)
