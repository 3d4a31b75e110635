"""The ``hub`` command: the typer app and its table of commands, in the order ``hub --help`` lists them.

One module per kind of command: ``serve`` (the API, its workers, the delivery worker), ``dev`` (trying
the hub: demo, synth, token, demo-receiver), ``schema`` (db upgrade, vocab export, openapi), ``audit``,
``outbox``, ``adapters``, ``registry``. A command group's sub-commands are registered in its own module
(``audit_app`` in ``audit.py``: add ``hub audit <name>`` there).
"""

from __future__ import annotations

import sys

import typer

from hub.cli.adapters import adapters_app
from hub.cli.audit import audit_app
from hub.cli.dev import demo, demo_receiver, synth, token
from hub.cli.outbox import outbox_app
from hub.cli.registry import registry_app
from hub.cli.schema import db_app, openapi, vocab_app
from hub.cli.serve import serve, worker

app = typer.Typer(
    help="hub: regional interoperability hub for early, coordinated support for children.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(serve)
app.command()(demo)
app.command()(synth)
app.command()(token)
app.command()(openapi)
app.command("demo-receiver")(demo_receiver)
app.command()(worker)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(vocab_app, name="vocab")
app.add_typer(outbox_app, name="outbox")
app.add_typer(adapters_app, name="adapters")
app.add_typer(registry_app, name="registry")


def main() -> None:  # pragma: no cover
    sys.exit(app())
