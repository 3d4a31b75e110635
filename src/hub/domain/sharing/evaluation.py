"""One candidate basis explained: its reasons and remedies, rendered once and shared (the hot path builds
none of them; see :mod:`hub.domain.sharing.bases`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from hub.domain.policy import LegalBasis
from hub.domain.sharing.facts import Reason, Remedy
from hub.domain.sharing.texts import BASIS_LABELS, REASON_TEXTS, REMEDY_TEXTS

NOTHING: frozenset[str] = frozenset()


def sorted_categories(categories: Iterable[str]) -> tuple[str, ...]:
    """Categories in the stable order reasons, remedies and decisions list them."""
    return tuple(sorted(categories))


# Reasons and remedies are immutable and their text depends only on the arguments, so equal ones are
# shared: rendering text is the most expensive step of the hot path.
@lru_cache(maxsize=8192)
def make_reason(
    code: str,
    basis: LegalBasis | None,
    ref: str | None,
    categories: tuple[str, ...] = (),
    **values: object,
) -> Reason:
    """The reason ``code`` for ``basis`` and its reference, its texts filled in from ``values``."""
    sv, en = REASON_TEXTS[code]
    values["ref"] = ref
    values["categories"] = ", ".join(categories)
    if basis is not None:
        values["basis_sv"], values["basis_en"] = BASIS_LABELS[basis]
    return Reason(code, sv.format_map(values), en.format_map(values), basis, ref, categories)


@lru_cache(maxsize=8192)
def make_remedy(code: str, categories: tuple[str, ...] = (), **values: object) -> Remedy:
    """The remedy ``code``, its texts filled in from ``values``."""
    sv, en = REMEDY_TEXTS[code]
    values["categories"] = ", ".join(categories)
    return Remedy(code, sv.format_map(values), en.format_map(values), categories)


@dataclass(slots=True)
class Evaluation:
    """The explanation of one candidate basis; built only when a decision is explained."""

    basis: LegalBasis
    reference: str | None
    permitted: frozenset[str] = NOTHING
    reasons: list[Reason] = field(default_factory=list)
    remedies: list[Remedy] = field(default_factory=list)

    def note(self, code: str, categories: tuple[str, ...] = (), **values: object) -> None:
        self.reasons.append(make_reason(code, self.basis, self.reference, categories, **values))

    def remedy(self, code: str, categories: tuple[str, ...] = (), **values: object) -> None:
        # A remedy "covering: (nothing)" would promise a path the policy never opens for these categories.
        if categories or "{categories}" not in REMEDY_TEXTS[code][1]:
            self.remedies.append(make_remedy(code, categories, **values))


def unique_remedies(evaluations: Iterable[Evaluation]) -> tuple[Remedy, ...]:
    """Every evaluation's remedies once each, in a stable order."""
    seen: dict[tuple[str, str], Remedy] = {}
    for ev in evaluations:
        for remedy in ev.remedies:
            seen.setdefault((remedy.code, remedy.en), remedy)
    return tuple(seen[key] for key in sorted(seen))
