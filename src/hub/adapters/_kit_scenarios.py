"""The conformance kit's scenarios. Each takes the ``Kit`` (adapter, config, proxy, sample messages) and
returns one ``ScenarioResult``; ``hub.adapters.conformance`` runs them in order and prints the table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal

from hub.adapters._kit_proxy import PASS, STALL, Exchange, Fault, FaultProxy
from hub.adapters._kit_samples import Samples
from hub.adapters.base import (
    Adapter,
    AdapterContext,
    DeliveryError,
    Health,
    InboundStatus,
    Message,
    OpenReferral,
    PermanentDeliveryError,
    Receipt,
)

Outcome = Literal["PASS", "FAIL", "SKIP"]
STATUSES = frozenset(
    {"requested", "received", "accepted", "rejected", "in-progress", "on-hold", "completed", "cancelled", "failed",
     "entered-in-error"}
)  # fmt: skip
REASON_REQUIRED = frozenset({"rejected", "on-hold", "cancelled", "failed"})
PERMANENT_STATUSES = (400, 401, 403, 404, 409, 422)


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    outcome: Outcome
    detail: str = ""


@dataclass
class Kit:
    adapter_cls: type[Adapter]
    config: Mapping[str, Any]  # as given (validated), with the target URL pointing at the proxy if there is one
    context: AdapterContext
    samples: Samples
    proxy: FaultProxy | None
    no_proxy_reason: str  # why the failure scenarios cannot run, when proxy is None
    refused_url: str | None  # the target URL moved to a closed loopback port
    count_effects: Callable[[Message], Awaitable[int | None]] | None = None
    cap_seconds: float = 60.0
    state: dict[str, Any] = field(default_factory=dict)

    def adapter(self, **overrides: Any) -> Adapter:
        config = self.adapter_cls.Config.model_validate({**self.config, **overrides})
        return self.adapter_cls(config, self.context)

    def exchanges(self) -> list[Exchange]:
        return list(self.proxy.exchanges) if self.proxy else []


@dataclass(frozen=True)
class Attempt:
    receipt: Receipt | None = None
    error: BaseException | None = None
    hung: bool = False
    seconds: float = 0.0

    def describe(self) -> str:
        if self.hung:
            return f"still waiting after {self.seconds:.0f} s (no timeout?)"
        if self.error is not None:
            return f"{type(self.error).__name__}: {_error_text(self.error)}"
        return f"Receipt(remote_id={self.receipt.remote_id!r})" if self.receipt else "nothing"


async def attempt(kit: Kit, adapter: Adapter, message: Message, cap: float | None = None) -> Attempt:
    started = time.monotonic()
    cap = cap or kit.cap_seconds
    try:
        async with asyncio.timeout(cap) as deadline:
            receipt = await adapter.deliver(message)
    except TimeoutError as exc:
        if deadline.expired():
            return Attempt(hung=True, seconds=time.monotonic() - started)
        return Attempt(error=exc, seconds=time.monotonic() - started)
    except Exception as exc:
        return Attempt(error=exc, seconds=time.monotonic() - started)
    if not isinstance(receipt, Receipt):
        return Attempt(error=TypeError(f"deliver() returned {type(receipt).__name__}, not a Receipt"))
    return Attempt(receipt=receipt, seconds=time.monotonic() - started)


def _error_text(exc: BaseException) -> str:
    return str(getattr(exc, "detail", None) or exc)


def leaks(kit: Kit, *texts: object) -> str | None:
    """The message's personal data must never reach an error detail or a receipt (they are logged)."""
    for text in texts:
        for secret in kit.samples.personal_data:
            if text is not None and secret in str(text):
                return "personal data from the message appears in what the adapter returned or raised"
    return None


def attempt_leak(kit: Kit, a: Attempt) -> str | None:
    if a.error is not None:
        return leaks(kit, a.error, getattr(a.error, "detail", None))
    if a.receipt is not None:
        return leaks(kit, a.receipt.remote_id, a.receipt.detail)
    return None


def result(name: str, problems: list[str], ok_detail: str) -> ScenarioResult:
    if problems:
        return ScenarioResult(name, "FAIL", "; ".join(problems))
    return ScenarioResult(name, "PASS", ok_detail)


def _last_upstream(exchanges: list[Exchange]) -> Exchange | None:
    passed = [e for e in exchanges if e.upstream_status is not None]
    return passed[-1] if passed else None


def check_delivered(kit: Kit, a: Attempt, exchanges: list[Exchange], what: str) -> list[str]:
    if a.receipt is None:
        return [f"{what}: {a.describe()}"]
    problems = [p for p in [attempt_leak(kit, a)] if p]
    if kit.proxy is not None:
        last = _last_upstream(exchanges)
        if last is None:
            problems.append(f"{what}: a receipt, but the adapter never reached the target")
        elif not 200 <= (last.upstream_status or 0) < 300:
            problems.append(f"{what}: a receipt, although the target answered HTTP {last.upstream_status}")
    return problems


# --- the scenarios ------------------------------------------------------------------------------------


async def deliver(kit: Kit) -> ScenarioResult:
    if kit.proxy:
        kit.proxy.reset(PASS)
    a = await attempt(kit, kit.adapter(), kit.samples.referral)
    exchanges = kit.exchanges()
    problems = check_delivered(kit, a, exchanges, "deliver()")
    if a.receipt is not None:
        kit.state["remote_id"] = a.receipt.remote_id
    last = _last_upstream(exchanges)
    via = f", {len(exchanges)} request(s), last HTTP {last.upstream_status}" if last else ""
    return result("deliver", problems, f"receipt remote_id={a.receipt.remote_id if a.receipt else None!r}{via}")


async def duplicate(kit: Kit) -> ScenarioResult:
    message = kit.samples.fresh_referral()
    adapter = kit.adapter()
    if kit.proxy:
        kit.proxy.reset(PASS)
    first = await attempt(kit, adapter, message)
    first_exchanges = kit.exchanges()
    if kit.proxy:
        kit.proxy.reset(PASS)
    second = await attempt(kit, adapter, kit.samples.replay(message))
    second_exchanges = kit.exchanges()
    problems = check_delivered(kit, first, first_exchanges, "first delivery")
    problems += check_delivered(kit, second, second_exchanges, "replay (a replayed key must be answered as a success)")
    if problems:
        return result("duplicate", problems, "")
    evidence: list[str] = []
    key = message.idempotency_key
    if kit.proxy is not None:
        for label, exchanges in (("first delivery", first_exchanges), ("replay", second_exchanges)):
            if not any(e.carries(key) for e in exchanges):
                problems.append(f"{label}: the idempotency key is not passed on (in no header, URL or body)")
        evidence.append("key passed on")
        ids = [_last_upstream(x) for x in (first_exchanges, second_exchanges)]
        upstream = [e.upstream_id() if e else None for e in ids]
        if all(upstream) and upstream[0] != upstream[1]:
            problems.append(f"two effects: the target answered with ids {upstream[0]!r} and {upstream[1]!r}")
        elif all(upstream):
            evidence.append(f"target id {upstream[0]!r} both times")
    assert first.receipt is not None and second.receipt is not None
    r1, r2 = first.receipt.remote_id, second.receipt.remote_id
    if problems and r1 != r2:
        pass  # the target's own ids already showed it
    elif r1 and r2 and r1 != r2:
        problems.append(f"two effects: receipts carry remote ids {r1!r} and {r2!r} for one idempotency key")
    elif r1 and r2:
        evidence.append(f"remote id {r1!r} both times")
    if kit.count_effects is not None:
        count = await kit.count_effects(message)
        if count is not None and count != 1:
            problems.append(f"the target reports {count} effects for one idempotency key")
        elif count == 1:
            evidence.append("target counts 1 effect")
    if len(evidence) <= 1:
        evidence.append("the target shows no id, so a second effect cannot be ruled out")
    return result("duplicate", problems, "; ".join(evidence))


async def timeout(kit: Kit) -> ScenarioResult:
    if kit.proxy is None:
        return ScenarioResult("timeout", "SKIP", kit.no_proxy_reason)
    kit.proxy.reset(STALL)
    a = await attempt(kit, kit.adapter(), kit.samples.referral)
    kit.proxy.reset(PASS)
    problems = _expect_retryable(kit, a, "no answer")
    return result("timeout", problems, f"after {a.seconds:.1f} s, {a.describe()}")


def _expect_retryable(kit: Kit, a: Attempt, what: str, retry_after: tuple[float, float] | None = None) -> list[str]:
    if a.error is None or not isinstance(a.error, DeliveryError):
        return [f"{what}: expected DeliveryError, got {a.describe()}"]
    if isinstance(a.error, PermanentDeliveryError):
        return [f"{what}: retryable, but the adapter raised PermanentDeliveryError ({_error_text(a.error)})"]
    problems = [p for p in [attempt_leak(kit, a)] if p]
    if retry_after is not None:
        got = a.error.retry_after_seconds
        if got is None or not retry_after[0] <= got <= retry_after[1]:
            problems.append(f"{what}: Retry-After not honoured (retry_after_seconds={got!r})")
    return problems


def _expect_permanent(kit: Kit, a: Attempt, status: int) -> list[str]:
    if not isinstance(a.error, PermanentDeliveryError):
        return [f"HTTP {status}: expected PermanentDeliveryError, got {a.describe()}"]
    problems = [p for p in [attempt_leak(kit, a)] if p]
    if str(status) not in _error_text(a.error):
        problems.append(f"HTTP {status}: the error's detail does not name the status")
    return problems


def _problem(status: int, kit: Kit) -> dict[str, Any]:
    # A careless receiver echoing the message back: none of it may reach the adapter's error.
    personal = " ".join(kit.samples.personal_data)
    return {"type": "https://receiver.example/problems/kit", "title": "Refused by the kit", "status": status,
            "detail": f"Refused: {personal}", "echo": kit.samples.referral.body}  # fmt: skip


async def _fault(kit: Kit, fault: Fault) -> Attempt:
    assert kit.proxy is not None
    kit.proxy.reset(fault)
    try:
        return await attempt(kit, kit.adapter(), kit.samples.referral)
    finally:
        kit.proxy.reset(PASS)


async def client_errors(kit: Kit) -> ScenarioResult:
    if kit.proxy is None:
        return ScenarioResult("4xx", "SKIP", kit.no_proxy_reason)
    problems: list[str] = []
    for status in PERMANENT_STATUSES:
        problems += _expect_permanent(kit, await _fault(kit, Fault.respond(status, _problem(status, kit))), status)
    problems += _expect_retryable(kit, await _fault(kit, Fault.respond(408, _problem(408, kit))), "HTTP 408")
    a = await _fault(kit, Fault.respond(429, _problem(429, kit), retry_after="3"))
    problems += _expect_retryable(kit, a, "HTTP 429 Retry-After: 3", retry_after=(2.5, 3.5))
    listed = ", ".join(map(str, PERMANENT_STATUSES))
    return result("4xx", problems, f"{listed} → PermanentDeliveryError; 408, 429 → DeliveryError (Retry-After kept)")


async def server_errors(kit: Kit) -> ScenarioResult:
    if kit.proxy is None:
        return ScenarioResult("5xx", "SKIP", kit.no_proxy_reason)
    problems: list[str] = []
    for status in (500, 502, 504):
        problems += _expect_retryable(
            kit, await _fault(kit, Fault.respond(status, _problem(status, kit))), f"HTTP {status}"
        )
    a = await _fault(kit, Fault.respond(503, None, retry_after="7"))
    problems += _expect_retryable(kit, a, "HTTP 503 Retry-After: 7", retry_after=(6.5, 7.5))
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    a = await _fault(kit, Fault.respond(503, None, retry_after=when))
    problems += _expect_retryable(kit, a, "HTTP 503 Retry-After: <date in 120 s>", retry_after=(100, 130))
    return result("5xx", problems, "500, 502, 504, 503 → DeliveryError; Retry-After (seconds and date) honoured")


async def refused(kit: Kit) -> ScenarioResult:
    if kit.refused_url is None or kit.adapter_cls.target_url_field is None:
        return ScenarioResult("refused", "SKIP", kit.no_proxy_reason)
    adapter = kit.adapter(**{kit.adapter_cls.target_url_field: kit.refused_url})
    a = await attempt(kit, adapter, kit.samples.referral, cap=30)
    return result("refused", _expect_retryable(kit, a, "connection refused"), a.describe())


async def status_round_trip(kit: Kit) -> ScenarioResult:
    if kit.proxy:
        kit.proxy.reset(PASS)
    adapter = kit.adapter()
    a = await attempt(kit, adapter, kit.samples.status_event)
    problems = check_delivered(kit, a, kit.exchanges(), "status event")
    if problems:
        return result("status-round-trip", problems, "")
    if type(adapter).poll is Adapter.poll:
        return result("status-round-trip", [], "status event delivered; the adapter has no poll")
    referral_id = kit.samples.referral.referral_id
    assert referral_id is not None  # the sample referral's
    open_referrals = [OpenReferral(referral_id=referral_id, remote_id=kit.state.get("remote_id"), status="received")]
    try:
        async with asyncio.timeout(kit.cap_seconds):
            found = await adapter.poll(open_referrals)
    except Exception as exc:
        return result("status-round-trip", [f"poll() raised {type(exc).__name__}: {_error_text(exc)}"], "")
    problems = _check_polled(kit, found, {referral_id})
    statuses = ", ".join(str(getattr(s, "status", s)) for s in found) if isinstance(found, list) else ""
    polled = f"{len(found)} change(s): {statuses}" if statuses else "no changes"
    return result("status-round-trip", problems, f"status event delivered; poll: {polled}")


def _check_polled(kit: Kit, found: object, asked: set[str]) -> list[str]:
    if not isinstance(found, list):
        return [f"poll() returned {type(found).__name__}, not a list"]
    problems: list[str] = []
    for item in found:
        if not isinstance(item, InboundStatus):
            problems.append(f"poll() returned a {type(item).__name__}, not an InboundStatus")
            continue
        if item.referral_id not in asked:
            problems.append(f"poll() reported referral {item.referral_id!r}, which it was not asked about")
        if item.status not in STATUSES:
            problems.append(f"poll() reported status {item.status!r}, not a referral-statuses code")
        if not isinstance(item.occurred_at, datetime) or item.occurred_at.tzinfo is None:
            problems.append("poll(): occurred_at must be a timezone-aware datetime")
        if item.status in REASON_REQUIRED and not (item.reason_code or item.reason_text):
            problems.append(f"poll(): {item.status} needs a reason_code or reason_text")
        leak = leaks(kit, item.reason_text, item.remote_id)
        if leak:
            problems.append(leak)
    return problems


async def health(kit: Kit) -> ScenarioResult:
    adapter = kit.adapter()
    if type(adapter).health is Adapter.health:
        return ScenarioResult("health", "SKIP", "the adapter has no health check")
    if kit.proxy:
        kit.proxy.reset(PASS)
    problems: list[str] = []
    live = await _health(kit, adapter)
    if not isinstance(live, Health) or not live.ok:
        problems.append(f"against the target: {live!r}")
    detail = f"ok ({live.detail})" if isinstance(live, Health) else ""
    if kit.refused_url is not None and kit.adapter_cls.target_url_field is not None:
        down = await _health(kit, kit.adapter(**{kit.adapter_cls.target_url_field: kit.refused_url}))
        if not isinstance(down, Health) or down.ok:
            problems.append(f"against a closed port: expected Health(ok=False), got {down!r}")
        detail += "; a closed port reports not ok"
    return result("health", problems, detail)


async def _health(kit: Kit, adapter: Adapter) -> Health | str:
    try:
        async with asyncio.timeout(kit.cap_seconds):
            return await adapter.health()
    except Exception as exc:
        return f"health() raised {type(exc).__name__} (it must report, not raise)"


SCENARIOS: dict[str, Callable[[Kit], Awaitable[ScenarioResult]]] = {
    "deliver": deliver,
    "duplicate": duplicate,
    "timeout": timeout,
    "4xx": client_errors,
    "5xx": server_errors,
    "refused": refused,
    "status-round-trip": status_round_trip,
    "health": health,
}
