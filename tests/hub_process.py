"""``hub serve`` as a real process on its own data directory (the tests that start one share this)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.loopback import free_port

HUB = Path(sys.executable).parent / "hub"
START_TIMEOUT = 120.0  # a bound on a slow machine, not a measurement
STOP_TIMEOUT = 60.0


class Hub:
    def __init__(self, data_dir: Path, *args: str) -> None:
        self.port = free_port()
        env = {**os.environ, "HUB_DATA_DIR": str(data_dir), "HUB_DEV_MODE": "true", "HUB_LOG_LEVEL": "WARNING"}
        command = [str(HUB), "serve", "--port", str(self.port), *args]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stderr.read().decode() if self.process.stderr else ""
            if self.ready():
                return
            time.sleep(0.2)
        pytest.fail(f"hub serve was not ready within {START_TIMEOUT} s")

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=STOP_TIMEOUT)


def started_hubs(data_dir: Path) -> Iterator[list[Hub]]:
    """The body of the ``hubs`` fixture: the list a test appends its hubs to; afterwards, whatever a failed
    test left running is killed, its embedded PostgreSQL too."""
    started: list[Hub] = []
    yield started
    for hub in started:
        if hub.process.poll() is None:
            hub.process.kill()
            hub.process.wait(timeout=STOP_TIMEOUT)
    postmaster = postmaster_of(data_dir)
    if postmaster is not None and psutil.pid_exists(postmaster):
        os.kill(postmaster, signal.SIGQUIT)


def postmaster_of(data_dir: Path) -> int | None:
    pid_file = data_dir / "pg" / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
