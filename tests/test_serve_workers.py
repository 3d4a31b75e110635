"""``hub serve --workers 2`` spreads keep-alive connections evenly over its workers
(hub.api.connection_share), and its workers do not outlive it: a real hub process, real TCP connections
on loopback, each connection's worker read from the system."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hub.api.connection_share import ConnectionShare
from tests.hub_process import Hub, started_hubs

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: hub.test\r\n\r\n"


@pytest.fixture
def hubs(tmp_path: Path) -> Iterator[list[Hub]]:
    yield from started_hubs(tmp_path)


def _workers(hub: Hub) -> list[psutil.Process]:
    """The worker processes, once each listens on the port (the supervisor's readiness is any one's)."""
    for _ in range(600):
        children = psutil.Process(hub.process.pid).children()
        workers = [p for p in children if any("spawn_main" in part for part in p.cmdline())]
        listening = [w for w in workers if any(c.status == psutil.CONN_LISTEN for c in w.net_connections("tcp"))]
        if len(listening) == len(workers):
            return workers
        time.sleep(0.1)
    raise AssertionError("the workers did not all listen")


def _worker_of(connection: socket.socket, workers: list[psutil.Process], port: int) -> int:
    """Which worker holds the server side of ``connection`` (the kernel placed it; the worker accepts it
    as soon as its loop turns)."""
    client_port = connection.getsockname()[1]
    for _ in range(200):
        for index, worker in enumerate(workers):
            for c in worker.net_connections(kind="tcp"):
                if c.laddr and c.laddr.port == port and c.raddr and c.raddr.port == client_port:
                    return index
        time.sleep(0.01)
    raise AssertionError("no worker accepted the connection")


def _get(connection: socket.socket) -> tuple[bytes, bool]:
    """One request on ``connection``: the status line, and whether the server closes the connection."""
    connection.sendall(REQUEST)
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))[15:])
    while len(body) < length:
        body += connection.recv(65536)
    return head.split(b"\r\n")[0], b"\r\nconnection: close" in head.lower()


def test_keep_alive_connections_all_on_one_worker_end_spread_evenly(tmp_path: Path, hubs: list[Hub]) -> None:
    hubs.append(hub := Hub(tmp_path, "--workers", "2"))
    hub.wait_ready()
    workers = _workers(hub)
    assert len(workers) == 2

    # Eight idle keep-alive connections, all on the first worker (those the kernel gives the other are closed).
    held: list[socket.socket] = []
    for _ in range(200):
        connection = socket.create_connection(("127.0.0.1", hub.port))
        if _worker_of(connection, workers, hub.port) == 0:
            held.append(connection)
            if len(held) == 8:
                break
        else:
            connection.close()
    assert len(held) == 8

    closed = quiet_rounds = 0
    for _ in range(50):  # until two rounds of a request on each connection close none
        closed_before = closed
        for i, connection in enumerate(held):
            status, closing = _get(connection)
            assert status == b"HTTP/1.1 200 OK"  # every request answered, including the one that closes
            if closing:
                closed += 1
                connection.close()
                held[i] = socket.create_connection(("127.0.0.1", hub.port))  # as an HTTP/1.1 client does
        quiet_rounds = quiet_rounds + 1 if closed == closed_before else 0
        if quiet_rounds == 2:
            break

    on_first = sum(_worker_of(c, workers, hub.port) == 0 for c in held)
    assert on_first == 4, f"{on_first} of 8 connections on the first worker after {closed} closed"
    assert closed >= 4  # at least the four that had to move
    for connection in held:
        connection.close()
    assert hub.interrupt() == 0


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path, hubs: list[Hub]) -> None:
    hubs.append(hub := Hub(tmp_path, "--workers", "2"))
    hub.wait_ready()
    workers = _workers(hub)
    assert len(workers) == 2

    hub.process.kill()  # as the OOM killer would: no handler runs, nothing is passed on
    hub.process.wait()
    _, alive = psutil.wait_procs(workers, timeout=60)
    assert alive == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", hub.port), timeout=5)  # nobody serves the port any more


def test_a_worker_closes_one_connection_at_a_time_and_only_when_two_above_the_least_loaded() -> None:
    counts = [0, 0]
    share = ConnectionShare(counts, [1, 1], 0)
    for _ in range(3):
        share.opened()
    counts[1] = 2
    assert share.closing_send(_send) is None  # 3 against 2: as even as 5 connections can be

    counts[1] = 1
    assert share.closing_send(_send) is not None  # 3 against 1
    assert share.closing_send(_send) is None  # one already closing
    share.closed()
    assert counts[0] == 2
    assert share.closing_send(_send) is None  # 2 against 1

    counts[0], counts[1] = 5, 0
    assert ConnectionShare(counts, [1, 0], 0).closing_send(_send) is None  # the other does not listen yet


async def test_the_closing_response_says_connection_close_and_keeps_its_headers() -> None:
    share = ConnectionShare([2, 0], [1, 1], 0)
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    closing = share.closing_send(send)
    assert closing is not None
    await closing({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await closing({"type": "http.response.body", "body": b"{}"})
    assert sent[0]["headers"] == [(b"content-length", b"2"), (b"connection", b"close")]
    assert sent[1] == {"type": "http.response.body", "body": b"{}"}


async def _send(message: dict[str, object]) -> None:
    return None
