"""The engine is no oracle about other organisations' consents (issue #9, item 1), whatever the facts:

- no reason or remedy names or describes a consent the sender may not see (one another organisation
  recorded that does not name the sender by id), nor another organisation's necessity assessment;
- unless such a consent is the basis that allows, the decision is *equal* to the decision made without
  the consents and assessments the sender may not see: an attacker comparing answers learns nothing;
- when it is the basis, the share is still allowed exactly as far as it covers, unnamed.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hub.domain.sharing import Consent, Decision, decide

from .facts import BUP, SCHOOL, consent, request
from .test_sharing_properties import PARTIES, PROPERTY_SETTINGS, worlds


def _texts(decision: Decision) -> list[str]:
    return [text for item in (*decision.reasons, *decision.remedies) for text in (item.sv, item.en)]


@st.composite
def worlds_with_recorders(draw: st.DrawFn) -> tuple[Any, list[Consent], list[Any], Any]:
    request_, consents, assessments, policy = draw(worlds())
    recorded = [
        c.model_copy(update={"recording_organisation_id": draw(st.sampled_from(PARTIES)).organisation_id})
        for c in consents
    ]
    return request_, recorded, assessments, policy


@PROPERTY_SETTINGS
@given(worlds_with_recorders())
def test_what_the_sender_may_not_see_leaves_no_trace(world: Any) -> None:
    request_, consents, assessments, policy = world
    asker = request_.from_party.organisation_id
    seen = [c for c in consents if c.visible_to(asker)]
    unseen = {c.id for c in consents if not c.visible_to(asker)}
    unseen |= {a.id for a in assessments if a.organisation_id != asker}
    own = [a for a in assessments if a.organisation_id == asker]

    decision = decide(request_, consents=consents, assessments=assessments, policy=policy)

    told = unseen - {request_.basis_reference}  # a reference the sender gave may be echoed, found or not
    for item in (*decision.reasons, *decision.remedies):
        assert getattr(item, "basis_reference", None) not in told
    for text in _texts(decision):
        assert not any(ref in text for ref in told), text
    if decision.basis_visible:
        assert decision == decide(request_, consents=seen, assessments=own, policy=policy)
    else:
        assert decision.allowed and decision.legal_basis == "consent"
        assert decision.basis_reference in unseen and decision.shown_reference is None
        assert decision.reasons[0].code == "consent-of-another-organisation-applies"


def test_a_consent_of_another_organisation_that_does_not_cover_reads_as_no_consent() -> None:
    """The attacker's comparison: the health centre asks about the school's child, once with nothing
    recorded and once with the school's consent (which does not cover the health centre)."""
    vc = PARTIES[2]
    asked = request(from_party=vc)
    nothing = decide(asked, consents=[], assessments=[], policy=consent_policy())
    schools = decide(asked, consents=[consent(id="c-secret")], assessments=[], policy=consent_policy())
    assert schools == nothing
    assert not schools.allowed and "no-consent" in {r.code for r in schools.reasons}


def test_a_consent_naming_the_sender_by_id_is_explained() -> None:
    eht = PARTIES[1]
    named = consent(from_parties={"organisation_ids": [eht.organisation_id]}, to_parties={"organisation_ids": ["x"]})
    decision = decide(request(from_party=eht, to_party=BUP), consents=[named], assessments=[], policy=consent_policy())
    assert not decision.allowed
    assert "consent-recipient-not-covered" in {r.code for r in decision.reasons}
    assert any("c-1" in text for text in _texts(decision))


def test_an_unseen_consent_that_allows_is_used_but_not_named() -> None:
    eht = PARTIES[1]
    assert not consent().visible_to(eht.organisation_id) and consent().visible_to(SCHOOL.organisation_id)
    decision = decide(
        request(from_party=eht, requested_categories=["identity", "health"]),
        consents=[consent()],
        assessments=[],
        policy=consent_policy(),
    )
    assert decision.allowed and decision.permitted_categories == ("identity",)
    assert decision.basis_reference == "c-1" and decision.shown_reference is None and not decision.basis_visible
    assert not any("c-1" in text for text in _texts(decision))
    assert {r.code for r in decision.remedies} == {"record-consent"}, "generic remedies only"


def consent_policy() -> Any:
    from .facts import policy

    return policy()
