"""Lawful sharing: consents, legal-basis records and the decision engine.

:func:`decide` is a pure function: given a proposed share (:class:`ShareRequest`), the facts (consents
and necessity assessments about the child) and the :class:`~hub.domain.policy.Policy`, it returns a
:class:`Decision` saying whether the share is allowed, on which legal basis, which data categories may
travel (the golden rule: *requested ∩ what the basis covers ∩ what the policy lets that basis carry*),
which may not, why (Swedish and English), and what would make the rest lawful. No I/O, no clock:
``request.at`` is the time of the share.

Inputs are validated pydantic models (built at the edge); outputs are frozen dataclasses, cheap to build
in the hot path and serialisable with ``pydantic.TypeAdapter(Decision)``. Codes (categories,
organisation types, referral kinds) are checked against the vocabulary by services, not here.
The legal reading encoded here and in the policy is configuration, **not legal advice**.
"""

from __future__ import annotations

from hub.domain.sharing.citation import cite, cited
from hub.domain.sharing.consents import check_consent, withdraw_consent
from hub.domain.sharing.engine import consent_state, decide
from hub.domain.sharing.facts import (
    Citation,
    Consent,
    ConsentAlreadyWithdrawn,
    ConsentProblem,
    ConsentRefusal,
    ConsentState,
    Decision,
    DecisionMaker,
    Grantor,
    GrantorAgreement,
    InformationGiven,
    NecessityAssessment,
    Party,
    PartyScope,
    Reason,
    Remedy,
    ShareRequest,
)
from hub.domain.sharing.texts import BASIS_LABELS, REASON_TEXTS, REMEDY_TEXTS

__all__ = [
    "BASIS_LABELS",
    "REASON_TEXTS",
    "REMEDY_TEXTS",
    "Citation",
    "Consent",
    "ConsentAlreadyWithdrawn",
    "ConsentProblem",
    "ConsentRefusal",
    "ConsentState",
    "Decision",
    "DecisionMaker",
    "Grantor",
    "GrantorAgreement",
    "InformationGiven",
    "NecessityAssessment",
    "Party",
    "PartyScope",
    "Reason",
    "Remedy",
    "ShareRequest",
    "check_consent",
    "cite",
    "cited",
    "consent_state",
    "decide",
    "withdraw_consent",
]
