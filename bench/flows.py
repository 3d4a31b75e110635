"""Benchmark: the coordinators' flow queries over a year, with a million referrals loaded, and what the
disclosure protection costs in accuracy.

Starts a fresh embedded PostgreSQL in a temp dir with the demo registry and ``hub serve`` on loopback
(``bench.server.HubUnderTest``), loads N referrals (default 1,000,000, with their events and consents)
with ``hub synth``'s bulk mode (COPY with the flow triggers off, then ``flow_rebuild_bulk()``), and
times real HTTP requests to the running hub, one at a time on a keep-alive connection, as a
coordinator of Region Örebro län: ``GET /v1/flows/matrix`` (type → type, and municipality →
municipality), ``GET /v1/flows/lead-times`` (by municipality, by recipient type, by month),
``GET /v1/flows/counts`` (by municipality × Trappan step) and ``GET /v1/flows/stalls`` (by recipient
type) over the 52 weeks up to the last one loaded, each repeated with varied filters (the whole county,
one municipality, one kind, one recipient type). Each request is the whole use case: authentication,
the rollup reads, disclosure protection, the audit entry, JSON.

Then the accuracy: for a few usual tables, every published count against the true one (read from the
same rollups without protection), as the mean absolute error, overall and by the true count's size, and
the share of non-zero counts hidden. For comparison, the method before the base table adjusted each
published count by one draw from ``NOISE_TABLE``: a mean absolute error of 0.84 whatever the count.

Target: p95 ≤ 150 ms for each query family. Exit status 1 when a p95 is over it.

    python -m bench flows [--referrals 1000000] [--repetitions 60] [--keep DIR] [--src DIR]

``--keep DIR`` copies nothing: it keeps the loaded database in DIR (and reuses it when DIR already
holds one), so that queries can be timed again without loading again. ``--src DIR`` serves the hub from
another source tree (``DIR/src``, e.g. a git worktree of an earlier revision) on the same database, to
time two revisions alike; the accuracy is always this tree's.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from bench import machine
from bench.server import HubUnderTest

if TYPE_CHECKING:
    from hub.runtime import Runtime

TARGET_P95_MS = 150.0
# Timed and shown, outside the target: a stall is about now, read from every open referral at the step
# (over 100,000 at step 2 in this history, which ends months before the clock), not from the rollups.
UNTARGETED = {"stalls by recipient type"}
COORDINATOR = "region-samordning"
UNTIL = datetime(2026, 3, 2, 6, tzinfo=UTC)  # a fixed Monday: the same history for the same seed
MUNICIPALITIES = ["1880", "1883", "1885", "1881", "1861", "1864"]
KINDS = ["remiss", "orosanmalan", "begaran-om-insats", "samverkansforfragan"]
RECIPIENT_TYPES = ["bup", "socialtjanst-myndighet", "elevhalsa"]


def _command(src: Path | None) -> list[str] | None:
    """``hub`` from another source tree, first on the path (None: this one)."""
    if src is None:
        return None
    code = f"import sys; sys.path.insert(0, {str(src.resolve() / 'src')!r}); from hub.cli import main; main()"
    return [sys.executable, "-c", code]


class KeptHub(HubUnderTest):
    """A hub whose database lives in a directory of the caller's, kept after the run."""

    def __init__(self, directory: Path, command: list[str] | None = None) -> None:
        super().__init__(command=command)
        shutil.rmtree(self.tmp, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        self.tmp = directory.resolve()

    def _start_database(self) -> None:
        import os
        import warnings

        from hub.config import Settings
        from hub.db.embedded import runtime_role_url, start_embedded

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.url = start_embedded(self.tmp / "pg", cleanup="stop")
        self.postmaster_pid = int((self.tmp / "pg" / "postmaster.pid").read_text().split()[0])
        os.environ.pop("HUB_DATABASE_URL", None)
        self.owner_url, self.url = self.url, runtime_role_url(self.url)  # as HubUnderTest: as in production
        self.settings = Settings(
            data_dir=self.tmp,
            database_url=self.url,  # type: ignore[arg-type]
            migrations_database_url=self.owner_url,  # type: ignore[arg-type]
            dev_mode=True,
        )
        asyncio.run(self._load_demo())

    def close(self) -> None:
        tmp, self.tmp = self.tmp, Path("/nonexistent-hub-bench-keep")  # the parent's rmtree must not reach it
        try:
            super().close()
        finally:
            self.tmp = tmp


async def _loaded(hub: HubUnderTest) -> int:
    from sqlalchemy import text

    from hub.runtime import open_runtime

    async with open_runtime(hub.settings) as rt, rt.engine.connect() as conn:
        return int(await conn.scalar(text("select count(*) from referral")) or 0)


async def _load(hub: HubUnderTest, referrals: int, seed: int) -> tuple[float, float, int]:
    from hub.devtools.synth import synth
    from hub.runtime import open_runtime

    async with open_runtime(hub.settings, owner=True) as rt:  # the bulk load switches triggers off
        result = await synth(
            rt, referrals=referrals, seed=seed, weeks=52, until=UNTIL, batch=50_000, progress=_progress
        )
    return result.load_seconds, result.rebuild_seconds, result.events


def _progress(done: int) -> None:
    if done % 200_000 == 0:
        print(f"  {done:,} referrals written", flush=True)


def _queries(repetitions: int) -> dict[str, list[str]]:
    """Each family's requests: the year up to the last week loaded, with filters varied in turn."""
    last = (UNTIL - timedelta(days=1)).date()
    year = {"from": (last - timedelta(weeks=52)).isoformat(), "to": last.isoformat()}
    filters: list[dict[str, str]] = [{}]
    filters += [{"municipality": m} for m in MUNICIPALITIES]
    filters += [{"kind": k} for k in KINDS]
    filters += [{"recipient_type": t} for t in RECIPIENT_TYPES]
    families: dict[str, list[tuple[str, dict[str, str]]]] = {
        "matrix type → type": [("/v1/flows/matrix", {"level": "type"})],
        "matrix municipality → municipality": [("/v1/flows/matrix", {"level": "municipality"})],
        "lead times by municipality": [("/v1/flows/lead-times", {"by": "municipality"})],
        "lead times by recipient type × month": [("/v1/flows/lead-times", {"by": "recipient_type", "by2": "month"})],
        "counts by municipality × step": [("/v1/flows/counts", {"by": "municipality", "by2": "step"})],
        "stalls by recipient type": [("/v1/flows/stalls", {"by": "recipient_type"})],
    }
    out: dict[str, list[str]] = {}
    for name, [(path, fixed)] in families.items():
        params = {k: v for k, v in fixed.items() if k != "by2"}
        extra = [("by", fixed["by2"])] if "by2" in fixed else []
        out[name] = [
            f"{path}?{urlencode([*params.items(), *extra, *year.items(), *filters[i % len(filters)].items()])}"
            for i in range(repetitions)
        ]
    return out


def _time(hub: HubUnderTest, token: str, paths: Sequence[str]) -> list[float]:
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=60)
    headers = {"authorization": f"Bearer {token}"}
    took = []
    try:
        for path in [paths[0], *paths]:  # the first once more, unmeasured: connection and caches warm
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            took.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status} {body[:300]!r}")
            if not json.loads(body)["rows"]:
                raise RuntimeError(f"{path}: no rows")
    finally:
        conn.close()
    return took[1:]


# The accuracy's tables: the service that publishes each and its arguments (the 52 weeks to UNTIL).
QUESTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "counts by municipality": ("counts", {"by": ["municipality"]}),
    "counts by municipality × step": ("counts", {"by": ["municipality", "step"]}),
    "counts by recipient type × month": ("counts", {"by": ["recipient_type", "month"]}),
    "counts by municipality × week": ("counts", {"by": ["municipality", "week"]}),
    "matrix type → type": ("matrix", {"level": "type"}),
    "matrix municipality → municipality": ("matrix", {"level": "municipality"}),
}
BANDS = ((1, 4), (5, 20), (21, 100), (101, 1000), (1001, 10**9))


async def _accuracy(runtime: Runtime) -> list[str]:
    """Each table's published counts against the true ones (the same rollups, unprotected)."""
    from hub.db import flows as db
    from hub.domain.principal import Principal, Role
    from hub.services import flows as svc
    from hub.services.context import Actor

    last = (UNTIL - timedelta(days=1)).date()
    flt = svc.FlowFilter(date_from=last - timedelta(weeks=52), date_to=last)
    ctx = svc.Context.of(Actor(Principal("bench", COORDINATOR, frozenset({Role.COORDINATOR}))), runtime)
    everything: list[tuple[int, int | None]] = []  # (true, published) of every non-zero key
    lines = []
    for name, (use_case, arguments) in QUESTIONS.items():
        async with runtime.sessions() as session:
            answer = await getattr(svc, use_case)(session, ctx=ctx, flt=flt, **arguments)
            truth = await db.cube(
                session, db.Scope(answer.week_from, answer.week_to), groups=answer.by, measures=["sent"]
            )
        pairs = [
            (truth[key].value, row.values["sent"])
            for row in answer.rows
            if (key := tuple(v for _, v in row.key)) in truth
        ]
        everything += pairs
        lines.append(f"  {name:<36} {_errors(pairs)}")
    lines.append(f"  {'all of them':<36} {_errors(everything)}")
    for low, high in BANDS:
        band = [(t, p) for t, p in everything if low <= t <= high]
        if band:
            lines.append(
                f"    true count {low:,}–{high:,}".replace("–1,000,000,000", " and more") + f": {_errors(band)}"
            )
    return lines


def _errors(pairs: Sequence[tuple[int, int | None]]) -> str:
    """Mean absolute error of the published counts, relative to the true ones, and how many are hidden."""
    shown = [(true, published) for true, published in pairs if published is not None]
    hidden = len(pairs) - len(shown)
    if not shown:
        return f"{len(pairs):,} non-zero counts, all hidden"
    mae = statistics.fmean(abs(published - true) for true, published in shown)
    relative = statistics.fmean(abs(published - true) / true for true, published in shown)
    return (
        f"{len(shown):,} published: MAE {mae:.2f} ({relative:.1%} of the count), "
        f"max {max(abs(p - t) for t, p in shown)}; hidden {hidden:,} of {len(pairs):,} non-zero"
    )


async def _measure_accuracy(hub: HubUnderTest) -> list[str]:
    from hub.runtime import open_runtime

    async with open_runtime(hub.settings) as runtime:
        return await _accuracy(runtime)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench flows", description=__doc__.split("\n\n")[0])
    parser.add_argument("--referrals", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="keep (or reuse) the loaded database here")
    parser.add_argument("--src", type=Path, default=None, help="serve the hub from this source tree's src/")
    args = parser.parse_args(argv)
    for line in machine.describe():
        print(line)
    hub = KeptHub(args.keep, _command(args.src)) if args.keep else HubUnderTest(command=_command(args.src))
    worst = 0.0
    with hub:
        present = asyncio.run(_loaded(hub))
        if present:
            print(f"reusing the database in {args.keep}: {present:,} referrals")
        else:
            print(f"loading {args.referrals:,} referrals with hub synth (bulk) ...", flush=True)
            load_s, rebuild_s, events = asyncio.run(_load(hub, args.referrals, args.seed))
            print(
                f"loaded {args.referrals:,} referrals and {events:,} events in {load_s:.1f} s "
                f"({args.referrals / load_s:,.0f} referrals/s); rollups rebuilt in {rebuild_s:.1f} s"
            )
        token = hub.token(COORDINATOR, "coordinator")
        print(f"over HTTP to the running hub, one request at a time, {args.repetitions} per query, filters varied:")
        for name, paths in _queries(args.repetitions).items():
            took = _time(hub, token, paths)
            p95 = _percentile(took, 0.95)
            worst = worst if name in UNTARGETED else max(worst, p95)
            note = "  (no target)" if name in UNTARGETED else ""
            print(
                f"  {name:<40} p50 {statistics.median(took):6.1f} ms  p95 {p95:6.1f} ms  max {max(took):6.1f} ms{note}"
            )
        print("accuracy of the published counts (this tree's protection), 52 weeks:", flush=True)
        for line in asyncio.run(_measure_accuracy(hub)):
            print(line)
    verdict = "met" if worst <= TARGET_P95_MS else "MISSED"
    print(f"target p95 ≤ {TARGET_P95_MS:.0f} ms: {verdict} (worst p95 {worst:.1f} ms)")
    return 0 if worst <= TARGET_P95_MS else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
