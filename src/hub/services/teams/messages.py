"""An offer's news as the message its receiver's system gets (outbox kind ``team-offer``): the offer, the
two organisations, the child's identity (sealed with the offer: the receiving organisation needs to know
which child it is asked to take on; for a child with protected identity only where the policy releases it,
with the marker instead) and where to answer. Nothing of any organisation's case."""

from __future__ import annotations

from typing import Any

from hub.adapters.base import Message
from hub.db import protected_identity as protection_db
from hub.db import referrals as outbox
from hub.db import teams as db
from hub.db.uow import UnitOfWork
from hub.domain.policy import swedish_day
from hub.domain.referrals import IDENTITY
from hub.runtime import Runtime
from hub.services.protected_identity import marker_for


async def offer_message(runtime: Runtime, entry: outbox.OutboxRow) -> Message:
    assert entry.team_offer_id is not None
    async with UnitOfWork.of(runtime.sessions) as uow:
        facts = await db.offer_facts(uow.session, entry.team_offer_id)
        team_id = await db.team_id_of_offer(uow.session, entry.team_offer_id)
        protected = team_id is not None and await protection_db.team_child_protected(uow.session, team_id)
    assert facts is not None and team_id is not None  # the entry's foreign key holds the offer
    offer, base = facts.offer, f"{runtime.settings.public_url}/v1/children/team/offers/{facts.offer.id}"
    body: dict[str, Any] = {
        "id": str(offer.id),
        "team_id": str(team_id),
        "role": "named-person",
        "state": offer.state,
        "stage": offer.stage,
        "from": facts.organisations.get(offer.from_organisation),
        "to": facts.organisations.get(offer.to_organisation),
        "professional_ref": offer.professional_ref,
        "offered_at": offer.offered_at.isoformat(),
        "answered_at": offer.answered_at.isoformat() if offer.answered_at else None,
        "reason": offer.reason,
    }
    if entry.recipient_organisation == offer.to_organisation:
        body["child"] = runtime.cipher.decrypt(facts.child, facts.child_key_id, bound_to=str(offer.id))
        if protected:  # a child with protected identity: the policy's rule, as for a referral
            to = facts.organisations.get(offer.to_organisation) or {}
            body["protected_identity"] = marker = marker_for(
                runtime.policy.in_force(swedish_day(runtime.clock())),
                recipient_id=offer.to_organisation,
                recipient_type=str(to.get("type")),
                sender=facts.organisations.get(offer.from_organisation) or {"organisation_id": offer.from_organisation},
                reply_to=base,
            )
            if IDENTITY in marker["withheld_categories"]:
                del body["child"]
        if offer.state == "open":
            body["accept"] = f"{base}/accept"
            body["decline"] = f"{base}/decline"
    return Message(
        kind="team-offer",
        message_id=str(entry.id),
        idempotency_key=entry.idempotency_key,
        referral_id=None,
        sender_organisation=offer.to_organisation
        if offer.state in ("accepted", "declined")
        else offer.from_organisation,
        recipient_organisation=entry.recipient_organisation,
        body={"team_offer": body},
        created_at=entry.created_at,
    )
