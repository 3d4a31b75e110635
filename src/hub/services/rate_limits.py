"""Rate limits on sharing decisions and referral attempts, and the refusal flags of the audit trail.

An organisation that knows a child's personal identity number can ask about that child with varied
recipients, purposes and categories; each answer tells it a little (whether some basis allows). These
limits bound how fast it can ask, per organisation and per organisation and child, and flag in the audit
trail an organisation whose questions keep being refused (issue #9; docs/lawful-sharing.md).

Counting is in-process: each hub process (each ``hub serve`` worker) keeps its own counters, so with N
processes behind a load balancer a caller gets up to N times the configured rate. That keeps the hot
path free of a database round trip; a county that needs one shared limit puts it in its API gateway.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.config import Settings
from hub.domain.errors import RateLimited

if TYPE_CHECKING:
    from hub.runtime import Runtime


class LeakyCounters:
    """Counters that drain at ``capacity / window`` per second (a leaky bucket per key): ``add`` counts
    one and says the level, ``wait`` says how long until one more stays within ``capacity``.

    A token bucket seen from the other side: at most ``capacity`` at once, ``capacity`` per ``window``
    sustained. A drained counter is forgotten, so memory follows the keys active in the last window."""

    def __init__(self, capacity: int, window_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.rate = capacity / window_seconds
        self._clock = clock
        self._levels: dict[Hashable, tuple[float, float]] = {}  # key -> (level, when)
        self._sweep_at = 4096

    def _level(self, key: Hashable, now: float) -> float:
        level, when = self._levels.get(key, (0.0, now))
        return max(0.0, level - (now - when) * self.rate)

    def add(self, key: Hashable) -> float:
        """Count one for ``key``; the level after it."""
        now = self._clock()
        level = self._level(key, now) + 1.0
        self._store(key, level, now)
        return level

    def wait(self, key: Hashable) -> float:
        """Seconds until one more for ``key`` stays within capacity (0: now). Counts nothing."""
        level = self._level(key, self._clock()) + 1.0
        return (level - self.capacity) / self.rate if level > self.capacity else 0.0

    def _store(self, key: Hashable, level: float, now: float) -> None:
        self._levels[key] = (level, now)
        if len(self._levels) >= self._sweep_at:
            # Amortised: a sweep at most once per doubling of the table.
            self._levels = {k: (lv, w) for k, (lv, w) in self._levels.items() if lv - (now - w) * self.rate > 0}
            self._sweep_at = max(4096, 2 * len(self._levels))


@dataclass(frozen=True)
class _Limit:
    name: str
    counters: LeakyCounters | None  # None: this limit is off


class SharingLimits:
    """The limits of one hub process (see the module docstring). Keys are organisation ids and child
    pseudonyms: no personal identity number is ever held here."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        window = settings.sharing_limit_window_seconds

        def counters(capacity: int) -> LeakyCounters | None:
            return LeakyCounters(capacity, window, clock=clock) if capacity > 0 else None

        self._per_organisation = counters(settings.sharing_limit_per_organisation)
        self._per_child = counters(settings.sharing_limit_per_child)
        self._refusals = (
            _Limit("refusals-per-child", counters(settings.sharing_refusals_flag_per_child)),
            _Limit("refusals-per-organisation", counters(settings.sharing_refusals_flag_per_organisation)),
        )

    def admit(self, organisation_id: str, child_pseudonym: str) -> None:
        """Count one decision or referral attempt, or raise :class:`RateLimited` (counting nothing)."""
        limits = ((self._per_child, (organisation_id, child_pseudonym)), (self._per_organisation, organisation_id))
        wait = max((counters.wait(key) for counters, key in limits if counters is not None), default=0.0)
        if wait:
            raise RateLimited(
                "Too many sharing decisions or referral attempts; try again later.",
                retry_after=max(1, math.ceil(wait)),
            )
        for counters, key in limits:
            if counters is not None:
                counters.add(key)

    def refused(self, organisation_id: str, child_pseudonym: str) -> list[str]:
        """Count one refusal; the names of the refusal thresholds it goes beyond (for the audit entry)."""
        keys = ((organisation_id, child_pseudonym), organisation_id)
        return [
            limit.name
            for limit, key in zip(self._refusals, keys, strict=True)
            if limit.counters is not None and limit.counters.add(key) > limit.counters.capacity
        ]


_LIMITS: dict[int, SharingLimits] = {}


def for_runtime(runtime: Runtime) -> SharingLimits:
    """The process's limits for ``runtime`` (made on first use, from its settings)."""
    limits = _LIMITS.get(id(runtime))
    if limits is None:
        limits = _LIMITS[id(runtime)] = SharingLimits(runtime.settings)
        weakref.finalize(runtime, _LIMITS.pop, id(runtime), None)
    return limits
