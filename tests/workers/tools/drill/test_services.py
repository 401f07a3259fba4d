"""The services host's faults, seen from a worker host: the state Redis restarted empty, the
broker's Redis frozen and thawed, PostgreSQL restarted with its data."""

from __future__ import annotations

import pytest

from tests.workers.tools.drill.probes import python_in
from workers.tools.drill.net import Network
from workers.tools.drill.services import Services

pytestmark = pytest.mark.integration


def test_restarting_redis_empty_loses_the_fleet_state_but_not_the_brokers(
    net: Network, services: Services
) -> None:
    setup = (
        "import redis\n"
        f"redis.Redis.from_url({services.redis_url!r}).set('drill:state', 'x')\n"
        f"redis.Redis.from_url({services.broker_url!r}).set('drill:broker', 'y')\n"
    )
    python_in(net, "w1", setup)
    old_pid = services.pid("redis")
    services.restart_redis_empty()
    assert services.pid("redis") != old_pid
    check = (
        "import redis\n"
        f"state = redis.Redis.from_url({services.redis_url!r})\n"
        f"broker = redis.Redis.from_url({services.broker_url!r})\n"
        "print(state.ping(), state.dbsize(), broker.get('drill:broker'))\n"
    )
    assert python_in(net, "w1", check) == "True 0 b'y'"


def test_a_paused_broker_answers_nothing_until_resumed(net: Network, services: Services) -> None:
    code = (
        "import redis, time\n"
        f"client = redis.Redis.from_url({services.broker_url!r}, socket_timeout=1,"
        " socket_connect_timeout=1)\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    client.ping()\n"
        "    print('answered')\n"
        "except redis.TimeoutError:\n"
        "    print('timeout', round(time.monotonic() - started, 1))\n"
    )
    services.pause_broker()
    try:
        outcome, seconds = python_in(net, "w2", code).split()
        assert outcome == "timeout"
        assert float(seconds) < 3
    finally:
        services.resume_broker()
    assert python_in(net, "w2", code) == "answered"


def test_postgres_restarts_with_its_data(net: Network, services: Services) -> None:
    prefix = f"import sqlalchemy as sa\nengine = sa.create_engine({services.database_url!r})\n"
    python_in(
        net,
        "w3",
        prefix + "with engine.begin() as conn:\n"
        "    conn.execute(sa.text('CREATE TABLE drill_probe (n int)'))\n"
        "    conn.execute(sa.text('INSERT INTO drill_probe VALUES (42)'))\n",
    )
    old_pid = services.pid("postgres")
    services.restart_postgres()
    assert services.pid("postgres") != old_pid
    read = prefix + "with engine.connect() as conn:\n"
    read += "    print(conn.execute(sa.text('SELECT n FROM drill_probe')).scalar())\n"
    assert python_in(net, "w3", read) == "42"
