"""A plan's sections as data categories: which sections a legal basis lets travel, and which it withholds
and why. Plain functions over the plan's JSON document and the vocabulary's mapping (``child-plan``
1.1.0: each section's ``data_category``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

# What every reader of a plan gets: which schema it follows, its language and dates. Everything else in
# the document is a section (``extensions`` too), and a section is shared only as the data category it is.
METADATA: Final = frozenset({"schema_version", "plan_id", "language", "created_on", "updated_on"})
# A section the vocabulary maps to no category (local ``extensions``, a section of a later schema this hub
# does not know) is the plan's own category: the strictest one, which only consent carries (fail closed).
UNMAPPED: Final = "child-plan"
NOT_COVERED: Final = "not-covered-by-legal-basis"


@dataclass(frozen=True)
class Withheld:
    """A section a reader does not get: its data category, and why (no legal basis covers it)."""

    section: str
    data_category: str
    reason: str = NOT_COVERED

    def as_json(self) -> dict[str, str]:
        return {"section": self.section, "data_category": self.data_category, "reason": self.reason}


def sections_of(document: Mapping[str, Any]) -> tuple[str, ...]:
    """The sections a plan document holds (not its metadata), in document order."""
    return tuple(k for k in document if k not in METADATA)


def category_of(section: str, categories: Mapping[str, str]) -> str:
    return categories.get(section, UNMAPPED)


def categories_of(sections: Iterable[str], categories: Mapping[str, str]) -> frozenset[str]:
    """The data categories a set of sections is (what a share of all of them must be lawful for)."""
    return frozenset(category_of(s, categories) for s in sections)


def split(
    sections: Iterable[str], categories: Mapping[str, str], permitted: frozenset[str]
) -> tuple[tuple[str, ...], tuple[Withheld, ...]]:
    """The sections whose category ``permitted`` holds, and the others withheld with their category."""
    kept: list[str] = []
    withheld: list[Withheld] = []
    for section in sections:
        category = category_of(section, categories)
        if category in permitted:
            kept.append(section)
        else:
            withheld.append(Withheld(section, category))
    return tuple(kept), tuple(withheld)


def strip(document: Mapping[str, Any], sections: Iterable[str]) -> dict[str, Any]:
    """The document with its metadata and only ``sections``."""
    keep = METADATA | set(sections)
    return {k: v for k, v in document.items() if k in keep}
