"""Round trips to a database a network hop away: a read of one statement runs without a
transaction on PostgreSQL (``reader``), and a pooled connection is pinged only when it sat idle
(a dead one is replaced before use), on a real PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import text
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


def test_sqlite_reads_use_the_engine_itself(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        assert reader(engine) is engine
    finally:
        engine.dispose()


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
