"""Delivery: the outbox worker, one room per part of its work.

``worker`` claims due entries (leases with a heartbeat, a graceful stop) and runs the loop; ``messages``
builds each minimised message after the send-time legal re-check; ``outcomes`` records what happened
(fenced by the claim's attempt number) and tells the sender when delivery is given up; ``breaker`` is each
receiver's circuit breaker; ``polling`` asks polling adapters for status changes and purges payloads;
``metrics`` shows the outbox to ``/metrics``; ``mailbox_store`` is where the mailbox adapter leaves
messages.

At least once: an entry is leased (not locked) while its adapter runs, so a worker that dies mid-delivery
loses the lease and another sends the message again, with the same idempotency key, for the receiver to
dedupe. Nothing is delivered that the decision engine does not permit at the moment of sending.
"""

from hub.services.delivery.mailbox_store import MailboxStore
from hub.services.delivery.outcomes import backoff_seconds
from hub.services.delivery.worker import Worker, running_worker

__all__ = ["MailboxStore", "Worker", "backoff_seconds", "running_worker"]
