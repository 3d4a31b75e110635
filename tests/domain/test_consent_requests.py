"""The consent request aggregate: answers change it only through ``answer``; completion follows the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.domain.policy import Policy
from hub.domain.sharing import InformationGiven, PartyScope
from hub.domain.sharing.requests import (
    AnswerNotAllowed,
    ConsentRequest,
    GrantorNotListed,
    RequestedGrantor,
    RequestExpired,
    child_must_agree,
)

AT = datetime(2026, 3, 2, 9, tzinfo=UTC)


def request(*, child: bool = False) -> ConsentRequest:
    grantors = [RequestedGrantor(role="guardian", reference=r) for r in ("vh1", "vh2")]
    if child:
        grantors.append(RequestedGrantor(role="child", reference="barnet"))
    return ConsentRequest(
        id="r1",
        child_pseudonym="p1",
        requesting_organisation_id="nora-elevhalsa",
        guardian_count=2,
        grantors=tuple(grantors),
        child_required=child,
        data_categories=frozenset({"identity", "health"}),
        from_parties=PartyScope(organisation_ids=frozenset({"nora-elevhalsa"})),
        to_parties=PartyScope(organisation_types=frozenset({"bup"})),
        purposes=frozenset({"remiss"}),
        valid_from=AT,
        valid_until=AT + timedelta(days=180),
        information_given=InformationGiven(language="sv", form="written"),
        requested_at=AT,
        answer_by=AT + timedelta(days=14),
    )


def agree(r: ConsentRequest, reference: str, role: str = "guardian", **kw: object) -> ConsentRequest:
    return r.answer(role=role, reference=reference, agreed=True, at=AT, evidence_reference="e", method="bankid", **kw)  # type: ignore[arg-type]


def test_all_guardians_must_agree_by_default_and_one_suffices_when_the_policy_says_so() -> None:
    one = agree(request(), "vh1")
    assert one.state(AT) == "pending" and not one.complete(Policy())
    assert one.complete(Policy(all_guardians_must_consent=False))
    both = agree(one, "vh2")
    assert both.complete(Policy())
    consent = both.consent("c1")
    assert [g.reference for g in consent.grantors] == [
        "vh1",
        "vh2",
    ] and consent.evidence_reference == "consent-request:r1"
    assert both.linked("c1").state(AT) == "agreed" and not both.linked("c1").complete(Policy())


def test_the_child_must_agree_when_required() -> None:
    r = agree(agree(request(child=True), "vh1"), "vh2")
    assert not r.complete(Policy())
    assert agree(r, "barnet", role="child").complete(Policy())
    assert child_must_agree(Policy(), 15, frozenset({"identity"}))
    assert not child_must_agree(Policy(), 14, frozenset({"identity"}))
    assert child_must_agree(Policy(child_consent_age={"default": 15, "health": 13}), 13, frozenset({"health"}))


def test_a_refusal_closes_the_request() -> None:
    r = request().answer(role="guardian", reference="vh2", agreed=False, at=AT, evidence_reference="e", method="paper")
    assert r.state(AT) == "refused" and r.refused_at() == AT and not r.complete(Policy())
    with pytest.raises(AnswerNotAllowed):
        agree(r, "vh1")
    assert r.state(AT + timedelta(days=30)) == "refused"  # a refusal stays a refusal after the answer period


def test_answers_outside_the_rules_are_refused() -> None:
    with pytest.raises(GrantorNotListed):
        agree(request(), "morfar")
    with pytest.raises(GrantorNotListed):
        agree(request(), "vh1", role="child")
    with pytest.raises(GrantorNotListed):
        agree(request(), "vh1", categories=frozenset({"child-plan"}))
    with pytest.raises(AnswerNotAllowed):
        agree(agree(request(), "vh1"), "vh1")
    late = request()
    with pytest.raises(RequestExpired):
        late.answer(
            role="guardian", reference="vh1", agreed=True, at=late.answer_by, evidence_reference="e", method="bankid"
        )
    assert late.state(late.answer_by) == "expired"
