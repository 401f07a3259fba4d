"""Round trips to a database a network hop away: a read of one statement runs without a
transaction (``reader``: on PostgreSQL in autocommit, on SQLite without ``BEGIN IMMEDIATE``),
and a pooled connection is pinged only when it sat idle (a dead one is replaced before use),
on a real PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from workers.db import engines
from workers.db.engines import dispose_engines, engine_for, make_engine, reader

pytestmark = pytest.mark.integration

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def test_a_read_runs_without_a_transaction_on_postgresql(pg_url: str) -> None:
    engine = engine_for(pg_url)
    try:
        with Session(reader(engine)) as db:
            assert db.scalar(text("SELECT 1")) == 1
            dbapi = db.connection().connection.dbapi_connection
            assert dbapi is not None
            status = dbapi.info.transaction_status
        assert status == psycopg.pq.TransactionStatus.IDLE, "no BEGIN before the read"
        assert reader(engine) is reader(engine), "a kept engine's reader is made once"
        with Session(engine) as db:
            db.scalar(text("SELECT 1"))
            dbapi = db.connection().connection.dbapi_connection
            assert dbapi is not None
            status = dbapi.info.transaction_status
        assert status == psycopg.pq.TransactionStatus.INTRANS, "the engine itself still begins"
    finally:
        dispose_engines()


def test_an_sqlite_read_runs_without_begin_and_a_write_still_in_a_transaction(
    sqlite_url: str,
) -> None:
    """A read through ``reader`` sends its statement alone (no ``BEGIN IMMEDIATE``, which takes
    the write lock); the engine itself still begins every transaction that way, and a failed
    one leaves nothing, on a connection the read had used before."""
    engine = engine_for(sqlite_url)
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: sent.append(a[2].split()[0]))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        sent.clear()
        with Session(reader(engine)) as db:
            assert db.scalar(text("SELECT count(*) FROM t")) == 0
        assert sent == ["SELECT"], "the read alone"
        assert reader(engine) is reader(engine), "a kept engine's reader is made once"
        sent.clear()
        with pytest.raises(RuntimeError), engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            raise RuntimeError("after the insert")
        assert sent == ["BEGIN", "INSERT"]
        with Session(reader(engine)) as db:
            assert db.scalar(text("SELECT count(*) FROM t")) == 0, "rolled back"
    finally:
        dispose_engines()


def test_a_connection_is_pinged_only_after_sitting_idle_and_replaced_when_dead(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(pg_url)
    pings: list[int] = []
    real_ping = engine.dialect.do_ping

    def counted_ping(dbapi_connection: Any) -> bool:
        pings.append(1)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
    try:
        with engine.connect() as conn:
            first_pid = conn.scalar(text("SELECT pg_backend_pid()"))
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT pg_backend_pid()")) == first_pid
        assert pings == [], "a connection just used is handed out without a ping"

        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first_pid,))
        monkeypatch.setattr(engines, "PING_AFTER_IDLE_S", 0.0)
        with engine.connect() as conn:
            pid = conn.scalar(text("SELECT pg_backend_pid()"))
        assert pings, "a connection that sat idle is pinged"
        assert pid != first_pid, "the dead connection was replaced before use"
    finally:
        engine.dispose()
