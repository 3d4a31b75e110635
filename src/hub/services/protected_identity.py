"""Protected identity at the edges: the marker a recipient gets, the receiver's read of a protected child's
referral, and clearing a mark (its own use case, audited).

The rule itself is the domain's (:mod:`hub.domain.protected_identity`, applied by the decision engine);
the mark is persisted per child pseudonym (``hub.db.protected_identity``). Nothing here logs: whether a
child is protected never reaches a log line, an error text or a flow count."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import protected_identity as db
from hub.db import referrals as referrals_db
from hub.db.repositories import OrganisationRepository
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import NotPermitted
from hub.domain.policy import Policy, swedish_day
from hub.domain.protected_identity import marker
from hub.domain.referrals import strip_to
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.children import identify_child
from hub.services.context import Actor

CLEARANCE_BASIS = "protected-identity-authority"
"""The audit entry's basis of a clear: the policy names the organisation as one that may clear marks."""


def marker_for(
    policy: Policy, *, recipient_id: str, recipient_type: str, sender: dict[str, Any], reply_to: str
) -> dict[str, Any]:
    """The marker for this recipient: what protection withholds from it, and how it reaches the sender
    (the sending organisation and the referral's reply address through the hub, never the child's)."""
    withheld = policy.protected_identity.withheld_from(recipient_id, recipient_type)
    return marker(withheld, {"organisation": sender, "reply_to": reply_to})


async def protect_read(
    session: AsyncSession,
    row: referrals_db.ReferralRow,
    document: dict[str, Any] | None,
    *,
    runtime: Runtime,
    actor: Actor,
) -> tuple[dict[str, Any] | None, list[str]]:
    """The receiver's view of the document and its categories: for a protected child, what protection
    withholds from this receiver removed (also from a referral sent before the mark) and the marker added."""
    facts = await db.read_facts(
        session, candidates=[row.child_pseudonym], sender=row.sender_organisation, recipient=row.recipient_organisation
    )
    categories = list(row.permitted_categories)
    if not facts.protected or facts.recipient_type is None:
        return document, categories
    policy = runtime.policy.in_force(swedish_day(actor.now))
    protection = marker_for(
        policy,
        recipient_id=row.recipient_organisation,
        recipient_type=facts.recipient_type,
        sender=facts.sender,
        reply_to=f"{runtime.settings.public_url}/v1/referrals/{row.id}/events",
    )
    withheld = set(protection["withheld_categories"])
    categories = [c for c in categories if c not in withheld]
    if document is None:  # purged: nothing to strip, and nothing to mark
        return None, categories
    return {**strip_to(document, categories), "protected_identity": protection}, categories


async def protect_mailbox_copy(
    session: AsyncSession, row: referrals_db.ReferralRow, referral: dict[str, Any], *, runtime: Runtime, actor: Actor
) -> list[str] | None:
    """A referral left in the receiver's mailbox, as :func:`protect_read` would show it now (a mark set after
    delivery applies to the copy not yet fetched): stripped and marked in place. Returns the categories the
    receiver gets now, or None when the child is not protected (the copy is as delivered)."""
    shown, categories = await protect_read(session, row, referral, runtime=runtime, actor=actor)
    if shown is None or "protected_identity" not in shown:
        return None
    categories = [c for c in referral.get("permitted_categories", []) if c in categories]
    referral.clear()
    referral.update({**shown, "permitted_categories": categories})
    return categories


async def clear_protection(*, actor: Actor, personal_identity_number: str, runtime: Runtime) -> None:
    """Clear a child's mark. Only an organisation the policy names under ``may_clear`` may: any other gets
    403 before anything about the child is looked at, so the answer says nothing of the child. An
    authorised organisation gets the same answer whether or not there was a mark; the audit entry (its own)
    records which."""
    child = identify_child(
        personal_identity_number,
        pseudonymizer=runtime.pseudonymizer,
        today=actor.today,
        pointer="/child/personal_identity_number",
    )
    async with UnitOfWork.of(runtime.sessions) as uow:
        org = await OrganisationRepository(uow.session).get(actor.organisation_id)
        rule = runtime.policy.in_force(actor.today).protected_identity
        if org is None or not rule.may_clear.names(org.id, org.type):
            raise NotPermitted("Your organisation may not clear protected-identity marks (the policy names who may).")
        cleared = await db.clear(uow.session, child.candidates)
        await audit(
            uow.session,
            actor,
            AuditAction.PROTECTED_IDENTITY_CLEARED,
            child_pseudonym=child.pseudonym,
            legal_basis=CLEARANCE_BASIS,
            entity_type="ProtectedIdentity",
            details={"cleared": cleared},
        )
        await uow.commit()
