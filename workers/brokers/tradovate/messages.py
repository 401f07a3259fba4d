"""Every Tradovate message the adapter builds or reads, typed and frozen.

Numbers become ``Decimal`` through ``str`` (the REST client parses JSON with
``parse_float=Decimal``), times aware UTC. Each shape cites the page of Tradovate's
documentation it follows; "assumed:" marks what the docs leave open. A malformed answer is
``BadAnswer`` (a ``ServiceUnavailable``): the adapter never reads a shape it does not know as
"nothing".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from trading.exceptions import ServiceUnavailable

DOCS = "https://partner.tradovate.com/api/rest-api-endpoints"


class BadAnswer(ServiceUnavailable):
    """Tradovate answered with a shape the adapter does not know."""


def _field(raw: Mapping[str, Any], name: str, what: str) -> Any:
    if not isinstance(raw, Mapping) or name not in raw or raw[name] is None:
        raise BadAnswer(f"Tradovate {what} without {name}")
    return raw[name]


def _int(raw: Mapping[str, Any], name: str, what: str) -> int:
    value = _field(raw, name, what)
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise BadAnswer(f"Tradovate {what}.{name} is not an integer: {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise BadAnswer(f"Tradovate {what}.{name} is not an integer: {value!r}") from None
    if number != number.to_integral_value():
        raise BadAnswer(f"Tradovate {what}.{name} is not an integer: {value!r}")
    return int(number)


def _opt_int(raw: Mapping[str, Any], name: str, what: str) -> int | None:
    return None if raw.get(name) is None else _int(raw, name, what)


def decimal_of(value: Any, what: str) -> Decimal:
    """A JSON number (or its string) as ``Decimal``, via ``str``."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise BadAnswer(f"Tradovate {what} is not a number: {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise BadAnswer(f"Tradovate {what} is not a number: {value!r}") from None
    if not number.is_finite():
        raise BadAnswer(f"Tradovate {what} is not a finite number: {value!r}")
    return number


def _dec(raw: Mapping[str, Any], name: str, what: str) -> Decimal:
    return decimal_of(_field(raw, name, what), f"{what}.{name}")


def _opt_dec(raw: Mapping[str, Any], name: str, what: str) -> Decimal | None:
    return None if raw.get(name) is None else _dec(raw, name, what)


def _str(raw: Mapping[str, Any], name: str, what: str) -> str:
    value = _field(raw, name, what)
    if not isinstance(value, str):
        raise BadAnswer(f"Tradovate {what}.{name} is not a string: {value!r}")
    return value


def _opt_str(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    return value if isinstance(value, str) else None


def utc_of(value: Any, what: str) -> datetime:
    """An ISO-8601 time (``2024-01-15T09:30:00Z``) as aware UTC; a naive one is taken as UTC
    (assumed: the docs' examples all carry ``Z``)."""
    if not isinstance(value, str):
        raise BadAnswer(f"Tradovate {what} is not a time: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadAnswer(f"Tradovate {what} is not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _time(raw: Mapping[str, Any], name: str, what: str) -> datetime:
    return utc_of(_field(raw, name, what), f"{what}.{name}")


def _mapping(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise BadAnswer(f"Tradovate {what} is not an object: {type(raw).__name__}")
    return raw


def _rows(raw: Any, what: str) -> list[Mapping[str, Any]]:
    if not isinstance(raw, list):
        raise BadAnswer(f"Tradovate {what} list is not a list: {type(raw).__name__}")
    return [_mapping(row, what) for row in raw]


# --- authentication ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    """An access token.

    https://partner.tradovate.com/api/rest-api-endpoints/authentication/access-token-request.md
    ({accessToken, mdAccessToken, expirationTime, userStatus, userId, name, hasLive}); the same
    shape from /auth/renewaccesstoken
    (https://partner.tradovate.com/api/rest-api-endpoints/authentication/renew-access-token.md),
    where mdAccessToken may be absent (assumed: the old one is kept).
    """

    access_token: str
    md_access_token: str | None
    expiration_time: datetime
    user_id: int | None
    name: str | None

    def __repr__(self) -> str:  # never the tokens themselves
        return f"TokenAnswer(user_id={self.user_id}, expires={self.expiration_time.isoformat()})"


@dataclass(frozen=True, slots=True)
class Penalty:
    """A penalty ticket: HTTP 200 with {"p-ticket", "p-time" (s), "p-captcha"}.

    https://partner.tradovate.com/overview/core-concepts/penalty-tickets.md: wait p-time
    seconds, resend the identical body with "p-ticket" added; p-captcha true cannot be
    answered by a server (wait about an hour, an operator logs in by hand).
    """

    ticket: str
    wait_s: float
    captcha: bool

    def __repr__(self) -> str:
        return f"Penalty(wait_s={self.wait_s}, captcha={self.captcha})"


def penalty_of(raw: Any) -> Penalty | None:
    """The penalty ticket in an answer, or ``None``."""
    if not isinstance(raw, Mapping) or ("p-ticket" not in raw and "p-captcha" not in raw):
        return None
    ticket = raw.get("p-ticket")
    wait = raw.get("p-time", 0)
    try:
        wait_s = float(wait) if not isinstance(wait, bool) else 0.0
    except (TypeError, ValueError):
        wait_s = 0.0
    return Penalty(str(ticket or ""), max(wait_s, 0.0), bool(raw.get("p-captcha")))


def token_request_body(
    *,
    name: str,
    password: str,
    app_id: str,
    app_version: str,
    cid: int,
    sec: str,
    device_id: str,
) -> dict[str, Any]:
    """POST /auth/accesstokenrequest body {name, password, appId, appVersion, cid, sec,
    deviceId?}: https://partner.tradovate.com/api/rest-api-endpoints/authentication/access-token-request.md
    (deviceId from https://partner.tradovate.com/overview/quick-setup/auth-overview.md; left out
    when not set: assumed optional)."""
    body: dict[str, Any] = {
        "name": name,
        "password": password,
        "appId": app_id,
        "appVersion": app_version,
        "cid": cid,
        "sec": sec,
    }
    if device_id:
        body["deviceId"] = device_id
    return body


def parse_token(raw: Any) -> TokenAnswer:
    """A token answer; {"errorText"} (bad credentials) is ``BadAnswer`` carrying the text."""
    answer = _mapping(raw, "token answer")
    error = answer.get("errorText")
    if error:
        raise BadAnswer(f"Tradovate refused the token request: {str(error).splitlines()[0]}")
    return TokenAnswer(
        access_token=_str(answer, "accessToken", "token answer"),
        md_access_token=_opt_str(answer, "mdAccessToken"),
        expiration_time=_time(answer, "expirationTime", "token answer"),
        user_id=_opt_int(answer, "userId", "token answer"),
        name=_opt_str(answer, "name"),
    )


# --- accounts and contracts ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """GET /account/list: {id, name, userId, accountType, active, ...}
    (https://partner.tradovate.com/api/rest-api-endpoints/accounting/account-list.md)."""

    id: int
    name: str
    active: bool


def parse_accounts(raw: Any) -> list[Account]:
    return [
        Account(
            _int(row, "id", "account"), _str(row, "name", "account"), bool(row.get("active", True))
        )
        for row in _rows(raw, "account")
    ]


@dataclass(frozen=True, slots=True)
class Contract:
    """GET /contract/find?name=, /contract/item?id=: {id, name, contractMaturityId, ...}
    (https://partner.tradovate.com/api/rest-api-endpoints/contract-library/contract-item.md)."""

    id: int
    name: str
    contract_maturity_id: int


def parse_contract(raw: Any) -> Contract:
    row = _mapping(raw, "contract")
    return Contract(
        _int(row, "id", "contract"),
        _str(row, "name", "contract"),
        _int(row, "contractMaturityId", "contract"),
    )


@dataclass(frozen=True, slots=True)
class ContractMaturity:
    """GET /contractMaturity/item?id=: {id, productId, expirationMonth (integer >= 1401),
    expirationDate, isFront}
    (https://partner.tradovate.com/api/rest-api-endpoints/contract-library/contract-maturity-item).
    """

    id: int
    product_id: int
    expiration_month: int
    expiration_date: datetime

    @property
    def year(self) -> int:
        """The contract's year. The docs give expirationMonth as an integer >= 1401, read as
        YYMM (1401 = January 2014; assumed: the docs do not spell the format out); a YYYYMM
        value is read as such; a plain month (1-12) takes its year from expirationDate
        (assumed, for servers that send the month alone)."""
        value = self.expiration_month
        if value >= 100_000:
            return value // 100
        if value >= 1_000:
            return 2000 + value // 100
        return self.expiration_date.year


def parse_maturity(raw: Any) -> ContractMaturity:
    row = _mapping(raw, "contract maturity")
    return ContractMaturity(
        _int(row, "id", "contract maturity"),
        _int(row, "productId", "contract maturity"),
        _int(row, "expirationMonth", "contract maturity"),
        _time(row, "expirationDate", "contract maturity"),
    )


@dataclass(frozen=True, slots=True)
class Product:
    """GET /product/item?id=: {id, name, valuePerPoint, tickSize, ...}
    (https://partner.tradovate.com/api/rest-api-endpoints/contract-library/product-item.md)."""

    id: int
    name: str
    value_per_point: Decimal
    tick_size: Decimal


def parse_product(raw: Any) -> Product:
    row = _mapping(raw, "product")
    return Product(
        _int(row, "id", "product"),
        _str(row, "name", "product"),
        _dec(row, "valuePerPoint", "product"),
        _dec(row, "tickSize", "product"),
    )


# --- orders --------------------------------------------------------------------------------

ORDER_TYPES = {"market": "Market", "limit": "Limit", "stop": "Stop"}
TIMES_IN_FORCE = {"day": "Day", "gtc": "GTC", "ioc": "IOC"}
ACTIONS = {"buy": "Buy", "sell": "Sell"}


def order_body(
    *,
    account_name: str,
    account_id: int,
    cl_ord_id: str,
    action: str,
    symbol: str,
    quantity: int,
    order_type: str,
    price: Decimal | None,
    stop_price: Decimal | None,
    time_in_force: str,
    text: str,
) -> dict[str, Any]:
    """POST /order/placeorder body {accountSpec, accountId, clOrdId, action, symbol, orderQty,
    orderType, price?, stopPrice?, timeInForce, isAutomated: true, text}
    (https://partner.tradovate.com/api/rest-api-endpoints/orders/place-order.md; clOrdId and
    text are at most 64 characters:
    https://partner.tradovate.com/api/rest-api-endpoints/orders/command-item and
    .../order-version-l-dependents). Prices go out as JSON numbers written from the Decimal's
    digits (``rest.dumps``), never through a float."""
    body: dict[str, Any] = {
        "accountSpec": account_name,
        "accountId": account_id,
        "clOrdId": cl_ord_id,
        "action": ACTIONS[action],
        "symbol": symbol,
        "orderQty": quantity,
        "orderType": ORDER_TYPES[order_type],
        "timeInForce": TIMES_IN_FORCE[time_in_force],
        "isAutomated": True,
        "text": text,
    }
    if price is not None:
        body["price"] = price
    if stop_price is not None:
        body["stopPrice"] = stop_price
    return body


def bracket_body(
    *, cl_ord_id: str, action: str, stop_price: Decimal, time_in_force: str, text: str
) -> dict[str, Any]:
    """placeoso's ``bracket1`` {action, orderType "Stop", stopPrice, timeInForce}
    (https://partner.tradovate.com/api/rest-api-endpoints/orders/place-oso.md). assumed: the
    bracket also takes clOrdId and text like an order (the docs' example shows neither); the
    adapter also finds the bracket through its parent when it carries no clOrdId."""
    return {
        "action": ACTIONS[action],
        "orderType": "Stop",
        "stopPrice": stop_price,
        "timeInForce": TIMES_IN_FORCE[time_in_force],
        "clOrdId": cl_ord_id,
        "text": text,
    }


@dataclass(frozen=True, slots=True)
class PlaceResult:
    """/order/placeorder → {orderId} or {failureReason, failureText}; /order/placeoso →
    {orderId, oso1Id} (https://partner.tradovate.com/api/rest-api-endpoints/orders/place-order.md,
    .../place-oso.md; oso1Id: assumed from the shared contract, the docs' example shows
    orderId only)."""

    order_id: int | None
    oso1_id: int | None
    failure_reason: str | None
    failure_text: str | None


def parse_place(raw: Any) -> PlaceResult:
    row = _mapping(raw, "place answer")
    failure = _opt_str(row, "failureReason")
    order_id = _opt_int(row, "orderId", "place answer")
    if order_id is None and not failure:
        raise BadAnswer("Tradovate place answer has neither orderId nor failureReason")
    return PlaceResult(
        order_id, _opt_int(row, "oso1Id", "place answer"), failure, _opt_str(row, "failureText")
    )


@dataclass(frozen=True, slots=True)
class CommandResult:
    """/order/cancelorder, /order/modifyorder → {commandId} or {failureReason, failureText}
    (https://partner.tradovate.com/api/rest-api-endpoints/orders/cancel-order.md,
    .../modify-order.md)."""

    command_id: int | None
    failure_reason: str | None
    failure_text: str | None


def parse_command_result(raw: Any) -> CommandResult:
    row = _mapping(raw, "command answer")
    return CommandResult(
        _opt_int(row, "commandId", "command answer"),
        _opt_str(row, "failureReason"),
        _opt_str(row, "failureText"),
    )


@dataclass(frozen=True, slots=True)
class Order:
    """GET /order/list, /order/item: {id, accountId, contractId, timestamp, action, ordStatus,
    ocoId?, parentId?, ...} (https://partner.tradovate.com/api/rest-api-endpoints/orders/order-list.md)."""

    id: int
    account_id: int
    contract_id: int | None
    timestamp: datetime
    action: str
    ord_status: str
    parent_id: int | None


def parse_order(raw: Any) -> Order:
    row = _mapping(raw, "order")
    action = _str(row, "action", "order")
    if action not in {"Buy", "Sell"}:
        raise BadAnswer(f"Tradovate order action {action!r}")
    return Order(
        _int(row, "id", "order"),
        _int(row, "accountId", "order"),
        _opt_int(row, "contractId", "order"),
        _time(row, "timestamp", "order"),
        action,
        _str(row, "ordStatus", "order"),
        _opt_int(row, "parentId", "order"),
    )


def parse_orders(raw: Any) -> list[Order]:
    return [parse_order(row) for row in _rows(raw, "order")]


@dataclass(frozen=True, slots=True)
class Command:
    """GET /command/list, /command/deps?masterid=<orderId>: {id, orderId, timestamp, clOrdId?
    (<= 64), commandType New|Modify|Cancel, commandStatus, isAutomated?}
    (https://partner.tradovate.com/api/rest-api-endpoints/orders/command-dependents.md)."""

    id: int
    order_id: int
    timestamp: datetime
    cl_ord_id: str | None
    command_type: str


def parse_commands(raw: Any) -> list[Command]:
    return [
        Command(
            _int(row, "id", "command"),
            _int(row, "orderId", "command"),
            _time(row, "timestamp", "command"),
            _opt_str(row, "clOrdId") or None,
            _str(row, "commandType", "command"),
        )
        for row in _rows(raw, "command")
    ]


@dataclass(frozen=True, slots=True)
class OrderVersion:
    """GET /orderVersion/deps?masterid=<orderId>: {id, orderId, orderQty, orderType, price?,
    stopPrice?, timeInForce?, text? (<= 64)}
    (https://partner.tradovate.com/api/rest-api-endpoints/orders/order-version-dependents.md)."""

    id: int
    order_id: int
    order_qty: int
    order_type: str
    price: Decimal | None
    stop_price: Decimal | None
    time_in_force: str | None
    text: str | None


def parse_order_versions(raw: Any) -> list[OrderVersion]:
    return [
        OrderVersion(
            _int(row, "id", "orderVersion"),
            _int(row, "orderId", "orderVersion"),
            _int(row, "orderQty", "orderVersion"),
            _str(row, "orderType", "orderVersion"),
            _opt_dec(row, "price", "orderVersion"),
            _opt_dec(row, "stopPrice", "orderVersion"),
            _opt_str(row, "timeInForce"),
            _opt_str(row, "text"),
        )
        for row in _rows(raw, "orderVersion")
    ]


def modify_body(
    *,
    order_id: int,
    quantity: int,
    stop_price: Decimal,
    time_in_force: str | None,
    cl_ord_id: str | None = None,
) -> dict[str, Any]:
    """POST /order/modifyorder {orderId, orderQty, orderType, clOrdId?, stopPrice,
    timeInForce?, isAutomated} (https://partner.tradovate.com/api/rest-api-endpoints/orders/modify-order.md;
    clOrdId is optional there and lands on the Modify command)."""
    body: dict[str, Any] = {
        "orderId": order_id,
        "orderQty": quantity,
        "orderType": "Stop",
        "stopPrice": stop_price,
        "isAutomated": True,
    }
    if cl_ord_id:
        body["clOrdId"] = cl_ord_id
    if time_in_force:
        body["timeInForce"] = time_in_force
    return body


def cancel_body(order_id: int) -> dict[str, Any]:
    """POST /order/cancelorder {orderId, isAutomated}
    (https://partner.tradovate.com/api/rest-api-endpoints/orders/cancel-order.md)."""
    return {"orderId": order_id, "isAutomated": True}


# --- fills, positions, cash ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fill:
    """GET /fill/list: {id, orderId, contractId, timestamp, tradeDate, action, qty, price,
    active, finallyPaired} (https://partner.tradovate.com/api/rest-api-endpoints/orders/fill-list.md)."""

    id: int
    order_id: int
    contract_id: int
    timestamp: datetime
    action: str
    qty: int
    price: Decimal
    active: bool

    @property
    def signed_qty(self) -> int:
        return self.qty if self.action == "Buy" else -self.qty


def parse_fills(raw: Any) -> list[Fill]:
    fills = []
    for row in _rows(raw, "fill"):
        action = _str(row, "action", "fill")
        if action not in {"Buy", "Sell"}:
            raise BadAnswer(f"Tradovate fill action {action!r}")
        fills.append(
            Fill(
                _int(row, "id", "fill"),
                _int(row, "orderId", "fill"),
                _int(row, "contractId", "fill"),
                _time(row, "timestamp", "fill"),
                action,
                _int(row, "qty", "fill"),
                _dec(row, "price", "fill"),
                bool(row.get("active", True)),
            )
        )
    return fills


FEE_FIELDS = (
    "commission",
    "clearingFee",
    "exchangeFee",
    "nfaFee",
    "brokerageFee",
    "ipFee",
    "orderRoutingFee",
)


def parse_fill_fees(raw: Any) -> dict[int, Decimal]:
    """GET /fillFee/list: [FillFee{id (= the fill's id), commission, clearingFee, exchangeFee,
    nfaFee, brokerageFee, ipFee, orderRoutingFee}]
    (https://partner.tradovate.com/api/rest-api-endpoints/orders/fill-fee-list) → fill id →
    everything the fill cost (assumed: the fees the account pays are the fill's commission)."""
    fees: dict[int, Decimal] = {}
    for row in _rows(raw, "fillFee"):
        total = Decimal(0)
        for name in FEE_FIELDS:
            if row.get(name) is not None:
                total += _dec(row, name, "fillFee")
        fees[_int(row, "id", "fillFee")] = total
    return fees


@dataclass(frozen=True, slots=True)
class Position:
    """GET /position/list: {id, accountId, contractId, timestamp, tradeDate, netPos, netPrice,
    bought, boughtValue, sold, soldValue, prevPos, prevPrice}
    (https://partner.tradovate.com/api/rest-api-endpoints/positions/position-list.md)."""

    account_id: int
    contract_id: int
    net_pos: int
    net_price: Decimal | None


def parse_positions(raw: Any) -> list[Position]:
    return [
        Position(
            _int(row, "accountId", "position"),
            _int(row, "contractId", "position"),
            _int(row, "netPos", "position"),
            _opt_dec(row, "netPrice", "position"),
        )
        for row in _rows(raw, "position")
    ]


@dataclass(frozen=True, slots=True)
class CashSnapshot:
    """POST /cashBalance/getcashbalancesnapshot {accountId} → {totalCashValue, realizedPnL,
    openPnL, totalPnL, ...}
    (https://partner.tradovate.com/api/rest-api-endpoints/accounting/get-cash-balance-snapshot.md)."""

    total_cash_value: Decimal
    realized_pnl: Decimal


def parse_cash(raw: Any) -> CashSnapshot:
    row = _mapping(raw, "cash balance snapshot")
    if row.get("errorText"):
        raise BadAnswer(f"Tradovate cash balance: {str(row['errorText']).splitlines()[0]}")
    realized = _opt_dec(row, "realizedPnL", "cash balance snapshot")
    return CashSnapshot(
        _dec(row, "totalCashValue", "cash balance snapshot"), realized or Decimal(0)
    )


def trade_date(raw: Mapping[str, Any]) -> date:
    """A tradeDate {year, month, day}."""
    return date(
        _int(raw, "year", "tradeDate"),
        _int(raw, "month", "tradeDate"),
        _int(raw, "day", "tradeDate"),
    )
