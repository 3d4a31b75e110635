"""Migrations are frozen snapshots: each reads on its own, imports no other, and its downgrade restores
exactly what the revision before it made.

A migration that loads another's text (``importlib`` on a sibling file) changes whenever that file is
edited, and the database it builds then depends on the order files were touched in, not on the revision.
"""

from __future__ import annotations

import ast
import asyncio
import secrets
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import NullPool, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.config import Settings
from hub.db.migrate import alembic_config

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"

# Ways a module can run another file's code: no migration needs any of them.
LOADERS = {"importlib", "runpy", "imp", "pkgutil"}
LOADING_CALLS = {"__import__", "exec", "eval", "compile", "import_module", "spec_from_file_location", "run_path"}


def _loads_another(path: Path, migrations: list[Path]) -> list[str]:
    """What in ``path`` imports or loads another migration (empty if nothing does)."""
    others = {p.stem for p in migrations if p != path}
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""] + [alias.name for alias in node.names]
        for module in modules:
            parts = set(module.split("."))
            if parts & (LOADERS | others | {"migrations", "versions"}):
                found.append(f"line {node.lineno}: import {module}")
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in LOADING_CALLS:
                found.append(f"line {node.lineno}: {name}()")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [f"line {node.lineno}: names {stem}" for stem in others if stem in node.value]
    return found


def test_no_migration_imports_another() -> None:
    migrations = sorted((MIGRATIONS / "versions").glob("*.py"))
    assert len(migrations) >= 9
    offences = {p.name: found for p in migrations if (found := _loads_another(p, migrations))}
    assert offences == {}


def test_the_revisions_form_one_line() -> None:
    script = ScriptDirectory.from_config(alembic_config("", MIGRATIONS))
    revisions = list(script.walk_revisions())
    assert len(script.get_heads()) == 1 and len(script.get_bases()) == 1
    assert all(not isinstance(r.down_revision, tuple | list) and not r.dependencies for r in revisions)
    assert len(revisions) == len(list((MIGRATIONS / "versions").glob("*.py")))


# The schema as PostgreSQL reports it back: functions (their full definition), triggers, columns, indexes and
# tables with their storage options.
SCHEMA = """
select 'function ' || p.oid::regprocedure::text, pg_get_functiondef(p.oid) from pg_proc p
join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public' and p.prokind = 'f'
union all
select 'trigger ' || t.tgname, pg_get_triggerdef(t.oid) from pg_trigger t where not t.tgisinternal
union all
select 'index ' || indexrelid::regclass::text, pg_get_indexdef(indexrelid) from pg_index i
join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'
union all
select 'relation ' || c.relname, c.relkind::text || ' ' || coalesce(array_to_string(c.reloptions, ','), '') || ' '
    || coalesce((select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
                                   || a.attnotnull::text, ', ' order by a.attnum)
                 from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '')
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm')
"""


async def _execute(url: str, sql: str, *, autocommit: bool = False) -> list[tuple[str, str]]:
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT" if autocommit else None)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(sql))
            return [(row[0], row[1]) for row in result.all()] if result.returns_rows else []
    finally:
        await engine.dispose()


async def test_each_downgrade_restores_the_schema_of_the_revision_before(pg_url: str, settings: Settings) -> None:
    name = f"hub_frozen_{secrets.token_hex(4)}"
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    await _execute(pg_url, f"create database {name}", autocommit=True)
    try:
        config = alembic_config(url, settings.migrations_dir)
        script = ScriptDirectory.from_config(config)
        order = [r.revision for r in reversed(list(script.walk_revisions()))]
        schemas = {}
        for revision in order:
            await asyncio.to_thread(command.upgrade, config, revision)
            schemas[revision] = dict(await _execute(url, SCHEMA))
        for revision in reversed(order[:-1]):
            await asyncio.to_thread(command.downgrade, config, revision)
            assert dict(await _execute(url, SCHEMA)) == schemas[revision], f"downgrade to {revision}"
    finally:
        await _execute(pg_url, f"drop database if exists {name} with (force)", autocommit=True)
