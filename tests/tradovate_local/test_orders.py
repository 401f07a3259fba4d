"""Orders over real HTTP: market/limit/stop, OSO brackets, cancel, modify, partial fills,
repeated clOrdId, and the account's positions, cash and fees after a round trip."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.kit.tradovate_local import LocalTradovate
from tests.kit.wait import wait_until

pytestmark = pytest.mark.integration

T0 = "2013-12-02T14:30:00Z"


def tick(price: str, second: int = 0, minute: int = 30, **extra: str) -> dict[str, str]:
    return {
        "symbol": "ESZ3",
        "time": f"2013-12-02T14:{minute:02d}:{second:02d}Z",
        "price": price,
        "size": "1",
        **extra,
    }


class Client:
    def __init__(self, tv: LocalTradovate) -> None:
        self.tv = tv
        self.token = tv.token()["accessToken"]
        self.account = tv.v1("GET", "account/list", token=self.token)[0]

    def get(self, path: str) -> Any:
        return self.tv.v1("GET", path, token=self.token)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.tv.v1("POST", path, body, token=self.token)

    def order(
        self, action: str = "Buy", order_type: str = "Market", qty: int = 1, **fields: Any
    ) -> dict[str, Any]:
        body = {
            "accountSpec": self.account["name"],
            "accountId": self.account["id"],
            "clOrdId": fields.pop("clOrdId", "c-1"),
            "action": action,
            "symbol": "ESZ3",
            "orderQty": qty,
            "orderType": order_type,
            "timeInForce": "Day",
            "isAutomated": True,
            **fields,
        }
        return dict(self.post("order/placeorder", body))

    def status(self, order_id: int) -> str:
        return str(self.get(f"order/item?id={order_id}")["ordStatus"])

    def fills(self, order_id: int) -> list[dict[str, Any]]:
        return list(self.get(f"fill/deps?masterid={order_id}"))


def test_market_round_trip_positions_cash_and_fees(tv: LocalTradovate) -> None:
    c = Client(tv)
    tv.ticks(tick("1800.00"))
    buy = c.order("Buy", text="sess-1")
    assert c.status(buy["orderId"]) == "Filled"
    [fill] = c.fills(buy["orderId"])
    assert (fill["price"], fill["qty"], fill["timestamp"]) == (
        Decimal("1800.00"),
        1,
        "2013-12-02T14:30:00.000Z",
    )
    assert fill["tradeDate"] == {"year": 2013, "month": 12, "day": 2}
    [version] = c.get(f"orderVersion/deps?masterid={buy['orderId']}")
    assert version["text"] == "sess-1"
    [position] = c.get("position/list")
    assert (position["netPos"], position["netPrice"]) == (1, Decimal("1800.00"))
    tv.ticks(tick("1801.25", second=15))
    sell = c.order("Sell", clOrdId="c-2")
    assert c.status(sell["orderId"]) == "Filled"
    [position] = c.get("position/list")
    assert (position["netPos"], position["bought"], position["sold"]) == (0, 1, 1)
    assert "netPrice" not in position
    assert (position["boughtValue"], position["soldValue"]) == (
        Decimal("1800.00"),
        Decimal("1801.25"),
    )
    fees = c.get("fillFee/list")
    assert [f["commission"] for f in fees] == [Decimal("2.50"), Decimal("2.50")]
    assert {f["id"] for f in fees} == {f["id"] for f in c.get("fill/list")}
    cash = c.post("cashBalance/getcashbalancesnapshot", {"accountId": c.account["id"]})
    assert cash["realizedPnL"] == Decimal("62.50")
    assert cash["totalCashValue"] == Decimal("100000") + Decimal("62.50") - Decimal("5.00")
    assert cash["openPnL"] == 0


def test_market_with_bid_ask_and_before_any_tick(tv: LocalTradovate) -> None:
    c = Client(tv)
    early = c.order("Buy")
    assert c.status(early["orderId"]) == "Working"  # no tick yet: fills at the next one
    tv.ticks(tick("1800.00", bid="1799.75", ask="1800.25"))
    wait_until(lambda: c.status(early["orderId"]) == "Filled", what="the market buy")
    assert c.fills(early["orderId"])[0]["price"] == Decimal("1800.25")
    sell = c.order("Sell", clOrdId="s")
    assert c.fills(sell["orderId"])[0]["price"] == Decimal("1799.75")


def test_limit_and_stop_fill_only_on_later_ticks(tv: LocalTradovate) -> None:
    c = Client(tv)
    tv.ticks(tick("1800.00"))
    limit = c.order("Buy", "Limit", price=1800.00)  # marketable, but only later ticks count
    stop = c.order("Sell", "Stop", stopPrice="1799.00", clOrdId="stop")
    assert (c.status(limit["orderId"]), c.status(stop["orderId"])) == ("Working", "Working")
    tv.ticks(tick("1800.25", second=1))
    assert c.status(limit["orderId"]) == "Working"
    tv.ticks(tick("1799.75", second=2))
    assert c.status(limit["orderId"]) == "Filled"
    assert c.fills(limit["orderId"])[0]["price"] == Decimal("1800.00")  # a limit gets its price
    assert c.status(stop["orderId"]) == "Working"
    tv.ticks(tick("1798.50", second=3))
    assert c.status(stop["orderId"]) == "Filled"
    [fill] = c.fills(stop["orderId"])
    assert (fill["price"], fill["timestamp"]) == (Decimal("1798.50"), "2013-12-02T14:30:03.000Z")


def test_oso_stop_works_only_after_the_parent_fill(tv: LocalTradovate) -> None:
    c = Client(tv)
    tv.ticks(tick("1800.00"))
    body = {
        "accountSpec": c.account["name"],
        "accountId": c.account["id"],
        "clOrdId": "e1",
        "action": "Buy",
        "symbol": "ESZ3",
        "orderQty": 1,
        "orderType": "Limit",
        "price": "1799.00",
        "timeInForce": "Day",
        "isAutomated": True,
        "bracket1": {"action": "Sell", "orderType": "Stop", "stopPrice": "1798.00"},
    }
    answer = c.post("order/placeoso", body)
    parent, child = answer["orderId"], answer["oso1Id"]
    assert c.get(f"order/item?id={child}")["parentId"] == parent
    assert c.status(child) == "Suspended"
    tv.ticks(tick("1797.50", second=1))  # fills the parent; the stop only works from now on
    assert c.status(parent) == "Filled"
    assert c.status(child) == "Working"
    assert c.fills(child) == []
    tv.ticks(tick("1797.75", second=2))
    assert c.status(child) == "Filled"
    [position] = c.get("position/list")
    assert position["netPos"] == 0


def test_oso_bracket_cancelled_with_an_unfilled_parent(tv: LocalTradovate) -> None:
    c = Client(tv)
    body = {
        "accountId": c.account["id"],
        "action": "Buy",
        "symbol": "ESZ3",
        "orderQty": 2,
        "orderType": "Limit",
        "price": 1700,
        "isAutomated": True,
        "bracket1": {"action": "Sell", "orderType": "Stop", "stopPrice": 1690},
    }
    answer = c.post("order/placeoso", body)
    cancelled = c.post("order/cancelorder", {"orderId": answer["orderId"], "isAutomated": True})
    assert "commandId" in cancelled
    assert c.status(answer["orderId"]) == "Canceled"
    assert c.status(answer["oso1Id"]) == "Canceled"
    again = c.post("order/cancelorder", {"orderId": answer["orderId"], "isAutomated": True})
    assert again["failureReason"] == "TooLate"
    commands = c.get(f"command/deps?masterid={answer['orderId']}")
    assert [cmd["commandType"] for cmd in commands] == ["New", "Cancel"]


def test_modify_a_working_limit(tv: LocalTradovate) -> None:
    c = Client(tv)
    tv.ticks(tick("1800.00"))
    order = c.order("Buy", "Limit", price="1790.00")
    answer = c.post(
        "order/modifyorder",
        {
            "orderId": order["orderId"],
            "orderQty": 2,
            "orderType": "Limit",
            "price": "1799.50",
            "timeInForce": "Day",
            "isAutomated": True,
        },
    )
    assert "commandId" in answer
    versions = c.get(f"orderVersion/deps?masterid={order['orderId']}")
    assert [(v["orderQty"], v["price"]) for v in versions] == [
        (1, Decimal("1790.00")),
        (2, Decimal("1799.50")),
    ]
    tv.ticks(tick("1799.50", second=1))
    assert c.status(order["orderId"]) == "Filled"
    assert sum(f["qty"] for f in c.fills(order["orderId"])) == 2


def test_partial_fills(tv: LocalTradovate) -> None:
    c = Client(tv)
    tv.control("POST", "faults", {"partial_fills": 3})
    tv.ticks(tick("1800.00"))
    order = c.order("Buy", "Limit", qty=3, price="1800.00")
    tv.ticks(tick("1800.00", second=1))
    assert c.status(order["orderId"]) == "Working"
    assert [f["qty"] for f in c.fills(order["orderId"])] == [1]
    tv.ticks(tick("1800.00", second=2), tick("1800.00", second=3))
    assert c.status(order["orderId"]) == "Filled"
    assert [f["qty"] for f in c.fills(order["orderId"])] == [1, 1, 1]
    second = c.order("Buy", qty=2, clOrdId="next")  # the fault was for one order only
    assert [f["qty"] for f in c.fills(second["orderId"])] == [2]


def test_repeated_cl_ord_id_creates_a_second_order(tv: LocalTradovate) -> None:
    c = Client(tv)
    first = c.order("Buy", "Limit", price="1700", clOrdId="same")
    second = c.order("Buy", "Limit", price="1700", clOrdId="same")
    assert first["orderId"] != second["orderId"]
    news = [cmd for cmd in c.get("command/list") if cmd.get("clOrdId") == "same"]
    assert {cmd["orderId"] for cmd in news} == {first["orderId"], second["orderId"]}


def test_refusals(tv: LocalTradovate) -> None:
    c = Client(tv)
    assert c.order(symbol="ESZ9")["failureReason"] == "InvalidContract"
    assert c.order(order_type="Limit")["failureReason"] == "InvalidPrice"
    tv.control("POST", "faults", {"reject_next_order": {"reason": "TradingLocked", "text": "no"}})
    assert c.order() == {"failureReason": "TradingLocked", "failureText": "no"}
    assert "orderId" in c.order("Buy", "Limit", price="1700")


def test_maintenance_answers_503_for_queries(tv: LocalTradovate) -> None:
    c = Client(tv)
    tv.control("POST", "faults", {"maintenance": True})
    for path in ("position/list", "order/list", "fill/list"):
        assert tv.call("GET", "/v1/" + path, token=c.token)[0] == 503
    status, _, _ = tv.call(
        "POST",
        "/v1/cashBalance/getcashbalancesnapshot",
        {"accountId": c.account["id"]},
        token=c.token,
    )
    assert status == 503
    tv.control("DELETE", "faults")
    assert tv.call("GET", "/v1/position/list", token=c.token)[0] == 200


def test_stop_leg_never_worked(tv: LocalTradovate) -> None:
    c = Client(tv)
    tv.control("POST", "faults", {"stop_leg_never_worked": True})
    tv.ticks(tick("1800.00"))
    body = {
        "accountId": c.account["id"],
        "action": "Buy",
        "symbol": "ESZ3",
        "orderQty": 1,
        "orderType": "Market",
        "isAutomated": True,
        "bracket1": {"action": "Sell", "orderType": "Stop", "stopPrice": "1799.00"},
    }
    answer = c.post("order/placeoso", body)
    assert c.status(answer["orderId"]) == "Filled"
    tv.ticks(tick("1798.00", second=1), tick("1797.00", second=2))
    assert c.status(answer["oso1Id"]) == "Suspended"
    assert c.fills(answer["oso1Id"]) == []
    state = tv.control("GET", "state")
    assert [o["neverWorks"] for o in state["orders"] if o["id"] == answer["oso1Id"]] == [True]
