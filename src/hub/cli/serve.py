"""``hub serve`` and ``hub worker``: the API (one process, or N workers under a supervisor) and the
delivery worker."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hub.cli.common import dev_settings, load_settings
from hub.config import Settings

if TYPE_CHECKING:
    import multiprocessing.process

    from fastapi import FastAPI

    from hub.api.connection_share import ConnectionShare


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option("--demo", help="Load the demo data first.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes, each with its own event loop and connection pool: about one per core.",
        ),
    ] = 1,
    tls_cert: Annotated[
        str | None, typer.Option(help="Serve HTTPS with this certificate (PEM; the chain may follow it).")
    ] = None,
    tls_key: Annotated[str | None, typer.Option(help="The certificate's private key (PEM).")] = None,
    tls_ca: Annotated[
        str | None, typer.Option(help="CA bundle (PEM) client certificates are verified against (mutual TLS).")
    ] = None,
    tls_client_certs: Annotated[
        str,
        typer.Option(
            help="Ask clients for a certificate: none, optional (certificate-bound tokens need one) or "
            "required (no connection without one)."
        ),
    ] = "none",
) -> None:
    """Run the API. Migrations are applied on start (HUB_APPLY_MIGRATIONS_ON_START)."""
    import uvicorn

    from hub.cli.dev import load_demo_and_tokens
    from hub.logging import configure_logging
    from hub.main import create_app
    from hub.runtime import configuration_problems

    tls = _tls_options(tls_cert, tls_key, tls_ca, tls_client_certs)
    settings = dev_settings("serve --demo") if demo else load_settings()
    configure_logging(settings.log_level)
    missing = configuration_problems(settings)
    if missing:
        lines = "".join(f"\n  - {m}" for m in missing)
        typer.echo(f"hub serve: dev mode is off (HUB_DEV_MODE) and production settings are missing:{lines}", err=True)
        typer.echo("To try the hub on this machine: make run (hub serve --demo).", err=True)
        raise typer.Exit(2)
    _enable_adapters(settings, "serve")
    if demo:
        load_demo_and_tokens(settings, all_tokens=False, tokens_for_tour=False)
    if workers == 1:
        _stopping_exits_0()
        uvicorn.run(create_app(settings), host=host, port=port, **_UVICORN_OPTIONS, **_with_protocol(tls))
        return
    _prepare_workers(settings)
    raise typer.Exit(_supervise_workers(host, port, workers, tls))


def worker() -> None:
    """Deliver referrals and status events from the outbox until stopped (run as many as you like)."""
    import signal

    from hub.logging import configure_logging
    from hub.runtime import open_runtime
    from hub.services.audit_sealer import running_sealer
    from hub.services.delivery import running_worker
    from hub.services.flow_folder import running_folder

    settings = load_settings()
    configure_logging(settings.log_level)
    _enable_adapters(settings, "worker")

    async def run() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        async with (
            open_runtime(settings) as rt,
            running_sealer(rt.engine, settings),
            running_folder(rt.engine, settings),
            running_worker(rt),
        ):
            await stopped.wait()

    asyncio.run(run())


def _enable_adapters(settings: Settings, command: str) -> None:
    """Load the adapters HUB_ADAPTERS lists, or exit 2 naming each that does not load and why: before
    anything starts, so the reason is the last thing the operator reads."""
    from hub.adapters.registry import AdapterLoadError, enable

    try:
        enable(settings.adapters)
    except AdapterLoadError as exc:
        lines = "".join(f"\n  - {problem}" for problem in exc.problems)
        typer.echo(f"hub {command}: adapters listed in HUB_ADAPTERS do not load:{lines}", err=True)
        raise typer.Exit(2) from None


def _prepare_workers(settings: Settings) -> None:
    """What the workers of ``serve --workers N`` would otherwise race each other to do on start: start
    the embedded database, migrate, make the dev keys. Done once here, before they start."""
    from hub.api.auth import TokenVerifier
    from hub.runtime import open_runtime

    async def open_once() -> str:
        async with open_runtime(settings) as rt:
            return rt.url

    url = asyncio.run(open_once())
    TokenVerifier(settings)  # makes the dev signing key in dev mode
    # The workers inherit the environment: migrated already, and the embedded server (if any) is this
    # process's, so it stops when this process does.
    os.environ["HUB_APPLY_MIGRATIONS_ON_START"] = "false"
    if settings.database_url is None:
        os.environ["HUB_DATABASE_URL"] = url


def worker_app() -> FastAPI:
    """The app in each process of ``hub serve --workers N``."""
    from hub.logging import configure_logging
    from hub.main import create_app

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


_CLIENT_CERTS = {"none": 0, "optional": 1, "required": 2}  # ssl.CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED


def _tls_options(cert: str | None, key: str | None, ca: str | None, client_certs: str) -> dict[str, Any]:
    """uvicorn's TLS options from ``hub serve``'s, or exit 2 saying what does not fit together."""
    if client_certs not in _CLIENT_CERTS:
        typer.echo("hub serve: --tls-client-certs is none, optional or required.", err=True)
        raise typer.Exit(2)
    if cert is None:
        if key or ca or client_certs != "none":
            typer.echo("hub serve: --tls-key, --tls-ca and --tls-client-certs need --tls-cert.", err=True)
            raise typer.Exit(2)
        return {}
    if client_certs != "none" and ca is None:
        typer.echo("hub serve: client certificates are verified against --tls-ca; give the CA bundle.", err=True)
        raise typer.Exit(2)
    return {"ssl_certfile": cert, "ssl_keyfile": key, "ssl_ca_certs": ca, "ssl_cert_reqs": _CLIENT_CERTS[client_certs]}


def _with_protocol(tls: dict[str, Any], share: ConnectionShare | None = None) -> dict[str, Any]:
    """The TLS options and uvicorn's HTTP protocol extended to hand each request the client certificate
    and the TCP peer (hub.api.tls), and to keep this worker's share of the connections (``share``, with
    ``--workers N``): uvicorn itself passes neither to the app."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from hub.api.tls import certificate_protocol

    return {**tls, "http": certificate_protocol(AutoHTTPProtocol, share)}


# No `Server: uvicorn` banner: it tells an attacker which server (and which of its bugs) to try.
_UVICORN_OPTIONS: dict[str, Any] = {"log_config": None, "proxy_headers": True, "server_header": False}

_STARTUP_FAILURE = 3  # a worker's exit status when the app could not start (uvicorn's convention)


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _stopping_exits_0() -> None:
    """SIGTERM and SIGINT end the process with status 0 once uvicorn has shut down gracefully (requests
    finished, the in-process delivery worker stopped: ``running_worker``). Uvicorn handles both signals
    itself and, after its shutdown, raises the signal again under the handlers it found on start: with
    the default ones the process died of the signal (status -15), which a supervisor reads as a crash."""
    import signal

    def exit_0(signum: int, _frame: object) -> None:
        raise SystemExit(0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, exit_0)


def _worker_main(host: str, port: int, tls: dict[str, Any], share: ConnectionShare, supervisor: int) -> None:
    """One worker: its own listening socket on the shared port (SO_REUSEPORT), serving ``worker_app``,
    its open connections kept in ``share`` beside the other workers'."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                share.listening()

    options = {**_UVICORN_OPTIONS, **_with_protocol(tls, share)}
    config = uvicorn.Config("hub.cli.serve:worker_app", factory=True, host=host, port=port, **options)
    server = Server(config)
    _stopping_exits_0()
    _stopping_with(supervisor)
    server.run(sockets=[_listening_socket(host, port)])
    if not server.started:
        sys.exit(_STARTUP_FAILURE)


def _stopping_with(supervisor: int) -> None:
    """A worker whose supervisor was killed (SIGKILL, the OOM killer) would go on serving the port with
    nobody to stop or replace it: on Linux the kernel sends it SIGTERM when its parent dies, and it stops
    gracefully; one orphaned before it got here exits at once."""
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != supervisor:
        sys.exit(0)


def _supervise_workers(host: str, port: int, workers: int, tls: dict[str, Any]) -> int:
    """Run ``workers`` worker processes until SIGTERM or SIGINT, replacing any that dies; exit status.

    Each worker listens on its own socket bound with SO_REUSEPORT, so the kernel spreads connections
    over the workers. (With one socket shared by all, as uvicorn's ``--workers`` does, a burst of new
    connections all go to whichever worker accepts first: eight keep-alive clients ended up on one.)"""
    import logging
    import multiprocessing
    import signal
    import time

    from hub.api.connection_share import ConnectionShare

    log = logging.getLogger("hub")
    try:
        reserved = _listening_socket(host, port)  # fails here, once, if the port is taken; never listens
    except OSError as exc:
        log.error(f"cannot listen on {host}:{port}: {exc.strerror}", extra={"host": host, "port": port})
        return 1
    spawn = multiprocessing.get_context("spawn")
    stop: list[int] = []
    # Each worker's open connections, and whether it listens yet (hub.api.connection_share).
    counts, serving = spawn.RawArray("i", workers), spawn.RawArray("b", workers)

    def start(index: int) -> multiprocessing.process.BaseProcess:
        counts[index] = serving[index] = 0  # a replaced worker's connections died with it
        share = ConnectionShare(counts, serving, index)
        process = spawn.Process(target=_worker_main, args=(host, port, tls, share, os.getpid()), name="hub-worker")
        process.start()
        return process

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: stop.append(signum))
    processes = [start(i) for i in range(workers)]
    started = [time.monotonic()] * workers
    status = 0
    try:
        while not stop:
            time.sleep(0.2)
            for i, process in enumerate(processes):
                if process.is_alive() or stop:
                    continue
                if process.exitcode == _STARTUP_FAILURE or time.monotonic() - started[i] < 10:
                    # It could not start, or died at once: it would do so again; don't loop.
                    log.error("a worker could not start; stopping", extra={"count": process.exitcode})
                    stop.append(0)
                    status = _STARTUP_FAILURE
                    break
                log.warning("a worker exited; starting another", extra={"count": process.exitcode})
                processes[i], started[i] = start(i), time.monotonic()
    finally:
        _stop_workers(processes)
        reserved.close()
    return status


def _stop_workers(processes: list[multiprocessing.process.BaseProcess]) -> None:
    """SIGTERM to each worker still running, then up to 30 s for each to finish before it is killed."""
    import signal

    for process in processes:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()
