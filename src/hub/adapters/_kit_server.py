"""Run an ASGI app with uvicorn on a free loopback port in a background thread (the kit's proxy, and an
integrator's reference receiver in their own tests: ``hub.adapters.conformance.serve_asgi``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serve_asgi(app: Any, *, startup_timeout: float = 10.0, log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 on a fresh port until the block ends; yield ``http://127.0.0.1:PORT``.

    The socket is bound before the thread starts (no race for the port), the block runs only once the
    server accepts connections, and on exit requests still running get a second to finish.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        log_level=log_level,
        loop="asyncio",
        http="h11",
        ws="none",
        lifespan="auto",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"loopback:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=5)
            sock.close()
            raise RuntimeError(f"loopback server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def free_port() -> int:
    """A loopback port nothing listens on right now (for a connection-refused target)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
