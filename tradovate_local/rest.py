"""The ``/v1`` REST endpoints, as plain functions over the server's state.

One dispatcher, ``handle(server, call)``, serves both HTTP (``rest.RestHandler``) and the REST
requests sent over the user WebSocket (``endpoint\\nid\\nquery\\nbody``; Tradovate accepts its
REST operations on the socket too: users/sync-request and the JS tutorial EX-07).
Operation naming (``/[entity]/list``, ``/item?id=``, ``/find?name=``, ``/deps?masterid=``):
https://partner.tradovate.com/overview/core-concepts/architecture-overview
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import tornado.web

from tradovate_local import wire
from tradovate_local.state import Refused

if TYPE_CHECKING:
    from tradovate_local.app import Server


@dataclass
class Call:
    path: str  # e.g. "order/placeorder"
    query: dict[str, str]
    body: Any
    token: str | None
    method: str = "POST"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[["Server", Call], Answer]
ROUTES: dict[str, Route] = {}
# Queries refused while the "maintenance" fault is on (TRADOVATE-SPEC.md).
MAINTENANCE = (
    "position/",
    "order/list",
    "order/item",
    "order/deps",
    "fill/",
    "fillFee/",
    "cashBalance/",
    "command/",
    "orderVersion/",
)
OPEN = ("auth/accesstokenrequest",)
# assumed: the order's text field holds at most 64 characters (the docs' <=64 string limit).
TEXT_MAX = 64


def route(path: str) -> Callable[[Route], Route]:
    def register(fn: Route) -> Route:
        ROUTES[path.lower()] = fn
        return fn

    return register


def ok(body: Any) -> Answer:
    return Answer(200, body)


def not_found(text: str) -> Answer:
    # assumed: an unknown id or name answers 404 with {"errorText"}.
    return Answer(404, {"errorText": text})


def bad(text: str) -> Answer:
    return Answer(400, {"errorText": text})


def handle(server: Server, call: Call) -> Answer:
    server.requests[call.path.lower()] += 1
    # Rate limits: an HTTP 429 (https://partner.tradovate.com/overview/core-concepts/rate-limits);
    # the docs show an empty body; Retry-After is our addition when the fault gives one.
    limited, retry_after = server.faults.take_rate_limit()
    if limited:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return Answer(429, None, headers)
    fn = ROUTES.get(call.path.lower())
    if fn is None:
        return not_found(f"no endpoint {call.path}")
    if call.path.lower() not in OPEN:
        session = server.tokens.session(call.token, server.now(), ("access",))
        if session is None:
            # Missing, expired or unknown token: HTTP 401 (TRADOVATE-SPEC.md).
            return Answer(401, {"errorText": "Access is denied"})
    if server.faults.maintenance and call.path.startswith(MAINTENANCE):
        return Answer(503, {"errorText": "local fault: maintenance"})
    return fn(server, call)


# --- auth ------------------------------------------------------------------------------------


@route("auth/accesstokenrequest")
def access_token_request(server: Server, call: Call) -> Answer:
    # https://partner.tradovate.com/api/rest-api-endpoints/authentication/access-token-request
    body = call.body if isinstance(call.body, dict) else {}
    now = server.now()
    honoured = server.tokens.honour(body.get("p-ticket"), now)
    penalty = server.faults.take_p_ticket()
    if honoured is False:
        # assumed: a ticket sent back before its p-time (or unknown) earns a new one.
        seconds = penalty[0] if penalty else 1
        return ok(server.tokens.penalty(seconds, bool(penalty and penalty[1]), now))
    if penalty is not None:
        # https://partner.tradovate.com/overview/core-concepts/penalty-tickets: HTTP 200 with
        # {"p-ticket", "p-time", "p-captcha"}.
        return ok(server.tokens.penalty(penalty[0], penalty[1], now))
    user = server.user
    if not user.check(body.get("name"), body.get("password"), body.get("cid"), body.get("sec")):
        # assumed: bad credentials answer HTTP 200 with errorText only (the answer's
        # "errorText: Non-empty if the request failed").
        return ok({"errorText": "Incorrect username or password. Please try again."})
    return ok(server.tokens.issue(user, now))


@route("auth/renewaccesstoken")
def renew_access_token(server: Server, call: Call) -> Answer:
    # https://partner.tradovate.com/api/rest-api-endpoints/authentication/renew-access-token
    # (documented as GET; both GET and POST are accepted). assumed: the old token stays valid
    # until its own expiry.
    return ok(server.tokens.issue(server.user, server.now()))


# --- accounts and contracts ------------------------------------------------------------------


def _id(call: Call, name: str = "id") -> int | None:
    raw = call.query.get(name)
    if raw is None and isinstance(call.body, dict):
        raw = call.body.get(name)
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return None


@route("account/list")
def account_list(server: Server, call: Call) -> Answer:
    # https://partner.tradovate.com/api/rest-api-endpoints/accounting/account-list
    return ok([a.entity() for a in server.book.accounts.values()])


@route("account/item")
def account_item(server: Server, call: Call) -> Answer:
    account = server.book.accounts.get(_id(call) or -1)
    return ok(account.entity()) if account else not_found("no such account")


@route("account/find")
def account_find(server: Server, call: Call) -> Answer:
    name = call.query.get("name")
    for account in server.book.accounts.values():
        if account.name == name:
            return ok(account.entity())
    return not_found("no such account")


@route("contract/find")
def contract_find(server: Server, call: Call) -> Answer:
    # contract/find?name=ESZ3 → Contract; unknown → 404 (TRADOVATE-SPEC.md).
    contract = server.catalog.by_name(call.query.get("name", ""))
    return ok(contract.entity()) if contract else not_found("no such contract")


@route("contract/item")
def contract_item(server: Server, call: Call) -> Answer:
    contract = server.catalog.by_id(_id(call) or -1)
    return ok(contract.entity()) if contract else not_found("no such contract")


@route("contractMaturity/item")
def maturity_item(server: Server, call: Call) -> Answer:
    contract = server.catalog.by_id(_id(call) or -1)
    return ok(contract.maturity_entity()) if contract else not_found("no such maturity")


@route("product/item")
def product_item(server: Server, call: Call) -> Answer:
    product = server.catalog.products.get(_id(call) or -1)
    return ok(product.entity()) if product else not_found("no such product")


@route("product/find")
def product_find(server: Server, call: Call) -> Answer:
    for product in server.catalog.products.values():
        if product.name == call.query.get("name"):
            return ok(product.entity())
    return not_found("no such product")


# --- orders ----------------------------------------------------------------------------------


def _account_id(server: Server, body: dict[str, Any]) -> int:
    raw = body.get("accountId")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    for account in server.book.accounts.values():
        if account.name == body.get("accountSpec"):
            return account.id
    raise Refused("UnknownReason", "accountId or accountSpec names no account")


def _price(body: dict[str, Any], name: str) -> Decimal | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            pass
    raise Refused("InvalidPrice", f"{name} must be a number")


def _failure(refused: Refused) -> Answer:
    # PlaceOrderResult / CommandResult failure: {failureReason, failureText}
    # (https://partner.tradovate.com/api/rest-api-endpoints/orders/place-order). assumed: HTTP 200.
    return ok({"failureReason": refused.reason, "failureText": refused.text})


def _place(server: Server, call: Call, oso: bool) -> Answer:
    body = call.body if isinstance(call.body, dict) else {}
    try:
        reject = server.faults.take_reject()
        if reject is not None:
            raise Refused(*reject)
        text = body.get("text")
        if text is not None and (not isinstance(text, str) or len(text) > TEXT_MAX):
            raise Refused("UnknownReason", f"text must be a string of at most {TEXT_MAX}")
        bracket = body.get("bracket1") if oso else None
        if oso and not isinstance(bracket, dict):
            raise Refused("UnknownReason", "placeoso needs bracket1")
        if body.get("bracket2") is not None:
            raise Refused("Unsupported", "bracket2 (OCO brackets) is not supported locally")
        cl_ord_id = body.get("clOrdId")
        order_id, oso_id, events = server.book.place(
            account_id=_account_id(server, body),
            symbol=str(body.get("symbol", "")),
            action=str(body.get("action")),
            qty=body.get("orderQty"),  # type: ignore[arg-type]  # checked by the book
            order_type=str(body.get("orderType")),
            price=_price(body, "price"),
            stop_price=_price(body, "stopPrice"),
            tif=str(body.get("timeInForce", "Day")),
            text=text,
            cl_ord_id=None if cl_ord_id is None else str(cl_ord_id),
            is_automated=bool(body.get("isAutomated", False)),
            now=server.now(),
            parts=server.faults.take_partial_fills(),
            bracket=bracket,
            bracket_never_works=oso and server.faults.take_stop_leg_never_worked(),
        )
    except Refused as refused:
        return _failure(refused)
    server.publish(events)
    if oso:
        # placeoso answer: {orderId, oso1Id} (orders/place-oso).
        return ok({"orderId": order_id, "oso1Id": oso_id})
    return ok({"orderId": order_id})


@route("order/placeorder")
def place_order(server: Server, call: Call) -> Answer:
    # https://partner.tradovate.com/api/rest-api-endpoints/orders/place-order
    return _place(server, call, oso=False)


@route("order/placeoso")
def place_oso(server: Server, call: Call) -> Answer:
    # https://partner.tradovate.com/api/rest-api-endpoints/orders/place-oso
    return _place(server, call, oso=True)


@route("order/cancelorder")
def cancel_order(server: Server, call: Call) -> Answer:
    # https://partner.tradovate.com/api/rest-api-endpoints/orders/cancel-order
    # {orderId, isAutomated} → {commandId} or {failureReason, failureText}.
    body = call.body if isinstance(call.body, dict) else {}
    try:
        command_id, events = server.book.cancel(
            _id(call, "orderId") or -1, bool(body.get("isAutomated", False)), server.now()
        )
    except Refused as refused:
        return _failure(refused)
    server.publish(events)
    return ok({"commandId": command_id})


@route("order/modifyorder")
def modify_order(server: Server, call: Call) -> Answer:
    # https://partner.tradovate.com/api/rest-api-endpoints/orders/modify-order
    # {orderId, orderQty, orderType, clOrdId?, price?, stopPrice?, timeInForce?, isAutomated};
    # the clOrdId is kept on the Modify command (CommandList: clOrdId).
    body = call.body if isinstance(call.body, dict) else {}
    cl_ord_id = body.get("clOrdId")
    try:
        command_id, events = server.book.modify(
            _id(call, "orderId") or -1,
            qty=body.get("orderQty"),  # type: ignore[arg-type]  # checked by the book
            order_type=str(body.get("orderType")),
            price=_price(body, "price"),
            stop_price=_price(body, "stopPrice"),
            tif=body.get("timeInForce"),
            is_automated=bool(body.get("isAutomated", False)),
            now=server.now(),
            cl_ord_id=None if cl_ord_id is None else str(cl_ord_id),
        )
    except Refused as refused:
        return _failure(refused)
    server.publish(events)
    return ok({"commandId": command_id})


@route("order/list")
def order_list(server: Server, call: Call) -> Answer:
    return ok([o.entity() for o in server.book.orders.values()])


@route("order/item")
def order_item(server: Server, call: Call) -> Answer:
    order = server.book.orders.get(_id(call) or -1)
    return ok(order.entity()) if order else not_found("no such order")


@route("order/deps")
def order_deps(server: Server, call: Call) -> Answer:
    # deps?masterid=<accountId>: the account's orders.
    master = _id(call, "masterid")
    return ok([o.entity() for o in server.book.orders.values() if o.account_id == master])


@route("command/list")
def command_list(server: Server, call: Call) -> Answer:
    return ok([c.entity() for c in server.book.commands.values()])


@route("command/deps")
def command_deps(server: Server, call: Call) -> Answer:
    master = _id(call, "masterid")
    return ok([c.entity() for c in server.book.commands.values() if c.order_id == master])


@route("command/item")
def command_item(server: Server, call: Call) -> Answer:
    command = server.book.commands.get(_id(call) or -1)
    return ok(command.entity()) if command else not_found("no such command")


def _versions(server: Server, order_id: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for order in server.book.orders.values():
        if order_id is None or order.id == order_id:
            out += server.book.order_versions(order)
    return out


@route("orderVersion/list")
def version_list(server: Server, call: Call) -> Answer:
    return ok(_versions(server))


@route("orderVersion/deps")
def version_deps(server: Server, call: Call) -> Answer:
    return ok(_versions(server, _id(call, "masterid") or -1))


@route("orderVersion/item")
def version_item(server: Server, call: Call) -> Answer:
    wanted = _id(call)
    for version in _versions(server):
        if version["id"] == wanted:
            return ok(version)
    return not_found("no such orderVersion")


@route("fill/list")
def fill_list(server: Server, call: Call) -> Answer:
    # https://partner.tradovate.com/api/rest-api-endpoints/orders/fill-list
    return ok([f.entity() for f in server.book.fills.values()])


@route("fill/deps")
def fill_deps(server: Server, call: Call) -> Answer:
    master = _id(call, "masterid")
    return ok([f.entity() for f in server.book.fills.values() if f.order_id == master])


@route("fill/item")
def fill_item(server: Server, call: Call) -> Answer:
    fill = server.book.fills.get(_id(call) or -1)
    return ok(fill.entity()) if fill else not_found("no such fill")


@route("fillFee/list")
def fill_fee_list(server: Server, call: Call) -> Answer:
    # https://partner.tradovate.com/api/rest-api-endpoints/orders/fill-fee-list
    return ok([f.fee_entity() for f in server.book.fills.values()])


@route("fillFee/item")
def fill_fee_item(server: Server, call: Call) -> Answer:
    # https://partner.tradovate.com/api/rest-api-endpoints/orders/fill-fee-item
    fill = server.book.fills.get(_id(call) or -1)
    return ok(fill.fee_entity()) if fill else not_found("no such fillFee")


@route("position/list")
def position_list(server: Server, call: Call) -> Answer:
    return ok(server.book.position_list())


@route("position/deps")
def position_deps(server: Server, call: Call) -> Answer:
    master = _id(call, "masterid")
    return ok([p for p in server.book.position_list() if p["accountId"] == master])


@route("cashBalance/getcashbalancesnapshot")
def cash_snapshot(server: Server, call: Call) -> Answer:
    # https://partner.tradovate.com/api/rest-api-endpoints/accounting/get-cash-balance-snapshot
    snapshot = server.book.cash_snapshot(_id(call, "accountId") or -1)
    return ok(snapshot) if snapshot else not_found("no such account")


@route("cashBalance/list")
def cash_list(server: Server, call: Call) -> Answer:
    return ok([a.cash_entity() for a in server.book.accounts.values()])


# --- HTTP ------------------------------------------------------------------------------------


class RestHandler(tornado.web.RequestHandler):
    """``/v1/<entity>/<operation>`` over HTTP; JSON in and out."""

    def initialize(self, server: Server) -> None:
        self.server = server

    def check_xsrf_cookie(self) -> None:  # a JSON API with bearer tokens, no cookies
        return None

    def get(self, path: str) -> None:
        self._serve(path, "GET")

    def post(self, path: str) -> None:
        self._serve(path, "POST")

    def _serve(self, path: str, method: str) -> None:
        body: Any = None
        if self.request.body:
            try:
                body = wire.loads(self.request.body)
            except ValueError:
                self._reply(bad("the body is not JSON"))
                return
        auth = self.request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None
        query = {k: v[-1].decode() for k, v in self.request.query_arguments.items() if v}
        self._reply(handle(self.server, Call(path, query, body, token, method)))

    def _reply(self, answer: Answer) -> None:
        self.set_status(answer.status)
        for name, value in answer.headers.items():
            self.set_header(name, value)
        if answer.body is not None:
            self.set_header("Content-Type", "application/json")
            self.write(wire.dumps(answer.body))
        self.finish()
