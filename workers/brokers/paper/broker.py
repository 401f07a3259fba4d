"""The paper broker: a stand-in for an OUTSIDE broker, with its own state in its own Redis.

Its truth lives only in ``broker_redis`` (a database the sessions do not use, by default db 1),
under keys prefixed ``paper:``, so losing the sessions' Redis never loses the broker's truth:

- ``paper:acct:<account>:order:<client order id>`` hash: one order (status, fill, cursor)
- ``paper:acct:<account>:open`` set of working client order ids
- ``paper:acct:<account>:seq`` counter for broker order ids (``PB-<account>-<n>``)
- ``paper:acct:<account>:positions`` / ``:avg_price`` / ``:realized`` hashes by contract
- ``paper:acct:<account>:balance`` hash: cash, realized_pnl, commissions
- ``paper:acct:<account>:fills`` stream: the account's fill event log
- ``paper:resting:<instrument>`` set of ``[account, client order id]`` (JSON) working orders

Prices come read-only from the market-data streams; the fill rules are in
``workers.brokers.paper.model``, a fill's effect on the account in
``workers.brokers.paper.ledger``. A fill is one WATCH/MULTI transaction on the order and the
account: position, average price, realized P&L, cash and the fills stream change together,
exactly once (execution id ``<broker order id>-1``), however many ``match`` calls race.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

import redis
from redis.client import Pipeline

from trading.contracts import spec_for
from trading.exceptions import BadInput, ServiceUnavailable
from workers.brokers.base import FILLS_START
from workers.brokers.commands import (
    Balance,
    BrokerOrder,
    CancelOrder,
    Fill,
    OrderAck,
    PlaceOrder,
    QueryBalance,
    QueryOpenOrders,
    QueryOrder,
    QueryPositions,
    utc,
)
from workers.brokers.paper import scripts as paper_scripts
from workers.brokers.paper.ledger import LedgerKeys, balance_of, queue_fill, read_ledger
from workers.brokers.paper.model import (
    MarketBound,
    PaperConfig,
    eligible_tick,
    epoch_ms_ceil,
    fill_from_fields,
    fill_price,
    market_stream_key,
    order_from_fields,
    strings,
    text,
)
from workers.brokers.paper.reads import answering, read_entries, read_members

__all__ = ["PaperBroker", "PaperConfig"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_ACCOUNT = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_STREAM_ID = re.compile(r"[0-9]+-[0-9]+")
FIRST_SCAN = 16
"""A market order usually fills on the first eligible tick: scan a few first, then more."""


class PaperBroker:
    """An ``AccountManager`` whose truth is ``broker_redis``; prices from ``market_redis``."""

    def __init__(
        self, broker_redis: redis.Redis, market_redis: redis.Redis, config: PaperConfig
    ) -> None:
        self._broker = broker_redis
        self._market = market_redis
        self.config = config
        self._place = broker_redis.register_script(paper_scripts.PLACE)
        self._cancel = broker_redis.register_script(paper_scripts.CANCEL)
        self._advance = broker_redis.register_script(paper_scripts.ADVANCE)

    # keys -------------------------------------------------------------------------------

    @staticmethod
    def _key(account: str, what: str) -> str:
        if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
            raise BadInput(f"paper broker account must match {_ACCOUNT.pattern}, got {account!r}")
        return f"paper:acct:{account}:{what}"

    def _order_key(self, account: str, client_order_id: str) -> str:
        return self._key(account, f"order:{client_order_id}")

    def _ledger(self, account: str) -> LedgerKeys:
        return LedgerKeys.of(lambda name: self._key(account, name))

    @staticmethod
    def _resting_key(instrument: str) -> str:
        return f"paper:resting:{instrument}"

    @staticmethod
    def _member(account: str, client_order_id: str) -> str:
        return json.dumps([account, client_order_id])

    # commands ---------------------------------------------------------------------------

    def place_order(self, command: PlaceOrder) -> OrderAck:
        """Place the order, then its attached stop (if any), which works from its fill on."""
        ack = self._place_one(command)
        if command.attached_stop is not None and ack.status in {"working", "filled"}:
            self._place_one(command.attached_stop)
        return ack

    def _place_one(self, command: PlaceOrder) -> OrderAck:
        spec_for(command.contract)
        account, coid = command.account, command.client_order_id
        fields = {
            "account": account,
            "session_id": command.session_id,
            "client_order_id": coid,
            "contract": command.contract,
            "side": command.side,
            "quantity": str(command.quantity),
            "order_type": command.order_type,
            "limit_price": "" if command.limit_price is None else str(command.limit_price),
            "stop_price": "" if command.stop_price is None else str(command.stop_price),
            "time_in_force": command.time_in_force,
            "decided_at": command.decided_at.isoformat(),
            "decided_ms": str(epoch_ms_ceil(command.decided_at)),
            "cursor": "",
            "filled_quantity": "0",
            "average_fill_price": "",
            "parent": command.parent_client_order_id or "",
        }
        keys = [
            self._order_key(account, coid),
            self._key(account, "seq"),
            self._key(account, "open"),
            self._resting_key(command.contract),
        ]
        args = [f"PB-{account}-", coid, self._member(account, coid)]
        args += [item for pair in fields.items() for item in pair]
        try:
            decided = MarketBound(until_ms=int(fields["decided_ms"]))
            self.match(command.contract, session_id=command.session_id, bound=decided)
        except ServiceUnavailable as exc:
            _log.warning("resting orders before %s not matched: %s", coid, exc)
        with answering("broker Redis"):
            broker_order_id, status, duplicate = self._place(keys=keys, args=args)
        ack = OrderAck(coid, text(broker_order_id), text(status), bool(duplicate))  # type: ignore[arg-type]
        if ack.status != "working":
            return ack
        resting = command.order_type != "market"
        bound = MarketBound(until_ms=int(fields["decided_ms"]) + 1) if resting else None
        placed = None
        if not ack.duplicate:  # its hash is what the script just wrote
            placed = {**fields, "broker_order_id": ack.broker_order_id, "status": "working"}
        try:
            _, now = self._match_order(account, coid, bound=bound, order=placed)
        except ServiceUnavailable as exc:
            _log.warning("order %s rests; matching deferred: %s", coid, exc)
            return ack
        return OrderAck(coid, ack.broker_order_id, now, ack.duplicate)  # type: ignore[arg-type]

    def cancel_order(self, command: CancelOrder) -> OrderAck:
        """Cancel; with ``as_of``, the order is first matched against the prices before that
        data time (a stop touched before the cancel was decided has filled: ``filled``)."""
        account, coid = command.account, command.client_order_id
        key = self._order_key(account, coid)
        if command.as_of is not None:
            as_of = MarketBound(until_ms=epoch_ms_ceil(command.as_of))
            fill, status = self._match_order(account, coid, bound=as_of)
            if fill is not None or status == "filled":
                with answering("broker Redis"):
                    boid = text(self._broker.hget(key, "broker_order_id") or "")
                return OrderAck(coid, boid, "filled")
        with answering("broker Redis"):
            contract = self._broker.hget(key, "contract")
            if contract is None:
                return OrderAck(coid, "", "unknown")
            return self._cancel_known(account, coid, text(contract))

    def _cancel_known(self, account: str, coid: str, contract: str) -> OrderAck:
        keys = [
            self._order_key(account, coid),
            self._key(account, "open"),
            self._resting_key(contract),
        ]
        boid, status, duplicate = self._cancel(keys=keys, args=[coid, self._member(account, coid)])
        return OrderAck(coid, text(boid), text(status), bool(duplicate))  # type: ignore[arg-type]

    def order(self, command: QueryOrder) -> BrokerOrder | None:
        with answering("broker Redis"):
            raw = self._broker.hgetall(self._order_key(command.account, command.client_order_id))
        return order_from_fields(strings(raw)) if raw else None

    def positions(self, command: QueryPositions) -> dict[str, int]:
        with answering("broker Redis"):
            raw = self._broker.hgetall(self._key(command.account, "positions"))
        held = {k: int(v) for k, v in strings(raw).items()}
        return {contract: qty for contract, qty in held.items() if qty != 0}

    def average_prices(self, command: QueryPositions) -> dict[str, Decimal]:
        """Contract → average price of the open position (beyond the protocol: reconciliation
        values a corrected position with it when a broker offers it)."""
        with answering("broker Redis"):
            raw = self._broker.hgetall(self._key(command.account, "avg_price"))
        return {contract: Decimal(value) for contract, value in strings(raw).items()}

    def open_orders(self, command: QueryOpenOrders) -> list[BrokerOrder]:
        account = command.account
        with answering("broker Redis"):
            ids = read_members(self._broker, self._key(account, "open"))
            pipe = self._broker.pipeline(transaction=False)
            for coid in ids:
                pipe.hgetall(self._order_key(account, coid))
            rows = [strings(raw) for raw in pipe.execute() if raw]
        orders = [order_from_fields(row) for row in rows if row.get("status") == "working"]
        return sorted(orders, key=lambda o: (o.decided_at, o.broker_order_id))

    def balance(self, command: QueryBalance) -> Balance:
        with answering("broker Redis"):
            raw = strings(self._broker.hgetall(self._key(command.account, "balance")))
        return balance_of(command.account, raw, self.config.starting_cash)

    def realized_by_contract(self, account: str) -> dict[str, Decimal]:
        """Realized P&L of ``account`` per contract (contracts never reduced are absent)."""
        with answering("broker Redis"):
            raw = self._broker.hgetall(self._key(account, "realized"))
        return {k: Decimal(v) for k, v in strings(raw).items()}

    @property
    def fills_batch(self) -> int:
        return self.config.batch

    def fills_since(self, account: str, cursor: str) -> tuple[list[Fill], str]:
        if cursor and not _STREAM_ID.fullmatch(cursor):
            raise BadInput(f"bad fills cursor {cursor!r} (expected <ms>-<seq>, e.g. {FILLS_START})")
        start = "(" + (cursor or FILLS_START)
        with answering("broker Redis"):
            key = self._key(account, "fills")
            entries = read_entries(self._broker, key, start, self.config.batch)
        if not entries:
            return [], cursor
        return [fill_from_fields(fields) for _, fields in entries], entries[-1][0]

    # matching ---------------------------------------------------------------------------

    def match(
        self,
        instrument: str,
        *,
        session_id: str | None = None,
        bound: MarketBound | None = None,
    ) -> list[Fill]:
        """Fill every resting order on ``instrument`` that the new ticks make due: only the
        orders of ``session_id`` (and orders of no session, placed outside tradefleet) if
        given, and only on the ticks within ``bound`` if given (the market as of then)."""
        spec_for(instrument)
        with answering("broker Redis"):
            members = [
                json.loads(m) for m in read_members(self._broker, self._resting_key(instrument))
            ]
            with self._broker.pipeline(transaction=False) as pipe:
                for account, coid in members:
                    pipe.hgetall(self._order_key(account, coid))
                orders = [strings(raw) for raw in pipe.execute()]
        fills: list[Fill] = []
        for (account, coid), order in zip(members, orders, strict=True):
            fill, _ = self._match_order(
                account, coid, bound=bound, session_id=session_id, order=order
            )
            if fill is not None:
                fills.append(fill)
        return fills

    def match_order(self, account: str, client_order_id: str, bound: MarketBound | None) -> str:
        """Match one resting order (on the ticks within ``bound`` if given); its status."""
        return self._match_order(account, client_order_id, bound=bound)[1]

    def _match_order(
        self,
        account: str,
        coid: str,
        *,
        bound: MarketBound | None = None,
        session_id: str | None = None,
        order: dict[str, str] | None = None,
    ) -> tuple[Fill | None, str]:
        """Fill the order if the ticks make it due; ``order``: its fields, if just read."""
        key = self._order_key(account, coid)
        with answering("broker Redis"):
            if order is None:
                order = strings(self._broker.hgetall(key))
            if not order:
                return None, "unknown"
            if order["status"] != "working":
                self._broker.srem(self._resting_key(order["contract"]), self._member(account, coid))
                return None, order["status"]
        if session_id is not None and order["session_id"] not in {session_id, ""}:
            return None, order["status"]
        instrument = order["contract"]
        spec = spec_for(instrument)
        decided_ms = int(order["decided_ms"])
        start = "(" + order["cursor"] if order["cursor"] else f"{max(decided_ms, 0)}-0"
        if order.get("parent"):
            gate = self._parent_gate(account, coid, order)
            if isinstance(gate, str):
                return None, gate
            decided_ms = max(decided_ms, gate[0])
            start = start if order["cursor"] else gate[1]
        count = FIRST_SCAN
        while True:
            with answering("market-data Redis"):
                entries = read_entries(self._market, market_stream_key(instrument), start, count)
            if bound is not None:
                entries = bound.cut(entries)
            for entry_id, fields in entries:
                tick = eligible_tick(instrument, entry_id, fields, decided_ms)
                if tick is None:
                    continue
                price = fill_price(order, tick, spec, self.config.slippage_ticks)
                if price is not None:
                    return self._fill_order(account, coid, instrument, price, tick.time, entry_id)
                if order["time_in_force"] == "ioc":
                    with answering("broker Redis"):
                        return None, self._cancel_known(account, coid, instrument).status
            if not entries:
                return None, "working"
            last = entries[-1][0]
            with answering("broker Redis"):
                self._advance(keys=[key], args=[last])
            if len(entries) < count:
                return None, "working"
            start = "(" + last
            count = min(count * 8, self.config.batch)

    def _parent_gate(self, account: str, coid: str, order: dict[str, str]) -> str | tuple[int, str]:
        """An order attached to a parent works from the parent's fill on: (its fill time in
        ms, the stream id of its fill tick); else the status to answer (still waiting, or
        cancelled with a parent that ended unfilled)."""
        with answering("broker Redis"):
            parent = strings(self._broker.hgetall(self._order_key(account, order["parent"])))
            status = parent.get("status", "")
            if status in {"cancelled", "rejected"}:
                return self._cancel_known(account, coid, order["contract"]).status
        if status != "filled" or not parent.get("cursor"):
            return "working"
        filled_ms = epoch_ms_ceil(datetime.fromisoformat(parent["filled_at"]))
        return filled_ms, parent["cursor"]

    def _fill_order(
        self, account: str, coid: str, contract: str, price: Decimal, time: datetime, entry_id: str
    ) -> tuple[Fill | None, str]:
        key = self._order_key(account, coid)

        def apply(pipe: Pipeline) -> tuple[Fill | None, str]:
            cash = self.config.starting_cash
            book, order = read_ledger(pipe, self._ledger(account), contract, cash, key)
            if order.get("status") != "working":
                return None, order.get("status", "unknown")
            quantity = int(order["quantity"])
            fill = Fill(
                execution_id=f"{order['broker_order_id']}-1",
                client_order_id=coid,
                broker_order_id=order["broker_order_id"],
                account=account,
                session_id=order["session_id"],
                contract=order["contract"],
                quantity=quantity if order["side"] == "buy" else -quantity,
                price=price,
                commission=self.config.commission_per_contract * quantity,
                time=time,
            )
            pipe.multi()
            order_update = {
                "status": "filled",
                "filled_quantity": str(quantity),
                "average_fill_price": str(price),
                "filled_at": time.isoformat(),
                "execution_id": fill.execution_id,
                "cursor": entry_id,
            }
            pipe.hset(key, mapping=order_update)
            pipe.srem(self._key(account, "open"), coid)
            pipe.srem(self._resting_key(fill.contract), self._member(account, coid))
            queue_fill(pipe, self._ledger(account), fill, book)
            return fill, "filled"

        with answering("broker Redis"):
            return self._transaction([key, *self._ledger(account).all], apply)

    def book_external_fill(
        self,
        account: str,
        contract: str,
        quantity: int,
        price: Decimal,
        time: datetime,
        commission: Decimal | None = None,
    ) -> Fill:
        """Book a fill no session sent (a drill: a trade behind every session's back)."""
        spec_for(contract)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity == 0:
            raise BadInput(f"external fill quantity must be a non-zero int, got {quantity!r}")
        if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
            raise BadInput(f"external fill price must be a positive Decimal, got {price!r}")
        per_contract = self.config.commission_per_contract if commission is None else commission
        with answering("broker Redis"):
            number = self._broker.incr(self._key(account, "seq"))
        external_id = f"EXT-{account}-{number}"
        fill = Fill(
            execution_id=external_id,
            client_order_id="",
            broker_order_id=external_id,
            account=account,
            session_id="",
            contract=contract,
            quantity=quantity,
            price=price,
            commission=per_contract * abs(quantity),
            time=utc(time, "time"),
        )

        def apply(pipe: Pipeline) -> Fill:
            cash = self.config.starting_cash
            book, _ = read_ledger(pipe, self._ledger(account), contract, cash)
            pipe.multi()
            queue_fill(pipe, self._ledger(account), fill, book)
            return fill

        with answering("broker Redis"):
            return self._transaction(self._ledger(account).all, apply)

    def _transaction(self, watch: list[str], apply: Callable[[Pipeline], _T]) -> _T:
        """Run ``apply`` (reads, then ``multi()``, then writes) until no watched key changed."""
        with self._broker.pipeline() as pipe:
            while True:
                try:
                    cast(Any, pipe).watch(*watch)
                    result = apply(pipe)
                    if pipe.explicit_transaction:
                        pipe.execute()
                    else:
                        pipe.unwatch()
                    return result
                except redis.WatchError:
                    continue
