"""Dispatch ``python -m bench NAME [args...]`` to ``bench.<module>.main(args)``.

Add a benchmark by adding its module to ``BENCHMARKS``; each module has ``main(argv) -> int`` (0: its
targets were met). ``python -m bench all`` prints the machine and runs every benchmark in turn with its
defaults (``make bench``); its exit status is the worst of theirs. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, str] = {
    "machine": "bench.machine",
    "decisions": "bench.decisions",
    "sharing": "bench.sharing",
    "audit": "bench.audit_chain",
    "referrals": "bench.referrals",
    "delivery": "bench.delivery",
    "flows": "bench.flows",
    "federated": "bench.federated",
    "plan": "bench.plan",
}


def run(name: str, args: list[str]) -> int:
    module = importlib.import_module(BENCHMARKS[name])
    result: int = module.main(args)
    return result


def run_all(args: list[str]) -> int:
    """Every benchmark in turn, each with its defaults; the worst exit status."""
    if args:
        print("python -m bench all takes no arguments; run a benchmark by name to pass some", file=sys.stderr)
        return 2
    worst = 0
    for name in BENCHMARKS:
        print(f"\n== {name} ==", flush=True)
        worst = max(worst, run(name, []))
        sys.stdout.flush()
    return worst


def main(argv: list[str]) -> int:
    """Run the benchmark named by ``argv[0]`` (or ``all``, or ``compare``: before/after pairs of
    ``referrals`` from two source trees, bench.compare) with the remaining arguments."""
    if not argv or (argv[0] not in BENCHMARKS and argv[0] not in ("all", "compare")):
        print(f"usage: python -m bench {{{','.join([*BENCHMARKS, 'all', 'compare'])}}} [args...]", file=sys.stderr)
        return 2
    if argv[0] == "all":
        return run_all(argv[1:])
    if argv[0] == "compare":
        from bench.compare import main as compare

        return compare(argv[1:])
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
