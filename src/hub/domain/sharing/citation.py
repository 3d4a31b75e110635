"""The statute a decision cites: the legal basis' reference in force on the day of the decision.

The ``legal-bases`` vocabulary (from version 2) dates each basis' statute references. A decision made on a
day cites the reference in force that day (Swedish calendar), with the vocabulary version it was read
from; the citation is stored with the decision and its audit entry, so a decision made before a change
of law keeps the citation it was made under. A reference the vocabulary could not confirm to the
section names the act only, unless the county's policy supplies the provision (``statute_provisions``).
"""

from __future__ import annotations

import dataclasses
from datetime import date

from hub.domain.policy import Policy
from hub.domain.sharing.evaluation import make_reason
from hub.domain.sharing.facts import Citation, Decision
from hub.domain.vocabulary import LegalBasesDoc

__all__ = ["cite", "cited"]

VOCABULARY = "legal-bases"


def cite(doc: LegalBasesDoc, basis: str, day: date, policy: Policy) -> Citation | None:
    """The citation of ``basis`` on ``day`` from the ``legal-bases`` document ``doc``; None when the
    document has no such basis or no reference in force that day (the decision then cites nothing
    rather than a statute not in force)."""
    concept = doc.basis(basis)
    if concept is None:
        return None
    if concept.statute is not None:  # version 1: one undated citation
        text = concept.statute
        return Citation(basis, VOCABULARY, doc.version, None, text.sv, text.en, None, None, True)
    reference = concept.statute_at(day)
    if reference is None:
        return None
    sv, en = reference.citation.sv, reference.citation.en
    verified, source = reference.provision_verified, None
    provision = policy.statute_provisions.get(reference.id)
    if not verified and provision is not None:
        sv, en, verified, source = provision.sv, provision.en, True, provision.source
    period = reference.valid_from, reference.valid_until
    return Citation(basis, VOCABULARY, doc.version, reference.id, sv, en, *period, verified, source)


def cited(decision: Decision, citation: Citation | None) -> Decision:
    """``decision`` with the reason that cites its statute after the chosen basis' reasons (unchanged
    when nothing is cited: a refusal has no basis)."""
    if citation is None or not decision.allowed:
        return decision
    code = "statute-cited" if citation.provision_verified else "statute-cited-provision-unconfirmed"
    texts = {"statute_sv": citation.sv, "statute_en": citation.en, "version": citation.vocabulary_version}
    reason = make_reason(code, decision.legal_basis, None, (), **texts)
    reasons = list(decision.reasons)
    at = next((i for i, r in enumerate(reasons) if r.code == "categories-denied"), len(reasons))
    return dataclasses.replace(decision, reasons=(*reasons[:at], reason, *reasons[at:]), citation=citation)
