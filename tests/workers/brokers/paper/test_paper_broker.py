"""The paper broker on the private Redis: market streams in db 0 (written here with XADD as
streams.md says), the broker's own truth in db 1."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.kit.redis import paper_url
from trading.exceptions import BadInput, ServiceUnavailable, UnknownRegisteredName
from workers.brokers import (
    FILLS_START,
    AccountManager,
    CancelOrder,
    PlaceOrder,
    QueryBalance,
    QueryOpenOrders,
    QueryOrder,
    QueryPositions,
)
from workers.brokers.paper.broker import PaperBroker, PaperConfig
from workers.brokers.registry import broker_names, build_broker
from workers.settings import RedisSettings, Settings
from workers.tools.bench.env import free_port

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = datetime(2013, 12, 2, 14, 30, tzinfo=UTC)
ACC = "ACC1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def epoch_ms(value: datetime) -> int:
    return (value - EPOCH) // timedelta(milliseconds=1)


class Feed:
    """Publishes ticks exactly as the feed publisher does (streams.md)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.last_ms: dict[str, int] = {}

    def tick(self, when: datetime, price: str, instrument: str = "ESZ13", **touch: str) -> str:
        t = epoch_ms(when)
        id_ms = max(t, self.last_ms.get(instrument, 0))
        fields = {"t": str(t), "p": price, "s": "1"}
        fields.update({"b" if side == "bid" else "a": value for side, value in touch.items()})
        entry = self.client.xadd(
            f"md:{{{instrument}}}:ticks", fields, id=f"{id_ms}-*", maxlen=1_000_000
        )
        self.last_ms[instrument] = id_ms
        return entry.decode()


def place(coid: str, when: datetime, side="buy", quantity=1, order_type="market", **kw):
    kw = {"account": ACC, "contract": "ESZ13", "session_id": "sess-1", **kw}
    return PlaceOrder(
        client_order_id=coid, side=side, quantity=quantity,
        order_type=order_type, decided_at=when, **kw,
    )  # fmt: skip


@pytest.fixture
def broker_db(redis_url: str):
    client = redis.Redis.from_url(paper_url(redis_url))
    yield client
    client.close()


@pytest.fixture
def make_broker(redis_url: str):
    clients: list[redis.Redis] = []

    def make(**config) -> PaperBroker:
        market = redis.Redis.from_url(redis_url)
        store = redis.Redis.from_url(paper_url(redis_url))
        clients.extend([market, store])
        return PaperBroker(store, market, PaperConfig(**config))

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def broker(make_broker) -> PaperBroker:
    return make_broker()


@pytest.fixture
def feed(redis_client: redis.Redis) -> Feed:
    return Feed(redis_client)


def matched(broker: PaperBroker) -> list[tuple[str, str]]:
    """(client order id, price text) of what ``match`` fills now."""
    return [(f.client_order_id, str(f.price)) for f in broker.match("ESZ13")]


def prices(broker: PaperBroker) -> dict[str, str]:
    return {f.client_order_id: str(f.price) for f in broker.fills_since(ACC, FILLS_START)[0]}


def position(broker: PaperBroker, account: str = ACC) -> dict[str, int]:
    return broker.positions(QueryPositions(account))


def test_market_order_fills_at_first_tick_at_or_after_decided_at(broker, feed) -> None:
    feed.tick(at(-2), "1699.00")
    feed.tick(at(-1), "1699.50")
    feed.tick(at(0.5), "1700.25")
    feed.tick(at(0.9), "1701.00")
    ack = broker.place_order(place("o1", at(0)))
    assert (ack.status, ack.duplicate) == ("filled", False)
    fills, _ = broker.fills_since(ACC, FILLS_START)
    assert [(f.price, f.time, f.quantity) for f in fills] == [(Decimal("1700.25"), at(0.5), 1)]
    assert fills[0].execution_id == f"{ack.broker_order_id}-1"
    assert position(broker) == {"ESZ13": 1}


def test_market_order_rests_until_a_later_tick_then_fills_on_match(broker, feed) -> None:
    feed.tick(at(-1), "1699.50")
    ack = broker.place_order(place("o1", at(0), side="sell"))
    assert ack.status == "working"
    assert broker.match("ESZ13") == []
    assert [o.client_order_id for o in broker.open_orders(QueryOpenOrders(ACC))] == ["o1"]
    feed.tick(at(3), "1702.00")
    fills = broker.match("ESZ13")
    assert [(f.price, f.quantity, f.time) for f in fills] == [(Decimal("1702.00"), -1, at(3))]
    assert broker.match("ESZ13") == []
    assert broker.order(QueryOrder(ACC, "o1")).status == "filled"
    assert broker.open_orders(QueryOpenOrders(ACC)) == []
    assert position(broker) == {"ESZ13": -1}


def test_decided_at_below_a_millisecond_is_not_filled_by_the_earlier_millisecond(
    broker, feed
) -> None:
    decided = T0 + timedelta(microseconds=500)
    feed.tick(T0, "1700.00")
    assert broker.place_order(place("o1", decided)).status == "working"
    feed.tick(T0 + timedelta(milliseconds=1), "1700.50")
    assert [f.price for f in broker.match("ESZ13")] == [Decimal("1700.50")]


def test_market_orders_use_the_touch_when_present(broker, feed) -> None:
    feed.tick(at(1), "1700.00", bid="1699.75", ask="1700.25")
    buy = broker.place_order(place("b1", at(0)))
    sell = broker.place_order(place("s1", at(0), side="sell"))
    assert buy.status == sell.status == "filled"
    assert prices(broker) == {"b1": "1700.25", "s1": "1699.75"}


def test_slippage_is_applied_against_the_trader(make_broker, feed) -> None:
    broker = make_broker(slippage_ticks=2)
    feed.tick(at(1), "1700.00")
    broker.place_order(place("b1", at(0)))
    broker.place_order(place("s1", at(0), side="sell"))
    assert prices(broker) == {"b1": "1700.50", "s1": "1699.50"}


def test_limit_orders_fill_at_the_limit_when_touched(broker, feed) -> None:
    broker.place_order(place("b1", at(0), order_type="limit", limit_price=Decimal("1699.00")))
    broker.place_order(
        place("s1", at(0), side="sell", order_type="limit", limit_price=Decimal("1702.00"))
    )
    feed.tick(at(1), "1699.25")
    feed.tick(at(2), "1701.75")
    assert broker.match("ESZ13") == []
    feed.tick(at(3), "1698.50")
    assert matched(broker) == [("b1", "1699.00")]
    feed.tick(at(4), "1702.00")
    assert matched(broker) == [("s1", "1702.00")]
    assert position(broker) == {}


def test_stop_orders_trigger_when_touched_and_fill_at_stop_or_gap_price(broker, feed) -> None:
    broker.place_order(place("b1", at(0), order_type="stop", stop_price=Decimal("1702.00")))
    broker.place_order(
        place("s1", at(0), side="sell", order_type="stop", stop_price=Decimal("1695.00"))
    )
    feed.tick(at(1), "1701.75")
    feed.tick(at(2), "1695.25")
    assert broker.match("ESZ13") == []
    feed.tick(at(3), "1702.00")
    assert matched(broker) == [("b1", "1702.00")]
    feed.tick(at(4), "1693.00")
    assert matched(broker) == [("s1", "1693.00")]


def test_ioc_limit_not_filled_by_the_first_tick_is_cancelled(broker, feed) -> None:
    order = place("i1", at(0), order_type="limit", limit_price=Decimal("1690"), time_in_force="ioc")
    assert broker.place_order(order).status == "working"
    feed.tick(at(1), "1700.00")
    assert broker.match("ESZ13") == []
    assert broker.order(QueryOrder(ACC, "i1")).status == "cancelled"
    feed.tick(at(2), "1689.00")
    assert broker.match("ESZ13") == []


def test_tick_gone_back_in_time_is_skipped(broker, feed) -> None:
    broker.place_order(place("b1", at(0), order_type="limit", limit_price=Decimal("1695.00")))
    feed.tick(at(1), "1700.00")
    feed.tick(at(0.5), "1690.00")
    assert broker.match("ESZ13") == []
    feed.tick(at(2), "1694.75")
    assert [f.time for f in broker.match("ESZ13")] == [at(2)]


def test_each_order_scans_from_its_own_cursor(broker, feed, broker_db) -> None:
    broker.place_order(place("b1", at(0), order_type="limit", limit_price=Decimal("1600.00")))
    ids = [feed.tick(at(i), f"{1700 + i}.00") for i in range(1, 6)]
    assert broker.match("ESZ13") == []
    assert broker_db.hget(f"paper:acct:{ACC}:order:b1", "cursor").decode() == ids[-1]
    later = feed.tick(at(9), "1650.00")
    assert broker.match("ESZ13") == []
    assert broker_db.hget(f"paper:acct:{ACC}:order:b1", "cursor").decode() == later


def test_duplicate_client_order_id_is_refused(broker, feed) -> None:
    first = broker.place_order(place("dup", at(0)))
    second = broker.place_order(place("dup", at(0), quantity=5))
    assert first.status == second.status == "working"
    assert (second.broker_order_id, second.duplicate) == (first.broker_order_id, True)
    assert len(broker.open_orders(QueryOpenOrders(ACC))) == 1
    assert broker.order(QueryOrder(ACC, "dup")).quantity == 1
    feed.tick(at(1), "1700.00")
    assert len(broker.match("ESZ13")) == 1
    third = broker.place_order(place("dup", at(2)))
    assert (third.broker_order_id, third.status, third.duplicate) == (
        first.broker_order_id,
        "filled",
        True,
    )
    assert position(broker) == {"ESZ13": 1}


def test_racing_placements_with_one_id_make_one_order(make_broker, broker_db) -> None:
    brokers = [make_broker() for _ in range(8)]
    barrier = threading.Barrier(len(brokers))
    acks = []

    def run(b: PaperBroker) -> None:
        barrier.wait()
        acks.append(b.place_order(place("race", at(0))))

    threads = [threading.Thread(target=run, args=(b,)) for b in brokers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(acks) == 8
    assert len({a.broker_order_id for a in acks}) == 1
    assert sorted(a.duplicate for a in acks) == [False] + [True] * 7
    assert int(broker_db.get(f"paper:acct:{ACC}:seq")) == 1
    assert len(brokers[0].open_orders(QueryOpenOrders(ACC))) == 1


def test_concurrent_match_never_double_fills(make_broker, feed, broker_db) -> None:
    setup = make_broker()
    for i in range(20):
        setup.place_order(place(f"o{i}", at(0), order_type="limit", limit_price=Decimal("1699")))
    feed.tick(at(1), "1698.00")
    brokers = [make_broker() for _ in range(8)]
    barrier = threading.Barrier(len(brokers))
    results: list[list] = []

    def run(b: PaperBroker) -> None:
        barrier.wait()
        results.append(b.match("ESZ13"))

    threads = [threading.Thread(target=run, args=(b,)) for b in brokers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    fills = [f for batch in results for f in batch]
    assert len(results) == 8
    assert sorted(f.client_order_id for f in fills) == sorted(f"o{i}" for i in range(20))
    assert broker_db.xlen(f"paper:acct:{ACC}:fills") == 20
    assert position(setup) == {"ESZ13": 20}
    assert setup.balance(QueryBalance(ACC)).commissions == Decimal("50.00")


def test_positions_cash_commission_and_realized_pnl_use_multipliers(broker, feed) -> None:
    feed.tick(at(1), "1700.00")
    broker.place_order(place("e1", at(0.5)))
    feed.tick(at(2), "1701.00")
    broker.place_order(place("x1", at(1.5), side="sell"))
    balance = broker.balance(QueryBalance(ACC))
    assert balance.realized_pnl == Decimal("50.00")
    assert balance.commissions == Decimal("5.00")
    assert balance.cash == Decimal("100045.00")
    assert position(broker) == {}

    feed.tick(at(3), "1250.0", instrument="GCG14")
    broker.place_order(place("g1", at(2.5), side="sell", quantity=2, contract="GCG14"))
    feed.tick(at(4), "1249.5", instrument="GCG14")
    broker.place_order(place("g2", at(3.5), quantity=3, contract="GCG14"))
    assert position(broker) == {"GCG14": 1}
    realized = broker.realized_by_contract(ACC)
    assert realized == {"ESZ13": Decimal("50.00"), "GCG14": Decimal("100.0")}

    feed.tick(at(5), "1701.00")
    broker.place_order(place("a1", at(4.5)))
    feed.tick(at(6), "1702.00")
    broker.place_order(place("a2", at(5.5)))
    feed.tick(at(7), "1702.50")
    broker.place_order(place("a3", at(6.5), side="sell", quantity=2))
    balance = broker.balance(QueryBalance(ACC))
    assert broker.realized_by_contract(ACC)["ESZ13"] == Decimal("150")
    assert balance.realized_pnl == Decimal("250")
    assert balance.commissions == Decimal("2.50") * 11
    assert balance.cash == Decimal("100000") + Decimal("250") - Decimal("27.50")
    assert position(broker) == {"GCG14": 1}


def test_fills_since_delivers_each_fill_once(broker, feed) -> None:
    feed.tick(at(1), "1700.00")
    broker.place_order(place("o1", at(0)))
    broker.place_order(place("o2", at(0), side="sell"))
    first, cursor = broker.fills_since(ACC, FILLS_START)
    assert [f.client_order_id for f in first] == ["o1", "o2"]
    assert broker.fills_since(ACC, cursor) == ([], cursor)
    feed.tick(at(2), "1701.00")
    broker.place_order(place("o3", at(1.5)))
    more, cursor2 = broker.fills_since(ACC, cursor)
    assert [f.client_order_id for f in more] == ["o3"]
    assert cursor2 > cursor
    assert broker.fills_since("OTHER", FILLS_START) == ([], FILLS_START)
    with pytest.raises(BadInput):
        broker.fills_since(ACC, "latest")


def test_external_fill_changes_the_position_behind_every_session(
    broker, redis_client, feed
) -> None:
    feed.tick(at(1), "1700.00")
    sessions_keys = sorted(redis_client.keys("*"))
    fill = broker.book_external_fill(ACC, "ESZ13", -3, Decimal("1700.50"), at(2))
    assert position(broker) == {"ESZ13": -3}
    fills, _ = broker.fills_since(ACC, FILLS_START)
    assert fills == [fill]
    assert (fill.session_id, fill.client_order_id, fill.commission) == ("", "", Decimal("7.50"))
    assert sorted(redis_client.keys("*")) == sessions_keys


def test_broker_truth_survives_losing_the_sessions_redis(make_broker, redis_client, feed):
    broker = make_broker()
    feed.tick(at(1), "1700.00")
    broker.place_order(place("o1", at(0), quantity=2))
    broker.place_order(place("o2", at(0), order_type="limit", limit_price=Decimal("1600")))
    broker.book_external_fill(ACC, "GCG14", 1, Decimal("1250.0"), at(2))
    assert not redis_client.keys("paper:*")

    def truth(b: PaperBroker) -> tuple:
        orders = b.open_orders(QueryOpenOrders(ACC))
        return position(b), b.balance(QueryBalance(ACC)), orders, b.fills_since(ACC, FILLS_START)

    before = truth(broker)
    redis_client.flushdb()
    fresh = make_broker()
    assert truth(fresh) == before
    assert before[0] == {"ESZ13": 2, "GCG14": 1}
    assert fresh.match("ESZ13") == []


def test_cancel_working_filled_and_unknown_orders(broker, feed) -> None:
    broker.place_order(place("w1", at(0), order_type="limit", limit_price=Decimal("1600")))
    assert broker.cancel_order(CancelOrder(ACC, "w1")).status == "cancelled"
    again = broker.cancel_order(CancelOrder(ACC, "w1"))
    assert (again.status, again.duplicate) == ("cancelled", True)
    feed.tick(at(1), "1599.00")
    assert broker.match("ESZ13") == []
    broker.place_order(place("f1", at(0)))
    filled = broker.cancel_order(CancelOrder(ACC, "f1"))
    assert (filled.status, filled.duplicate) == ("filled", False)
    assert broker.order(QueryOrder(ACC, "f1")).filled_quantity == 1
    unknown = broker.cancel_order(CancelOrder(ACC, "nope"))
    assert (unknown.status, unknown.broker_order_id) == ("unknown", "")
    assert broker.order(QueryOrder(ACC, "nope")) is None
    assert position(broker) == {"ESZ13": 1}


def unreachable_redis() -> redis.Redis:
    """A client for a port nothing listens on, failing fast (no retry backoff)."""
    return redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


def test_unreachable_broker_raises_instead_of_reporting_flat(redis_client) -> None:
    dead = unreachable_redis()
    broker = PaperBroker(dead, redis_client, PaperConfig())
    calls = [
        lambda: broker.positions(QueryPositions(ACC)),
        lambda: broker.open_orders(QueryOpenOrders(ACC)),
        lambda: broker.balance(QueryBalance(ACC)),
        lambda: broker.order(QueryOrder(ACC, "o1")),
        lambda: broker.fills_since(ACC, FILLS_START),
        lambda: broker.place_order(place("o1", at(0))),
        lambda: broker.match("ESZ13"),
    ]
    for call in calls:
        with pytest.raises(ServiceUnavailable):
            call()


def test_unreachable_market_rests_the_order_and_match_raises(broker_db, make_broker, feed):
    dead = unreachable_redis()
    blind = PaperBroker(broker_db, dead, PaperConfig())
    assert blind.place_order(place("o1", at(0))).status == "working"
    with pytest.raises(ServiceUnavailable):
        blind.match("ESZ13")
    feed.tick(at(1), "1700.00")
    assert [f.client_order_id for f in make_broker().match("ESZ13")] == ["o1"]


def test_commands_validate_themselves() -> None:
    with pytest.raises(BadInput):
        place("o1", at(0), quantity=0)
    with pytest.raises(BadInput):
        place("o1", datetime(2013, 12, 2, 14, 30))
    with pytest.raises(BadInput):
        place("o1", at(0), order_type="limit")
    with pytest.raises(BadInput):
        place("o1", at(0), order_type="stop", limit_price=Decimal("1"))
    eastern = place("o1", T0.astimezone(timezone(timedelta(hours=-5))))
    assert eastern.decided_at == T0 and eastern.decided_at.tzinfo == UTC


def test_bad_contract_or_account_writes_nothing(broker, broker_db) -> None:
    with pytest.raises(BadInput):
        broker.place_order(place("o1", at(0), contract="XXZ13"))
    with pytest.raises(BadInput):
        broker.place_order(place("o1", at(0), account="a:b"))
    assert broker_db.keys("*") == []


def test_registry_builds_paper_by_name_only(redis_url: str, feed) -> None:
    settings = Settings(redis=RedisSettings(url=redis_url, paper_broker_url=paper_url(redis_url)))
    args = {"account": ACC, "slippage_ticks": 1, "commission_per_contract": "1.25"}
    built = build_broker("paper", args, settings)
    assert isinstance(built, PaperBroker)
    assert isinstance(built, AccountManager)
    assert broker_names() == ["paper", "tradovate"]
    assert built.config == PaperConfig(commission_per_contract=Decimal("1.25"), slippage_ticks=1)
    feed.tick(at(1), "1700.00")
    assert built.place_order(place("o1", at(0))).status == "filled"
    with pytest.raises(UnknownRegisteredName):
        build_broker("workers.brokers.paper.broker:PaperBroker", {}, settings)
    with pytest.raises(BadInput):
        build_broker("paper", {"slippage": 1}, settings)
    with pytest.raises(BadInput):
        build_broker("paper", {"starting_cash": 1.5}, settings)
    with pytest.raises(BadInput):
        same = RedisSettings(url=redis_url, paper_broker_url=redis_url)
        build_broker("paper", {}, Settings(redis=same))
