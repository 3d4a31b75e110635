"""Dispatch ``python -m bench NAME [args...]`` to ``bench.<module>.main(args)``.

Add a benchmark by adding its module to ``BENCHMARKS``; each module has ``main(argv) -> int``.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, str] = {
    "decisions": "bench.decisions",
    "sharing": "bench.sharing",
    "audit": "bench.audit_chain",
}


def main(argv: list[str]) -> int:
    """Run the benchmark named by ``argv[0]`` with the remaining arguments."""
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m bench {{{','.join(sorted(BENCHMARKS))}}} [args...]", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[argv[0]])
    result: int = module.main(argv[1:])
    return result


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
