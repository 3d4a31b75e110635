"""Protected identity (skyddade personuppgifter): what a child's protection withholds, from whom, and the
marker a recipient gets instead.

A child with protected personal data (a *sekretessmarkering* or *skyddad folkbokföring* at the Swedish
Tax Agency) is marked by the sending organisation; the hub keeps the mark per child pseudonym until an
organisation the policy names clears it. This module is the rule, as the policy configures it
(:class:`ProtectedIdentityRule`): which data categories the protection withholds, which recipients may
still receive some of them (and which), and who may clear a mark. The decision engine applies it
(:mod:`hub.domain.sharing.engine`); storage only keeps the mark. Plain Python: no I/O.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["NamedOrganisations", "ProtectedIdentityRule", "marker"]

_MODEL = ConfigDict(frozen=True, extra="forbid")


class NamedOrganisations(BaseModel):
    """Organisations a rule names: by id and/or by organisation type (vocabulary codes)."""

    model_config = _MODEL

    organisation_ids: frozenset[str] = frozenset()
    organisation_types: frozenset[str] = frozenset()

    def names(self, organisation_id: str, organisation_type: str) -> bool:
        """Whether the organisation is named, by its id or by its type."""
        return organisation_id in self.organisation_ids or organisation_type in self.organisation_types


def _social_services() -> NamedOrganisations:
    return NamedOrganisations(organisation_types=frozenset({"socialtjanst-myndighet"}))


class ProtectedIdentityRule(BaseModel):
    """The policy's rule for a child with protected identity.

    - ``withheld_categories``: what the protection withholds from every recipient not named below
      (default: ``identity`` and ``guardians-contact``, which carries addresses and how to reach the family).
    - ``recipients``: the organisations that may still receive some of them (default: social services'
      statutory unit), and ``recipients_receive``: what they receive of them (default: ``identity`` only —
      who the child is, not where the child lives). A category here still needs a legal basis.
    - ``may_clear``: the organisations that may clear a mark (default: social services' statutory unit).
    """

    model_config = _MODEL

    withheld_categories: frozenset[str] = Field(default=frozenset({"identity", "guardians-contact"}))
    recipients: NamedOrganisations = Field(default_factory=_social_services)
    recipients_receive: frozenset[str] = Field(default=frozenset({"identity"}))
    may_clear: NamedOrganisations = Field(default_factory=_social_services)

    def withheld_from(self, organisation_id: str, organisation_type: str) -> frozenset[str]:
        """The categories the protection withholds from this recipient."""
        if self.recipients.names(organisation_id, organisation_type):
            return self.withheld_categories - self.recipients_receive
        return self.withheld_categories

    def codes(self) -> dict[str, frozenset[str]]:
        """The vocabulary codes the rule mentions, by code system."""
        return {
            "data-category": self.withheld_categories | self.recipients_receive,
            "organisation-type": self.recipients.organisation_types | self.may_clear.organisation_types,
        }


MARKER_TEXT = (
    "Barnet har skyddade personuppgifter. Uppgifter om identitet, adress och vårdnadshavares kontaktuppgifter "
    "lämnas inte ut; kontakta den avsändande organisationen, inte barnet eller familjen.",
    "The child has protected personal data. Identity, address and guardian contact details are withheld; "
    "contact the sending organisation, not the child or the family.",
)
"""Swedish and English text of the marker a recipient of a protected child's referral gets."""


def marker(withheld: frozenset[str] | tuple[str, ...], contact: dict[str, object]) -> dict[str, object]:
    """The marker a referral of a protected child carries: that identity is protected, what was withheld
    from this recipient, and how to reach the sender instead (``contact``: the sending organisation's
    contact details, never the child's)."""
    sv, en = MARKER_TEXT
    return {
        "protected": True,
        "withheld_categories": sorted(withheld),
        "contact": contact,
        "text": {"sv": sv, "en": en},
    }
