"""Stopping the hub stops its embedded PostgreSQL, unless another hub process still uses it: real
``hub serve`` processes on their own data directory, stopped with SIGINT as Ctrl-C of ``make run`` does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_process import STOP_TIMEOUT, Hub, postmaster_of, running, started_hubs


@pytest.fixture
def hubs(tmp_path: Path) -> Iterator[list[Hub]]:
    yield from started_hubs(tmp_path)


def test_ctrl_c_stops_the_embedded_postgresql(tmp_path: Path, hubs: list[Hub]) -> None:
    # The hub before this one was killed (no atexit ran): it must not keep the server up for ever.
    hubs.append(killed := Hub(tmp_path, "--demo"))
    killed.wait_ready()
    killed.process.kill()
    killed.process.wait(timeout=STOP_TIMEOUT)
    postmaster = postmaster_of(tmp_path)
    assert postmaster is not None and running(postmaster)

    hubs.append(hub := Hub(tmp_path, "--demo"))
    hub.wait_ready()
    assert postmaster_of(tmp_path) == postmaster  # joined the running server

    assert hub.interrupt() == 0
    assert not running(postmaster)
    assert postmaster_of(tmp_path) is None


def test_a_hub_still_using_the_database_keeps_it_up(tmp_path: Path, hubs: list[Hub]) -> None:
    hubs.append(first := Hub(tmp_path, "--demo"))
    first.wait_ready()
    hubs.append(second := Hub(tmp_path))
    second.wait_ready()
    postmaster = postmaster_of(tmp_path)
    assert postmaster is not None

    assert first.interrupt() == 0
    assert running(postmaster)
    assert second.ready()  # and it still answers from the database

    assert second.interrupt() == 0
    assert not running(postmaster)
