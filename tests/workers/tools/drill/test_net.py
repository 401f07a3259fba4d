"""The drill network on this machine: hosts reach the services host at one address; a
partition cuts a host off and a heal brings it (and its open connections) back; an impaired
link delays and drops packets as set, and a cleared one is fast again."""

from __future__ import annotations

import statistics

import pytest

from tests.kit.wait import wait_until
from tests.workers.tools.drill.probes import (
    HeldConnection,
    connect,
    icmp,
    python_in,
    redis_rtts_ms,
)
from workers.tools.drill.net import Network, list_namespaces, sweep_leftovers
from workers.tools.drill.services import Services

UNIMPAIRED_MS = 10.0
"""A round trip that carries no delay, on a host busy with other tests."""

pytestmark = pytest.mark.integration


def test_every_host_reaches_redis_and_postgres_at_the_services_ip(
    net: Network, services: Services
) -> None:
    code = (
        "import redis, sqlalchemy as sa\n"
        f"print(redis.Redis.from_url({services.redis_url!r}).ping())\n"
        f"print(redis.Redis.from_url({services.broker_url!r}).ping())\n"
        f"engine = sa.create_engine({services.database_url!r})\n"
        "with engine.connect() as conn:\n"
        "    print(conn.execute(sa.text('SELECT 1')).scalar())\n"
    )
    assert services.redis_url == f"redis://{net.services_ip}:6379/0"
    assert services.database_url.startswith("postgresql+psycopg://")
    for host in ("w1", "feed"):
        assert python_in(net, host, code).split() == ["True", "True", "1"]


def test_a_partitioned_host_cannot_connect_and_heals_with_its_open_connection(
    net: Network, services: Services
) -> None:
    held = HeldConnection(net, "w1", services.config.redis_port)
    try:
        assert held.ping() == "+PONG"
        net.partition("w1")
        try:
            attempt = connect(net, "w1", services.config.redis_port, timeout_s=1.0)
            assert attempt["answer"].startswith("error")
            assert attempt["s"] < 5
            assert connect(net, "w2", services.config.redis_port)["answer"] == "+PONG\r\n"
            held.send_ping()
            assert held.answer(0.5) is None, "a PING crossed the partition"
        finally:
            net.heal("w1")
        # The PING sent during the partition is retransmitted on the same connection.
        assert held.answer(20) == "+PONG"
        assert held.ping() == "+PONG"
        assert connect(net, "w1", services.config.redis_port)["answer"] == "+PONG\r\n"
    finally:
        held.close()


def test_an_impaired_link_delays_about_twice_the_delay_per_round_trip(
    net: Network, services: Services
) -> None:
    port = services.config.redis_port
    held = HeldConnection(net, "w2", port)
    try:
        net.impair("w2", delay_ms=20, jitter_ms=10, loss=0.01, seed=11)
        assert net.is_impaired("w2")
        try:
            rtts = redis_rtts_ms(net, "w2", port, n=40)
            assert 30 <= statistics.median(rtts) <= 80, rtts
            assert held.ping(20) == "+PONG", "the connection made before impair broke"
            assert connect(net, "w3", port)["answer"] == "+PONG\r\n"
            # An unimpaired host stays fast; the bound is a third of the impaired floor, not a
            # loopback figure: a loaded host wakes a process on its scheduler tick (4 ms).
            assert statistics.median(redis_rtts_ms(net, "w3", port, n=20)) < UNIMPAIRED_MS
        finally:
            net.clear("w2")
        assert not net.is_impaired("w2")
        assert statistics.median(redis_rtts_ms(net, "w2", port, n=40)) < UNIMPAIRED_MS
        assert held.ping() == "+PONG", "the connection made before impair broke at clear"
    finally:
        held.close()


def test_an_impaired_link_loses_about_its_loss_each_way(net: Network) -> None:
    net.impair("w3", delay_ms=2, jitter_ms=0, loss=0.2, seed=5)
    try:
        result = icmp(net, "w3", n=400, interval_s=0.003)
    finally:
        net.clear("w3")
    answered = len(result["rtts"]) / result["sent"]
    one_way_loss = 1 - answered**0.5  # a round trip survives two draws
    assert 0.12 <= one_way_loss <= 0.28, (answered, one_way_loss)
    assert 3 <= statistics.median(result["rtts"]) <= 30
    clear = icmp(net, "w3", n=50, interval_s=0.002)
    assert len(clear["rtts"]) == 50
    assert statistics.median(clear["rtts"]) < 1.0


def test_a_partition_cuts_an_impaired_host_too(net: Network, services: Services) -> None:
    port = services.config.redis_port
    net.impair("feed", delay_ms=5, jitter_ms=0, loss=0.0)
    try:
        net.partition("feed")
        try:
            assert connect(net, "feed", port, timeout_s=1.0)["answer"].startswith("error")
        finally:
            net.heal("feed")
        wait_until(
            lambda: connect(net, "feed", port)["answer"] == "+PONG\r\n",
            timeout=15,
            what="the healed, impaired feed host to reach Redis",
        )
        assert statistics.median(redis_rtts_ms(net, "feed", port, n=10)) >= 10
    finally:
        net.clear("feed")


def test_sweeping_leaves_a_live_run_alone(net: Network) -> None:
    assert sweep_leftovers(f"{net.run_name}-") == []
    assert set(net.namespaces) <= set(list_namespaces())
