"""Keep-alive connections spread evenly over the workers of ``hub serve --workers N``.

Each worker listens on its own SO_REUSEPORT socket, and the kernel gives each new connection to one of them
by a hash of its addresses: with the few long-lived connections the hub's clients hold (a case system's
pool of a handful), that is uneven more often than not: eight connections on two workers are 4/4 in only
70 of the 256 equally likely placements, and 7/1 or 8/0 in 18. Where one worker's share of the requests
needs more than the core it runs on (7/1 and 8/0 at the benchmark's load on two cores; sooner with more
workers and as few connections), its clients queue behind it while other cores have time to spare, for as
long as the connections live.

So the workers count their open connections in one shared array, and a worker holding two or more than
the least-loaded one closes one connection after its current response (``Connection: close``, which
HTTP/1.1 clients honour by reconnecting); the kernel places the new connection afresh, and within a few
requests no worker holds more than one connection above another. One at a time: the next only after a
connection of this worker has closed, so a burst of requests does not close several at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableSequence
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]


class ConnectionShare:
    """This worker's open connections, beside every other worker's (``counts``, in shared memory: each
    worker writes only its own element, from its event loop, so no lock is needed). Only workers that
    serve (``serving``, set by each once it listens) are compared with: while one starts, the kernel
    gives it no connections, and closing others' would only send them back where they were."""

    def __init__(self, counts: MutableSequence[int], serving: MutableSequence[int], index: int) -> None:
        self._counts = counts
        self._serving = serving
        self._index = index
        self._closing = False

    def listening(self) -> None:
        self._serving[self._index] = 1

    def opened(self) -> None:
        self._counts[self._index] += 1

    def closed(self) -> None:
        self._counts[self._index] -= 1
        self._closing = False

    def closing_send(self, send: Send) -> Send | None:
        """``send`` with ``Connection: close`` added to the response, when this worker holds two or more
        connections than the least-loaded worker and is not already closing one; otherwise None."""
        if self._closing:
            return None
        counts = self._counts[:]
        fewest = min((n for n, on in zip(counts, self._serving[:], strict=True) if on), default=0)
        if counts[self._index] < fewest + 2:
            return None
        self._closing = True

        async def send_closing(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        return send_closing
