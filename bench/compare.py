"""Before/after pairs of ``python -m bench referrals``: two source trees measured in turn, and the medians of
the pairs' ratios.

    python -m bench compare BEFORE [AFTER] [--pairs 3] [--concurrency 8,32] [--seconds 10]

BEFORE and AFTER are source trees of the hub (a ``git worktree`` of the commit to compare with; AFTER
defaults to this one). Each pair runs AFTER, then BEFORE, each with its own fresh database, as
``--attempts 1 --no-baseline --no-sender-comparison``. Why pairs: on a shared or virtual machine the same
code's throughput and CPU per request move by a quarter or more from one run to the next (bench/RESULTS.md,
"after the fifth session"), in runs minutes apart; alternating spreads that over both trees, and the median
of the pairs' ratios says more than any run. A ratio below 1 for CPU per request or p99 is the after tree
doing better. Nothing here is a target: it prints figures and exits 0 when every run gave them.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_SUMMARY = re.compile(r"([\d,]+) req/s at (\d+) concurrent clients; .*?p99 ([\d.]+) ms")
_OTHER = re.compile(r"other processes ([\d.]+)")
_CPU = re.compile(r"CPU per request: server ([\d.]+) ms, postgres ([\d.]+) ms")


@dataclass(frozen=True)
class Window:
    """One measured window of ``bench referrals``."""

    clients: int
    throughput: float
    p99_ms: float
    server_ms: float
    postgres_ms: float
    other_cores: float


def windows(output: str) -> list[Window]:
    """The measured windows in ``bench referrals``' output: each summary line with the CPU lines after it."""
    found: list[Window] = []
    current: dict[str, float] = {}
    for line in output.splitlines():
        if summary := _SUMMARY.search(line):
            current = {
                "throughput": float(summary[1].replace(",", "")),
                "clients": float(summary[2]),
                "p99_ms": float(summary[3]),
            }
        elif (other := _OTHER.search(line)) and current:
            current["other_cores"] = float(other[1])
        elif (cpu := _CPU.search(line)) and "other_cores" in current:
            found.append(
                Window(
                    clients=int(current["clients"]),
                    throughput=current["throughput"],
                    p99_ms=current["p99_ms"],
                    server_ms=float(cpu[1]),
                    postgres_ms=float(cpu[2]),
                    other_cores=current["other_cores"],
                )
            )
            current = {}
    return found


def measure(tree: Path, concurrency: str, seconds: float) -> list[Window]:
    """``bench referrals`` run from ``tree`` (its own code and database)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "src"), str(tree)])}
    command = [sys.executable, "-m", "bench", "referrals", "--attempts", "1", "--no-baseline"]
    command += ["--no-sender-comparison", "--concurrency", concurrency, "--seconds", str(seconds)]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=1800, check=False)
    found = windows(done.stdout)
    if not found:
        raise RuntimeError(f"bench referrals in {tree} gave no figures (exit {done.returncode}): {done.stderr[-2000:]}")
    return found


def _line(label: str, w: Window) -> str:
    return (
        f"  {label:6} {w.clients:>3} clients: {w.throughput:7,.0f} req/s, p99 {w.p99_ms:6.1f} ms, "
        f"CPU per request server {w.server_ms:.2f} / postgres {w.postgres_ms:.2f} ms "
        f"(other processes {w.other_cores:.2f} cores)"
    )


def report(pairs: list[tuple[list[Window], list[Window]]]) -> list[str]:
    """Per number of clients, the median and range of the pairs' after/before ratios."""
    lines = ["after / before, the median of the pairs (their range):"]
    for clients in sorted({w.clients for after, _ in pairs for w in after}):
        ratios: dict[str, list[float]] = {"req/s": [], "p99": [], "server CPU": [], "postgres CPU": []}
        for after, before in pairs:
            a = next((w for w in after if w.clients == clients), None)
            b = next((w for w in before if w.clients == clients), None)
            if a is None or b is None:
                continue
            ratios["req/s"].append(a.throughput / b.throughput)
            ratios["p99"].append(a.p99_ms / b.p99_ms)
            ratios["server CPU"].append(a.server_ms / b.server_ms)
            ratios["postgres CPU"].append(a.postgres_ms / b.postgres_ms)
        figures = ", ".join(
            f"{name} {statistics.median(r):.2f} ({min(r):.2f}–{max(r):.2f})" for name, r in ratios.items() if r
        )
        lines.append(f"  {clients} clients: {figures}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="the source tree to compare with (e.g. a git worktree)")
    parser.add_argument("after", type=Path, nargs="?", default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--pairs", type=int, default=3, help="after/before pairs (default 3)")
    parser.add_argument("--concurrency", default="8,32", help="comma-separated client counts (default 8,32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per window (default 10)")
    args = parser.parse_args(argv)
    before, after = args.before.resolve(), args.after.resolve()
    for tree in (before, after):
        if not (tree / "src" / "hub").is_dir():
            parser.error(f"{tree} is not a source tree of the hub (no src/hub)")
    print(f"before: {before}\nafter:  {after}")
    print(f"{args.pairs} pair(s), {args.concurrency} clients, {args.seconds:g} s each")
    pairs = []
    for n in range(1, args.pairs + 1):
        after_windows = measure(after, args.concurrency, args.seconds)
        before_windows = measure(before, args.concurrency, args.seconds)
        print(f"pair {n}:")
        for w in after_windows:
            print(_line("after", w))
        for w in before_windows:
            print(_line("before", w))
        sys.stdout.flush()
        pairs.append((after_windows, before_windows))
    print("\n".join(report(pairs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
