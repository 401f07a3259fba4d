"""A real worker process runs our tasks from the private Redis, and refuses pickle."""

from __future__ import annotations

import os
import signal
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from tests.kit.wait import wait_until
from tests.kit.workers import CeleryWorker, WorkerFactory
from workers.dispatch.names import HEALTH_PING

pytestmark = pytest.mark.integration

RESULT_TIMEOUT_S = 30


def test_worker_runs_ping_in_its_own_process(start_worker: WorkerFactory, redis_url: str) -> None:
    worker: CeleryWorker = start_worker(redis_url, queues=("default",), concurrency=1)
    before = datetime.now(UTC)

    result = worker.app.send_task(HEALTH_PING, args=[{"n": 7}])
    answer = result.get(timeout=RESULT_TIMEOUT_S)

    assert answer["pong"] is True
    assert answer["echo"] == {"n": 7}
    assert answer["hostname"] == worker.nodename
    assert answer["pid"] != os.getpid()
    assert answer["pid"] != worker.pid
    ran_at = datetime.fromisoformat(answer["time"])
    assert ran_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= ran_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_ping_is_routed_to_the_default_queue_only(
    start_worker: WorkerFactory, redis_url: str
) -> None:
    ticks_only = start_worker(redis_url, queues=("ticks",), concurrency=1)
    result = ticks_only.app.send_task(HEALTH_PING, args=["queued"])
    default = start_worker(redis_url, queues=("default",), concurrency=1)

    answer = result.get(timeout=RESULT_TIMEOUT_S)

    assert answer["hostname"] == default.nodename
    assert answer["echo"] == "queued"


def test_pickle_message_is_refused_never_run(
    start_worker: WorkerFactory, redis_url: str, redis_client: redis.Redis
) -> None:
    worker = start_worker(redis_url, queues=("default",), concurrency=1)
    pickled_id = f"pickled-{uuid.uuid4().hex}"

    worker.app.send_task(HEALTH_PING, args=["pickled"], task_id=pickled_id, serializer="pickle")
    wait_until(
        lambda: "Refusing to deserialize untrusted content" in worker.log_text(),
        timeout=RESULT_TIMEOUT_S,
        what="the worker to refuse the pickle message",
    )
    after = worker.app.send_task(HEALTH_PING, args=["json"]).get(timeout=RESULT_TIMEOUT_S)

    assert after["echo"] == "json"
    assert "ContentDisallowed" in worker.log_text()
    assert worker.app.AsyncResult(pickled_id).state == "PENDING"
    assert redis_client.llen("default") == 0
    assert pickled_id.encode() not in b"".join(redis_client.hvals("unacked"))
    assert worker.alive()


def test_kill_takes_down_the_whole_worker(start_worker: WorkerFactory, redis_url: str) -> None:
    worker = start_worker(redis_url, queues=("default",), concurrency=2)
    main_pid = worker.pid

    worker.kill(signal.SIGKILL)

    assert worker.wait_exit() == -signal.SIGKILL
    wait_until(
        lambda: not _group_alive(main_pid), timeout=RESULT_TIMEOUT_S, what="pool children gone"
    )
    assert worker.app.control.ping(destination=[worker.nodename], timeout=0.5) == []


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
