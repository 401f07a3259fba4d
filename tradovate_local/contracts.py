"""The products, maturities and contracts the local server lists (ES and GC).

Shapes: Product, ContractMaturity and Contract of Tradovate's REST reference
(https://partner.tradovate.com/api/rest-api-endpoints/ — "Contract Library": product/item,
contractMaturity/item, contract/find, contract/item). Ids are chosen here (assumed: stable,
readable numbers: contract id = product id * 1,000,000 + year * 100 + month).

Tradovate's symbol is root + month code + ONE year digit (``ESZ3``); tradefleet's stream for the
same contract uses two digits (``ESZ13``).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

MONTH_CODES = "FGHJKMNQUVXZ"
YEARS = (2013, 2014, 2025, 2026, 2027)


@dataclass(frozen=True)
class Product:
    id: int
    name: str
    description: str
    tick_size: Decimal
    value_per_point: Decimal
    months: str  # month codes listed

    def entity(self) -> dict[str, Any]:
        # Product entity (contract library, product/item); assumed: currencyId 1 = USD.
        return {
            "id": self.id,
            "name": self.name,
            "currencyId": 1,
            "productType": "Futures",
            "description": self.description,
            "exchangeId": 1,
            "contractGroupId": self.id,
            "status": "Verified",
            "months": self.months,
            "isSecured": False,
            "valuePerPoint": self.value_per_point,
            "priceFormatType": "Decimal",
            "priceFormat": -2,
            "tickSize": self.tick_size,
        }


@dataclass(frozen=True)
class Contract:
    id: int
    product: Product
    year: int
    month: int
    expiration: date
    is_front: bool

    @property
    def name(self) -> str:
        """Tradovate's symbol, e.g. ``ESZ3``."""
        return f"{self.product.name}{MONTH_CODES[self.month - 1]}{self.year % 10}"

    @property
    def tradefleet_symbol(self) -> str:
        """tradefleet's instrument, e.g. ``ESZ13``."""
        return f"{self.product.name}{MONTH_CODES[self.month - 1]}{self.year % 100:02d}"

    @property
    def maturity_id(self) -> int:
        return self.id

    def entity(self) -> dict[str, Any]:
        # Contract entity: {id, name, contractMaturityId, status, providerTickSize}.
        return {
            "id": self.id,
            "name": self.name,
            "contractMaturityId": self.maturity_id,
            "status": "DefinitionChecked",
            "providerTickSize": self.product.tick_size,
        }

    def maturity_entity(self) -> dict[str, Any]:
        # ContractMaturity: {id, productId, expirationMonth, expirationDate, isFront}.
        # assumed: expirationMonth as YYYYMM, expirationDate at 13:30 UTC (CME's 08:30 CT).
        expires = datetime(
            self.expiration.year, self.expiration.month, self.expiration.day, 13, 30, tzinfo=UTC
        )
        return {
            "id": self.maturity_id,
            "productId": self.product.id,
            "expirationMonth": self.year * 100 + self.month,
            "expirationDate": expires,
            "archived": False,
            "seqNo": 1,
            "isFront": self.is_front,
        }


ES = Product(1, "ES", "E-Mini S&P 500", Decimal("0.25"), Decimal("50"), "HMUZ")
GC = Product(2, "GC", "Gold", Decimal("0.1"), Decimal("100"), "GJMQVZ")
PRODUCTS = (ES, GC)


def _third_friday(year: int, month: int) -> date:
    fridays = [
        week[calendar.FRIDAY]
        for week in calendar.monthcalendar(year, month)
        if week[calendar.FRIDAY] != 0
    ]
    return date(year, month, fridays[2])


def _gc_last_trade(year: int, month: int) -> date:
    # assumed: the third-last business day of the delivery month (COMEX gold, simplified).
    last = calendar.monthrange(year, month)[1]
    days = [date(year, month, d) for d in range(last, 0, -1) if date(year, month, d).weekday() < 5]
    return days[2]


class Catalog:
    """Every listed contract, found by id, Tradovate symbol or tradefleet symbol."""

    def __init__(self, today: date) -> None:
        contracts: list[Contract] = []
        for product in PRODUCTS:
            listed: list[tuple[int, int, date]] = []
            for year in YEARS:
                for code in product.months:
                    month = MONTH_CODES.index(code) + 1
                    expiry = (
                        _third_friday(year, month) if product is ES else _gc_last_trade(year, month)
                    )
                    listed.append((year, month, expiry))
            front = min((e for _, _, e in listed if e >= today), default=None)
            for year, month, expiry in listed:
                contracts.append(
                    Contract(
                        id=product.id * 1_000_000 + year * 100 + month,
                        product=product,
                        year=year,
                        month=month,
                        expiration=expiry,
                        is_front=expiry == front,
                    )
                )
        self.contracts = contracts
        self._by_id = {c.id: c for c in contracts}
        self._by_name = {c.name: c for c in contracts}
        self._by_tradefleet = {c.tradefleet_symbol: c for c in contracts}
        self.products = {p.id: p for p in PRODUCTS}

    def by_id(self, contract_id: int) -> Contract | None:
        return self._by_id.get(contract_id)

    def by_name(self, name: str) -> Contract | None:
        return self._by_name.get(name)

    def by_symbol(self, symbol: object) -> Contract | None:
        """A contract by Tradovate symbol, tradefleet symbol or id (md requests accept a
        symbol string or a contract id: market-data-request-reference)."""
        if isinstance(symbol, int) and not isinstance(symbol, bool):
            return self._by_id.get(symbol)
        if isinstance(symbol, str):
            return self._by_name.get(symbol) or self._by_tradefleet.get(symbol)
        return None
