"""The lawful-sharing policy: the configurable rules the decision engine applies.

The policy encodes how *this hub's operators* read Swedish law (OSL 12 kap. 2 §, 10 kap. 2 §, the duty to
report concern); it is configuration, documented in ``docs/lawful-sharing.md``, and **not legal advice**.
The default ships as ``hub/policy/default.yaml``; ``hub.policy.load_policy`` reads a file and validates it
with :class:`Policy`. Codes (data categories, organisation types, referral kinds) are not checked against
the vocabulary here: services do that with :meth:`Policy.referenced_codes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.domain.protected_identity import ProtectedIdentityRule

__all__ = ["LEGAL_BASES", "DatedRule", "LegalBasis", "Policy", "StatuteProvision", "swedish_day"]

# The law takes effect on a Swedish calendar day: a rule in force from 1 July applies from midnight in Sweden.
_SWEDEN = ZoneInfo("Europe/Stockholm")


def swedish_day(at: datetime) -> date:
    """The Swedish calendar day of the instant ``at`` (the day a dated rule or statute is judged on)."""
    return at.astimezone(_SWEDEN).date()


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


class StatuteProvision(BaseModel):
    """A county's reading of a statute reference the vocabulary could not confirm to the section (see
    ``LegalBasis.statutes``' ``provision_verified``): the citation its lawyers confirmed, and where."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sv: str = Field(min_length=1)
    en: str = Field(min_length=1)
    source: str = Field(min_length=1, description="Where the provision was confirmed (SFS, lagen.nu, a decision)")


class DatedRule(BaseModel):
    """Policy values in force from ``valid_from`` (inclusive) until ``valid_until`` (exclusive; None:
    until further notice), Swedish calendar days; ``source`` says what puts them in force."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    valid_from: date
    valid_until: date | None = None
    source: str = Field(min_length=1)
    rules: dict[str, Any] = Field(min_length=1)

    def in_force(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day < self.valid_until)


# What a dated rule may not set: the dated rules themselves and the county's statute readings.
_UNDATED = frozenset({"dated_rules", "statute_provisions"})


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
    - ``consent_refusal_stands_days``: for this many days after a refused consent request, decisions of
      the requesting organisation about that child and purpose point to other bases, not to consent.
    - ``protected_identity``: for a child with protected identity, the categories withheld, the recipients
      that may still receive some of them and which, and who may clear a mark
      (:class:`~hub.domain.protected_identity.ProtectedIdentityRule`).
    - ``concern_answer_days``: days after a report of concern reached social services (its delivery) by
      which the reporter should have their answer; later, the report is shown overdue and counted in the
      flows. A county's choice (``concern_answer_days_source`` says on what it rests): the law in force sets
      no time for the answer (prop. 2025/26:12 proposes one), only 14 days for the decision to open an
      investigation or not (docs/lawful-sharing.md, "The report-of-concern loop").
    - ``statute_provisions``: per statute reference id of the ``legal-bases`` vocabulary, the provision
      (chapter and section) a county has confirmed where the vocabulary names the act only (a policy
      switch: without it the citation names the act and says the provision is unconfirmed).
    - ``dated_rules``: values of the fields above in force from a date (:meth:`in_force`), so a county
      can put a change in force on its day; the undated values apply outside every rule's period.
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
    consent_refusal_stands_days: int = Field(default=90, ge=0)
    protected_identity: ProtectedIdentityRule = Field(default_factory=ProtectedIdentityRule)
    concern_answer_days: int = Field(default=14, ge=1, le=365)
    concern_answer_days_source: str = Field(
        default="County choice: the 14 days social services have to decide whether to open an investigation "
        "(11 kap. 1 a § SoL 2001:453); prop. 2025/26:12 proposes feedback to reporters within a set time.",
        min_length=1,
    )
    statute_provisions: dict[str, StatuteProvision] = Field(default_factory=dict)
    dated_rules: tuple[DatedRule, ...] = ()

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

    @model_validator(mode="after")
    def _dated_rules_valid(self) -> Policy:
        for i, rule in enumerate(self.dated_rules):
            if rule.valid_until is not None and rule.valid_until <= rule.valid_from:
                raise ValueError(f"dated_rules[{i}]: valid_until must be after valid_from")
            if bad := sorted(set(rule.rules) - (set(type(self).model_fields) - _UNDATED)):
                raise ValueError(f"dated_rules[{i}]: not a dated policy field: {', '.join(bad)}")
            for j, other in enumerate(self.dated_rules[:i]):
                overlap = rule.valid_from < (other.valid_until or date.max) and other.valid_from < (
                    rule.valid_until or date.max
                )
                if overlap and (same := sorted(set(rule.rules) & set(other.rules))):
                    raise ValueError(f"dated_rules[{j}] and [{i}] set {', '.join(same)} over the same days")
            self._with(frozenset({i}))  # each rule must give a valid policy on its own days
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
        for name in (
            "max_consent_duration",
            "necessity_assessment_max_age",
            "youngest_child_consent_age",
            "_in_force",
        ):
            copied.__dict__.pop(name, None)
        return copied

    def in_force(self, day: date) -> Policy:
        """The policy as it applies on ``day``: the undated values with every dated rule in force that day
        laid over them. Without dated rules (the common case) the policy itself; otherwise one policy per
        combination of rules, built once."""
        if not self.dated_rules:
            return self
        return self._with(frozenset(i for i, r in enumerate(self.dated_rules) if r.in_force(day)))

    def _with(self, rules: frozenset[int]) -> Policy:
        if not rules:
            return self
        cache: dict[frozenset[int], Policy] = self.__dict__.setdefault("_in_force", {})
        found = cache.get(rules)
        if found is None:
            values = self.model_dump(exclude={"dated_rules"})
            for i in sorted(rules):
                values.update(self.dated_rules[i].rules)
            found = cache[rules] = Policy.model_validate(values)
        return found

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
        protection = self.protected_identity.codes()
        codes = {
            "data-category": frozenset(categories) | protection["data-category"],
            "organisation-type": self.report_of_concern_recipient_types | protection["organisation-type"],
            "referral-kind": frozenset({self.report_of_concern_purpose}),
        }
        for i in range(len(self.dated_rules)):  # a dated rule's codes are checked when the hub starts too
            for system, more in self._with(frozenset({i})).referenced_codes().items():
                codes[system] |= more
        return codes
