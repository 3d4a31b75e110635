"""Where the mailbox adapter leaves messages for organisations that fetch them (``GET /v1/mailbox``)."""

from __future__ import annotations

import uuid

from hub.adapters.base import Message
from hub.db import referrals as db
from hub.db.uow import UnitOfWork
from hub.runtime import Runtime
from hub.services.context import utcnow


class MailboxStore:
    """The mailbox adapter's store (``AdapterContext.extras["mailbox"]``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def put(self, message: Message) -> str:
        now = utcnow()
        body, key_id = self.runtime.cipher.encrypt(
            {"kind": message.kind, "idempotency_key": message.idempotency_key, **message.body},
            bound_to=f"mailbox:{message.message_id}",
        )
        async with UnitOfWork.of(self.runtime.sessions) as uow:
            stored = await db.mailbox_put(
                uow.session,
                organisation_id=message.recipient_organisation,
                outbox_id=uuid.UUID(message.message_id),
                kind=message.kind,
                body=body,
                key_id=key_id,
                now=now,
                created_at=message.created_at,  # the receiver reads messages in the order they arose
            )
            await uow.commit()
        return str(stored)
