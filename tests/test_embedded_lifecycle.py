"""Stopping the hub stops its embedded PostgreSQL, unless another hub process still uses it: real
``hub serve`` processes on their own data directory, stopped with SIGINT as Ctrl-C of ``make run`` does."""

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


@pytest.fixture
def hubs(tmp_path: Path) -> Iterator[list[Hub]]:
    started: list[Hub] = []
    yield started
    for hub in started:  # whatever a failed test left running
        if hub.process.poll() is None:
            hub.process.kill()
            hub.process.wait(timeout=STOP_TIMEOUT)
    postmaster = _postmaster(tmp_path)
    if postmaster is not None and psutil.pid_exists(postmaster):
        os.kill(postmaster, signal.SIGQUIT)


def _postmaster(data_dir: Path) -> int | None:
    pid_file = data_dir / "pg" / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ctrl_c_stops_the_embedded_postgresql(tmp_path: Path, hubs: list[Hub]) -> None:
    # The hub before this one was killed (no atexit ran): it must not keep the server up for ever.
    hubs.append(killed := Hub(tmp_path, "--demo"))
    killed.wait_ready()
    killed.process.kill()
    killed.process.wait(timeout=STOP_TIMEOUT)
    postmaster = _postmaster(tmp_path)
    assert postmaster is not None and _running(postmaster)

    hubs.append(hub := Hub(tmp_path, "--demo"))
    hub.wait_ready()
    assert _postmaster(tmp_path) == postmaster  # joined the running server

    assert hub.interrupt() == 0
    assert not _running(postmaster)
    assert _postmaster(tmp_path) is None


def test_a_hub_still_using_the_database_keeps_it_up(tmp_path: Path, hubs: list[Hub]) -> None:
    hubs.append(first := Hub(tmp_path, "--demo"))
    first.wait_ready()
    hubs.append(second := Hub(tmp_path))
    second.wait_ready()
    postmaster = _postmaster(tmp_path)
    assert postmaster is not None

    assert first.interrupt() == 0
    assert _running(postmaster)
    assert second.ready()  # and it still answers from the database

    assert second.interrupt() == 0
    assert not _running(postmaster)
