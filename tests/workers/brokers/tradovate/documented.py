"""Tradovate's documented message shapes, for the offline tests (``httpx.MockTransport``).

Each shape cites the page it follows; "assumed:" marks a choice where the docs are silent.
``FakeTradovate`` answers the adapter's requests from a small in-memory book built from these
shapes; it is a recording of documented answers, not a simulation of a market.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

TOKEN_EXPIRES = "2026-12-07T02:00:00Z"


def token_answer(token: str = "tok-1", expires: str = TOKEN_EXPIRES) -> dict[str, Any]:
    """https://partner.tradovate.com/api/rest-api-endpoints/authentication/access-token-request.md
    and .../overview/conformance-testing/stage-1-authentication.md (Response 200)."""
    return {
        "accessToken": token,
        "mdAccessToken": f"md-{token}",
        "expirationTime": expires,
        "passwordExpirationTime": "2027-01-15T09:30:00Z",
        "userStatus": "Active",
        "userId": 77,
        "name": "trader",
        "hasLive": False,
    }


def penalty(seconds: int = 3, captcha: bool = False) -> dict[str, Any]:
    """https://partner.tradovate.com/overview/core-concepts/penalty-tickets.md: HTTP 200 with
    p-ticket, p-time (seconds), p-captcha."""
    answer: dict[str, Any] = {"p-ticket": "ticket-xyz", "p-time": seconds}
    if captcha:
        answer["p-captcha"] = True
    return answer


def account(account_id: int = 501, name: str = "DEMO0001") -> dict[str, Any]:
    """https://partner.tradovate.com/api/rest-api-endpoints/accounting/account-list.md
    (Account: id, name, userId, accountType, active, ...)."""
    return {
        "id": account_id,
        "name": name,
        "userId": 77,
        "accountType": "Customer",
        "active": True,
        "clearingHouseId": 2,
        "riskCategoryId": 2,
        "autoLiqProfileId": 2,
        "marginAccountType": "Speculator",
        "legalStatus": "Individual",
        "archived": False,
        "timestamp": "2026-01-15T09:30:00Z",
    }


def contract(contract_id: int, name: str, maturity_id: int) -> dict[str, Any]:
    """https://partner.tradovate.com/api/rest-api-endpoints/contract-library/contract-item.md
    (name, contractMaturityId, timestamp, id); providerTickSize: assumed (the shared contract)."""
    return {
        "id": contract_id,
        "name": name,
        "contractMaturityId": maturity_id,
        "timestamp": "2013-01-15T09:30:00Z",
        "status": "DefinitionChecked",
        "providerTickSize": 0.25,
    }


def maturity(maturity_id: int, product_id: int, yymm: int, expires: str) -> dict[str, Any]:
    """https://partner.tradovate.com/api/rest-api-endpoints/contract-library/contract-maturity-item
    (productId, expirationMonth integer >= 1401, expirationDate, isFront, id)."""
    return {
        "id": maturity_id,
        "productId": product_id,
        "expirationMonth": yymm,
        "expirationDate": expires,
        "isFront": False,
    }


def product(product_id: int, name: str, value_per_point: str, tick: str) -> dict[str, Any]:
    """https://partner.tradovate.com/api/rest-api-endpoints/contract-library/product-item.md
    (Product: id, name, valuePerPoint, tickSize, ...); numbers as JSON numbers."""
    return {
        "id": product_id,
        "name": name,
        "currencyId": 1,
        "productType": "Futures",
        "description": name,
        "exchangeId": 1,
        "contractGroupId": 1,
        "status": "Verified",
        "valuePerPoint": _raw(value_per_point),
        "priceFormatType": "Decimal",
        "priceFormat": -2,
        "tickSize": _raw(tick),
    }


class _Raw(str):
    """A number written into JSON from its digits (``FakeTradovate`` serialises it raw)."""


def _raw(digits: str) -> _Raw:
    return _Raw(digits)


@dataclass
class FakeTradovate:
    """Answers /v1/... like Tradovate's docs say; records every request."""

    accounts: list[dict[str, Any]] = field(default_factory=lambda: [account()])
    contracts: dict[int, dict[str, Any]] = field(default_factory=dict)
    maturities: dict[int, dict[str, Any]] = field(default_factory=dict)
    products: dict[int, dict[str, Any]] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    fills: list[dict[str, Any]] = field(default_factory=list)
    fees: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    cash: dict[str, Any] = field(
        default_factory=lambda: {
            # https://partner.tradovate.com/api/rest-api-endpoints/accounting/get-cash-balance-snapshot.md
            "totalCashValue": _raw("99995.00"),
            "realizedPnL": _raw("0"),
            "openPnL": _raw("0"),
            "totalPnL": _raw("0"),
        }
    )
    token_answers: list[dict[str, Any]] = field(default_factory=lambda: [token_answer()])
    valid_tokens: set[str] = field(default_factory=lambda: {"tok-1"})
    scripted: dict[str, list[Callable[[httpx.Request], httpx.Response]]] = field(
        default_factory=dict
    )
    requests: list[httpx.Request] = field(default_factory=list)
    next_id: int = 9000

    def __post_init__(self) -> None:
        self.add_contract(
            1001, "ESZ3", 2001, 3001, 1312, "2013-12-20T14:30:00Z", "ES", "50", "0.25"
        )
        self.add_contract(
            1002, "ESH4", 2002, 3001, 1403, "2014-03-21T13:30:00Z", "ES", "50", "0.25"
        )
        self.add_contract(
            1003, "GCZ3", 2003, 3002, 1312, "2013-12-27T17:30:00Z", "GC", "100", "0.1"
        )

    def add_contract(
        self, cid: int, name: str, mid: int, pid: int, yymm: int, expires: str, root: str,
        vpp: str, tick: str,
    ) -> None:  # fmt: skip
        self.contracts[cid] = contract(cid, name, mid)
        self.maturities[mid] = maturity(mid, pid, yymm, expires)
        self.products[pid] = product(pid, root, vpp, tick)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def paths(self) -> list[str]:
        return [r.url.path.removeprefix("/v1/") for r in self.requests]

    def script(self, path: str, *answers: Callable[[httpx.Request], httpx.Response]) -> None:
        """The next requests of ``path`` get these answers, in order, before normal service."""
        self.scripted.setdefault(path, []).extend(answers)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # the book ------------------------------------------------------------------------------------

    def add_order(
        self, *, account_id: int = 501, contract_id: int = 1001, action: str = "Buy",
        status: str = "Working", cl_ord_id: str | None, text: str | None, qty: int = 1,
        order_type: str = "Market", price: Any = None, stop_price: Any = None,
        parent_id: int | None = None,
    ) -> int:  # fmt: skip
        order_id = self.new_id()
        # https://partner.tradovate.com/api/rest-api-endpoints/orders/order-list.md
        self.orders[order_id] = {
            "id": order_id,
            "accountId": account_id,
            "contractId": contract_id,
            "timestamp": "2013-10-07T13:31:00.123Z",
            "action": action,
            "ordStatus": status,
            "admin": False,
            "executionProviderId": 1,
            **({"parentId": parent_id} if parent_id is not None else {}),
        }
        # https://partner.tradovate.com/api/rest-api-endpoints/orders/command-dependents.md
        command: dict[str, Any] = {
            "id": self.new_id(),
            "orderId": order_id,
            "timestamp": "2013-10-07T13:31:00.123Z",
            "commandType": "New",
            "commandStatus": "RiskPassed",
            "isAutomated": True,
        }
        if cl_ord_id is not None:
            command["clOrdId"] = cl_ord_id
        self.commands.append(command)
        # https://partner.tradovate.com/api/rest-api-endpoints/orders/order-version-dependents.md
        version: dict[str, Any] = {
            "id": self.new_id(),
            "orderId": order_id,
            "orderQty": qty,
            "orderType": order_type,
            "timeInForce": "Day",
        }
        if price is not None:
            version["price"] = price
        if stop_price is not None:
            version["stopPrice"] = stop_price
        if text is not None:
            version["text"] = text
        self.versions.append(version)
        return order_id

    def add_fill(
        self,
        order_id: int,
        *,
        qty: int = 1,
        price: str = "1680.25",
        commission: str | None = "2.50",
    ) -> int:
        order = self.orders[order_id]
        fill_id = self.new_id()
        # https://partner.tradovate.com/api/rest-api-endpoints/orders/fill-list.md
        self.fills.append(
            {
                "id": fill_id,
                "orderId": order_id,
                "contractId": order["contractId"],
                "timestamp": "2013-10-07T13:31:00.5Z",
                "tradeDate": {"year": 2013, "month": 10, "day": 7},
                "action": order["action"],
                "qty": qty,
                "price": _raw(price),
                "active": True,
                "finallyPaired": 0,
            }
        )
        if commission is not None:
            # https://partner.tradovate.com/api/rest-api-endpoints/orders/fill-fee-list
            self.fees.append(
                {
                    "id": fill_id,
                    "commission": _raw(commission),
                    "commissionCurrencyId": 1,
                    "clearingFee": _raw("0"),
                    "exchangeFee": None,
                }
            )
        order["ordStatus"] = "Filled"
        return fill_id

    # serving -------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/v1/")
        queued = self.scripted.get(path)
        if queued:
            return queued.pop(0)(request)
        if path == "auth/accesstokenrequest":
            answer = (
                self.token_answers.pop(0) if len(self.token_answers) > 1 else self.token_answers[0]
            )
            if "accessToken" in answer:
                self.valid_tokens.add(answer["accessToken"])
            return _json(answer)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.valid_tokens:
            return httpx.Response(401)
        if path == "auth/renewaccesstoken":
            renewed = token_answer(token + "-renewed", "2026-12-07T04:00:00Z")
            del renewed["mdAccessToken"]
            self.valid_tokens.add(renewed["accessToken"])
            return _json(renewed)
        body = json.loads(request.content) if request.content else {}
        query = dict(request.url.params)
        return _json(self._answer(path, query, body))

    def _answer(self, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        master = int(query.get("masterid", "0"))
        item = int(query.get("id", "0"))
        if path == "account/list":
            return self.accounts
        if path == "contract/find":
            found = [c for c in self.contracts.values() if c["name"] == query["name"]]
            return found[0] if found else _NOT_FOUND
        if path == "contract/item":
            return self.contracts.get(item, _NOT_FOUND)
        if path == "contractMaturity/item":
            return self.maturities.get(item, _NOT_FOUND)
        if path == "product/item":
            return self.products.get(item, _NOT_FOUND)
        if path == "order/list":
            return list(self.orders.values())
        if path == "order/item":
            return self.orders.get(item, _NOT_FOUND)
        if path == "command/list":
            return self.commands
        if path == "command/deps":
            return [c for c in self.commands if c["orderId"] == master]
        if path == "orderVersion/deps":
            return [v for v in self.versions if v["orderId"] == master]
        if path == "fill/list":
            return self.fills
        if path == "fill/deps":
            return [f for f in self.fills if f["orderId"] == master]
        if path == "fillFee/list":
            return self.fees
        if path == "position/list":
            return self.positions
        if path == "cashBalance/getcashbalancesnapshot":
            return self.cash
        if path in {"order/placeorder", "order/placeoso"}:
            return self._place(path, body)
        if path == "order/cancelorder":
            # https://partner.tradovate.com/api/rest-api-endpoints/orders/cancel-order.md
            self.orders[body["orderId"]]["ordStatus"] = "Canceled"
            return {"commandId": self.new_id()}
        if path == "order/modifyorder":
            # https://partner.tradovate.com/api/rest-api-endpoints/orders/modify-order.md
            self.versions.append(
                {
                    "id": self.new_id(),
                    "orderId": body["orderId"],
                    "orderQty": body["orderQty"],
                    "orderType": body["orderType"],
                    "stopPrice": body["stopPrice"],
                    "timeInForce": body.get("timeInForce", "Day"),
                }
            )
            return {"commandId": self.new_id()}
        return _NOT_FOUND

    def _place(self, path: str, body: dict[str, Any]) -> Any:
        """https://partner.tradovate.com/api/rest-api-endpoints/orders/place-order.md →
        {orderId}; .../place-oso.md → {orderId, oso1Id} (oso1Id: assumed, the shared contract)."""
        contract_id = next(c["id"] for c in self.contracts.values() if c["name"] == body["symbol"])
        order_id = self.add_order(
            account_id=body["accountId"], contract_id=contract_id, action=body["action"],
            cl_ord_id=body.get("clOrdId"), text=body.get("text"), qty=body["orderQty"],
            order_type=body["orderType"], price=body.get("price"),
            stop_price=body.get("stopPrice"),
        )  # fmt: skip
        if path == "order/placeorder":
            return {"orderId": order_id}
        bracket = body["bracket1"]
        oso1 = self.add_order(
            account_id=body["accountId"], contract_id=contract_id, action=bracket["action"],
            cl_ord_id=bracket.get("clOrdId"), text=bracket.get("text"), qty=body["orderQty"],
            order_type="Stop", stop_price=bracket["stopPrice"], status="Suspended",
            parent_id=order_id,
        )  # fmt: skip
        return {"orderId": order_id, "oso1Id": oso1}


_NOT_FOUND = object()


def _encode(value: Any) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def _json(value: Any) -> httpx.Response:
    if value is _NOT_FOUND:
        return httpx.Response(404)
    return httpx.Response(
        200, content=_encode(value).encode(), headers={"Content-Type": "application/json"}
    )


def status(
    code: int, headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, headers=headers)


def answer(value: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: _json(value)


def timeout() -> Callable[[httpx.Request], httpx.Response]:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    return fail
