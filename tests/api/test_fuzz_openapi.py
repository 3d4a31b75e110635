"""Property-based fuzzing of every operation in the OpenAPI document (schemathesis), with a token of each
role and none: whatever the input, valid by the schema or not, the hub never answers 5xx, and every 4xx is
a problem+json carrying the request id of its X-Request-ID header (on the FHIR referral surface, an
OperationOutcome whose id is that request id).

Schemathesis draws each request from the schema (positive and negative data); on top of that, three in
four positive cases get one of their strings turned hostile the way an attacker would (a NUL, a lone
surrogate, 10,000 characters), in a path parameter, a query parameter or a body string, taken in turn.

Bounded by examples, not by time: a fixed number per operation and generation mode, drawn
deterministically (``derandomize``), so the run does the same work each time and a failure reproduces.
Failures are collected over the whole run and reported together, each with a curl command.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi as schemathesis_asgi

from hub.api.auth import mint_dev_token
from hub.config import Settings
from hub.devtools.demo import load_demo
from hub.main import create_app
from hub.runtime import Runtime

EXAMPLES_PER_OPERATION = 12  # per generation mode: about 1,500 requests in all
# Who calls: organisations of the demo registry holding each role (coordinators only in the regional one).
CALLERS = {
    "system": ("nora-elevhalsa", "system"),
    "professional": ("nora-grundskola", "professional"),
    "coordinator": ("region-samordning", "coordinator"),
    "auditor": ("region-samordning", "auditor"),
    "admin": ("nora-grundskola", "admin"),
}
HOSTILE = {
    "nul": lambda s: s[:3] + "\x00" + s[3:],
    "surrogate": lambda s: s + "\ud800",
    "long": lambda s: (s or "x") * (10_000 // max(len(s), 1) + 1),
}
KINDS = [*HOSTILE, None]


@pytest.fixture
async def demo(client: httpx.AsyncClient, runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        await load_demo(session)


@pytest.fixture
def fuzzed_schema(settings: Settings, demo: None) -> Iterator[Any]:
    """The schema served by a second app over the same database. Schemathesis calls ASGI apps from its own
    event loop thread, and asyncpg connections belong to the loop that made them: this app opens its own
    runtime there, in its lifespan, and closes it at the end."""
    app = create_app(settings.model_copy(update={"serve_runs_worker": False}))
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        schemathesis_asgi.shutdown_lifespans()


def string_slots(case: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) holding a string an attacker controls: path, query, JSON body (any depth).
    Headers are left to test_hostile_input: the HTTP client refuses to send a NUL in one."""
    slots: list[tuple[Any, Any]] = []
    for container in (case.path_parameters, case.query):
        slots.extend((container, k) for k, v in (container or {}).items() if isinstance(v, str))
    stack = [case.body] if isinstance(case.body, (dict, list)) else []
    while stack:
        node = stack.pop()
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(value, str):
                slots.append((node, key))
            elif isinstance(value, (dict, list)):
                stack.append(value)
    return slots


def make_hostile(case: Any, kind: str | None, pick: int) -> str:
    """Turn one string hostile. The optional query parameters beside it go, so that the rest of the
    request stays as valid as the schema drew it and the hostile value gets as far as it can."""
    slots = string_slots(case)
    if kind is None or not slots:
        return "as drawn"
    container, key = slots[pick % len(slots)]
    if kind == "surrogate" and (container is case.path_parameters or container is case.query):
        kind = "nul"  # a URL cannot carry a surrogate: it has no UTF-8 encoding
    container[key] = HOSTILE[kind](container[key])
    if container is case.query:
        required = {p.name for p in case.operation.query if p.is_required}
        case.query = {k: v for k, v in case.query.items() if k == key or k in required}
    return f"{kind} in {key!r}"


@dataclass
class Found:
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (operation, how, what) -> curl
    drawn: int = 0


def offence(response: Any) -> str | None:
    """What is wrong with one answer, if anything."""
    if response.status_code >= 500:
        return f"server error {response.status_code}"
    if response.status_code < 400:
        return None
    headers = {name.lower(): values[0] for name, values in response.headers.items()}
    request_id = headers.get("x-request-id")
    if headers.get("content-type", "").startswith("application/fhir+json"):
        # The FHIR referral surface answers OperationOutcome (docs/fhir.md); its id is the request id.
        body = response.json()
        if body.get("resourceType") != "OperationOutcome" or not request_id or body.get("id") != request_id:
            return f"{response.status_code} FHIR answer that is not an OperationOutcome with the request id"
        return None
    if not headers.get("content-type", "").startswith("application/problem+json"):
        return f"{response.status_code} is not problem+json"
    if not request_id or response.json().get("request_id") != request_id:
        return f"{response.status_code} problem without the request id of its X-Request-ID header"
    return None


def fuzz(operation: Any, mode: GenerationMode, tokens: dict[str | None, dict[str, str]], found: Found) -> None:
    """Run one operation's examples of one generation mode; what goes wrong lands in ``found``."""

    @given(case=operation.as_strategy(generation_mode=mode), caller=st.sampled_from(list(tokens)))
    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def probe(case: Any, caller: str | None) -> None:
        # Which string turns hostile, and how, goes round in turn: hypothesis would mostly pick the first
        # of a list, and evenly is what is wanted here.
        found.drawn += 1
        kind = KINDS[found.drawn % len(KINDS)] if mode is GenerationMode.POSITIVE else None
        how = make_hostile(case, kind, found.drawn // len(KINDS))
        response = case.call(headers={**(case.headers or {}), **tokens[caller]})
        wrong = offence(response)
        if wrong is not None:
            key = (case.operation.label, f"{mode.value}, {how}", wrong)
            found.failures.setdefault(key, f"as {caller}: {case.as_curl_command()[:400]}")

    try:
        probe()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # nothing to get wrong in an operation without input


def test_no_operation_answers_a_server_error(fuzzed_schema: Any, settings: Settings) -> None:
    tokens: dict[str | None, dict[str, str]] = {None: {}}
    for role, (org, granted) in CALLERS.items():
        token = mint_dev_token(settings, organisation_id=org, roles=[granted])
        tokens[role] = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in fuzzed_schema.get_all_operations()]
    assert len(operations) > 50  # the whole API, not a part that happened to load
    found = Found()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, tokens, found)
    report = "\n".join(f"{label} [{how}] {wrong}\n    {curl}" for (label, how, wrong), curl in found.failures.items())
    assert not found.failures, f"{len(found.failures)} kinds of failure:\n{report}"
