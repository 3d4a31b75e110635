"""``hub outbox``: look at the delivery outbox and queue dead-lettered entries again."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from hub.cli.common import load_settings

if TYPE_CHECKING:
    from hub.db.referrals import OutboxRow

outbox_app = typer.Typer(help="The delivery outbox.", no_args_is_help=True)


@outbox_app.command("list")
def outbox_list(
    state: Annotated[list[str], typer.Option(help="Only entries in this state; repeat for several.")] = [],  # noqa: B006
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
) -> None:
    """Outbox entries, oldest first: one JSON object per line (no personal data)."""
    from hub.db import referrals as db
    from hub.runtime import open_runtime

    async def run() -> list[OutboxRow]:
        async with open_runtime(load_settings()) as rt, rt.sessions() as session:
            return await db.outbox_entries(session, states=state, limit=limit)

    for entry in asyncio.run(run()):
        typer.echo(json.dumps({k: str(v) if v is not None else None for k, v in entry.__dict__.items()}))


@outbox_app.command("retry")
def outbox_retry(
    ids: Annotated[list[str], typer.Argument(help="Dead-lettered entry ids.")] = [],  # noqa: B006
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead-lettered entry.")] = False,
) -> None:
    """Queue dead-lettered entries again (their attempts and retry horizon start over; each referral's
    delivery state follows)."""
    import uuid

    from hub.db import referrals as db
    from hub.runtime import open_runtime
    from hub.services.context import utcnow

    if not ids and not all_dead:
        typer.echo("name entry ids or pass --all-dead", err=True)
        raise typer.Exit(2)

    async def run() -> int:
        async with open_runtime(load_settings()) as rt, rt.sessions() as session:
            requeued = await db.retry_dead(session, None if all_dead else [uuid.UUID(i) for i in ids], utcnow())
            await session.commit()
            return len(requeued)

    typer.echo(f"{asyncio.run(run())} entr(y/ies) queued again")
