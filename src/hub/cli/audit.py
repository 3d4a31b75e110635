"""``hub audit``: the audit trail's commands. Each is a command of ``audit_app``."""

from __future__ import annotations

import asyncio

import typer

from hub.cli.common import load_settings

audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk every audit hash chain; exit 1 and name the first broken link if any."""
    from hub.db.audit import VerifyReport
    from hub.db.engine import database_url, make_engine
    from hub.services.audit_log import verify_audit

    settings = load_settings()

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
