"""The book and the matching engine: accounts, orders (with their commands and versions), fills,
fill fees, positions and cash. Plain Python over ``Decimal``, no I/O and no clock of its own:
every call gets ``now``; every change returns the events it caused, ``(entityType, eventType,
entity)``, which the server pushes as ``props``.

Entity shapes follow Tradovate's REST reference (https://partner.tradovate.com/api/rest-api-endpoints/):
Order, Command, OrderVersion, Fill and FillFee under "Orders" (e.g. orders/fill-list,
orders/fill-fee-list), Position under "Positions", Account and CashBalance under "Accounting"
(accounting/account-list, accounting/get-cash-balance-snapshot). Where a field's value is our
choice the comment says "assumed".

Matching (TRADOVATE-SPEC.md): only ticks that arrive after an order works count. Market: fills
at once at the last known price (ask for a buy, bid for a sell, when known), else at the next
tick. Limit buy fills at a tick with price <= limit at the tick's price (sell >=). Stop buy
triggers at price >= stop and fills at that tick's price (sell <=). An OSO bracket works from its
parent's first fill (for the quantity filled so far) and is cancelled if the parent ends
unfilled. Fill times are the tick's time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradovate_local.contracts import Catalog, Contract
from tradovate_local.marketdata import ContractMarket, Tick, trade_date_entity

Event = tuple[str, str, dict[str, Any]]

ACTIONS = ("Buy", "Sell")
ORDER_TYPES = ("Market", "Limit", "Stop")
TIMES_IN_FORCE = ("Day", "GTC", "IOC")
OPEN_STATUSES = ("Working", "Suspended", "PendingNew")
# failureReason values of Tradovate's PlaceOrderResult / CommandResult (orders/place-order).
TOO_LATE = "TooLate"
INVALID_CONTRACT = "InvalidContract"
INVALID_PRICE = "InvalidPrice"
UNKNOWN = "UnknownReason"


class Refused(Exception):
    """An order command the book refuses: ``{failureReason, failureText}``."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


@dataclass
class Account:
    id: int
    name: str
    user_id: int
    initial_cash: Decimal
    created: datetime
    cash_id: int
    realized: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    cash_time: datetime | None = None

    def entity(self) -> dict[str, Any]:
        # Account {id, name, userId, accountType, active, ...} (accounting/account-list).
        return {
            "id": self.id,
            "name": self.name,
            "userId": self.user_id,
            "accountType": "Customer",
            "active": True,
            "clearingHouseId": 1,
            "riskCategoryId": 1,
            "autoLiqProfileId": 1,
            "marginAccountType": "Speculator",
            "legalStatus": "Individual",
            "archived": False,
            "timestamp": self.created,
        }

    @property
    def amount(self) -> Decimal:
        # assumed: cash = initial cash + realized P&L - fees.
        return self.initial_cash + self.realized - self.fees

    def cash_entity(self) -> dict[str, Any]:
        # CashBalance {id, accountId, timestamp, tradeDate, currencyId, amount, realizedPnL,
        # weekRealizedPnL} (accounting: cash-balance-item).
        moment = self.cash_time or self.created
        return {
            "id": self.cash_id,
            "accountId": self.id,
            "timestamp": moment,
            "tradeDate": trade_date_entity(moment),
            "currencyId": 1,
            "amount": self.amount,
            "realizedPnL": self.realized,
            "weekRealizedPnL": self.realized,
        }


@dataclass
class Version:
    id: int
    qty: int
    order_type: str
    price: Decimal | None
    stop_price: Decimal | None
    tif: str
    text: str | None


@dataclass
class Command:
    id: int
    order_id: int
    timestamp: datetime
    cl_ord_id: str | None
    command_type: str
    status: str
    is_automated: bool

    def entity(self) -> dict[str, Any]:
        # Command {id, orderId, timestamp, clOrdId, commandType, commandStatus, isAutomated}.
        out: dict[str, Any] = {
            "id": self.id,
            "orderId": self.order_id,
            "timestamp": self.timestamp,
            "commandType": self.command_type,
            "commandStatus": self.status,
            "isAutomated": self.is_automated,
        }
        if self.cl_ord_id is not None:
            out["clOrdId"] = self.cl_ord_id
        return out


@dataclass
class Order:
    id: int
    account_id: int
    contract: Contract
    action: str
    timestamp: datetime
    versions: list[Version]
    status: str
    parent_id: int | None = None
    filled: int = 0
    works_after: int = 0  # ticks with seq > works_after count
    triggered: bool = False
    parts: deque[int] | None = None
    never_works: bool = False
    bracket_ids: list[int] = field(default_factory=list)
    limit: int | None = None  # a bracket works for what its parent has filled

    @property
    def version(self) -> Version:
        return self.versions[-1]

    @property
    def cap(self) -> int:
        if self.limit is None:
            return self.version.qty
        return min(self.version.qty, self.limit)

    def entity(self) -> dict[str, Any]:
        # Order {id, accountId, contractId, timestamp, action, ordStatus, parentId?, ...}.
        out: dict[str, Any] = {
            "id": self.id,
            "accountId": self.account_id,
            "contractId": self.contract.id,
            "timestamp": self.timestamp,
            "action": self.action,
            "ordStatus": self.status,
            "admin": False,
            "archived": False,
        }
        if self.parent_id is not None:
            out["parentId"] = self.parent_id
        return out

    def version_entity(self, version: Version) -> dict[str, Any]:
        # OrderVersion {id, orderId, orderQty, orderType, price?, stopPrice?, timeInForce, text?}.
        out: dict[str, Any] = {
            "id": version.id,
            "orderId": self.id,
            "orderQty": version.qty,
            "orderType": version.order_type,
            "timeInForce": version.tif,
        }
        if version.price is not None:
            out["price"] = version.price
        if version.stop_price is not None:
            out["stopPrice"] = version.stop_price
        if version.text is not None:
            out["text"] = version.text
        return out


@dataclass
class Fill:
    id: int
    order_id: int
    contract_id: int
    timestamp: datetime
    action: str
    qty: int
    price: Decimal
    commission: Decimal

    def entity(self) -> dict[str, Any]:
        # Fill {id, orderId, contractId, timestamp, tradeDate, action, qty, price, active,
        # finallyPaired} (orders/fill-list).
        return {
            "id": self.id,
            "orderId": self.order_id,
            "contractId": self.contract_id,
            "timestamp": self.timestamp,
            "tradeDate": trade_date_entity(self.timestamp),
            "action": self.action,
            "qty": self.qty,
            "price": self.price,
            "active": True,
            "finallyPaired": 0,
        }

    def fee_entity(self) -> dict[str, Any]:
        # FillFee {id (= the fill's id), commission, clearingFee, exchangeFee, nfaFee,
        # brokerageFee, ipFee, orderRoutingFee, *CurrencyId} (orders/fill-fee-list).
        # assumed: every fee but the commission is zero; currency 1 = USD.
        zero = Decimal("0")
        return {
            "id": self.id,
            "commission": self.commission,
            "commissionCurrencyId": 1,
            "clearingFee": zero,
            "clearingCurrencyId": 1,
            "exchangeFee": zero,
            "exchangeCurrencyId": 1,
            "nfaFee": zero,
            "nfaCurrencyId": 1,
            "brokerageFee": zero,
            "brokerageCurrencyId": 1,
            "ipFee": zero,
            "ipCurrencyId": 1,
            "orderRoutingFee": zero,
            "orderRoutingCurrencyId": 1,
        }


@dataclass
class Lot:
    price: Decimal
    qty: int  # signed: > 0 long, < 0 short


@dataclass
class Position:
    id: int
    account_id: int
    contract: Contract
    timestamp: datetime
    lots: list[Lot] = field(default_factory=list)
    bought: int = 0
    bought_value: Decimal = Decimal(0)
    sold: int = 0
    sold_value: Decimal = Decimal(0)

    @property
    def net_pos(self) -> int:
        return sum(lot.qty for lot in self.lots)

    def net_price(self) -> Decimal | None:
        net = self.net_pos
        if net == 0:
            return None
        return sum((lot.price * lot.qty for lot in self.lots), Decimal(0)) / net

    def entity(self) -> dict[str, Any]:
        # Position {id, accountId, contractId, timestamp, tradeDate, netPos, netPrice, bought,
        # boughtValue, sold, soldValue, prevPos, prevPrice}. assumed: netPrice (the average
        # price of the open lots) is left out when flat; prevPos 0, no prevPrice (no sessions).
        out: dict[str, Any] = {
            "id": self.id,
            "accountId": self.account_id,
            "contractId": self.contract.id,
            "timestamp": self.timestamp,
            "tradeDate": trade_date_entity(self.timestamp),
            "netPos": self.net_pos,
            "bought": self.bought,
            "boughtValue": self.bought_value,
            "sold": self.sold,
            "soldValue": self.sold_value,
            "prevPos": 0,
        }
        price = self.net_price()
        if price is not None:
            out["netPrice"] = price
        return out

    def apply(self, action: str, qty: int, price: Decimal) -> Decimal:
        """Book a fill; the realized P&L in points x contracts (FIFO lots, exact)."""
        sign = 1 if action == "Buy" else -1
        if sign > 0:
            self.bought += qty
            self.bought_value += price * qty
        else:
            self.sold += qty
            self.sold_value += price * qty
        realized = Decimal(0)
        left = qty
        while left and self.lots and (self.lots[0].qty > 0) != (sign > 0):
            lot = self.lots[0]
            closed = min(left, abs(lot.qty))
            # a buy closes a short lot: (lot - price); a sell closes a long lot: (price - lot)
            realized += (lot.price - price) * closed if sign > 0 else (price - lot.price) * closed
            lot.qty += closed * sign
            left -= closed
            if lot.qty == 0:
                self.lots.pop(0)
        if left:
            self.lots.append(Lot(price, left * sign))
        return realized


class Book:
    """Everything the server knows about accounts and orders, and the market it matched on."""

    def __init__(self, catalog: Catalog, commission: Decimal) -> None:
        self.catalog = catalog
        self.commission = commission
        self.accounts: dict[int, Account] = {}
        self.orders: dict[int, Order] = {}
        self.commands: dict[int, Command] = {}
        self.fills: dict[int, Fill] = {}
        self.positions: dict[tuple[int, int], Position] = {}
        self.markets: dict[int, ContractMarket] = {}
        self._next_id = 0

    def new_id(self) -> int:
        # assumed: one increasing id sequence for every entity type.
        self._next_id += 1
        return self._next_id

    def add_account(self, name: str, user_id: int, cash: Decimal, now: datetime) -> Account:
        account = Account(self.new_id(), name, user_id, cash, now, cash_id=self.new_id())
        self.accounts[account.id] = account
        return account

    def market(self, contract_id: int) -> ContractMarket:
        market = self.markets.get(contract_id)
        if market is None:
            market = self.markets[contract_id] = ContractMarket(contract_id)
        return market

    def order_versions(self, order: Order) -> list[dict[str, Any]]:
        return [order.version_entity(v) for v in order.versions]

    # --- commands -------------------------------------------------------------------------

    def place(
        self,
        *,
        account_id: int,
        symbol: str,
        action: str,
        qty: int,
        order_type: str,
        price: Decimal | None,
        stop_price: Decimal | None,
        tif: str,
        text: str | None,
        cl_ord_id: str | None,
        is_automated: bool,
        now: datetime,
        parts: int | None = None,
        bracket: dict[str, Any] | None = None,
        bracket_never_works: bool = False,
    ) -> tuple[int, int | None, list[Event]]:
        """Place an order (and its OSO bracket); ``(orderId, oso1Id, events)``."""
        if account_id not in self.accounts:
            raise Refused(UNKNOWN, f"unknown account {account_id}")
        contract = self.catalog.by_name(symbol) or self.catalog.by_symbol(symbol)
        if contract is None:
            raise Refused(INVALID_CONTRACT, f"unknown contract {symbol!r}")
        self._check(action, qty, order_type, price, stop_price, tif)
        if bracket is not None:
            b_action = bracket.get("action")
            b_type = bracket.get("orderType")
            b_qty = bracket.get("orderQty", qty)
            b_tif = bracket.get("timeInForce", "GTC")
            b_price = _decimal_or_none(bracket.get("price"))
            b_stop = _decimal_or_none(bracket.get("stopPrice"))
            if not isinstance(b_qty, int) or isinstance(b_qty, bool):
                raise Refused(UNKNOWN, "bracket1.orderQty must be an integer")
            self._check(b_action, b_qty, b_type, b_price, b_stop, b_tif)
        events: list[Event] = []
        order = self._new_order(
            account_id, contract, action, qty, order_type, price, stop_price, tif, text, now
        )
        events += self._command(order, "New", cl_ord_id, is_automated, now)
        if parts is not None and parts > 1:
            order.parts = _split(qty, parts)
        oso_id: int | None = None
        if bracket is not None:
            child = self._new_order(
                account_id,
                contract,
                str(bracket["action"]),
                int(bracket.get("orderQty", qty)),
                str(bracket["orderType"]),
                _decimal_or_none(bracket.get("price")),
                _decimal_or_none(bracket.get("stopPrice")),
                str(bracket.get("timeInForce", "GTC")),
                text,
                now,
            )
            # assumed: a bracket waits as "Suspended" until its parent fills.
            child.status = "Suspended"
            child.parent_id = order.id
            child.never_works = bracket_never_works
            order.bracket_ids.append(child.id)
            oso_id = child.id
        events.append(("order", "Created", order.entity()))
        events.append(("orderVersion", "Created", order.version_entity(order.version)))
        if oso_id is not None:
            child = self.orders[oso_id]
            events += self._command(child, "New", None, is_automated, now)
            events.append(("order", "Created", child.entity()))
            events.append(("orderVersion", "Created", child.version_entity(child.version)))
        events += self._on_placed(order, now)
        return order.id, oso_id, events

    def cancel(self, order_id: int, is_automated: bool, now: datetime) -> tuple[int, list[Event]]:
        order = self.orders.get(order_id)
        if order is None:
            raise Refused(UNKNOWN, f"unknown order {order_id}")
        if order.status not in OPEN_STATUSES:
            raise Refused(TOO_LATE, f"order {order_id} is {order.status}")
        events = self._command(order, "Cancel", None, is_automated, now)
        command_id = events[-1][2]["id"]
        events += self._end(order, "Canceled")
        return command_id, events

    def modify(
        self,
        order_id: int,
        *,
        qty: int,
        order_type: str,
        price: Decimal | None,
        stop_price: Decimal | None,
        tif: str | None,
        is_automated: bool,
        now: datetime,
        cl_ord_id: str | None = None,
    ) -> tuple[int, list[Event]]:
        order = self.orders.get(order_id)
        if order is None:
            raise Refused(UNKNOWN, f"unknown order {order_id}")
        if order.status not in OPEN_STATUSES:
            raise Refused(TOO_LATE, f"order {order_id} is {order.status}")
        tif = tif or order.version.tif
        self._check(order.action, qty, order_type, price, stop_price, tif)
        if qty < order.filled:
            raise Refused(UNKNOWN, f"orderQty {qty} is below the filled {order.filled}")
        events = self._command(order, "Modify", cl_ord_id, is_automated, now)
        command_id = events[-1][2]["id"]
        version = Version(
            self.new_id(), qty, order_type, price, stop_price, tif, order.version.text
        )
        order.versions.append(version)
        order.triggered = False
        order.works_after = self.market(order.contract.id).seq
        events.append(("orderVersion", "Created", order.version_entity(version)))
        events.append(("order", "Updated", order.entity()))
        if order.filled >= qty:
            events += self._end(order, "Filled")
        return command_id, events

    def tick(self, contract: Contract, tick: Tick) -> list[Event]:
        """Fold a market tick in and match every order working before it."""
        market = self.market(contract.id)
        market.apply(tick)
        events: list[Event] = []
        for order in sorted(self.orders.values(), key=lambda o: o.id):
            if (
                order.contract.id != contract.id
                or order.status != "Working"
                or order.never_works
                or order.works_after >= market.seq
            ):
                continue
            fill_price = self._match(order, tick)
            if fill_price is not None:
                events += self._fill(order, fill_price, tick.time)
        return events

    # --- reading ---------------------------------------------------------------------------

    def position_list(self) -> list[dict[str, Any]]:
        return [p.entity() for p in self.positions.values()]

    def cash_snapshot(self, account_id: int) -> dict[str, Any] | None:
        """CashBalanceSnapshot {totalCashValue, totalPnL, initialMargin, maintenanceMargin,
        netLiq, openPnL, realizedPnL, weekRealizedPnL}
        (https://partner.tradovate.com/api/rest-api-endpoints/accounting/get-cash-balance-snapshot).
        assumed: realizedPnL is the trading result before fees; fees come off the cash;
        openPnL is marked at each contract's last trade; no margin is modelled."""
        account = self.accounts.get(account_id)
        if account is None:
            return None
        open_pnl = Decimal(0)
        for (acct, _), position in self.positions.items():
            if acct != account_id:
                continue
            market = self.markets.get(position.contract.id)
            if market is None or market.last is None:
                continue
            for lot in position.lots:
                open_pnl += (
                    (market.last.price - lot.price)
                    * lot.qty
                    * position.contract.product.value_per_point
                )
        zero = Decimal(0)
        return {
            "totalCashValue": account.amount,
            "totalPnL": account.realized + open_pnl,
            "initialMargin": zero,
            "maintenanceMargin": zero,
            "netLiq": account.amount + open_pnl,
            "openPnL": open_pnl,
            "realizedPnL": account.realized,
            "weekRealizedPnL": account.realized,
        }

    # --- inside ----------------------------------------------------------------------------

    def _check(
        self,
        action: object,
        qty: object,
        order_type: object,
        price: Decimal | None,
        stop_price: Decimal | None,
        tif: object,
    ) -> None:
        if action not in ACTIONS:
            raise Refused(UNKNOWN, f"action must be one of {ACTIONS}")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
            raise Refused(UNKNOWN, "orderQty must be a positive integer")
        if order_type not in ORDER_TYPES:
            raise Refused(UNKNOWN, f"orderType must be one of {ORDER_TYPES}")
        if tif not in TIMES_IN_FORCE:
            raise Refused(UNKNOWN, f"timeInForce must be one of {TIMES_IN_FORCE}")
        if order_type == "Limit" and (price is None or price <= 0):
            raise Refused(INVALID_PRICE, "a Limit order needs a positive price")
        if order_type == "Stop" and (stop_price is None or stop_price <= 0):
            raise Refused(INVALID_PRICE, "a Stop order needs a positive stopPrice")

    def _new_order(
        self,
        account_id: int,
        contract: Contract,
        action: str,
        qty: int,
        order_type: str,
        price: Decimal | None,
        stop_price: Decimal | None,
        tif: str,
        text: str | None,
        now: datetime,
    ) -> Order:
        order_id = self.new_id()
        version = Version(
            self.new_id(),
            qty,
            order_type,
            price if order_type == "Limit" else None,
            stop_price if order_type == "Stop" else None,
            tif,
            text,
        )
        order = Order(
            order_id,
            account_id,
            contract,
            action,
            now,
            [version],
            "Working",
            works_after=self.market(contract.id).seq,
        )
        self.orders[order_id] = order
        return order

    def _command(
        self,
        order: Order,
        kind: str,
        cl_ord_id: str | None,
        is_automated: bool,
        now: datetime,
    ) -> list[Event]:
        # assumed: commands are executed at once ("Executed").
        command = Command(self.new_id(), order.id, now, cl_ord_id, kind, "Executed", is_automated)
        self.commands[command.id] = command
        return [("command", "Created", command.entity())]

    def _on_placed(self, order: Order, now: datetime) -> list[Event]:
        market = self.market(order.contract.id)
        version = order.version
        if version.order_type == "Market" and market.last is not None:
            price = self._market_price(order, market.last.price, market.bid, market.ask)
            return self._fill(order, price, market.last.time)
        if version.tif == "IOC" and version.order_type != "Market":
            # assumed: an IOC limit or stop that cannot fill at once against the last trade
            # is cancelled; one that can fills at the last trade.
            last = market.last
            if last is not None and self._match(order, last) is not None:
                return self._fill(order, last.price, last.time)
            return self._end(order, "Canceled")
        return []

    @staticmethod
    def _market_price(
        order: Order, price: Decimal, bid: Decimal | None, ask: Decimal | None
    ) -> Decimal:
        if order.action == "Buy" and ask is not None:
            return ask
        if order.action == "Sell" and bid is not None:
            return bid
        return price

    def _match(self, order: Order, tick: Tick) -> Decimal | None:
        version = order.version
        buy = order.action == "Buy"
        if version.order_type == "Market":
            return self._market_price(order, tick.price, tick.bid, tick.ask)
        if version.order_type == "Limit":
            assert version.price is not None
            # assumed: a resting limit that a trade reaches or passes fills at its own price
            # (price-time priority: the trade through it traded against it at the limit).
            ok = tick.price <= version.price if buy else tick.price >= version.price
            return version.price if ok else None
        assert version.stop_price is not None
        if not order.triggered:
            hit = tick.price >= version.stop_price if buy else tick.price <= version.stop_price
            if not hit:
                return None
            order.triggered = True
        return tick.price

    def _fill(self, order: Order, price: Decimal, moment: datetime) -> list[Event]:
        remaining = order.cap - order.filled
        if remaining <= 0:
            return []
        qty = remaining
        if order.parts:
            qty = min(order.parts.popleft(), remaining)
        account = self.accounts[order.account_id]
        fill = Fill(
            self.new_id(),
            order.id,
            order.contract.id,
            moment,
            order.action,
            qty,
            price,
            self.commission * qty,
        )
        self.fills[fill.id] = fill
        order.filled += qty
        events: list[Event] = [
            ("fill", "Created", fill.entity()),
            ("fillFee", "Created", fill.fee_entity()),
        ]
        key = (order.account_id, order.contract.id)
        position = self.positions.get(key)
        created = position is None
        if position is None:
            position = self.positions[key] = Position(
                self.new_id(), order.account_id, order.contract, moment
            )
        position.timestamp = moment
        points = position.apply(order.action, qty, price)
        account.realized += points * order.contract.product.value_per_point
        account.fees += fill.commission
        account.cash_time = moment
        events.append(("position", "Created" if created else "Updated", position.entity()))
        events.append(("cashBalance", "Updated", account.cash_entity()))
        if order.filled >= order.version.qty:
            events += self._end(order, "Filled")
        else:
            events.append(("order", "Updated", order.entity()))
        events += self._brackets_follow(order)
        return events

    def _brackets_follow(self, parent: Order) -> list[Event]:
        """A parent's fill starts its brackets working (for the quantity filled so far)."""
        events: list[Event] = []
        for child_id in parent.bracket_ids:
            child = self.orders[child_id]
            # assumed: while the parent is partly filled, its bracket works for what has filled.
            child.limit = parent.filled
            if child.status != "Suspended" or child.never_works or parent.filled == 0:
                continue
            child.status = "Working"
            child.works_after = self.market(child.contract.id).seq
            events.append(("order", "Updated", child.entity()))
        return events

    def _end(self, order: Order, status: str) -> list[Event]:
        order.status = status
        events: list[Event] = [("order", "Updated", order.entity())]
        if status == "Filled":
            return events
        for child_id in order.bracket_ids:
            child = self.orders[child_id]
            if child.status not in OPEN_STATUSES:
                continue
            if order.filled == 0:
                events += self._end(child, "Canceled")
            elif child.version.qty > order.filled:
                # assumed: a parent ended partly filled leaves its bracket for what filled.
                old = child.version
                version = Version(
                    self.new_id(),
                    order.filled,
                    old.order_type,
                    old.price,
                    old.stop_price,
                    old.tif,
                    old.text,
                )
                child.versions.append(version)
                events.append(("orderVersion", "Created", child.version_entity(version)))
        return events


def _split(qty: int, parts: int) -> deque[int]:
    parts = min(parts, qty)
    base, extra = divmod(qty, parts)
    return deque(base + (1 if i < extra else 0) for i in range(parts))


def _decimal_or_none(value: object) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise Refused(INVALID_PRICE, "a price must be a number")
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError as exc:
            raise Refused(INVALID_PRICE, f"bad price {value!r}") from exc
    if isinstance(value, float):
        return Decimal(str(value))
    raise Refused(INVALID_PRICE, "a price must be a number")
