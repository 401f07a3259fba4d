"""Database engines and schema migrations.

Nothing connects at import time. ``engine_for(url)`` keeps one engine per URL per process; the
cache is dropped in a forked child (Celery's prefork pool) so a child never shares its parent's
pooled connections.

SQLite gets real transactions: the driver's own implicit transaction handling (which starts a
transaction only at the first write, and breaks savepoints and transactional DDL) is switched
off and SQLAlchemy's ``begin`` emits ``BEGIN IMMEDIATE``: a transaction takes the write lock
when it starts, so one that reads before it writes never meets a stale snapshot ("database is
locked"); writers queue behind the busy timeout instead. Foreign keys are enforced, and a file
database runs in WAL mode so plain reads outside a transaction never block.

A PostgreSQL server may be a network hop away, where every round trip counts (``tradefleet
drill netem``): a pooled connection is pinged before use only when it sat idle in the pool for
``PING_AFTER_IDLE_S`` (one that was just in use is known to answer; one that meets a restarted
server mid-use fails as any statement in flight would), and a read of one statement can run in
autocommit (``reader``: no BEGIN before it, no ROLLBACK after).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool

from alembic import command

SQLITE_BUSY_TIMEOUT_MS = 30_000
PING_AFTER_IDLE_S = 1.0
"""A pooled PostgreSQL connection idle longer than this is pinged before it is handed out."""
_IDLE_SINCE = "tradefleet_idle_since"
ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in {"", ":memory:"} or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(url: str, *, foreign_keys: bool = True, pooled: bool = True) -> Engine:
    """A new engine for ``url``; for an SQLite file its folder is created first.

    ``foreign_keys=False`` is for migrations only (SQLite table rebuilds); ``pooled=False``
    gives an engine that keeps no connection open between uses.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if not pooled:
        kwargs["poolclass"] = NullPool
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, **kwargs)
        _ping_when_idle(engine)
        return engine

    path = _sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
    _configure_sqlite(engine, foreign_keys=foreign_keys, wal=path is not None)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout when it sat idle ``PING_AFTER_IDLE_S`` or more;
    one that does not answer is replaced by a new one (``DisconnectionError``: the pool's
    documented way to refuse a connection at checkout)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"a pooled connection did not answer: {exc}") from exc


def _configure_sqlite(engine: Engine, *, foreign_keys: bool, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(_ONE_STATEMENT):
            return  # ``reader``: the statement runs alone, in the driver's autocommit
        connection.exec_driver_sql("BEGIN IMMEDIATE")


_ONE_STATEMENT = "tradefleet_one_statement"
"""The execution option of an SQLite ``reader``: its statements run without ``BEGIN``."""
_engines: dict[str, Engine] = {}
_readers: dict[int, tuple[Engine, Engine]] = {}
"""The autocommit view (``reader``) of each engine ``engine_for`` keeps, by the engine's id."""
_engines_lock = threading.Lock()


def reader(engine: Engine) -> Engine:
    """``engine`` for a read of one statement, run without a transaction around it: on
    PostgreSQL in autocommit, so the read is one round trip (no BEGIN before it, no ROLLBACK
    after); on SQLite without the ``BEGIN IMMEDIATE`` every transaction starts with (which takes
    the database's write lock, so a read would wait for every writer and hold them up). A read
    of several statements that must see one snapshot keeps a transaction (``engine`` itself).
    SQLite's is marked by an execution option of ours, not the AUTOCOMMIT isolation level (the
    pysqlite dialect would hand the connection back to the pool with the driver's implicit
    transactions switched on)."""
    found = _readers.get(id(engine))
    if found is not None and found[0] is engine:
        return found[1]
    if engine.dialect.name == "sqlite":
        made = engine.execution_options(**{_ONE_STATEMENT: True})
    else:
        made = engine.execution_options(isolation_level="AUTOCOMMIT")
    with _engines_lock:
        if any(kept is engine for kept in _engines.values()):
            _readers[id(engine)] = (engine, made)
    return made


def engine_for(url: str) -> Engine:
    """This process's shared engine for ``url`` (created on first use)."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = make_engine(url)
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine's pooled connections and forget them."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
        _readers.clear()
    for engine in engines:
        engine.dispose()


def _forget_engines_after_fork() -> None:
    global _engines_lock  # noqa: PLW0603 - the parent's lock may have been held at fork time
    _engines_lock = threading.Lock()
    engines = list(_engines.values())
    _engines.clear()
    _readers.clear()
    for engine in engines:
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_engines_after_fork)


def alembic_config(url: str) -> Config:
    """An Alembic configuration for ``url`` that does not touch logging."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` drops everything)."""
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; ``None`` for a database never migrated."""
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
