"""The market tailed from tradefleet's instrument streams (``--market-redis``): history seen at
start-up, live ticks after, fills at the tick's price and time (a private redis-server)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis

from tests.kit.tradovate_local import LocalTradovate
from tests.kit.wait import wait_until

pytestmark = pytest.mark.integration

STREAM = "md:{ESZ13}:ticks"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_ticks_from_redis_fill_orders(
    start_tv: Callable[..., LocalTradovate], redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.xadd(
        STREAM, {"t": ms("2013-12-02T14:30:00"), "p": "1800.00", "s": "3", "b": "", "a": ""}
    )
    tv = start_tv("--market-redis", redis_url)
    token = tv.token()["accessToken"]
    wait_until(
        lambda: tv.control("GET", "state")["markets"],
        what="the stream's history to be read",
    )
    account = tv.v1("GET", "account/list", token=token)[0]
    body = {
        "accountId": account["id"],
        "action": "Buy",
        "symbol": "ESZ3",
        "orderQty": 1,
        "orderType": "Limit",
        "price": "1799.50",
        "isAutomated": True,
    }
    order_id = tv.v1("POST", "order/placeorder", body, token=token)["orderId"]
    redis_client.xadd(
        STREAM,
        {"t": ms("2013-12-02T14:30:15"), "p": "1799.25", "s": "1", "b": "1799.00", "a": "1799.25"},
    )

    def filled() -> list[dict[str, object]]:
        return list(tv.v1("GET", f"fill/deps?masterid={order_id}", token=token))

    [fill] = wait_until(filled, what="the limit order to fill from the stream")
    assert (fill["price"], fill["timestamp"]) == (Decimal("1799.50"), "2013-12-02T14:30:15.000Z")
    quote = tv.control("GET", "state")["markets"]
    [es] = quote.values()
    assert es["entries"]["Offer"]["price"] == Decimal("1799.25")


def test_from_dollar_skips_history_and_sees_a_new_streams_first_tick(
    start_tv: Callable[..., LocalTradovate], redis_url: str, redis_client: redis.Redis
) -> None:
    """``--market-redis-from $``: what the streams held at start-up is not the market; every
    entry after it is, in a stream there at start-up and in one created later (its first
    entry included, whenever it comes)."""
    redis_client.xadd(STREAM, {"t": ms("2013-12-02T14:30:00"), "p": "1800.00", "s": "3"})
    tv = start_tv("--market-redis", redis_url, "--market-redis-from", "$")
    redis_client.xadd(STREAM, {"t": ms("2013-12-02T14:31:00"), "p": "1801.00", "s": "1"})
    redis_client.xadd(
        "md:{ESH14}:ticks", {"t": ms("2013-12-18T14:30:00"), "p": "1790.00", "s": "1"}
    )

    def prices() -> list[str]:
        markets = tv.control("GET", "state")["markets"]
        return sorted(str(q["timestamp"]) for q in markets.values() if q is not None)

    seen = wait_until(lambda: len(prices()) == 2 and prices(), what="both streams' new ticks")
    assert seen == ["2013-12-02T14:31:00.000Z", "2013-12-18T14:30:00.000Z"]
