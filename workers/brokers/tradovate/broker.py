"""``TradovateBroker``: the ``AccountManager`` of one Tradovate account, over REST.

Build it with ``TradovateBroker(rest, tokens, redis_client, account)`` (``rest``: a
``RestClient``; ``tokens``: ``auth.Tokens``; ``redis_client``: the sessions' Redis, for the
place claims; ``account``: the Tradovate account name, the session's account).

Client order ids. Tradovate does not refuse a repeated clOrdId, so a resend is made idempotent
here: before placing, the order is looked up by clOrdId (``/command/list``), under a claim
``tf:tradovate:<account>:claim:<clOrdId>`` (``SET NX EX``) in the sessions' Redis; a claim
held by another process is ``RetryLater``. The claim is left to expire (a send whose answer
was lost keeps others away until the lookup can see its order). The session id travels in the
order's ``text`` (<= 64 characters) and comes back on its OrderVersion. An entry with an
attached stop goes out as ONE ``/order/placeoso`` with ``bracket1``.

Order ids by clOrdId. An order's id never changes, so once placed (``orderId``, and
``oso1Id`` for its bracket) or found, a clOrdId's order id is remembered, in this process and
in the sessions' Redis (hash ``tf:tradovate:<account>:order-ids``, shared by every worker):
a later lookup reads only that order (``/order/item``), not the account's whole command list.
A remembered id the broker no longer knows, or of another account, is looked up again.

Every query that fails (timeout, 5xx, maintenance) is ``ServiceUnavailable``; nothing is ever
answered flat or empty on failure.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, replace
from decimal import Decimal

import redis

from trading.exceptions import BadInput, RetryLater, ServiceUnavailable
from trading.stops import attached_entry_id, attached_stop_id
from workers.brokers.base import FILLS_START
from workers.brokers.commands import (
    Balance,
    BrokerOrder,
    BrokerStatus,
    CancelOrder,
    Fill,
    OrderAck,
    PlaceOrder,
    QueryBalance,
    QueryOpenOrders,
    QueryOrder,
    QueryPositions,
)
from workers.brokers.tradovate import messages as m
from workers.brokers.tradovate.auth import Api, Tokens, rest_for, tokens_for
from workers.brokers.tradovate.rest import NotFound, RestClient
from workers.brokers.tradovate.symbols import from_tradovate, to_tradovate
from workers.settings import TradovateSettings

__all__ = ["ContractInfo", "TradovateBroker", "tradovate_broker"]

_log = logging.getLogger(__name__)

CLAIM_TTL_S = 30
RELEASE_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
"""Deletes a place claim only if it is still this try's (compare and delete)."""
OUTSIDE_PREFIX = "TV-"
"""The client order id of an order tradefleet did not send is ``TV-<Tradovate order id>``."""
ORDER_IDS_TTL_S = 30 * 86_400
"""How long the remembered clOrdId → order id map of an account outlives its last write."""
FILLS_BATCH = 500
ORDER_ITEMS_MAX = 8
"""``fills_since`` reads up to this many unknown orders one by one, more with one order list."""
MAX_TEXT = 64
"""clOrdId and text are at most 64 characters (command-item / order-version docs)."""

STATUS: dict[str, BrokerStatus] = {
    # ordStatus (https://partner.tradovate.com/api/rest-api-endpoints/orders/order-list.md)
    "Working": "working",
    "PendingNew": "working",
    "PendingReplace": "working",
    "PendingCancel": "working",
    "Suspended": "working",  # alive, not working yet (an OSO bracket before its parent fills)
    "Filled": "filled",
    "Completed": "filled",  # assumed: a finished order with fills; one without is cancelled
    "Canceled": "cancelled",
    "Expired": "cancelled",
    "Rejected": "rejected",
    "Unknown": "unknown",
}
ORDER_TYPES = {"Market": "market", "Limit": "limit", "Stop": "stop"}
NAMING = frozenset({"New", "Modify"})
"""Commands whose clOrdId names the order: its New, and a Modify that moved it in place under
a new id (``TradovateBroker.modify_stop``)."""
TIMES_IN_FORCE = {"Day": "day", "GTC": "gtc", "IOC": "ioc"}


@dataclass(frozen=True, slots=True)
class ContractInfo:
    """A contract as Tradovate knows it: tradefleet symbol, its id, tick size, point value."""

    symbol: str
    tradovate_name: str
    contract_id: int
    tick_size: Decimal
    point_value: Decimal


@dataclass(frozen=True, slots=True)
class _Origin:
    """Who sent an order: its client order id and session id (immutable once placed)."""

    client_order_id: str
    session_id: str


class TradovateBroker:
    """The ``AccountManager`` of the Tradovate account ``account``."""

    def __init__(
        self,
        rest: RestClient,
        tokens: Tokens,
        redis_client: redis.Redis,
        account: str,
        *,
        claim_ttl_s: int = CLAIM_TTL_S,
    ) -> None:
        if not isinstance(account, str) or not account:
            raise BadInput("a Tradovate broker needs its account name")
        self.api = Api(rest, tokens)
        self.account = account
        self._redis = redis_client
        self._claim_ttl_s = claim_ttl_s
        self._account_id: int | None = None
        self._by_symbol: dict[str, ContractInfo] = {}
        self._by_id: dict[int, ContractInfo] = {}
        self._origins: dict[int, _Origin] = {}
        self._order_ids: dict[str, int] = {}
        self._order_accounts: dict[int, int] = {}
        """Tradovate order id → its account id (never changes), learned as orders pass."""
        self._lock = threading.Lock()

    # accounts and contracts ------------------------------------------------------------------

    def _check(self, account: str) -> None:
        if account != self.account:
            raise BadInput(f"this Tradovate broker serves account {self.account}, not {account}")

    def account_id(self) -> int:
        """The account's id (/account/list, by name); an unknown name is ``BadInput``."""
        if self._account_id is None:
            accounts = m.parse_accounts(self.api.get("account/list"))
            match = [a for a in accounts if a.name == self.account]
            if not match:
                raise BadInput(f"Tradovate has no account named {self.account}")
            self._account_id = match[0].id
        return self._account_id

    def contract(self, symbol: str) -> ContractInfo:
        """The contract ``symbol`` (tradefleet's ``ESZ13``), looked up once per process."""
        with self._lock:
            known = self._by_symbol.get(symbol)
        if known is not None:
            return known
        name = to_tradovate(symbol)
        try:
            contract = m.parse_contract(self.api.get("contract/find", name=name))
        except NotFound:
            raise BadInput(f"Tradovate knows no contract {name} ({symbol})") from None
        info = self._info(contract)
        if info.symbol != symbol:
            raise BadInput(f"Tradovate's {name} matures as {info.symbol}, not {symbol}")
        return info

    def _contract_by_id(self, contract_id: int) -> ContractInfo:
        with self._lock:
            known = self._by_id.get(contract_id)
        if known is not None:
            return known
        return self._info(m.parse_contract(self.api.get("contract/item", id=contract_id)))

    def _info(self, contract: m.Contract) -> ContractInfo:
        maturity = m.parse_maturity(
            self.api.get("contractMaturity/item", id=contract.contract_maturity_id)
        )
        product = m.parse_product(self.api.get("product/item", id=maturity.product_id))
        info = ContractInfo(
            from_tradovate(contract.name, maturity.year),
            contract.name,
            contract.id,
            product.tick_size,
            product.value_per_point,
        )
        with self._lock:
            self._by_symbol[info.symbol] = info
            self._by_id[info.contract_id] = info
        return info

    # placing -----------------------------------------------------------------------------

    def place_order(self, command: PlaceOrder) -> OrderAck:
        self._check(command.account)
        coid = command.client_order_id
        for text, what in ((coid, "client order id"), (command.session_id, "session id")):
            if len(text) > MAX_TEXT:
                raise BadInput(f"{what} {text!r} is longer than Tradovate's {MAX_TEXT} characters")
        existing = self._find_known(coid)
        if existing is not None:
            return self._ack(coid, existing, duplicate=True)
        claim, token = f"tf:tradovate:{self.account}:claim:{coid}", uuid.uuid4().hex
        try:
            claimed = self._redis.set(claim, token, nx=True, ex=self._claim_ttl_s)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"the sessions' Redis is not answering ({exc})") from None
        if not claimed:
            raise RetryLater(f"order {coid} is being placed at Tradovate by another process")
        try:
            existing = self._find(coid, command.parent_client_order_id)
        except Exception:
            # nothing was sent: the next try may look again at once
            self._release(claim, token)
            raise
        if existing is not None:
            return self._ack(coid, existing, duplicate=True)
        parent = command.parent_client_order_id
        if parent is not None and not self._parent_filled(parent):
            # A stop attached to an entry rests at Tradovate only as that entry's bracket
            # (placeoso): one whose entry has not filled here would work on its own, before
            # (or without) the position it protects. The fleet places the stop the position
            # needs once the entry fills (``workers.stops.sync``).
            self._release(claim, token)
            _log.warning("stop %s not placed: its entry %s has not filled", coid, parent)
            return OrderAck(coid, "", "cancelled")
        # From here the claim is left to expire: a place whose answer was lost may still
        # create the order, and no other try may look before it would show.
        return self._place(command)

    def _parent_filled(self, parent_coid: str) -> bool:
        order = self._find(parent_coid)
        return order is not None and self._status(order) == "filled"

    def _release(self, claim: str, token: str) -> None:
        try:
            self._redis.eval(RELEASE_CLAIM, 1, claim, token)
        except redis.RedisError as exc:
            _log.warning("place claim %s not released (%s); it expires", claim, type(exc).__name__)

    def _place(self, command: PlaceOrder) -> OrderAck:
        coid = command.client_order_id
        info = self.contract(command.contract)
        body = m.order_body(
            account_name=self.account,
            account_id=self.account_id(),
            cl_ord_id=coid,
            action=command.side,
            symbol=info.tradovate_name,
            quantity=command.quantity,
            order_type=command.order_type,
            price=command.limit_price,
            stop_price=command.stop_price,
            time_in_force=command.time_in_force,
            text=command.session_id,
        )
        stop = command.attached_stop
        if stop is not None:
            assert stop.stop_price is not None  # a PlaceOrder stop always has one
            body["bracket1"] = m.bracket_body(
                cl_ord_id=stop.client_order_id,
                action=stop.side,
                stop_price=stop.stop_price,
                time_in_force=stop.time_in_force,
                text=stop.session_id,
            )
            result = m.parse_place(self.api.post("order/placeoso", body))
        else:
            result = m.parse_place(self.api.post("order/placeorder", body))
        if result.failure_reason or result.order_id is None:
            _log.warning(
                "Tradovate rejected %s: %s %s", coid, result.failure_reason, result.failure_text
            )
            boid = "" if result.order_id is None else str(result.order_id)
            return OrderAck(coid, boid, "rejected")
        self._origins[result.order_id] = _Origin(coid, command.session_id)
        self._order_accounts[result.order_id] = self.account_id()
        self._remember(coid, result.order_id)
        if stop is not None and result.oso1_id is not None:
            self._origins[result.oso1_id] = _Origin(stop.client_order_id, stop.session_id)
            self._order_accounts[result.oso1_id] = self.account_id()
            self._remember(stop.client_order_id, result.oso1_id)
        try:
            order = m.parse_order(self.api.get("order/item", id=result.order_id))
        except ServiceUnavailable as exc:
            _log.warning("order %s placed; its status not read (%s)", coid, exc)
            return OrderAck(coid, str(result.order_id), "working")
        return self._ack(coid, order)

    def _ack(self, coid: str, order: m.Order, *, duplicate: bool = False) -> OrderAck:
        return OrderAck(coid, str(order.id), self._status(order), duplicate)

    def _status(self, order: m.Order) -> BrokerStatus:
        status = STATUS.get(order.ord_status, "unknown")
        if order.ord_status == "Completed" and not self._fills_of(order.id):
            return "cancelled"
        if order.ord_status == "Suspended" and order.parent_id is not None:
            return self._bracket_status(order, order.parent_id)
        return status

    def _bracket_status(self, order: m.Order, parent_id: int) -> BrokerStatus:
        """An OSO bracket waits (``Suspended``) until its parent fills, then works. One still
        waiting after its parent filled was acknowledged but is not worked: it would never
        protect the position (the broker that lies). It is cancelled here, so it cannot come
        to life next to the stop that replaces it, and answered ``cancelled``: the fleet then
        places a new stop and records an event (``workers.orders.send.poll_order``,
        reconciliation)."""
        if not self._fills_of(parent_id):
            return "working"
        again = self._order_item(order.id)
        if again is None or again.ord_status != "Suspended":
            return "unknown" if again is None else self._status(again)
        _log.warning(
            "Tradovate shows stop bracket %s not working although its entry %s filled; "
            "cancelling it so a new stop can replace it",
            order.id,
            parent_id,
        )
        result = m.parse_command_result(self.api.post("order/cancelorder", m.cancel_body(order.id)))
        if result.failure_reason:
            _log.warning(
                "Tradovate refused to cancel bracket %s: %s", order.id, result.failure_reason
            )
        return "cancelled"

    # finding orders by client order id ---------------------------------------------------------

    def _find(self, coid: str, parent_coid: str | None = None) -> m.Order | None:
        """The account's order whose New (or Modify: a stop moved in place, ``modify_stop``)
        command carries ``coid``; else, for a stop attached to an entry, the entry's bracket
        (an OSO child, ``parentId`` = the entry)."""
        account_id = self.account_id()
        known = self._find_known(coid)
        if known is not None:
            return known
        found = self._scan(coid, parent_coid, account_id)
        if found is not None:
            self._remember(coid, found.id)
        return found

    def _find_known(self, coid: str) -> m.Order | None:
        """The order of ``coid`` by its remembered id alone (one ``/order/item``); None when
        none is remembered, or the broker does not know it as this account's. A place checks
        this before its claim and looks the whole list up only under the claim: an order
        placed elsewhere and not remembered (its placer died before) is found there once the
        claim that placer held has expired."""
        known = self._known_id(coid)
        if known is None:
            return None
        order = self._order_item(known)
        return order if order is not None and order.account_id == self.account_id() else None

    def _scan(self, coid: str, parent_coid: str | None, account_id: int) -> m.Order | None:
        """``_find`` through the account's whole command list (and order list)."""
        commands = m.parse_commands(self.api.get("command/list"))
        ids = [c.order_id for c in commands if c.cl_ord_id == coid and c.command_type in NAMING]
        for order_id in sorted(set(ids)):
            order = self._order_item(order_id)
            if order is not None and order.account_id == account_id:
                return order
        outside = _outside_order_id(coid)
        if outside is not None:
            # an order tradefleet did not send, by the id ``_origin`` gave it (``TV-<id>``)
            order = self._order_item(outside)
            if order is not None and order.account_id == account_id:
                return order if self._origin(order).client_order_id == coid else None
        if parent_coid is None:
            return None
        parents = [c.order_id for c in commands if c.cl_ord_id == parent_coid]
        if not parents:
            return None
        children = [
            o
            for o in m.parse_orders(self.api.get("order/list"))
            if o.parent_id in parents and o.account_id == account_id
        ]
        return min(children, key=lambda o: o.id) if children else None

    def _order_ids_key(self) -> str:
        return f"tf:tradovate:{self.account}:order-ids"

    def _remember(self, coid: str, order_id: int) -> None:
        """``coid`` is the order ``order_id`` (for good: an order's id never changes)."""
        self._order_ids[coid] = order_id
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(self._order_ids_key(), coid, str(order_id))
            pipe.expire(self._order_ids_key(), ORDER_IDS_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:  # only a cache: the lookup still finds the order
            _log.warning("order id of %s not remembered (%s)", coid, type(exc).__name__)

    def _known_id(self, coid: str) -> int | None:
        """The remembered order id of ``coid`` (this process's, else the shared map's)."""
        known = self._order_ids.get(coid)
        if known is not None:
            return known
        try:
            raw = self._redis.hget(self._order_ids_key(), coid)
        except redis.RedisError:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        if not isinstance(text, str) or not text.isdigit():
            return None
        known = int(text)
        self._order_ids[coid] = known
        return known

    def _order_item(self, order_id: int) -> m.Order | None:
        try:
            return m.parse_order(self.api.get("order/item", id=order_id))
        except NotFound:
            return None

    def _origin(self, order: m.Order) -> _Origin:
        """The client order id and session id of ``order``: the clOrdId of its newest New or
        Modify command that has one (a stop moved in place goes by the move's id; read again
        while the order works, since any process may move it) and its first OrderVersion's
        text; an OSO bracket without a clOrdId of its own takes the stop
        id of its parent (``trading.stops.attached_stop_id``); an order tradefleet did not send
        is ``TV-<order id>`` with no session (assumed: a synthetic id, so it can be adopted)."""
        known = self._origins.get(order.id)
        if known is not None and STATUS.get(order.ord_status) != "working":
            return known  # a final order is never renamed again
        commands = m.parse_commands(self.api.get("command/deps", masterid=order.id))
        named = [c for c in commands if c.command_type in NAMING and c.cl_ord_id]
        coid = max(named, key=lambda c: c.id).cl_ord_id if named else None
        if known is not None:
            # a working order may have been moved in place under another id by another
            # process since: its name is read again, its session never changes
            origin = _Origin(coid or known.client_order_id, known.session_id)
            self._origins[order.id] = origin
            return origin
        versions = m.parse_order_versions(self.api.get("orderVersion/deps", masterid=order.id))
        session = next((v.text for v in sorted(versions, key=lambda v: v.id) if v.text), None)
        if coid is None and order.parent_id is not None:
            parent = self._order_item(order.parent_id)
            if parent is not None:
                parent_origin = self._origin(parent)
                if not parent_origin.client_order_id.startswith(OUTSIDE_PREFIX):
                    try:
                        coid = attached_stop_id(parent_origin.client_order_id)
                    except ValueError:
                        coid = None
                    session = session or parent_origin.session_id
        origin = _Origin(coid or f"{OUTSIDE_PREFIX}{order.id}", session or "")
        self._origins[order.id] = origin
        return origin

    def _fills_of(self, order_id: int) -> list[m.Fill]:
        fills = m.parse_fills(self.api.get("fill/deps", masterid=order_id))
        return [f for f in fills if f.active]

    def _broker_order(self, order: m.Order) -> BrokerOrder:
        origin = self._origin(order)
        versions = m.parse_order_versions(self.api.get("orderVersion/deps", masterid=order.id))
        if not versions:
            raise m.BadAnswer(f"Tradovate order {order.id} has no version")
        version = max(versions, key=lambda v: v.id)
        fills = self._fills_of(order.id)
        filled = sum(f.qty for f in fills)
        average = sum((f.price * f.qty for f in fills), Decimal(0)) / filled if filled else None
        if order.contract_id is None:
            raise m.BadAnswer(f"Tradovate order {order.id} has no contractId")
        order_type = ORDER_TYPES.get(version.order_type)
        if order_type is None:
            raise m.BadAnswer(f"Tradovate order {order.id} is a {version.order_type} order")
        return BrokerOrder(
            client_order_id=origin.client_order_id,
            broker_order_id=str(order.id),
            session_id=origin.session_id,
            contract=self._contract_by_id(order.contract_id).symbol,
            side="buy" if order.action == "Buy" else "sell",
            quantity=version.order_qty,
            filled_quantity=filled,
            order_type=order_type,  # type: ignore[arg-type]
            limit_price=version.price if order_type == "limit" else None,
            stop_price=version.stop_price if order_type == "stop" else None,
            status=self._status(order),
            decided_at=order.timestamp,
            time_in_force=TIMES_IN_FORCE.get(version.time_in_force or "Day", "day"),  # type: ignore[arg-type]
            average_fill_price=average,
        )

    # the protocol's queries --------------------------------------------------------------

    def cancel_order(self, command: CancelOrder) -> OrderAck:
        """Cancel now (a real broker cannot cancel as of a past data time: ``as_of`` is not
        used); filled / unknown / already cancelled are answered with that status. A stop
        moved in place under another id (``modify_stop``) is cancelled under that id only:
        its old id is answered ``cancelled`` and the order rests on."""
        self._check(command.account)
        coid = command.client_order_id
        order = self._find(coid, attached_entry_id(coid))
        if order is None:
            return OrderAck(coid, "", "unknown")
        if self._renamed(order, coid):
            return OrderAck(coid, str(order.id), "cancelled", duplicate=True)
        status = self._status(order)
        if status != "working":
            return OrderAck(coid, str(order.id), status, duplicate=status == "cancelled")
        result = m.parse_command_result(self.api.post("order/cancelorder", m.cancel_body(order.id)))
        if result.failure_reason:
            _log.warning("Tradovate refused to cancel %s: %s", coid, result.failure_reason)
        after = self._order_item(order.id)
        now = "unknown" if after is None else self._status(after)
        if now == "working" and not result.failure_reason:
            now = "cancelled"  # the cancel command is accepted; its report follows
        return OrderAck(coid, str(order.id), now)

    def modify_stop(
        self,
        account: str,
        client_order_id: str,
        stop_price: Decimal,
        new_client_order_id: str | None = None,
    ) -> OrderAck:
        """Move a working stop order to ``stop_price`` in place (``workers.brokers.base.
        StopModifier``): one modifyorder, the order keeps resting throughout. With
        ``new_client_order_id`` the order goes by that id from then on (the Modify command
        carries it): the old id answers ``cancelled``. A refused modify is ``rejected`` and
        changes nothing."""
        self._check(account)
        if not isinstance(stop_price, Decimal) or not stop_price.is_finite() or stop_price <= 0:
            raise BadInput(f"stop_price must be a positive Decimal, got {stop_price!r}")
        name = new_client_order_id or client_order_id
        if len(name) > MAX_TEXT:
            raise BadInput(f"client order id {name!r} is longer than Tradovate's {MAX_TEXT}")
        order = self._find(client_order_id, attached_entry_id(client_order_id))
        if order is None or self._renamed(order, client_order_id):
            return OrderAck(name, "", "unknown")
        status = self._status(order)
        if status != "working":
            return OrderAck(name, str(order.id), status)
        versions = m.parse_order_versions(self.api.get("orderVersion/deps", masterid=order.id))
        if not versions:
            raise m.BadAnswer(f"Tradovate order {order.id} has no version")
        version = max(versions, key=lambda v: v.id)
        if version.order_type != "Stop":
            raise BadInput(f"order {client_order_id} is a {version.order_type} order, not a stop")
        body = m.modify_body(
            order_id=order.id,
            quantity=version.order_qty,
            stop_price=stop_price,
            time_in_force=version.time_in_force,
            cl_ord_id=new_client_order_id,
        )
        result = m.parse_command_result(self.api.post("order/modifyorder", body))
        if result.failure_reason:
            _log.warning(
                "Tradovate refused to move stop %s: %s", client_order_id, result.failure_reason
            )
            return OrderAck(name, str(order.id), "rejected")
        if new_client_order_id:
            origin = self._origin(order)
            self._origins[order.id] = _Origin(new_client_order_id, origin.session_id)
            self._remember(new_client_order_id, order.id)
        return OrderAck(name, str(order.id), "working")

    def _renamed(self, order: m.Order, coid: str) -> bool:
        """Whether ``order`` was found by ``coid`` but goes by another id now (moved in place
        under a new id)."""
        return self._origin(order).client_order_id != coid and _outside_order_id(coid) is None

    def order(self, command: QueryOrder) -> BrokerOrder | None:
        self._check(command.account)
        coid = command.client_order_id
        order = self._find(coid, attached_entry_id(coid))
        if order is None:
            return None
        found = self._broker_order(order)
        if self._renamed(order, coid):
            return replace(found, client_order_id=coid, status="cancelled", filled_quantity=0)
        return found

    def positions(self, command: QueryPositions) -> dict[str, int]:
        self._check(command.account)
        account_id = self.account_id()
        held: dict[str, int] = {}
        for position in m.parse_positions(self.api.get("position/list")):
            if position.account_id != account_id or position.net_pos == 0:
                continue
            symbol = self._contract_by_id(position.contract_id).symbol
            held[symbol] = held.get(symbol, 0) + position.net_pos
        return {symbol: qty for symbol, qty in held.items() if qty != 0}

    def average_prices(self, command: QueryPositions) -> dict[str, Decimal]:
        """Contract → average price of the open position, Tradovate's ``netPrice`` (beyond the
        protocol, as the paper broker's: reconciliation values a corrected position with it,
        recovery a rebuilt one). A position Tradovate gives no ``netPrice`` is left out."""
        self._check(command.account)
        account_id = self.account_id()
        prices: dict[str, Decimal] = {}
        for position in m.parse_positions(self.api.get("position/list")):
            if position.account_id != account_id or position.net_pos == 0:
                continue
            if position.net_price is not None:
                symbol = self._contract_by_id(position.contract_id).symbol
                prices[symbol] = position.net_price
        return prices

    def open_orders(self, command: QueryOpenOrders) -> list[BrokerOrder]:
        self._check(command.account)
        account_id = self.account_id()
        orders = [
            o
            for o in m.parse_orders(self.api.get("order/list"))
            if o.account_id == account_id and STATUS.get(o.ord_status) == "working"
        ]
        orders = [o for o in orders if o.ord_status != "Suspended" or self._status(o) == "working"]
        answers = [self._broker_order(o) for o in sorted(orders, key=lambda o: o.id)]
        return sorted(answers, key=lambda o: (o.decided_at, int(o.broker_order_id)))

    def balance(self, command: QueryBalance) -> Balance:
        """Cash and realized P&L from the cash-balance snapshot; commissions: the fees of the
        account's fills."""
        self._check(command.account)
        account_id = self.account_id()
        cash = m.parse_cash(
            self.api.post("cashBalance/getcashbalancesnapshot", {"accountId": account_id})
        )
        ours = {
            o.id for o in m.parse_orders(self.api.get("order/list")) if o.account_id == account_id
        }
        fills = [
            f for f in m.parse_fills(self.api.get("fill/list")) if f.order_id in ours and f.active
        ]
        fees = m.parse_fill_fees(self.api.get("fillFee/list")) if fills else {}
        commissions = sum((fees.get(f.id, Decimal(0)) for f in fills), Decimal(0))
        return Balance(self.account, cash.total_cash_value, cash.realized_pnl, commissions)

    @property
    def fills_batch(self) -> int:
        return FILLS_BATCH

    def fills_since(self, account: str, cursor: str) -> tuple[list[Fill], str]:
        """The account's fills with an id above the cursor's, oldest first; cursor
        ``"<fill id>-0"``."""
        self._check(account)
        after = _cursor_id(cursor)
        account_id = self.account_id()
        fills = sorted(
            (f for f in m.parse_fills(self.api.get("fill/list")) if f.id > after and f.active),
            key=lambda f: f.id,
        )
        if not fills:
            return [], cursor
        orders = self._accounts_of_orders(fills)
        mine = [f for f in fills if self._order_accounts[f.order_id] == account_id][:FILLS_BATCH]
        if not mine:
            return [], cursor
        fees = m.parse_fill_fees(self.api.get("fillFee/list"))
        answers = [self._fill(account, fill, orders, fees) for fill in mine]
        return answers, f"{mine[-1].id}-0"

    def _accounts_of_orders(self, fills: list[m.Fill]) -> dict[int, m.Order]:
        """Learn the account of every fill's order (``_order_accounts``; an order's account
        never changes): each unknown order by ``/order/item``, or all of them by one
        ``/order/list`` when there are more than ``ORDER_ITEMS_MAX``. Returns the orders read."""
        unknown = sorted({f.order_id for f in fills if f.order_id not in self._order_accounts})
        orders: dict[int, m.Order] = {}
        if len(unknown) > ORDER_ITEMS_MAX:
            orders = {o.id: o for o in m.parse_orders(self.api.get("order/list"))}
        for order_id in unknown:
            order = orders.get(order_id) or self._order_item(order_id)
            if order is None:
                fill = next(f for f in fills if f.order_id == order_id)
                raise ServiceUnavailable(f"Tradovate fill {fill.id} names unknown order {order_id}")
            orders[order_id] = order
            self._order_accounts[order_id] = order.account_id
        return orders

    def _fill(
        self, account: str, fill: m.Fill, orders: dict[int, m.Order], fees: dict[int, Decimal]
    ) -> Fill:
        origin = self._origins.get(fill.order_id)
        if origin is None:
            order = orders.get(fill.order_id) or self._order_item(fill.order_id)
            if order is None:
                raise ServiceUnavailable(
                    f"Tradovate fill {fill.id} names unknown order {fill.order_id}"
                )
            origin = self._origin(order)
        return Fill(
            execution_id=str(fill.id),
            client_order_id=origin.client_order_id,
            broker_order_id=str(fill.order_id),
            account=account,
            session_id=origin.session_id,
            contract=self._contract_by_id(fill.contract_id).symbol,
            quantity=fill.signed_qty,
            price=fill.price,
            commission=fees.get(fill.id, Decimal(0)),  # assumed: no FillFee → no fee
            time=fill.timestamp,
        )


def _outside_order_id(coid: str) -> int | None:
    """The Tradovate order id in ``TV-<order id>``, the client order id of an order tradefleet
    did not send; None for any other id."""
    prefix, _, digits = coid.partition("-")
    if prefix != OUTSIDE_PREFIX[:-1] or not digits.isdigit():
        return None
    return int(digits)


def _cursor_id(cursor: str) -> int:
    text = cursor or FILLS_START
    first, _, second = text.partition("-")
    if not first.isdigit() or not second.isdigit():
        raise BadInput(f"bad fills cursor {cursor!r} (expected <fill id>-0, e.g. {FILLS_START})")
    return int(first)


def check_live(settings: TradovateSettings) -> None:
    """Live trades real money: refused unless TRADEFLEET_TRADOVATE_ALLOW_LIVE is set."""
    if settings.environment == "live" and not settings.allow_live:
        raise BadInput(
            "TRADEFLEET_TRADOVATE_ENVIRONMENT is live but TRADEFLEET_TRADOVATE_ALLOW_LIVE is not "
            "set: refusing to build a broker that trades real money"
        )


def tradovate_broker(
    settings: TradovateSettings, redis_client: redis.Redis, account: str
) -> TradovateBroker:
    """The broker of ``account`` from settings: this process's REST client and shared tokens."""
    check_live(settings)
    return TradovateBroker(
        rest_for(settings), tokens_for(settings, redis_client), redis_client, account
    )
