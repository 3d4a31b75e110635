"""The protected-identity rule in the decision engine: what it withholds, from whom, and how it explains."""

from __future__ import annotations

import pytest

from hub.domain.policy import Policy
from hub.domain.sharing import decide

from .facts import BUP, SOC, consent, request

CONSENTS = [consent(data_categories=["identity", "guardians-contact", "school-situation", "wellbeing-assessment"])]


def test_a_protected_childs_identity_and_guardian_contact_are_withheld_from_a_recipient_the_policy_does_not_name():
    asked = request(requested_categories=["identity", "guardians-contact", "school-situation"])
    plain = decide(asked, consents=CONSENTS, assessments=[], policy=Policy())
    protected = decide(
        asked.model_copy(update={"child_identity_protected": True}), consents=CONSENTS, assessments=[], policy=Policy()
    )
    assert set(plain.permitted_categories) == {"identity", "guardians-contact", "school-situation"}
    assert protected.allowed and protected.permitted_categories == ("school-situation",)
    assert protected.denied_categories == ("guardians-contact", "identity")
    reason = next(r for r in protected.reasons if r.code == "identity-protected")
    assert reason.categories == ("guardians-contact", "identity") and BUP.organisation_id in reason.en
    remedy = next(r for r in protected.remedies if r.code == "recipient-reaches-sender")
    assert "contact details" in remedy.en


def test_a_policy_named_recipient_receives_only_what_the_policy_releases_to_it():
    asked = request(
        to_party=SOC,
        purpose="orosanmalan",
        requested_categories=["identity", "guardians-contact", "concern-text"],
        child_identity_protected=True,
    )
    decision = decide(asked, consents=[], assessments=[], policy=Policy())
    assert decision.permitted_categories == ("concern-text", "identity")
    assert decision.denied_categories == ("guardians-contact",)


def test_everything_asked_for_withheld_is_a_refusal_that_says_why():
    asked = request(requested_categories=["identity"], child_identity_protected=True)
    decision = decide(asked, consents=CONSENTS, assessments=[], policy=Policy())
    assert not decision.allowed and decision.denied_categories == ("identity",)
    assert [r.code for r in decision.reasons] == ["identity-protected"]
    assert [r.code for r in decision.remedies] == ["recipient-reaches-sender"]


@pytest.mark.parametrize("protected", [False, True])
def test_a_request_without_withheld_categories_decides_alike(protected: bool):
    asked = request(requested_categories=["school-situation"], child_identity_protected=protected)
    assert decide(asked, consents=CONSENTS, assessments=[], policy=Policy()) == decide(
        request(requested_categories=["school-situation"]), consents=CONSENTS, assessments=[], policy=Policy()
    )


def test_the_policy_names_recipients_by_id_and_what_they_receive():
    policy = Policy.model_validate(
        {
            "protected_identity": {
                "recipients": {"organisation_ids": [BUP.organisation_id]},
                "recipients_receive": ["identity", "guardians-contact"],
            }
        }
    )
    asked = request(requested_categories=["identity", "guardians-contact"], child_identity_protected=True)
    decision = decide(asked, consents=CONSENTS, assessments=[], policy=policy)
    assert decision.permitted_categories == ("guardians-contact", "identity") and not decision.denied_categories
    assert "socialtjanst-myndighet" in Policy().referenced_codes()["organisation-type"]


@pytest.mark.parametrize(
    "consents",
    [[], [consent(data_categories=["school-situation"])]],
    ids=["no basis at all", "a basis without identity"],
)
def test_without_a_basis_for_identity_a_protected_child_is_answered_like_any_other(consents):
    # Anyone holding a personal identity number may ask; only a sender that could lawfully have disclosed the
    # identity learns that it is protected. Everyone else gets the answer any child would give (no oracle).
    asked = request(requested_categories=["identity", "guardians-contact", "school-situation"])
    plain = decide(asked, consents=consents, assessments=[], policy=Policy())
    protected = decide(
        asked.model_copy(update={"child_identity_protected": True}), consents=consents, assessments=[], policy=Policy()
    )
    assert protected == plain
    assert "identity-protected" not in {r.code for r in protected.reasons}
