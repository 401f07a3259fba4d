"""The user and market-data WebSockets over a real connection: framing, authorization,
user/syncrequest then props, props faults, drop_sockets, quotes and minute-bar charts."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.kit.tradovate_local import LocalTradovate, Ws, props

pytestmark = pytest.mark.integration


@pytest.fixture
def sockets() -> Iterator[list[Ws]]:
    opened: list[Ws] = []
    yield opened
    for ws in opened:
        ws.close()


def connect(url: str, token: str, opened: list[Ws]) -> Ws:
    ws = Ws(url)
    opened.append(ws)
    assert ws.recv(5) == "o"
    answer = ws.response(ws.request("authorize", token))
    assert answer["s"] == 200
    return ws


def synced(tv: LocalTradovate, opened: list[Ws]) -> tuple[Ws, dict[str, Any], str]:
    token = tv.token()
    ws = connect(tv.ws_url, token["accessToken"], opened)
    answer = ws.response(ws.request("user/syncrequest", {"users": [token["userId"]]}))
    assert answer["s"] == 200
    return ws, answer["d"], token["accessToken"]


def place(tv: LocalTradovate, token: str, account_id: int, **fields: Any) -> int:
    body = {
        "accountId": account_id,
        "action": "Buy",
        "symbol": "ESZ3",
        "orderQty": 1,
        "orderType": "Market",
        "isAutomated": True,
        "clOrdId": "x",
        **fields,
    }
    return int(tv.v1("POST", "order/placeorder", body, token=token)["orderId"])


def tick(price: str, second: int = 0, minute: int = 30) -> dict[str, str]:
    return {
        "symbol": "ESZ13",
        "time": f"2013-12-02T14:{minute:02d}:{second:02d}Z",
        "price": price,
        "size": "2",
    }


def test_bad_token_and_requests_before_authorize(tv: LocalTradovate, sockets: list[Ws]) -> None:
    ws = Ws(tv.ws_url)
    sockets.append(ws)
    assert ws.recv(5) == "o"
    assert ws.response(ws.request("user/syncrequest", {"users": [1]}))["s"] == 401
    assert ws.response(ws.request("authorize", "wrong"))["s"] == 401


def test_server_heartbeats(tv: LocalTradovate, sockets: list[Ws]) -> None:
    ws = connect(tv.ws_url, tv.token()["accessToken"], sockets)
    assert ws.recv(5) == "h"


def test_syncrequest_then_props_for_a_fill(tv: LocalTradovate, sockets: list[Ws]) -> None:
    ws, snapshot, token = synced(tv, sockets)
    for key in (
        "users",
        "accounts",
        "cashBalances",
        "positions",
        "orders",
        "fills",
        "commands",
        "orderVersions",
        "contracts",
    ):
        assert key in snapshot
    account_id = snapshot["accounts"][0]["id"]
    assert snapshot["cashBalances"][0]["amount"] == Decimal("100000")
    tv.ticks(tick("1800.00"))
    order_id = place(tv, token, account_id)
    got = ws.messages_until(
        lambda ms: any(t == "order" and e["ordStatus"] == "Filled" for t, _, e in props(ms)),
        timeout=10,
    )
    kinds = [(t, e) for t, e, _ in props(got)]
    assert ("command", "Created") in kinds and ("orderVersion", "Created") in kinds
    assert ("fill", "Created") in kinds and ("fillFee", "Created") in kinds
    assert ("position", "Created") in kinds
    fill = next(ent for t, _, ent in props(got) if t == "fill")
    assert (fill["orderId"], fill["price"]) == (order_id, Decimal("1800.00"))
    statuses = [ent["ordStatus"] for t, _, ent in props(got) if t == "order"]
    assert statuses[0] == "Working" and statuses[-1] == "Filled"
    # REST over the socket
    answer = ws.response(ws.request("position/list"))
    assert answer["s"] == 200 and answer["d"][0]["netPos"] == 1


def test_duplicate_and_reordered_props(tv: LocalTradovate, sockets: list[Ws]) -> None:
    ws, snapshot, token = synced(tv, sockets)
    account_id = snapshot["accounts"][0]["id"]
    tv.control("POST", "faults", {"duplicate_props": True, "reorder_props": True})
    place(tv, token, account_id, orderType="Limit", price="1700")
    got = ws.messages_until(lambda ms: sum(1 for _ in props(ms)) >= 6, timeout=10)
    kinds = [(t, e) for t, e, _ in props(got)]
    # order Created, orderVersion Created, command Created: reversed, each twice
    assert kinds[:6] == [
        ("orderVersion", "Created"),
        ("orderVersion", "Created"),
        ("order", "Created"),
        ("order", "Created"),
        ("command", "Created"),
        ("command", "Created"),
    ]


def test_drop_sockets_closes_every_socket(tv: LocalTradovate, sockets: list[Ws]) -> None:
    token = tv.token()
    user = connect(tv.ws_url, token["accessToken"], sockets)
    md = connect(tv.md_url, token["mdAccessToken"], sockets)
    tv.control("POST", "faults", {"drop_sockets": True})
    for ws in (user, md):
        while (frame := ws.recv(5)) is not None:
            assert frame in ("h",) or frame.startswith("c")
    assert tv.control("GET", "state")["sockets"] == 0
    connect(tv.ws_url, token["accessToken"], sockets)  # and a new one works


def test_quotes(tv: LocalTradovate, sockets: list[Ws]) -> None:
    md = connect(tv.md_url, tv.token()["mdAccessToken"], sockets)
    tv.ticks({**tick("1800.00"), "bid": "1799.75", "ask": "1800.25"})
    assert md.response(md.request("md/subscribeQuote", {"symbol": "ESZ3"}))["s"] == 200
    got = md.messages_until(lambda ms: any(m.get("e") == "md" for m in ms))
    quote = next(m for m in got if m.get("e") == "md")["d"]["quotes"][0]
    assert quote["entries"]["Trade"] == {"price": Decimal("1800.00"), "size": 2}
    assert quote["entries"]["Bid"]["price"] == Decimal("1799.75")
    assert quote["entries"]["Offer"]["price"] == Decimal("1800.25")
    assert quote["timestamp"] == "2013-12-02T14:30:00.000Z"
    tv.ticks(tick("1801.00", second=5))
    got = md.messages_until(lambda ms: any(m.get("e") == "md" for m in ms))
    quote = next(m for m in got if m.get("e") == "md")["d"]["quotes"][0]
    assert quote["entries"]["Trade"]["price"] == Decimal("1801.00")
    assert quote["entries"]["TotalTradeVolume"]["size"] == 4
    assert quote["entries"]["HighPrice"]["price"] == Decimal("1801.00")
    assert md.response(md.request("md/unsubscribeQuote", {"symbol": "ESZ3"}))["s"] == 200


def test_chart_history_then_live_bars(tv: LocalTradovate, sockets: list[Ws]) -> None:
    md = connect(tv.md_url, tv.token()["accessToken"], sockets)
    tv.ticks(
        tick("1800.00", 0, 30),
        tick("1802.00", 30, 30),
        tick("1799.00", 45, 30),
        tick("1801.00", 0, 31),
        tick("1801.50", 0, 32),
    )
    request = {
        "symbol": "ESZ3",
        "chartDescription": {
            "underlyingType": "MinuteBar",
            "elementSize": 1,
            "elementSizeUnit": "UnderlyingUnits",
            "withHistogram": False,
        },
        "timeRange": {"asMuchAsElements": 2, "closestTimestamp": "2013-12-02T14:31:30Z"},
    }
    answer = md.response(md.request("md/getChart", request))
    historical, realtime = answer["d"]["historicalId"], answer["d"]["realtimeId"]
    got = md.messages_until(
        lambda ms: any(c.get("eoh") for m in ms if m.get("e") == "chart" for c in m["d"]["charts"])
    )
    charts = [c for m in got if m.get("e") == "chart" for c in m["d"]["charts"]]
    bars = [b for c in charts if c["id"] == historical for b in c.get("bars", [])]
    assert [(b["timestamp"], b["open"], b["high"], b["low"], b["close"]) for b in bars] == [
        (
            "2013-12-02T14:30:00.000Z",
            Decimal("1800.00"),
            Decimal("1802.00"),
            Decimal("1799.00"),
            Decimal("1799.00"),
        ),
        (
            "2013-12-02T14:31:00.000Z",
            Decimal("1801.00"),
            Decimal("1801.00"),
            Decimal("1801.00"),
            Decimal("1801.00"),
        ),
    ]
    assert {c["td"] for c in charts if "td" in c} == {20131202}
    tv.ticks(tick("1803.00", 10, 32))
    got = md.messages_until(lambda ms: any(m.get("e") == "chart" for m in ms))
    [live] = [c for m in got if m.get("e") == "chart" for c in m["d"]["charts"]]
    assert live["id"] == realtime
    assert (live["bars"][0]["open"], live["bars"][0]["close"]) == (
        Decimal("1801.50"),
        Decimal("1803.00"),
    )
    assert md.response(md.request("md/cancelChart", {"subscriptionId": realtime}))["s"] == 200


def test_a_silent_client_is_dropped(start_tv: Any, sockets: list[Ws]) -> None:
    tv = start_tv("--client-timeout", "1", "--heartbeat-seconds", "0.3")
    ws = Ws(tv.ws_url)
    sockets.append(ws)
    ws._beating = False  # this client stops sending its [] heartbeats
    frames: list[str] = []
    while (frame := ws.recv(10)) is not None:
        frames.append(frame)
    assert frames[0] == "o" and frames[-1].startswith("c[")
