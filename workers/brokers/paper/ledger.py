"""The paper broker's account ledger: what one fill does to an account (position, average
price, realized P&L, cash, commissions, and the fill logged), read and queued inside the
broker's WATCH/MULTI transaction (``workers.brokers.paper.broker``). The reads while watching
are one script (``scripts.READ_BOOK``): one round trip instead of one per field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass
from decimal import Decimal
from typing import Any, cast

from redis.client import Pipeline

from trading.contracts import spec_for
from workers.brokers.commands import Balance, Fill
from workers.brokers.paper import scripts as paper_scripts
from workers.brokers.paper.model import decimal_or_none, position_after, strings, text


@dataclass(frozen=True, slots=True)
class LedgerKeys:
    """The keys of one account's ledger."""

    positions: str
    avg_price: str
    realized: str
    balance: str
    fills: str

    @classmethod
    def of(cls, key: Callable[[str], str]) -> LedgerKeys:
        """The keys named by ``key(<field name>)``."""
        names = ("positions", "avg_price", "realized", "balance", "fills")
        return cls(*(key(name) for name in names))

    @property
    def all(self) -> list[str]:
        return list(astuple(self))


def balance_of(account: str, raw: dict[str, str], starting_cash: Decimal) -> Balance:
    """The balance held in the account's balance hash (``starting_cash`` before any fill)."""
    return Balance(
        account=account,
        cash=Decimal(raw.get("cash", str(starting_cash))),
        realized_pnl=Decimal(raw.get("realized_pnl", "0")),
        commissions=Decimal(raw.get("commissions", "0")),
    )


def read_ledger(
    pipe: Pipeline,
    keys: LedgerKeys,
    contract: str,
    starting_cash: Decimal,
    order_key: str | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """The account's current figures for ``contract``, and the fields of the order at
    ``order_key`` if given (read while watching, in one script)."""
    script_keys = [keys.balance, keys.positions, keys.avg_price, keys.realized]
    if order_key is not None:
        script_keys.append(order_key)
    raw = cast(
        list[Any], pipe.eval(paper_scripts.READ_BOOK, len(script_keys), *script_keys, contract)
    )
    current = balance_of("", strings(_pairs(raw[0])), starting_cash)
    book = {
        "position": text(raw[1]) or "0",
        "avg_price": text(raw[2]),
        "realized_contract": text(raw[3]) or "0",
        "cash": str(current.cash),
        "realized_pnl": str(current.realized_pnl),
        "commissions": str(current.commissions),
    }
    return book, strings(_pairs(raw[4]))


def queue_fill(pipe: Pipeline, keys: LedgerKeys, fill: Fill, book: dict[str, str]) -> None:
    """Queue (inside MULTI) every effect of ``fill`` on the account whose figures before it
    are ``book`` (``read_ledger``), and log the fill."""
    contract = fill.contract
    quantity, average, realized = position_after(
        int(book["position"]),
        decimal_or_none(book["avg_price"]),
        fill.quantity,
        fill.price,
        spec_for(contract).multiplier,
    )
    if quantity == 0:
        pipe.hdel(keys.positions, contract)
        pipe.hdel(keys.avg_price, contract)
    else:
        pipe.hset(keys.positions, contract, str(quantity))
        pipe.hset(keys.avg_price, contract, str(average))
    if realized:
        total = Decimal(book["realized_contract"]) + realized
        pipe.hset(keys.realized, contract, str(total))
    balance = {
        "cash": str(Decimal(book["cash"]) + realized - fill.commission),
        "realized_pnl": str(Decimal(book["realized_pnl"]) + realized),
        "commissions": str(Decimal(book["commissions"]) + fill.commission),
    }
    pipe.hset(keys.balance, mapping=balance)
    event = {
        "execution_id": fill.execution_id,
        "client_order_id": fill.client_order_id,
        "broker_order_id": fill.broker_order_id,
        "account": fill.account,
        "session_id": fill.session_id,
        "contract": contract,
        "quantity": str(fill.quantity),
        "price": str(fill.price),
        "commission": str(fill.commission),
        "time": fill.time.isoformat(),
        "realized_pnl": str(realized),
    }
    pipe.xadd(keys.fills, event)  # type: ignore[arg-type]


def _pairs(flat: Any) -> dict[Any, Any]:
    """A hash as ``HGETALL`` inside a script returns it (a flat list of fields and values)."""
    items = list(flat or [])
    return dict(zip(items[::2], items[1::2], strict=True))
