"""Shared fixtures: a private redis-server per test session, fresh PostgreSQL databases, and
bare Celery workers.

Tests never touch the shared Redis on 6379: each run starts its own server on a free port
(``tests.kit.redis``), so a test may flush it without disturbing anything else. What the
tests share besides fixtures lives in ``tests/kit/``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import psycopg
import pytest
import redis

from tests.kit.redis import RedisServer
from tests.kit.workers import ALL_QUEUES, CeleryWorker, WorkerFactory

PG_ADMIN_URL = os.environ.get(
    "TRADEFLEET_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The private server's URL, emptied before each test."""
    client = redis_server.client()
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""

    name = f"tf_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not answering at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tradefleet.db'}"


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[WorkerFactory]:
    """A factory: ``start_worker(redis_url, queues=..., concurrency=..., env=...)``.

    Each call starts a worker and waits until it answers; all are stopped at teardown. A test
    with a ``tests.kit.fleet.Fleet`` starts its workers through the fleet instead.
    """
    started: list[CeleryWorker] = []

    def factory(
        redis_url: str,
        *,
        queues: Sequence[str] = ALL_QUEUES,
        concurrency: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> CeleryWorker:
        worker = CeleryWorker(
            redis_url, tmp_path / "workers", queues=queues, concurrency=concurrency, env=env
        )
        started.append(worker)
        return worker.start()

    yield factory
    for worker in reversed(started):
        worker.stop()
