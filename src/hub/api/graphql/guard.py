"""Who may run a GraphQL request, and how much of it, decided once per request before any field resolves.

``RequestGuard`` is a strawberry schema extension:

- before graphql-core validates the document, it measures it (``limits``): too deep, too many aliases or
  fields, too costly, or text that may not reach the database (NUL, a lone surrogate, too long) in an
  argument or a variable: the request is refused (422) and nothing is validated or run;
- before execution, it reads the root fields the operation selects. Each field's ``metadata`` (see
  ``guarded``) says whether it needs a token, which roles, and what it costs. When every selected field
  needs a token and the token is missing or refused (401), or no field is open to the caller's roles
  (403), the whole request is refused with the same problem the REST API gives. Otherwise the request
  runs, and each guarded field the caller may not use answers with its problem union member instead;
- a request with a guarded field and a valid token is charged its cost against the organisation's
  per-minute budget (``CostBudget``); over it, the request is refused (429) with the seconds to wait.
  Public fields alone are answered from memory and charged nothing: the per-request bounds hold them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types.base import get_object_definition

from hub.api.graphql.limits import Limits, Size, literal_faults, over_limits, variable_faults
from hub.domain.errors import FieldError, HubError, InvalidInput, NotPermitted, RateLimited
from hub.domain.principal import Principal, Role

_POLICY = "hub.policy"


@dataclass(frozen=True)
class FieldPolicy:
    """What a root field asks of the caller, and what it costs (1: answered from memory)."""

    needs_token: bool = False
    roles: frozenset[Role] = frozenset()
    cost: int = 1


PUBLIC = FieldPolicy()


def guarded(*roles: Role, cost: int) -> dict[str, Any]:
    """``metadata`` for a root field that needs a token (and one of ``roles``, if any are given)."""
    return {_POLICY: FieldPolicy(needs_token=True, roles=frozenset(roles), cost=cost)}


def root_policies(query: type, config: StrawberryConfig) -> dict[str, FieldPolicy]:
    """Each root field's policy by its GraphQL name, read once from the fields' metadata."""
    fields = get_object_definition(query, strict=True).fields
    return {config.name_converter.get_graphql_name(f): f.metadata.get(_POLICY, PUBLIC) for f in fields}


class CostBudget:
    """The cost each organisation may spend per minute, in this process: a bucket per organisation that
    refills continuously, so a minute's budget may be spent at once and then at the steady rate."""

    _MAX_KEYS = 10_000  # organisations come from verified tokens of registered ones: far fewer

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def charge(self, key: str, cost: int) -> float | None:
        """Take ``cost`` from ``key``'s bucket; if it holds too little, take nothing and return the seconds
        until it will hold enough."""
        now = self._clock()
        level, at = self._buckets.get(key, (float(self.per_minute), now))
        level = min(float(self.per_minute), level + (now - at) * self.per_minute / 60)
        if cost > level:
            self._buckets[key] = (level, now)
            return (cost - level) * 60 / self.per_minute
        if len(self._buckets) >= self._MAX_KEYS and key not in self._buckets:
            self._buckets.clear()
        self._buckets[key] = (level - cost, now)
        return None


@dataclass(frozen=True)
class GuardConfig:
    limits: Limits
    policies: Mapping[str, FieldPolicy]
    budget: CostBudget


class RequestGuard(SchemaExtension):
    """One per request (strawberry makes a new one from the factory ``RequestGuard.factory`` returns)."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.size = Size()

    @classmethod
    def factory(cls, config: GuardConfig) -> Callable[[], RequestGuard]:
        return lambda: cls(config)

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None and ctx.pre_execution_errors is None:
            refusal = self._check(ctx.graphql_document, ctx.variables)
            if refusal is not None:
                # Set before graphql-core's validation, which strawberry then skips: an oversized document
                # is never walked by it.
                ctx.pre_execution_errors = [GraphQLError(refusal.detail, original_error=refusal)]
        yield

    def _check(self, document: DocumentNode, variables: Mapping[str, Any] | None) -> HubError | None:
        costs = {name: p.cost for name, p in self.config.policies.items()}
        self.size, too_big = over_limits(document, costs, self.config.limits)
        if too_big is not None:
            return InvalidInput(too_big, errors=[FieldError("query", too_big, "too-costly")])
        faults = literal_faults(document) + variable_faults(variables)
        if faults:
            more = f" ({len(faults) - 1} more in errors)" if len(faults) > 1 else ""
            return InvalidInput(faults[0].message + more, errors=faults[:10])
        return None

    async def on_execute(self) -> Any:
        ctx = self.execution_context
        refusal = await self._refusal(ctx.graphql_document, ctx.operation_name)
        if refusal is not None:
            ctx.result = ExecutionResult(data=None, errors=[GraphQLError(refusal.detail, original_error=refusal)])
        yield

    async def _refusal(self, document: DocumentNode | None, operation_name: str | None) -> HubError | None:
        names = [] if document is None else _root_fields(document, operation_name)
        policies = [self.config.policies.get(n, PUBLIC) for n in names]
        wanted = [(n, p) for n, p in zip(names, policies, strict=True) if p.needs_token]
        if not wanted:
            return None
        whole = len(wanted) == len(names)
        try:
            principal: Principal = await self.execution_context.context.principal()
        except HubError as exc:
            return exc if whole else None  # the guarded fields answer with their problem members
        barred = [(n, p) for n, p in wanted if p.roles and not principal.has_any(*p.roles)]
        if whole and len(barred) == len(names):
            return NotPermitted("; ".join(_needs(n, p) for n, p in dict(barred).items()) + ".")
        wait = self.config.budget.charge(principal.organisation_id, self.size.cost)
        if wait is not None:
            return RateLimited(
                f"Your organisation has spent its GraphQL budget of {self.config.budget.per_minute} points a "
                f"minute; this request costs {self.size.cost}. Try again in {math.ceil(wait)} seconds.",
                retry_after=math.ceil(wait),
            )
        return None


def _needs(name: str, policy: FieldPolicy) -> str:
    roles = sorted(r.value for r in policy.roles)
    return (
        f"{name} needs the role {roles[0]}" if len(roles) == 1 else f"{name} needs one of the roles {', '.join(roles)}"
    )


def _root_fields(document: DocumentNode, operation_name: str | None) -> list[str]:
    """The names of the root fields the operation selects (through fragments; meta fields left out)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)]
    if len(chosen) != 1:
        return []  # graphql-core refuses an ambiguous or unknown operation itself
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    names: list[str] = []
    seen: set[str] = set()
    stack: list[SelectionNode] = list(chosen[0].selection_set.selections)
    while stack:
        node = stack.pop()
        if isinstance(node, FieldNode):
            if not node.name.value.startswith("__"):
                names.append(node.name.value)
        elif isinstance(node, InlineFragmentNode):
            stack.extend(node.selection_set.selections)
        elif isinstance(node, FragmentSpreadNode) and node.name.value not in seen:
            seen.add(node.name.value)
            if (fragment := fragments.get(node.name.value)) is not None:
                stack.extend(fragment.selection_set.selections)
    return names
