"""How big, how costly and how clean a GraphQL request is, measured before graphql-core validates it.

One pass over the document that visits each fragment once, whatever the number of spreads. Strawberry's
``QueryDepthLimiter`` and ``MaxAliasesLimiter`` walk a fragment again at every spread, so a document of 25
fragments that each spread the next one twice (a few hundred bytes) costs them minutes of CPU; they are not
used for that reason. ``MaxTokensLimiter`` bounds the parser and is used.

Text in arguments and variables is checked here for every field at once: PostgreSQL stores no NUL in text,
a lone UTF-16 surrogate cannot be encoded for it, and no argument of the schema needs more than
``MAX_TEXT_CHARS`` characters or ``MAX_LIST_ITEMS`` list items.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionNode,
    StringValueNode,
    ValueNode,
)

from hub.domain.errors import FieldError

MAX_TEXT_CHARS = 1_000
MAX_LIST_ITEMS = 1_000
# Selection sets inside selection sets, fragments and inline fragments included: real queries use about ten.
# It also bounds the walk's recursion, far below Python's limit.
MAX_NESTING = 100


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (``Settings.graphql_max_*``)."""

    max_depth: int
    max_aliases: int
    max_fields: int
    max_cost: int


@dataclass(frozen=True)
class Size:
    """A selection set measured with every fragment spread expanded."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0
    cost: int = 0

    def __add__(self, other: Size) -> Size:
        depth = max(self.depth, other.depth)
        return Size(depth, self.aliases + other.aliases, self.fields + other.fields, self.cost + other.cost)


class _TooDeep(Exception):
    """Stops the walk (and its recursion) as soon as the answer is known to be "too deep"."""


class _Measure:
    def __init__(self, document: DocumentNode, root_costs: Mapping[str, int], max_depth: int) -> None:
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self.root_costs = root_costs
        self.max_depth = max_depth
        # A fragment's size depends only on whether it is spread at the root, where fields have their own cost.
        self.done: dict[tuple[str, bool], Size] = {}
        self.open: set[str] = set()

    def selections(self, selections: Sequence[SelectionNode], level: int, nesting: int) -> Size:
        if nesting > MAX_NESTING:
            raise _TooDeep
        total = Size()
        for node in selections:
            if isinstance(node, FieldNode):
                total += self.field(node, level + _step(node), nesting + 1)
            elif isinstance(node, InlineFragmentNode):
                total += self.selections(node.selection_set.selections, level, nesting + 1)
            elif isinstance(node, FragmentSpreadNode):
                total += self.fragment(node.name.value, level, nesting + 1)
        return total

    def field(self, node: FieldNode, level: int, nesting: int) -> Size:
        if level > self.max_depth or nesting > MAX_NESTING:
            raise _TooDeep
        name = node.name.value
        own = Size(_step(node), 1 if node.alias else 0, 1, self.root_costs.get(name, 1) if level == 1 else 1)
        if node.selection_set is None:
            return own
        inner = self.selections(node.selection_set.selections, level, nesting)
        return Size(
            own.depth + inner.depth, own.aliases + inner.aliases, own.fields + inner.fields, own.cost + inner.cost
        )

    def fragment(self, name: str, level: int, nesting: int) -> Size:
        key = (name, level == 0)
        if key in self.done:
            return self.done[key]
        definition = self.fragments.get(name)
        if definition is None or name in self.open:
            return Size()  # unknown or cyclic: graphql-core's validation names the fault
        self.open.add(name)
        size = self.selections(definition.selection_set.selections, level, nesting)
        self.open.discard(name)
        self.done[key] = size
        return size


def _step(node: FieldNode) -> int:
    """How much deeper a field takes the query. Introspection's ``ofType`` adds no depth: a type wraps at most
    one other, so the chain does not fan out, and GraphiQL's schema query nests it eight deep."""
    return 0 if node.name.value == "ofType" else 1


def measure(document: DocumentNode, root_costs: Mapping[str, int], max_depth: int) -> Size:
    """Every operation of the document together (a client sends only the ones it means to run). Raises
    ``_TooDeep`` past ``max_depth`` fields or ``MAX_NESTING`` selection sets."""
    m = _Measure(document, root_costs, max_depth)
    total = Size()
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            total += m.selections(definition.selection_set.selections, 0, 0)
    return total


def over_limits(document: DocumentNode, root_costs: Mapping[str, int], limits: Limits) -> tuple[Size, str | None]:
    """The request's size, and what is wrong with it (a sentence for the client) if it is over a limit."""
    try:
        size = measure(document, root_costs, limits.max_depth)
    except _TooDeep:
        return Size(), (
            f"The query nests fields more than {limits.max_depth} deep, or selection sets and fragments more "
            f"than {MAX_NESTING} deep."
        )
    checks = (
        (size.depth, limits.max_depth, "The query nests fields {} deep; at most {} are allowed."),
        (size.aliases, limits.max_aliases, "The query uses {} aliases; at most {} are allowed."),
        (size.fields, limits.max_fields, "The query selects {} fields; at most {} are allowed."),
        (size.cost, limits.max_cost, "The query costs {} points; at most {} are allowed per request."),
    )
    for found, allowed, text in checks:
        if found > allowed:
            return size, text.format(_count(found), allowed)
    return size, None


def _count(n: int) -> str:
    return str(n) if n < 10**9 else "more than a billion"


# --- text ------------------------------------------------------------------------------------------------


def text_fault(text: str) -> str | None:
    """Why a text may not be used, or None. C-level scans: ``in`` and one encode."""
    if len(text) > MAX_TEXT_CHARS:
        return f"is longer than {MAX_TEXT_CHARS} characters"
    if "\x00" in text:
        return "holds a NUL character, which text may not hold"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds an unpaired UTF-16 surrogate, which is not Unicode text"
    return None


def literal_faults(document: DocumentNode) -> list[FieldError]:
    """Strings written into the document: arguments (named ``field.argument``) and variables' defaults."""
    faults: list[FieldError] = []
    for pointer, value in _literals(document):
        if isinstance(value, ListValueNode) and len(value.values) > MAX_LIST_ITEMS:
            faults.append(_fault(pointer, f"has more than {MAX_LIST_ITEMS} items"))
        elif isinstance(value, StringValueNode) and (why := text_fault(value.value)):
            faults.append(_fault(pointer, why))
    return faults


def variable_faults(variables: Mapping[str, Any] | None) -> list[FieldError]:
    """Strings and lists in the request's variables, named ``$variable.field[index]``."""
    faults: list[FieldError] = []
    stack: list[tuple[str, Any]] = [(f"${k}", v) for k, v in (variables or {}).items()]
    while stack:
        pointer, value = stack.pop()
        if isinstance(value, str):
            if why := text_fault(value):
                faults.append(_fault(pointer, why))
        elif isinstance(value, list):
            if len(value) > MAX_LIST_ITEMS:
                faults.append(_fault(pointer, f"has more than {MAX_LIST_ITEMS} items"))
            else:
                stack.extend((f"{pointer}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, dict):
            stack.extend((f"{pointer}.{k}", v) for k, v in value.items())
    return sorted(faults, key=lambda f: f.pointer)


def _fault(pointer: str, why: str) -> FieldError:
    return FieldError(pointer, f"{pointer} {why}.", "invalid-text")


def _literals(document: DocumentNode) -> Iterator[tuple[str, ValueNode]]:
    """Every value node in the document with a name for it; each definition once, fragments unexpanded."""
    stack: list[tuple[str, ValueNode]] = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            for var in definition.variable_definitions or ():
                if var.default_value is not None:
                    stack.append((f"${var.variable.name.value}", var.default_value))
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            selections: list[SelectionNode] = list(definition.selection_set.selections)
            while selections:
                node = selections.pop()
                if isinstance(node, FieldNode):
                    stack.extend((f"{node.name.value}.{a.name.value}", a.value) for a in node.arguments or ())
                for directive in node.directives or ():
                    stack.extend(
                        (f"@{directive.name.value}.{a.name.value}", a.value) for a in directive.arguments or ()
                    )
                inner = getattr(node, "selection_set", None)
                if inner is not None:
                    selections.extend(inner.selections)
    while stack:
        pointer, value = stack.pop()
        yield pointer, value
        if isinstance(value, ListValueNode):
            stack.extend((f"{pointer}[{i}]", v) for i, v in enumerate(value.values[:MAX_LIST_ITEMS]))
        elif isinstance(value, ObjectValueNode):
            stack.extend((f"{pointer}.{f.name.value}", f.value) for f in value.fields)
