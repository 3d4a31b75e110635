"""The ``hub`` command."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hub.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

app = typer.Typer(
    help="hub: regional interoperability hub for early, coordinated support for children.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
vocab_app = typer.Typer(help="The shared vocabulary.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(vocab_app, name="vocab")

TOUR_ORGS = ["nora-grundskola", "nora-elevhalsa", "region-bup", "nora-socialtjanst-myndighet", "region-samordning"]


def _settings() -> Settings:
    return Settings()


def _dev_settings(command: str) -> Settings:
    """The settings with dev mode on, for the commands that exist for trying the hub (``serve --demo``,
    ``demo``, ``token``, ``demo-receiver``): they turn it on for themselves, as the README's tour expects.
    An environment that says ``HUB_DEV_MODE=false`` is refused, not overridden."""
    settings = Settings()
    if "dev_mode" in settings.model_fields_set and not settings.dev_mode:
        typer.echo(f"hub {command} is for trying the hub in dev mode, and HUB_DEV_MODE=false is set.", err=True)
        raise typer.Exit(2)
    return settings.model_copy(update={"dev_mode": True})


@app.command()
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
) -> None:
    """Run the API. Migrations are applied on start (HUB_APPLY_MIGRATIONS_ON_START)."""
    import uvicorn

    from hub.logging import configure_logging
    from hub.main import create_app
    from hub.runtime import configuration_problems

    settings = _dev_settings("serve --demo") if demo else _settings()
    configure_logging(settings.log_level)
    missing = configuration_problems(settings)
    if missing:
        lines = "".join(f"\n  - {m}" for m in missing)
        typer.echo(f"hub serve: dev mode is off (HUB_DEV_MODE) and production settings are missing:{lines}", err=True)
        typer.echo("To try the hub on this machine: make run (hub serve --demo).", err=True)
        raise typer.Exit(2)
    _enable_adapters(settings, "serve")
    if demo:
        _load_demo(settings, all_tokens=False, tokens_for_tour=False)
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, **_UVICORN_OPTIONS)
        return
    _prepare_workers(settings)
    raise typer.Exit(_supervise_workers(host, port, workers))


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

    settings = _settings()
    configure_logging(settings.log_level)
    return create_app(settings)


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


def _worker_main(host: str, port: int) -> None:
    """One worker: its own listening socket on the shared port (SO_REUSEPORT), serving ``worker_app``."""
    import uvicorn

    config = uvicorn.Config("hub.cli:worker_app", factory=True, host=host, port=port, **_UVICORN_OPTIONS)
    server = uvicorn.Server(config)
    server.run(sockets=[_listening_socket(host, port)])
    if not server.started:
        sys.exit(_STARTUP_FAILURE)


def _supervise_workers(host: str, port: int, workers: int) -> int:
    """Run ``workers`` worker processes until SIGTERM or SIGINT, replacing any that dies; exit status.

    Each worker listens on its own socket bound with SO_REUSEPORT, so the kernel spreads connections
    over the workers. (With one socket shared by all, as uvicorn's ``--workers`` does, a burst of new
    connections all go to whichever worker accepts first: eight keep-alive clients ended up on one.)"""
    import logging
    import multiprocessing
    import signal
    import time

    log = logging.getLogger("hub")
    try:
        reserved = _listening_socket(host, port)  # fails here, once, if the port is taken; never listens
    except OSError as exc:
        log.error(f"cannot listen on {host}:{port}: {exc.strerror}", extra={"host": host, "port": port})
        return 1
    spawn = multiprocessing.get_context("spawn")
    stop: list[int] = []

    def start() -> multiprocessing.process.BaseProcess:
        process = spawn.Process(target=_worker_main, args=(host, port), name="hub-worker")
        process.start()
        return process

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: stop.append(signum))
    processes = [start() for _ in range(workers)]
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
                processes[i], started[i] = start(), time.monotonic()
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        reserved.close()
    return status


@app.command()
def demo(
    all_tokens: Annotated[
        bool, typer.Option("--all-tokens", help="Print a token for every organisation and role.")
    ] = False,
) -> None:
    """Load the demo data (Region Örebro län, 12 municipalities) and print dev tokens."""
    _load_demo(_dev_settings("demo"), all_tokens=all_tokens)


def _load_demo(settings: Settings, *, all_tokens: bool, tokens_for_tour: bool = True) -> None:
    from hub.api.auth import mint_dev_token
    from hub.runtime import open_runtime
    from hub.services.demo import load_demo

    async def run() -> list:  # type: ignore[type-arg]
        async with open_runtime(settings) as rt, rt.sessions() as session:
            return await load_demo(session)

    orgs = asyncio.run(run())
    lines = []
    for org in orgs:
        for role in org.roles:
            lines.append((org.id, role, mint_dev_token(settings, organisation_id=org.id, roles=[role])))
    token_file = settings.data_dir / "demo-tokens.tsv"
    token_file.write_text("".join(f"{o}\t{r}\t{t}\n" for o, r, t in lines))
    token_file.chmod(0o600)
    typer.echo(f"Demo data loaded: {len(orgs)} organisations in Region Örebro län and its 12 municipalities.")
    typer.echo(f"A dev token for every organisation and role is in {token_file} (org, role, token).")
    typer.echo("Mint one yourself: hub token --org nora-grundskola --role system")
    shown = lines if all_tokens else [ln for ln in lines if ln[0] in TOUR_ORGS and tokens_for_tour]
    for org_id, role, token in shown:
        typer.echo(f"\n{org_id} ({role}):\n{token}")


@app.command()
def synth(
    referrals: Annotated[int, typer.Option("--referrals", min=1, help="How many referrals to write.")],
    seed: Annotated[int, typer.Option("--seed", help="The same seed writes the same history.")] = 1,
    weeks: Annotated[int, typer.Option("--weeks", min=1, help="Sent over this many weeks up to now.")] = 52,
    through_api: Annotated[
        bool,
        typer.Option("--through-api", help="Through the use cases, as real data (slow; small sizes). Default: bulk."),
    ] = False,
) -> None:
    """Write synthetic referral history (fictional children) for Region Örebro län; loads the demo
    registry if missing. Bulk by default: COPY, then the flow rollups rebuilt set-based."""
    from hub.runtime import open_runtime
    from hub.services.synth import SynthResult
    from hub.services.synth import synth as write_history

    settings = _settings()
    if not settings.dev_mode:
        # Fictional referrals in a real county's database would be counted in its coordinators' flows.
        typer.echo("hub synth writes fictional referrals: it runs only in dev mode (HUB_DEV_MODE=true).", err=True)
        raise typer.Exit(2)

    async def run() -> SynthResult:
        # As the tables' owner: the bulk load switches the flow triggers off while it copies.
        async with open_runtime(settings, owner=True) as rt:
            return await write_history(
                rt, referrals=referrals, seed=seed, weeks=weeks, through_api=through_api, progress=_progress
            )

    result = asyncio.run(run())
    typer.echo(
        f"{result.referrals:,} referrals, {result.events:,} events, {result.children:,} children, "
        f"{result.consents:,} consents; loaded in {result.load_seconds:.1f} s, "
        f"rollups rebuilt in {result.rebuild_seconds:.1f} s"
    )


def _progress(done: int) -> None:
    typer.echo(f"  {done:,} referrals written", err=True)


@app.command()
def token(
    org: Annotated[str, typer.Option("--org", help="Organisation id (the org_id claim).")],
    role: Annotated[list[str], typer.Option("--role", help="Role; repeat for several.")],
    subject: Annotated[str | None, typer.Option(help="The sub claim.")] = None,
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds.")] = None,
) -> None:
    """Mint a dev token for a dev-mode hub using the same data directory, and print only the token."""
    from hub.api.auth import mint_dev_token
    from hub.domain.errors import HubError

    settings = _dev_settings("token")
    try:
        typer.echo(mint_dev_token(settings, organisation_id=org, roles=role, subject=subject, ttl_seconds=ttl))
    except HubError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations as the tables' owner (HUB_MIGRATIONS_DATABASE_URL) and grant the runtime role
    (HUB_DATABASE_URL's) what it needs."""
    from hub.db import migrate
    from hub.db.engine import database_url, migrations_database_url

    settings = _settings()
    migrate.upgrade(migrations_database_url(settings), settings.migrations_dir, runtime_url=database_url(settings))
    typer.echo(f"database at revision {migrate.head_revision(settings.migrations_dir)}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk every audit hash chain; exit 1 and name the first broken link if any."""
    from hub.db.audit import VerifyReport
    from hub.db.engine import database_url, make_engine
    from hub.services.audit_log import verify_audit

    settings = _settings()

    async def run() -> VerifyReport:
        # Only the database: a verification must never migrate, nor need the keys or the policy.
        engine = make_engine(database_url(settings), settings)
        try:
            return await verify_audit(engine)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    if report.broken is None:
        typer.echo(f"audit trail intact: {report.entries} entries in {report.partitions} chains")
        return
    b = report.broken
    typer.echo(f"audit trail BROKEN: chain {b.partition!r}, entry {b.seq}: {b.problem}", err=True)
    raise typer.Exit(1)


@vocab_app.command("export")
def vocab_export(directory: Annotated[Path, typer.Argument(help="Where to write the files.")]) -> None:
    """Write the whole vocabulary as JSON, JSON Schema and FHIR R4 resources."""
    from hub.services.vocabulary_export import export_vocabulary
    from hub.vocabulary import load_vocabulary

    settings = _settings()
    written = export_vocabulary(load_vocabulary(settings.vocabulary_dirs), directory, base_url=settings.public_url)
    typer.echo(json.dumps({"directory": str(directory), "files": written}))


@app.command()
def openapi() -> None:
    """Print the OpenAPI document the app generates (committed as openapi/openapi.json)."""
    from hub.main import create_app

    # The document is the same in every mode; dev mode builds the app without the production keys.
    app = create_app(_settings().model_copy(update={"dev_mode": True}))
    typer.echo(json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=True))


@app.command("demo-receiver")
def demo_receiver(
    port: Annotated[int, typer.Option(help="Port to listen on (the demo registry uses 8901).")] = 8901,
    secret_ref: Annotated[str, typer.Option(help="The webhook secret's name.")] = "demo-webhook",
) -> None:
    """A receiving case system for the tour: prints each referral and status event the hub delivers."""
    import uvicorn

    from hub.demo_receiver import receiver_app
    from hub.services.keys import adapter_secret_resolver

    secret = adapter_secret_resolver(_dev_settings("demo-receiver"))(secret_ref)
    typer.echo(f"demo receiver on http://127.0.0.1:{port} (webhook secret {secret_ref!r})")
    uvicorn.run(receiver_app(secret, echo=typer.echo), host="127.0.0.1", port=port, log_level="warning")


outbox_app = typer.Typer(help="The delivery outbox.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


@app.command()
def worker() -> None:
    """Deliver referrals and status events from the outbox until stopped (run as many as you like)."""
    import signal

    from hub.logging import configure_logging
    from hub.runtime import open_runtime
    from hub.services.delivery import running_worker

    settings = _settings()
    configure_logging(settings.log_level)
    _enable_adapters(settings, "worker")

    async def run() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        async with open_runtime(settings) as rt, running_worker(rt):
            await stopped.wait()

    asyncio.run(run())


@outbox_app.command("list")
def outbox_list(
    state: Annotated[list[str], typer.Option(help="Only entries in this state; repeat for several.")] = [],  # noqa: B006
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
) -> None:
    """Outbox entries, oldest first: one JSON object per line (no personal data)."""
    from hub.db import referrals as db
    from hub.runtime import open_runtime

    async def run() -> list[db.OutboxRow]:
        async with open_runtime(_settings()) as rt, rt.sessions() as session:
            return await db.outbox_entries(session, states=state, limit=limit)

    for entry in asyncio.run(run()):
        typer.echo(json.dumps({k: str(v) if v is not None else None for k, v in entry.__dict__.items()}))


@outbox_app.command("retry")
def outbox_retry(
    ids: Annotated[list[str], typer.Argument(help="Dead-lettered entry ids.")] = [],  # noqa: B006
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead-lettered entry.")] = False,
) -> None:
    """Queue dead-lettered entries again (their attempts start over)."""
    import uuid

    from hub.db import referrals as db
    from hub.runtime import open_runtime
    from hub.services.context import utcnow

    if not ids and not all_dead:
        typer.echo("name entry ids or pass --all-dead", err=True)
        raise typer.Exit(2)

    async def run() -> int:
        async with open_runtime(_settings()) as rt, rt.sessions() as session:
            count = await db.retry_dead(session, None if all_dead else [uuid.UUID(i) for i in ids], utcnow())
            await session.commit()
            return count

    typer.echo(f"{asyncio.run(run())} entr(y/ies) queued again")


adapters_app = typer.Typer(help="Delivery adapters: list them, check one with the kit.", no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")


@adapters_app.command("list")
def adapters_list() -> None:
    """The installed adapters (entry points in the hub.adapters group) and whether HUB_ADAPTERS enables
    them; exit 1 if one does not load or a listed one is not installed."""
    from hub.adapters.conformance import installed

    listed = _settings().adapters
    broken, found = False, set()
    for name, value, cls, note in installed():
        broken |= cls is None
        found.add(name)
        enabled = "enabled" if name in listed else "not enabled (HUB_ADAPTERS)"
        typer.echo(f"{name:<16} {value:<48} {note:<32} {enabled}")
    for name in sorted(set(listed) - found):
        broken = True
        typer.echo(f"{name:<16} {'-':<48} {'not installed':<32} enabled")
    if broken:
        raise typer.Exit(1)


@adapters_app.command("check")
def adapters_check(
    name: Annotated[str, typer.Argument(help="An installed adapter's name (e.g. webhook), or module:Class.")],
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            exists=True,
            dir_okay=False,
            help="The adapter's config, YAML or JSON. Secrets it names come from HUB_SECRET_<NAME>.",
        ),
    ],
    scenario: Annotated[list[str], typer.Option(help="Only this scenario; repeat for several.")] = [],  # noqa: B006
    timeout: Annotated[float, typer.Option(help="The adapters' timeout in seconds during the checks.")] = 2.0,
    hub_url: Annotated[str, typer.Option(help="The hub URL the test messages name.")] = "https://hub.example",
) -> None:
    """Run the conformance kit against an adapter and the target its config names; exit 1 on a FAIL.
    The target receives fictional test referrals: point it at a test system, never at production."""
    from hub.adapters.conformance import check, load_adapter, load_config_file

    try:
        adapter = load_adapter(name)
        settings = load_config_file(config)
        report = check(adapter, settings, timeout_seconds=timeout, hub_url=hub_url, scenarios=scenario or None)
    except Exception as exc:  # a missing adapter, an unreadable file, an unknown scenario: say which
        typer.echo(f"cannot run the kit: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    sys.exit(app())
