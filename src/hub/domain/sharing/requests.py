"""A consent request to a child's guardians (and the child, by age): the aggregate and its rules.

An organisation asks the guardians for consent through its own e-service, which handles the signing; the
hub records the request, then each answer (agreed or refused) with the e-service's evidence reference,
time and method. It never signs. When every required grantor has agreed, the request yields the
:class:`Consent` to record (checked by :func:`check_consent` like any other); a refusal closes the request
and is kept as an input to later decisions (the engine then points to other bases, never to asking again
at once). State changes only through :meth:`ConsentRequest.answer`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from hub.domain.policy import Policy
from hub.domain.sharing.facts import Consent, Grantor, InformationGiven, PartyScope

__all__ = [
    "AnswerNotAllowed",
    "ConsentRequest",
    "GrantorNotListed",
    "RequestExpired",
    "RequestState",
    "RequestedGrantor",
    "child_must_agree",
]

_MODEL = ConfigDict(frozen=True, extra="forbid")

RequestState = Literal["pending", "agreed", "refused", "expired"]
"""``pending`` until every required grantor has agreed (``agreed``: the consent exists) or one refused
(``refused``); ``expired`` when its answer period ended while pending."""


class RequestExpired(ValueError):
    """The request's answer period has ended (HTTP 410)."""


class GrantorNotListed(ValueError):
    """The answer names a grantor the request does not list (HTTP 422)."""


class AnswerNotAllowed(ValueError):
    """The grantor has already answered, or the request is closed (HTTP 409)."""


class RequestedGrantor(BaseModel):
    """A person asked: their role, a name-free reference, and their answer once given (the e-service's
    evidence reference, the time and the method, e.g. ``bankid``, ``paper``)."""

    model_config = _MODEL

    role: Literal["guardian", "child"]
    reference: str = Field(min_length=1)
    status: Literal["pending", "agreed", "refused"] = "pending"
    answered_at: AwareDatetime | None = None
    evidence_reference: str | None = None
    method: str | None = None
    categories: frozenset[str] | None = None


def child_must_agree(policy: Policy, age: int, categories: frozenset[str]) -> bool:
    """Whether the policy requires the child's own consent to any of ``categories`` at ``age``."""
    return any(age >= policy.child_consent_age_for(c) for c in categories)


class ConsentRequest(BaseModel):
    """A request for consent: what is asked (categories, parties, purposes, period), of whom, how they were
    informed, until when answers are taken (``answer_by``), and each grantor's answer. ``child_required``
    is fixed when the request is made (the policy's age rule on the child's age that day)."""

    model_config = _MODEL

    id: str = Field(min_length=1)
    child_pseudonym: str = Field(min_length=1)
    requesting_organisation_id: str = Field(min_length=1)
    guardian_count: int = Field(ge=1, le=2)
    grantors: tuple[RequestedGrantor, ...] = Field(min_length=1)
    child_required: bool
    data_categories: frozenset[str]
    from_parties: PartyScope
    to_parties: PartyScope
    purposes: frozenset[str]
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    information_given: InformationGiven
    requested_at: AwareDatetime
    answer_by: AwareDatetime
    consent_id: str | None = None

    def state(self, at: datetime) -> RequestState:
        if self.consent_id is not None:
            return "agreed"
        if any(g.status == "refused" for g in self.grantors):
            return "refused"
        return "expired" if at >= self.answer_by else "pending"

    def refused_at(self) -> datetime | None:
        """When the first refusal came (None: nobody refused)."""
        times = [g.answered_at for g in self.grantors if g.status == "refused" and g.answered_at is not None]
        return min(times, default=None)

    def answer(
        self,
        *,
        role: str,
        reference: str,
        agreed: bool,
        at: datetime,
        evidence_reference: str,
        method: str,
        categories: frozenset[str] | None = None,
    ) -> ConsentRequest:
        """The request with ``reference``'s answer recorded. Raises :class:`RequestExpired` after
        ``answer_by``, :class:`GrantorNotListed` for a grantor the request does not list, and
        :class:`AnswerNotAllowed` when that grantor has answered or the request is closed."""
        if self.state(at) == "expired":
            raise RequestExpired(f"consent request {self.id} stopped taking answers at {self.answer_by.isoformat()}")
        index = next((i for i, g in enumerate(self.grantors) if (g.role, g.reference) == (role, reference)), None)
        if index is None:
            raise GrantorNotListed("the answer names a grantor the request does not list")
        if self.state(at) != "pending" or self.grantors[index].status != "pending":
            raise AnswerNotAllowed("this grantor has answered already, or the request is closed")
        if categories is not None and not categories <= self.data_categories:
            raise GrantorNotListed("the answer agrees to categories the request does not ask for")
        answered = self.grantors[index].model_copy(
            update={
                "status": "agreed" if agreed else "refused",
                "answered_at": at,
                "evidence_reference": evidence_reference,
                "method": method,
                "categories": categories if agreed else None,
            }
        )
        grantors = (*self.grantors[:index], answered, *self.grantors[index + 1 :])
        return self.model_copy(update={"grantors": grantors})

    def complete(self, policy: Policy) -> bool:
        """Whether every required grantor has agreed: every listed guardian (or one, when the policy lets
        one guardian suffice) and the child when ``child_required``."""
        guardians = [g for g in self.grantors if g.role == "guardian"]
        agreed = [g for g in guardians if g.status == "agreed"]
        enough = len(agreed) == len(guardians) if policy.all_guardians_must_consent else bool(agreed)
        child_ok = not self.child_required or any(g.role == "child" and g.status == "agreed" for g in self.grantors)
        return enough and child_ok and self.consent_id is None

    def consent(self, consent_id: str) -> Consent:
        """The consent the agreed answers make, recorded by the requesting organisation; its evidence
        reference points at the request (each answer's own evidence stays with the request)."""
        grantors = tuple(
            Grantor(role=g.role, reference=g.reference, agreed=True, categories=g.categories)
            for g in self.grantors
            if g.status == "agreed"
        )
        return Consent(
            id=consent_id,
            child_pseudonym=self.child_pseudonym,
            recording_organisation_id=self.requesting_organisation_id,
            grantors=grantors,
            guardian_count=self.guardian_count,
            data_categories=self.data_categories,
            from_parties=self.from_parties,
            to_parties=self.to_parties,
            purposes=self.purposes,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            information_given=self.information_given,
            evidence_reference=f"consent-request:{self.id}",
        )

    def linked(self, consent_id: str) -> ConsentRequest:
        """The request linked to the consent its answers made."""
        return self.model_copy(update={"consent_id": consent_id})
