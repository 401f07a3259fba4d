"""The Celery configuration every process shares: JSON only, late acks, the five queues."""

from __future__ import annotations

import subprocess
import sys

import pytest
from celery import Celery

from workers.celery_app import TASK_MODULES, create_app
from workers.dispatch.names import HEALTH_PING
from workers.settings import QueueSettings, RedisSettings, Settings

URL = "redis://127.0.0.1:1/3"


@pytest.fixture
def app() -> Celery:
    return create_app(
        Settings(redis=RedisSettings(url=URL), queues=QueueSettings(visibility_timeout_s=1234))
    )


def test_broker_and_backend_are_the_settings_redis(app: Celery) -> None:
    assert app.conf.broker_url == URL
    assert app.conf.result_backend == URL


def test_json_only_never_pickle(app: Celery) -> None:
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]
    assert list(app.conf.result_accept_content) == ["json"]


def test_delivery_guarantees(app: Celery) -> None:
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] == 1234
    assert app.conf.result_backend_transport_options["visibility_timeout"] == 1234
    assert app.conf.broker_connection_retry_on_startup is True


def test_the_five_queues_and_the_default(app: Celery) -> None:
    names = [queue.name for queue in app.conf.task_queues]
    assert names == ["ticks", "orders", "reconcile", "rolls", "default"]
    assert all(queue.routing_key == queue.name for queue in app.conf.task_queues)
    assert app.conf.task_default_queue == "default"
    assert app.conf.task_create_missing_queues is False


def test_queue_names_come_from_settings() -> None:
    app = create_app(
        Settings(redis=RedisSettings(url=URL), queues=QueueSettings(ticks="fast_ticks"))
    )
    assert app.conf.task_queues[0].name == "fast_ticks"
    assert app.amqp.router.route({}, "tradefleet.ticks.drain")["queue"].name == "fast_ticks"


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("tradefleet.ticks.drain", "ticks"),
        ("tradefleet.orders.submit", "orders"),
        ("tradefleet.reconcile.positions", "reconcile"),
        ("tradefleet.rolls.begin", "rolls"),
        (HEALTH_PING, "default"),
        ("tradefleet.anything.else", "default"),
    ],
)
def test_routes_by_task_name_prefix(app: Celery, task_name: str, queue: str) -> None:
    route = app.amqp.router.route({}, task_name)
    assert route["queue"].name == queue


def test_events_for_flower(app: Celery) -> None:
    assert app.conf.worker_send_task_events is True
    assert app.conf.task_send_sent_event is True


def test_utc_and_result_expiry(app: Celery) -> None:
    assert app.conf.enable_utc is True
    assert app.conf.timezone == "UTC"
    assert app.conf.result_expires.total_seconds() == 3600


def test_task_modules_are_listed_and_register_their_tasks(app: Celery) -> None:
    assert "workers.tasks.health" in TASK_MODULES
    assert tuple(app.conf.include) == TASK_MODULES
    app.loader.import_default_modules()
    assert HEALTH_PING in app.tasks


def test_importing_the_app_module_connects_nowhere() -> None:
    """A broker URL on a closed port: importing and building must still succeed at once."""
    code = (
        "import workers.celery_app as m;"
        "assert m.app.conf.broker_url == 'redis://127.0.0.1:1/0';"
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"TRADEFLEET_REDIS_URL": "redis://127.0.0.1:1/0", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_bad_setting_fails_app_access_with_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import workers.celery_app as m; m.app"],
        env={"TRADEFLEET_REDIS_URL": "http://nope", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "bad setting TRADEFLEET_REDIS_URL" in result.stderr
