"""``mailbox``: store and forward for systems that cannot receive calls (like NHS MESH).

The hub keeps the message; the receiver's system fetches with ``GET /v1/mailbox`` and acknowledges each
message with ``POST /v1/mailbox/{id}/ack``. A fetched message that is not acknowledged becomes fetchable
again after ``HUB_MAILBOX_VISIBILITY_SECONDS``. A referral counts as *received* on acknowledgement.
Each fetch is audited as a read of the referrals it hands out (``hub.services.mailbox``).
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from hub.adapters.base import Adapter, AdapterConfig, DeliveryError, Message, Receipt


class MailboxStore(Protocol):
    async def put(self, message: Message) -> str: ...


class MailboxConfig(AdapterConfig):
    """No settings: the receiver fetches with its own token."""


class MailboxAdapter(Adapter):
    name: ClassVar[str] = "mailbox"
    Config: ClassVar[type[AdapterConfig]] = MailboxConfig

    async def deliver(self, message: Message) -> Receipt:
        store: MailboxStore | None = self.context.extras.get("mailbox")
        if store is None:
            raise DeliveryError("the mailbox store is not available in this process")
        message_id = await store.put(message)
        return Receipt(remote_id=message_id, detail="stored in the mailbox", acknowledged=False)
