"""Each receiving organisation's circuit breaker, as the worker uses it.

After ``delivery_breaker_threshold`` transient failures in a row, by any workers, a receiver is down
(open): its queue is parked (``hub.db.referrals.breaker``: out of the claim's index, so what waits for it
costs the other receivers' deliveries nothing), no worker claims its entries, and one probe at a time goes
to it, about every ``delivery_breaker_probe_seconds`` (jittered: half to all of it). A probe every half second costs a
receiver that is down two requests a second (a refused connection, mostly), and finds it back within half a
second, so the queue drains at full speed almost as soon as it returns (bench/RESULTS.md, issue #11). Any
answer from the receiver (a delivery, or a refusal for good: it is up) closes the breaker and releases
its queue (everything waiting for a retry is due at once). The state is a row per receiver in PostgreSQL
(``hub.db.referrals.breaker``), so it holds across workers; each worker also remembers which receivers
it saw in trouble, so a delivery to a healthy receiver costs no breaker statement at all."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.config import Settings
from hub.db.referrals import breaker as db


@dataclass
class Breakers:
    settings: Settings
    rng: random.Random
    # Receivers with a breaker row as last seen by this worker (its batches' facts, its own failures).
    troubled: set[str] = field(default_factory=set)

    def saw(self, troubled: frozenset[str]) -> None:
        """A batch's facts: which of its receivers have a breaker row now."""
        self.troubled |= troubled

    async def failed(self, on: Any, recipient: str, *, probe: bool, now: datetime) -> bool:
        """A transient failure (counted in ``on``'s transaction); True when the receiver is down."""
        self.troubled.add(recipient)
        return await db.failed(
            on,
            recipient,
            probe=probe,
            threshold=self.settings.delivery_breaker_threshold,
            probe_delay=self.settings.delivery_breaker_probe_seconds * self.rng.uniform(0.5, 1.0),
            now=now,
        )

    async def answered(self, on: Any, recipient: str, *, probe: bool, now: datetime) -> int:
        """The receiver answered: close its breaker if it has one; how many waiting entries were released."""
        if not probe and recipient not in self.troubled:
            return 0
        self.troubled.discard(recipient)
        return await db.answered(on, recipient, now=now)
