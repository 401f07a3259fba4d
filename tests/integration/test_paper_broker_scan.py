"""The paper broker skips ticks it must not trade on, and scans far enough to find a fill."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from tests.integration.test_paper_broker import ACC, Feed, at, broker, feed, make_broker, place
from workers.brokers import FILLS_START

pytestmark = pytest.mark.integration
__all__ = ["broker", "feed", "make_broker"]


def test_a_tick_with_negative_size_never_fills(broker, feed: Feed, redis_client: redis.Redis):
    t = int(at(0.5).timestamp() * 1000)
    redis_client.xadd("md:{ESZ13}:ticks", {"t": str(t), "p": "1650.00", "s": "-5"}, id=f"{t}-*")
    feed.last_ms["ESZ13"] = t
    feed.tick(at(0.7), "1700.25")
    broker.place_order(place("o1", at(0)))
    fills, _ = broker.fills_since(ACC, FILLS_START)
    assert [f.price for f in fills] == [Decimal("1700.25")]


def test_a_limit_order_touched_after_many_ticks_fills_there(broker, feed: Feed):
    for i in range(200):
        feed.tick(at(1 + i), "1690.00")
    feed.tick(at(500), "1679.75")
    ack = broker.place_order(place("o2", at(0.5), order_type="limit", limit_price=Decimal("1680")))
    assert ack.status == "filled"
    fills = broker.fills_since(ACC, FILLS_START)[0]
    assert [(f.price, f.time) for f in fills] == [(Decimal("1680"), at(500))]
