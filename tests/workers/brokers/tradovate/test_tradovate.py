"""The Tradovate adapter offline: ``httpx.MockTransport`` answering with the documented shapes
(``documented.py``), the private Redis of the test session for the shared token and the place
claims, sleeps and clocks injected (nothing here really waits)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis

from tests.workers.brokers.tradovate import documented as doc
from trading.exceptions import BadInput, RetryLater, ServiceUnavailable
from workers.brokers.base import FILLS_START, AccountManager
from workers.brokers.commands import (
    CancelOrder,
    PlaceOrder,
    QueryBalance,
    QueryOpenOrders,
    QueryOrder,
    QueryPositions,
)
from workers.brokers.registry import build_broker
from workers.brokers.tradovate.auth import Tokens
from workers.brokers.tradovate.broker import TradovateBroker, check_live
from workers.brokers.tradovate.rest import RestClient
from workers.brokers.tradovate.symbols import from_tradovate, to_tradovate
from workers.settings import Settings, TradovateSettings

NOW = datetime(2026, 12, 7, 0, 30, tzinfo=UTC).timestamp()
DECIDED = datetime(2013, 10, 7, 13, 31, tzinfo=UTC)
SETTINGS = TradovateSettings(
    rest_url="http://tradovate.test/v1",
    username="trader",
    password="very-secret-pw",  # type: ignore[arg-type]
    app_id="tradefleet",
    cid=7,
    sec="very-secret-sec",  # type: ignore[arg-type]
)


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> doc.FakeTradovate:
    return doc.FakeTradovate()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(
    fake: doc.FakeTradovate, client: redis.Redis, clock: Clock, account: str = "DEMO0001"
) -> TradovateBroker:
    rest = RestClient(SETTINGS.rest_url, transport=fake.transport, sleep=clock.sleep)
    tokens = Tokens(SETTINGS, rest, client, clock=clock, sleep=clock.sleep)
    return TradovateBroker(rest, tokens, client, account)


@pytest.fixture
def broker(
    fake: doc.FakeTradovate, redis_client: redis.Redis, clock: Clock
) -> Iterator[TradovateBroker]:
    yield make(fake, redis_client, clock)


def entry(coid: str = "abc123-1-0", **extra: object) -> PlaceOrder:
    fields: dict[str, object] = {
        "account": "DEMO0001",
        "session_id": "sess-es-1",
        "client_order_id": coid,
        "contract": "ESZ13",
        "side": "buy",
        "quantity": 1,
        "order_type": "market",
    }
    fields.update(extra)
    return PlaceOrder(**fields, decided_at=DECIDED)  # type: ignore[arg-type]


def sent(fake: doc.FakeTradovate, path: str) -> list[dict[str, object]]:
    return [
        json.loads(r.content) for r in fake.requests if r.url.path == f"/v1/{path}" and r.content
    ]


# symbols -------------------------------------------------------------------------------------


def test_symbols_both_ways() -> None:
    assert to_tradovate("ESZ13") == "ESZ3"
    assert to_tradovate("GCH27") == "GCH7"
    assert from_tradovate("ESZ3", 2013) == "ESZ13"
    assert from_tradovate("ESZ3", 2023) == "ESZ23"
    assert from_tradovate("GCH27", 2027) == "GCH27"
    with pytest.raises(BadInput):
        from_tradovate("ESZ3", 2014)
    with pytest.raises(BadInput):
        to_tradovate("ESZ3")


# placing -------------------------------------------------------------------------------------


def test_a_market_order_goes_out_automated_with_its_ids(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    assert isinstance(broker, AccountManager)
    ack = broker.place_order(entry())
    assert (ack.client_order_id, ack.status, ack.duplicate) == ("abc123-1-0", "working", False)
    (body,) = sent(fake, "order/placeorder")
    assert body["clOrdId"] == "abc123-1-0" and body["text"] == "sess-es-1"
    assert body["isAutomated"] is True and body["symbol"] == "ESZ3"
    assert (body["accountSpec"], body["accountId"], body["action"]) == ("DEMO0001", 501, "Buy")
    assert (body["orderType"], body["timeInForce"], body["orderQty"]) == ("Market", "Day", 1)


def test_a_limit_price_goes_out_as_its_exact_digits(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    broker.place_order(entry(order_type="limit", limit_price=Decimal("1680.25")))
    raw = next(r.content for r in fake.requests if r.url.path.endswith("placeorder"))
    assert b'"price":1680.25' in raw


def test_an_entry_with_its_stop_is_one_oso_and_the_stop_send_finds_it(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    stop = entry(
        "abc123-stop-1-0", side="sell", order_type="stop", stop_price=Decimal("1670.50"),
        parent_client_order_id="abc123-1-0",
    )  # fmt: skip
    ack = broker.place_order(entry(attached_stop=stop))
    assert ack.status == "working"
    (body,) = sent(fake, "order/placeoso")
    assert body["bracket1"] == {
        "action": "Sell", "orderType": "Stop", "stopPrice": 1670.5, "timeInForce": "Day",
        "clOrdId": "abc123-stop-1-0", "text": "sess-es-1",
    }  # fmt: skip
    assert not sent(fake, "order/placeorder")
    again = broker.place_order(stop)
    assert again.duplicate and again.status == "working"
    assert not sent(fake, "order/placeorder"), "the stop is not placed twice"


def test_a_bracket_without_its_own_clordid_is_found_through_its_parent(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    parent = fake.add_order(cl_ord_id="abc123-1-0", text="sess-es-1", status="Filled")
    fake.add_order(
        cl_ord_id=None, text=None, action="Sell", order_type="Stop", stop_price=1670.5,
        parent_id=parent,
    )  # fmt: skip
    stop = entry(
        "abc123-stop-1-0", side="sell", order_type="stop", stop_price=Decimal("1670.50"),
        parent_client_order_id="abc123-1-0",
    )  # fmt: skip
    assert broker.place_order(stop).duplicate
    order = broker.order(QueryOrder("DEMO0001", "abc123-stop-1-0"))
    assert order is not None, "the bracket the place found is remembered as that stop"
    assert order.stop_price == Decimal("1670.50")
    (working,) = [o for o in broker.open_orders(QueryOpenOrders("DEMO0001"))]
    assert (working.client_order_id, working.session_id) == ("abc123-stop-1-0", "sess-es-1")


def test_a_resend_of_a_placed_client_order_id_is_a_duplicate(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    first = broker.place_order(entry())
    again = broker.place_order(entry())
    assert again.duplicate and again.broker_order_id == first.broker_order_id
    assert len(sent(fake, "order/placeorder")) == 1


def test_a_placed_order_is_found_again_by_its_id_without_the_command_list(
    broker: TradovateBroker, fake: doc.FakeTradovate, redis_client: redis.Redis, clock: Clock
) -> None:
    """Once placed, a clOrdId's order id is remembered in the sessions' Redis: another process
    (another broker instance) finds the order and its OSO bracket by id alone."""
    stop = entry(
        "abc123-stop-1-0", side="sell", order_type="stop", stop_price=Decimal("1670.50"),
        parent_client_order_id="abc123-1-0",
    )  # fmt: skip
    placed = broker.place_order(entry(attached_stop=stop))
    other = make(fake, redis_client, clock)
    fake.requests.clear()
    found = other.order(QueryOrder("DEMO0001", "abc123-1-0"))
    bracket = other.order(QueryOrder("DEMO0001", "abc123-stop-1-0"))
    assert found is not None and found.broker_order_id == placed.broker_order_id
    assert bracket is not None and bracket.stop_price == Decimal("1670.50")
    assert "command/list" not in fake.paths()
    assert other.place_order(entry()).duplicate


def test_a_remembered_id_the_broker_does_not_know_is_looked_up_again(
    broker: TradovateBroker, fake: doc.FakeTradovate, redis_client: redis.Redis
) -> None:
    placed = broker.place_order(entry())
    redis_client.hset("tf:tradovate:DEMO0001:order-ids", "abc123-1-0", "999999")
    broker._order_ids.clear()
    found = broker.order(QueryOrder("DEMO0001", "abc123-1-0"))
    assert found is not None and found.broker_order_id == placed.broker_order_id
    assert redis_client.hget("tf:tradovate:DEMO0001:order-ids", "abc123-1-0") == (
        placed.broker_order_id.encode()
    )


def test_a_resend_nobody_remembers_is_found_in_the_list_under_the_claim(
    broker: TradovateBroker, fake: doc.FakeTradovate, redis_client: redis.Redis, clock: Clock
) -> None:
    """The sessions' Redis lost (no claim, no remembered id): the resend finds the order in
    the account's command list and places nothing."""
    first = broker.place_order(entry())
    redis_client.flushdb()
    again = make(fake, redis_client, clock).place_order(entry())
    assert again.duplicate and again.broker_order_id == first.broker_order_id
    assert len(sent(fake, "order/placeorder")) == 1


@pytest.mark.integration
def test_a_claim_held_by_another_process_is_retry_later(
    broker: TradovateBroker, fake: doc.FakeTradovate, redis_client: redis.Redis
) -> None:
    redis_client.set("tf:tradovate:DEMO0001:claim:abc123-1-0", "other", ex=30)
    with pytest.raises(RetryLater):
        broker.place_order(entry())
    assert not sent(fake, "order/placeorder")
    assert redis_client.ttl("tf:tradovate:DEMO0001:claim:abc123-1-0") > 0


def test_a_rejected_order_is_answered_rejected(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    # https://partner.tradovate.com/api/rest-api-endpoints/orders/place-order.md (failureReason)
    fake.script(
        "order/placeorder", doc.answer({"failureReason": "RiskCheckFailed", "failureText": "no"})
    )
    assert broker.place_order(entry()).status == "rejected"


# queries -------------------------------------------------------------------------------------


def test_a_fill_comes_back_with_its_session_and_client_order_id(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    other = fake.add_order(account_id=999, cl_ord_id="x", text="y")
    fake.add_fill(other)
    order_id = fake.add_order(cl_ord_id="abc123-1-0", text="sess-es-1", action="Sell")
    fill_id = fake.add_fill(order_id, qty=2, price="1680.25", commission="2.50")
    fills, cursor = broker.fills_since("DEMO0001", FILLS_START)
    (fill,) = fills
    assert cursor == f"{fill_id}-0"
    assert (fill.execution_id, fill.client_order_id, fill.session_id) == (
        str(fill_id), "abc123-1-0", "sess-es-1",
    )  # fmt: skip
    assert (fill.contract, fill.quantity, fill.price) == ("ESZ13", -2, Decimal("1680.25"))
    assert fill.commission == Decimal("2.50") and fill.time.tzinfo is not None
    assert fill.broker_order_id == str(order_id)
    assert broker.fills_since("DEMO0001", cursor) == ([], cursor)


def test_fills_of_other_accounts_cost_one_order_read_each_once(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    """An order's account never changes: the fills of other accounts above the cursor are
    attributed by one /order/item each, once; many unknown orders take one /order/list."""
    other = fake.add_order(account_id=999, cl_ord_id="x", text="y")
    fake.add_fill(other)
    assert broker.fills_since("DEMO0001", FILLS_START) == ([], FILLS_START)
    fake.requests.clear()
    assert broker.fills_since("DEMO0001", FILLS_START) == ([], FILLS_START)
    assert fake.paths() == ["fill/list"]
    mine = fake.add_order(cl_ord_id="abc123-1-0", text="sess-es-1")
    fake.add_fill(mine)
    (fill,) = broker.fills_since("DEMO0001", FILLS_START)[0]
    assert (fill.client_order_id, fill.broker_order_id) == ("abc123-1-0", str(mine))
    assert "order/list" not in fake.paths()
    for n in range(9):
        fake.add_fill(fake.add_order(account_id=999, cl_ord_id=f"x{n}", text="y"))
    fake.requests.clear()
    assert len(broker.fills_since("DEMO0001", FILLS_START)[0]) == 1
    assert fake.paths().count("order/list") == 1 and "order/item" not in fake.paths()


def test_positions_open_orders_order_and_balance(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    # https://partner.tradovate.com/api/rest-api-endpoints/positions/position-list.md
    fake.positions = [
        {"id": 1, "accountId": 501, "contractId": 1001, "timestamp": "2013-10-07T13:31:00Z",
         "tradeDate": {"year": 2013, "month": 10, "day": 7}, "netPos": -2, "netPrice": 1680.25,
         "bought": 0, "boughtValue": 0, "sold": 2, "soldValue": 3360.5, "prevPos": 0},
        {"id": 2, "accountId": 501, "contractId": 1003, "timestamp": "2013-10-07T13:31:00Z",
         "tradeDate": {"year": 2013, "month": 10, "day": 7}, "netPos": 0, "netPrice": None,
         "bought": 1, "boughtValue": 1300, "sold": 1, "soldValue": 1301, "prevPos": 0},
        {"id": 3, "accountId": 999, "contractId": 1002, "timestamp": "2013-10-07T13:31:00Z",
         "tradeDate": {"year": 2013, "month": 10, "day": 7}, "netPos": 5, "netPrice": 1700,
         "bought": 5, "boughtValue": 8500, "sold": 0, "soldValue": 0, "prevPos": 0},
    ]  # fmt: skip
    assert broker.positions(QueryPositions("DEMO0001")) == {"ESZ13": -2}
    # the open position's average is netPrice (flat and other accounts' positions left out)
    assert broker.average_prices(QueryPositions("DEMO0001")) == {"ESZ13": Decimal("1680.25")}
    filled = fake.add_order(cl_ord_id="abc123-1-0", text="sess-es-1", action="Sell", qty=2)
    fake.add_fill(filled, qty=2, commission="5.00")
    fake.add_order(
        cl_ord_id="abc123-stop-1-0", text="sess-es-1", order_type="Stop", stop_price=1690.0,
        contract_id=1002,
    )  # fmt: skip
    (working,) = broker.open_orders(QueryOpenOrders("DEMO0001"))
    assert (working.client_order_id, working.contract, working.order_type) == (
        "abc123-stop-1-0", "ESH14", "stop",
    )  # fmt: skip
    assert working.stop_price == Decimal("1690.0") and working.status == "working"
    done = broker.order(QueryOrder("DEMO0001", "abc123-1-0"))
    assert done is not None and done.status == "filled" and done.filled_quantity == 2
    assert done.average_fill_price == Decimal("1680.25")
    assert broker.order(QueryOrder("DEMO0001", "never-sent")) is None
    balance = broker.balance(QueryBalance("DEMO0001"))
    assert (balance.cash, balance.commissions) == (Decimal("99995.00"), Decimal("5.00"))


def test_an_order_placed_outside_tradefleet_is_found_by_the_id_it_is_given(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    """An order without a clOrdId (a trader's own platform) is ``TV-<order id>``; reconciliation
    adopts it by that id and queries it by that id again (it must not come back unknown)."""
    outside = fake.add_order(
        cl_ord_id=None, text=None, action="Sell", order_type="Limit", price=3000
    )
    ours = fake.add_order(cl_ord_id="abc123-1-0", text="sess-es-1")
    other_account = fake.add_order(account_id=999, cl_ord_id=None, text=None)
    (adopted,) = [o for o in broker.open_orders(QueryOpenOrders("DEMO0001")) if o.session_id == ""]
    assert adopted.client_order_id == f"TV-{outside}"
    found = broker.order(QueryOrder("DEMO0001", f"TV-{outside}"))
    assert found is not None and found.broker_order_id == str(outside)
    assert (found.side, found.limit_price, found.status) == ("sell", Decimal("3000"), "working")
    assert broker.order(QueryOrder("DEMO0001", f"TV-{ours}")) is None, "it has an id of ours"
    assert broker.order(QueryOrder("DEMO0001", f"TV-{other_account}")) is None
    assert broker.order(QueryOrder("DEMO0001", "TV-999999")) is None
    assert broker.cancel_order(CancelOrder("DEMO0001", f"TV-{outside}")).status == "cancelled"


def test_cancel_and_modify(broker: TradovateBroker, fake: doc.FakeTradovate) -> None:
    order_id = fake.add_order(
        cl_ord_id="abc123-stop-1-0", text="sess-es-1", order_type="Stop", stop_price=1670.0
    )
    moved = broker.modify_stop("DEMO0001", "abc123-stop-1-0", Decimal("1672.25"))
    assert moved.status == "working"
    (body,) = sent(fake, "order/modifyorder")
    assert (body["orderId"], body["stopPrice"], body["orderType"]) == (order_id, 1672.25, "Stop")
    ack = broker.cancel_order(CancelOrder("DEMO0001", "abc123-stop-1-0"))
    assert ack.status == "cancelled"
    again = broker.cancel_order(CancelOrder("DEMO0001", "abc123-stop-1-0"))
    assert again.status == "cancelled" and again.duplicate
    assert broker.cancel_order(CancelOrder("DEMO0001", "nope")).status == "unknown"
    filled = fake.add_order(cl_ord_id="abc123-1-0", text="sess-es-1")
    fake.add_fill(filled)
    assert broker.cancel_order(CancelOrder("DEMO0001", "abc123-1-0")).status == "filled"


@pytest.mark.parametrize("failure", [doc.status(503), doc.status(500), doc.timeout()])
@pytest.mark.parametrize("path", ["position/list", "order/list", "fill/list"])
def test_never_flat_on_a_maintenance_answer_or_a_timeout(
    broker: TradovateBroker, fake: doc.FakeTradovate, path: str, failure: object
) -> None:
    fake.add_fill(fake.add_order(cl_ord_id="abc123-1-0", text="s"))
    broker.account_id()
    fake.script(path, failure)  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailable):
        if path == "position/list":
            broker.positions(QueryPositions("DEMO0001"))
        elif path == "order/list":
            broker.open_orders(QueryOpenOrders("DEMO0001"))
        else:
            broker.fills_since("DEMO0001", FILLS_START)


# rate limits, penalty tickets, tokens -------------------------------------------------------


def test_429_waits_retry_after_then_backs_off_and_gives_up(
    broker: TradovateBroker, fake: doc.FakeTradovate, clock: Clock
) -> None:
    broker.account_id()
    fake.script("position/list", doc.status(429, {"Retry-After": "7"}), doc.status(429))
    assert broker.positions(QueryPositions("DEMO0001")) == {}
    assert clock.slept == [7.0, 2.0]
    fake.script("position/list", *[doc.status(429)] * 10)
    clock.slept.clear()
    with pytest.raises(ServiceUnavailable, match="429"):
        broker.positions(QueryPositions("DEMO0001"))
    assert clock.slept == [1.0, 2.0, 4.0, 8.0], "bounded, exponential"


def test_a_penalty_ticket_is_waited_and_sent_back(
    broker: TradovateBroker, fake: doc.FakeTradovate, clock: Clock
) -> None:
    fake.token_answers = [doc.penalty(5), doc.token_answer()]
    broker.account_id()
    assert clock.slept == [5.0]
    first, second = sent(fake, "auth/accesstokenrequest")
    assert "p-ticket" not in first and second["p-ticket"] == "ticket-xyz"
    assert second["name"] == "trader" and second["cid"] == 7


def test_a_captcha_stops_with_one_line_for_the_operator(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    fake.token_answers = [doc.penalty(5, captcha=True)]
    with pytest.raises(ServiceUnavailable) as caught:
        broker.account_id()
    assert "log in once by hand" in str(caught.value) and "\n" not in str(caught.value)


def test_bad_credentials_are_one_line_without_the_secret(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    fake.token_answers = [{"errorText": "Incorrect username or password."}]
    with pytest.raises(ServiceUnavailable) as caught:
        broker.account_id()
    assert "Incorrect username" in str(caught.value)
    assert "very-secret" not in str(caught.value) + repr(broker.api.tokens.__dict__)


def test_a_401_takes_one_fresh_token_and_retries_once(
    broker: TradovateBroker, fake: doc.FakeTradovate
) -> None:
    broker.account_id()
    fake.valid_tokens = set()
    fake.token_answers = [doc.token_answer("tok-2")]
    assert broker.positions(QueryPositions("DEMO0001")) == {}
    assert fake.paths()[-3:] == ["position/list", "auth/accesstokenrequest", "position/list"]
    fake.script("position/list", doc.status(401), doc.status(401))
    with pytest.raises(ServiceUnavailable, match="401"):
        broker.positions(QueryPositions("DEMO0001"))


def test_a_token_near_expiry_is_renewed(
    broker: TradovateBroker, fake: doc.FakeTradovate, clock: Clock
) -> None:
    tokens = broker.api.tokens
    assert tokens.access_token() == "tok-1" and tokens.user_id() == 77
    clock.now = datetime(2026, 12, 7, 1, 50, tzinfo=UTC).timestamp()  # 10 min left
    assert tokens.access_token() == "tok-1-renewed"
    assert tokens.md_access_token() == "md-tok-1", "renewal keeps the market-data token"
    assert fake.paths().count("auth/accesstokenrequest") == 1


@pytest.mark.integration
def test_the_processes_of_a_machine_share_one_token(
    fake: doc.FakeTradovate, redis_client: redis.Redis, clock: Clock
) -> None:
    brokers = [make(fake, redis_client, clock) for _ in range(5)]
    assert {b.api.tokens.access_token() for b in brokers} == {"tok-1"}
    assert fake.paths().count("auth/accesstokenrequest") == 1
    assert b"very-secret" not in b"".join(
        redis_client.get(k) or b"" for k in redis_client.keys("tf:tradovate:*")
    )


@pytest.mark.integration
def test_a_process_waits_for_the_one_holding_the_token_lock(
    fake: doc.FakeTradovate, redis_client: redis.Redis, clock: Clock
) -> None:
    broker = make(fake, redis_client, clock)
    key = broker.api.tokens.key
    redis_client.set(key + ":lock", "another", ex=30)
    with pytest.raises(ServiceUnavailable, match="another process"):
        broker.api.tokens.access_token()
    assert "auth/accesstokenrequest" not in fake.paths()
    assert sum(clock.slept) == pytest.approx(20.0), "bounded waits, never a tight loop"


# building ------------------------------------------------------------------------------------


def test_live_is_refused_without_allow_live() -> None:
    with pytest.raises(BadInput) as caught:
        check_live(TradovateSettings(environment="live"))
    assert "TRADEFLEET_TRADOVATE_ALLOW_LIVE" in str(caught.value)
    check_live(TradovateSettings(environment="live", allow_live=True))
    check_live(TradovateSettings())


def test_the_registry_takes_only_the_account(redis_url: str) -> None:
    settings = Settings().model_copy(
        update={"redis": Settings().redis.model_copy(update={"url": redis_url})}
    )
    built = build_broker("tradovate", {"account": "DEMO0001"}, settings)
    assert isinstance(built, TradovateBroker) and built.account == "DEMO0001"
    with pytest.raises(BadInput, match="unknown tradovate broker args"):
        build_broker("tradovate", {"account": "A", "password": "x"}, settings)
    with pytest.raises(BadInput):
        build_broker("tradovate", {}, settings)
    live = settings.model_copy(update={"tradovate": TradovateSettings(environment="live")})
    with pytest.raises(BadInput, match="ALLOW_LIVE"):
        build_broker("tradovate", {"account": "DEMO0001"}, live)
