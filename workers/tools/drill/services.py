"""The services host of a drill: the fleet's state Redis, the paper broker's own Redis and
PostgreSQL, each a process of its own inside the services namespace.

Every host of the run reaches them at the one services IP (``Network.services_ip``), so the
URLs below are the same for every worker and the feed. Logs go to ``log_dir``; data to a
temporary folder removed by ``stop`` (or, after a run that died, by ``sweep_leftovers``).
The paper broker keeps its truth in a second ``redis-server`` (port 6380), apart from the
fleet's Redis (6379): a drill that empties or loses the fleet's Redis must not lose what the
broker knows.

PostgreSQL runs as the ``postgres`` user (``setpriv`` execs it, so the process started is the
postmaster itself), trusts the drill subnet (no password travels anywhere), has no Unix socket
(its default folder is shared with the machine's own PostgreSQL) and runs with fsync off: a
drill's database is thrown away.

Readiness is polled from this process through ``Network.call_in``: a thread enters the
services namespace and asks each server, until it answers or a deadline passes.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psycopg

from workers.tools.drill.net import DATA_DIR_INFIX, DRILL_SUBNET, SERVICES_HOST, Network

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
DATABASE = "tradefleet"
POLL_INTERVAL_S = 0.05
PROBE_TIMEOUT_S = 1.0
PG_CONNECT_TIMEOUT_S = 2  # libpq's least: it reads 1 as 2


class ServiceError(RuntimeError):
    """A drill service did not start, stop or answer in time (with its log's last lines)."""


@dataclass(frozen=True)
class ServicesConfig:
    """Ports and deadlines of the services host."""

    redis_port: int = 6379
    broker_port: int = 6380
    postgres_port: int = 5432
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 15.0


class Services:
    """The servers of one drill run on its services host; a context manager."""

    def __init__(
        self,
        net: Network,
        log_dir: Path,
        *,
        config: ServicesConfig | None = None,
        data_parent: Path | None = None,
    ) -> None:
        self.net = net
        self.log_dir = log_dir
        self.config = config or ServicesConfig()
        self._data_parent = data_parent
        self._data_dir: Path | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._broker_paused = False

    # -- addresses -------------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        """The fleet's state Redis (sessions, streams, Celery's broker and results)."""
        return f"redis://{self.net.services_ip}:{self.config.redis_port}/0"

    @property
    def broker_url(self) -> str:
        """The paper broker's own Redis (``TRADEFLEET_PAPER_BROKER_URL``)."""
        return f"redis://{self.net.services_ip}:{self.config.broker_port}/0"

    @property
    def database_url(self) -> str:
        """PostgreSQL through psycopg 3, the project's driver (``TRADEFLEET_DATABASE_URL``)."""
        return (
            f"postgresql+psycopg://{PG_USER}@{self.net.services_ip}:"
            f"{self.config.postgres_port}/{DATABASE}"
        )

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise ServiceError("services are not started")
        return self._data_dir

    def pid(self, name: str) -> int:
        """The pid of server ``name`` (``redis``, ``broker`` or ``postgres``)."""
        return self._procs[name].pid

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Services:
        """Start the three servers and wait until each answers; on failure stop what started
        and raise ``ServiceError``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._data_dir = Path(
            tempfile.mkdtemp(prefix=f"{self.net.run_name}{DATA_DIR_INFIX}", dir=self._data_parent)
        )
        self._data_dir.chmod(0o755)
        try:
            self._start_redis("redis", self.config.redis_port)
            self._start_redis("broker", self.config.broker_port)
            self._init_postgres()
            self._start_postgres()
            self._wait_redis("redis", self.config.redis_port)
            self._wait_redis("broker", self.config.broker_port)
            self._wait_postgres(database="postgres")
            self.create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every server (PostgreSQL fast, Redis at once) and remove the data. Idempotent."""
        if self._broker_paused:
            self.resume_broker()
        for name in list(self._procs):
            # PostgreSQL's SIGINT is its fast shutdown: clients still connected are cut off
            # (SIGTERM, its smart shutdown, would wait for them).
            self._stop(name, sig=signal.SIGINT if name == "postgres" else signal.SIGTERM)
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> Services:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------------

    def restart_redis_empty(self) -> None:
        """The state Redis dies (SIGKILL) and comes back empty on the same port: every
        session's state, stream and queued task is gone."""
        self._stop("redis", sig=signal.SIGKILL)
        self._start_redis("redis", self.config.redis_port)
        self._wait_redis("redis", self.config.redis_port)

    def restart_postgres(self) -> None:
        """PostgreSQL stops (fast shutdown: open connections are cut) and starts again with its
        data; returns once it answers."""
        self._stop("postgres", sig=signal.SIGINT)
        self._start_postgres()
        self._wait_postgres(database=DATABASE)

    def pause_broker(self) -> None:
        """Freeze the paper broker's Redis (SIGSTOP): connections stay open, nothing answers."""
        os.kill(self.pid("broker"), signal.SIGSTOP)
        self._broker_paused = True

    def resume_broker(self) -> None:
        os.kill(self.pid("broker"), signal.SIGCONT)
        self._broker_paused = False

    # -- Redis -----------------------------------------------------------------------------

    def _start_redis(self, name: str, port: int) -> None:
        data = self.data_dir / name
        data.mkdir(exist_ok=True)
        argv = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            f"{self.net.services_ip} 127.0.0.1",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
            "--daemonize",
            "no",
        ]
        self._spawn(name, argv)

    def _wait_redis(self, name: str, port: int) -> None:
        ip = self.net.services_ip
        self._wait(name, lambda: _redis_pings(ip, port))

    # -- PostgreSQL ------------------------------------------------------------------------

    def _init_postgres(self) -> None:
        pgdata = self.data_dir / "postgres"
        pgdata.mkdir()
        user = pwd.getpwnam(PG_USER)
        os.chown(pgdata, user.pw_uid, user.pw_gid)
        pgdata.chmod(0o700)
        argv = [
            *_as_postgres(),
            str(PG_BIN / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            PG_USER,
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        ]
        with (self.log_dir / "initdb.log").open("ab") as log:
            done = subprocess.run(
                self.net.argv(SERVICES_HOST, argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=pgdata,
                timeout=self.config.start_timeout_s,
                check=False,
            )
        if done.returncode != 0:
            raise ServiceError(f"initdb failed:\n{_tail(self.log_dir / 'initdb.log')}")
        (pgdata / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            f"host all all {DRILL_SUBNET} trust\n"
        )
        with (pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '{self.net.services_ip},127.0.0.1'\n"
                f"port = {self.config.postgres_port}\n"
                "unix_socket_directories = ''\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "shared_buffers = 32MB\n"
                "max_connections = 200\n"
            )

    def _start_postgres(self) -> None:
        pgdata = self.data_dir / "postgres"
        self._spawn(
            "postgres",
            [*_as_postgres(), str(PG_BIN / "postgres"), "-D", str(pgdata)],
            cwd=pgdata,
        )

    def _wait_postgres(self, database: str) -> None:
        ip, port = self.net.services_ip, self.config.postgres_port
        self._wait("postgres", lambda: _postgres_answers(ip, port, database))

    def database_url_for(self, name: str) -> str:
        """The URL of database ``name`` on the services host (``create_database`` makes it)."""
        return self.database_url.rsplit("/", 1)[0] + f"/{name}"

    def create_database(self, name: str = DATABASE) -> str:
        """A new empty database ``name`` (dropped first if a previous run left it); its URL."""
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
            raise ValueError(f"database names are lowercase letters, digits and _: {name!r}")
        ip, port = self.net.services_ip, self.config.postgres_port

        def create() -> None:
            with psycopg.connect(
                host=ip, port=port, user=PG_USER, dbname="postgres", autocommit=True
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')

        self.net.call_in(SERVICES_HOST, create)
        return self.database_url_for(name)

    # -- processes -------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], cwd: Path | None = None) -> None:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self._procs[name] = subprocess.Popen(
                self.net.argv(SERVICES_HOST, argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )

    def _wait(self, name: str, answers: Callable[[], bool]) -> None:
        """Poll ``answers`` from inside the services namespace until it is true; raise when
        the server exits or the deadline passes."""
        proc = self._procs[name]
        deadline = time.monotonic() + self.config.start_timeout_s
        while not self.net.call_in(SERVICES_HOST, answers):
            if proc.poll() is not None:
                raise ServiceError(
                    f"{name} exited with {proc.returncode}:\n{_tail(self._log(name))}"
                )
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{name} did not answer within {self.config.start_timeout_s}s:\n"
                    f"{_tail(self._log(name))}"
                )
            time.sleep(POLL_INTERVAL_S)

    def _stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=self.config.stop_timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if name == "postgres":
            # The postmaster's children leave when it does; wait for them so the port and
            # the shared memory are free for the next start.
            self._wait_group_gone(proc.pid)

    def _wait_group_gone(self, pgid: int) -> None:
        deadline = time.monotonic() + self.config.stop_timeout_s
        while _group_alive(pgid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                return
            time.sleep(POLL_INTERVAL_S)

    def _log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"


def _as_postgres() -> list[str]:
    """Run the rest of the command line as the ``postgres`` user (exec'd, no fork)."""
    return ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", "--"]


def _redis_pings(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=PROBE_TIMEOUT_S) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _postgres_answers(ip: str, port: int, database: str) -> bool:
    try:
        with psycopg.connect(
            host=ip,
            port=port,
            user=PG_USER,
            dbname=database,
            connect_timeout=PG_CONNECT_TIMEOUT_S,
        ) as conn:
            row = conn.execute("SELECT 1").fetchone()
            return row == (1,)
    except psycopg.Error:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
