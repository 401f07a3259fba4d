"""The paper broker skips ticks it must not trade on, and scans far enough to find a fill.

A resting order is matched when the broker is asked to work it (``match``): at placement it
only meets the prices of its own decision time, whatever the feed has published beyond."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from tests.workers.brokers.paper.test_paper_broker import (
    ACC,
    Feed,
    at,
    broker,
    feed,
    make_broker,
    place,
    position,
    prices,
)
from trading.exceptions import BadInput
from workers.brokers import FILLS_START
from workers.brokers.commands import CancelOrder, QueryOrder
from workers.brokers.paper.model import MarketBound

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
    assert ack.status == "working"
    assert [f.client_order_id for f in broker.match("ESZ13")] == ["o2"]
    fills = broker.fills_since(ACC, FILLS_START)[0]
    assert [(f.price, f.time) for f in fills] == [(Decimal("1680"), at(500))]


def _stop(coid: str, when, price: str, side: str = "sell", **kw):
    return place(coid, when, side=side, order_type="stop", stop_price=Decimal(price), **kw)


def test_an_attached_stop_works_only_from_its_entrys_fill(broker, feed: Feed):
    feed.tick(at(1), "1690.00")
    feed.tick(at(2), "1684.00")
    stop = _stop("e1-stop", at(0), "1685.00", parent_client_order_id="e1")
    assert broker.place_order(stop).status == "working"
    assert broker.match("ESZ13") == []
    entry = broker.place_order(place("e1", at(2.5)))
    assert entry.status == "working"
    feed.tick(at(3), "1689.00")
    assert [f.client_order_id for f in broker.match("ESZ13")] == ["e1"]
    feed.tick(at(4), "1686.00")
    assert broker.match("ESZ13") == []
    feed.tick(at(5), "1685.00")
    assert [(f.client_order_id, f.time) for f in broker.match("ESZ13")] == [("e1-stop", at(5))]
    assert position(broker) == {}


def test_a_stop_attached_to_an_entry_that_never_fills_is_cancelled(broker, feed: Feed):
    broker.place_order(place("e2", at(0), order_type="limit", limit_price=Decimal("1600")))
    broker.place_order(_stop("e2-stop", at(0), "1590.00", parent_client_order_id="e2"))
    assert broker.cancel_order(CancelOrder(ACC, "e2")).status == "cancelled"
    feed.tick(at(1), "1580.00")
    assert broker.match("ESZ13") == []
    assert broker.order(QueryOrder(ACC, "e2-stop")).status == "cancelled"  # type: ignore[union-attr]


def test_a_cancel_takes_effect_at_its_data_time(broker, feed: Feed):
    broker.place_order(_stop("s1", at(0), "1685.00"))
    broker.place_order(_stop("s2", at(0), "1685.00", account="ACC-2"))
    feed.tick(at(1), "1690.00")
    feed.tick(at(3), "1684.00")
    late = broker.cancel_order(CancelOrder(ACC, "s1", as_of=at(4)))
    early = broker.cancel_order(CancelOrder("ACC-2", "s2", as_of=at(2)))
    assert (late.status, early.status) == ("filled", "cancelled")
    assert prices(broker) == {"s1": "1684.00"}


def test_resting_orders_are_worked_up_to_a_data_time_and_per_session(broker, feed: Feed):
    broker.place_order(_stop("mine", at(0), "1685.00"))
    broker.place_order(_stop("other", at(0), "1685.00", session_id="sess-2"))
    seen = feed.tick(at(1), "1690.00")
    feed.tick(at(3), "1684.00")
    touch_not_seen = seen
    before_touch = MarketBound(until_ms=int(at(3).timestamp() * 1000))
    assert broker.match("ESZ13", bound=before_touch) == []
    assert broker.match_order(ACC, "mine", before_touch) == "working"
    assert broker.match_order(ACC, "mine", MarketBound(through_id=touch_not_seen)) == "working"
    broker.place_order(place("next", at(4), side="buy"))
    assert sorted(prices(broker)) == ["mine"]
    assert [f.client_order_id for f in broker.match("ESZ13")] == ["other"]


def test_an_entry_sent_with_its_stop_places_both_as_one_bracket(broker, feed: Feed):
    feed.tick(at(1), "1690.00")
    stop = _stop("e3-stop", at(0.5), "1685.00", parent_client_order_id="e3")
    entry = broker.place_order(place("e3", at(0.5), attached_stop=stop))
    assert entry.status == "filled"
    again = broker.place_order(stop)
    assert (again.status, again.duplicate) == ("working", True)
    feed.tick(at(2), "1684.75")
    assert [(f.client_order_id, f.price) for f in broker.match("ESZ13")] == [
        ("e3-stop", Decimal("1684.75"))
    ]
    assert position(broker) == {}


def test_an_attached_stop_must_mirror_its_entry():
    stop = _stop("e4-stop", at(0), "1685.00", parent_client_order_id="e4", quantity=2)
    with pytest.raises(BadInput, match="differs in quantity"):
        place("e4", at(0), attached_stop=stop)
    unattached = _stop("e5-stop", at(0), "1685.00")
    with pytest.raises(BadInput, match="not attached"):
        place("e5", at(0), attached_stop=unattached)
