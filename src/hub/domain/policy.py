"""The lawful-sharing policy: the configurable rules the decision engine applies.

The policy encodes how *this hub's operators* read Swedish law (OSL 12 kap. 2 §, 10 kap. 2 §, the duty to
report concern); it is configuration, documented in ``docs/lawful-sharing.md``, and **not legal advice**.
The default ships as ``hub/policy/default.yaml``; ``hub.policy.load_policy`` reads a file and validates it
with :class:`Policy`. Codes (data categories, organisation types, referral kinds) are not checked against
the vocabulary here: services do that with :meth:`Policy.referenced_codes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["LEGAL_BASES", "LegalBasis", "Policy"]

LegalBasis = Literal["consent", "report-of-concern", "necessary-disclosure"]
"""The legal bases the engine knows: consent (OSL 12:2), the duty to report concern, necessary
disclosure (OSL 10:2)."""

LEGAL_BASES: tuple[LegalBasis, ...] = ("consent", "report-of-concern", "necessary-disclosure")
"""The legal bases in the engine's tie-break order."""

_ALL_CATEGORIES = frozenset(
    {
        "identity",
        "guardians-contact",
        "school-situation",
        "health",
        "social-services",
        "wellbeing-assessment",
        "concern-text",
        "child-plan",
    }
)

_DEFAULT_BASIS_CATEGORIES: dict[LegalBasis, frozenset[str]] = {
    "consent": _ALL_CATEGORIES,
    "report-of-concern": frozenset(
        {"identity", "guardians-contact", "concern-text", "wellbeing-assessment", "school-situation"}
    ),
    "necessary-disclosure": frozenset(
        {"identity", "guardians-contact", "school-situation", "wellbeing-assessment", "concern-text"}
    ),
}


class Policy(BaseModel):
    """The lawful-sharing policy (immutable). Defaults equal the shipped ``default.yaml``.

    Fields:
    - ``all_guardians_must_consent``: with joint custody (a consent's ``guardian_count`` is 2) both
      guardians must agree; if false one guardian suffices.
    - ``child_consent_age``: per data category, the age from which the child's own consent is also
      required; the ``default`` key applies to categories not listed.
    - ``max_consent_duration_days``: a consent whose period is longer is invalid.
    - ``legal_basis_categories``: the data categories each legal basis may ever carry (the golden rule's
      outer bound); a category missing from a basis' list can never be shared on that basis.
    - ``report_of_concern_purpose``: the referral kind a report of concern is sent as.
    - ``report_of_concern_recipient_types``: organisation types that may receive a report of concern.
    - ``necessity_assessment_max_age_days``: a necessity assessment older than this is stale.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    all_guardians_must_consent: bool = True
    child_consent_age: dict[str, int] = Field(default_factory=lambda: {"default": 15})
    max_consent_duration_days: int = Field(default=365, ge=1)
    legal_basis_categories: dict[LegalBasis, frozenset[str]] = Field(
        default_factory=lambda: dict(_DEFAULT_BASIS_CATEGORIES)
    )
    report_of_concern_purpose: str = Field(default="orosanmalan", min_length=1)
    report_of_concern_recipient_types: frozenset[str] = Field(
        default_factory=lambda: frozenset({"socialtjanst-myndighet"})
    )
    necessity_assessment_max_age_days: int = Field(default=30, ge=1)

    @field_validator("child_consent_age")
    @classmethod
    def _ages(cls, value: dict[str, int]) -> dict[str, int]:
        if "default" not in value:
            raise ValueError("child_consent_age needs a 'default' key")
        for category, age in value.items():
            if not 0 <= age <= 18:
                raise ValueError(f"child_consent_age[{category}] must be between 0 and 18")
        return value

    @model_validator(mode="after")
    def _every_basis_listed(self) -> Policy:
        missing = [basis for basis in LEGAL_BASES if basis not in self.legal_basis_categories]
        if missing:
            raise ValueError(f"legal_basis_categories must list every legal basis; missing: {missing}")
        return self

    # Derived values, computed once per policy (the decision engine's hot path reads them).

    @cached_property
    def max_consent_duration(self) -> timedelta:
        """``max_consent_duration_days`` as a ``timedelta``."""
        return timedelta(days=self.max_consent_duration_days)

    @cached_property
    def necessity_assessment_max_age(self) -> timedelta:
        """``necessity_assessment_max_age_days`` as a ``timedelta``."""
        return timedelta(days=self.necessity_assessment_max_age_days)

    @cached_property
    def youngest_child_consent_age(self) -> int:
        """The lowest age at which the child's own consent is required for any category."""
        return min(self.child_consent_age.values())

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Policy:
        """A copy (see pydantic); derived values are recomputed for the copy. Prefer
        ``Policy.model_validate({**policy.model_dump(), ...})``, which validates the changes."""
        copied = super().model_copy(update=update, deep=deep)
        for name in ("max_consent_duration", "necessity_assessment_max_age", "youngest_child_consent_age"):
            copied.__dict__.pop(name, None)
        return copied

    def child_consent_age_for(self, category: str) -> int:
        """The age from which the child's own consent is required for ``category``."""
        return self.child_consent_age.get(category, self.child_consent_age["default"])

    def categories_for(self, basis: LegalBasis) -> frozenset[str]:
        """The data categories ``basis`` may ever carry."""
        return self.legal_basis_categories[basis]

    def referenced_codes(self) -> dict[str, frozenset[str]]:
        """Every vocabulary code the policy mentions, by code system (``data-category``,
        ``organisation-type``, ``referral-kind``), for services to check against the vocabulary."""
        categories = {c for c in self.child_consent_age if c != "default"}
        for listed in self.legal_basis_categories.values():
            categories |= listed
        return {
            "data-category": frozenset(categories),
            "organisation-type": self.report_of_concern_recipient_types,
            "referral-kind": frozenset({self.report_of_concern_purpose}),
        }
