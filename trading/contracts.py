"""Futures contract specifications and contract-symbol parsing (pure).

A contract symbol is the product root, a month code (F G H J K M N Q U V X Z = January to
December) and a two-digit year: ``ESZ13`` is ES December 2013, ``CLF14`` is CL January 2014.
Roll dates and the trading calendar live elsewhere; this module only knows specs and symbols.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from trading.exceptions import BadInput

MONTH_CODES = "FGHJKMNQUVXZ"
"""Futures month codes, January (F) to December (Z)."""

_SYMBOL = re.compile(r"(?P<root>[A-Z0-9]{1,4}?)(?P<month>[FGHJKMNQUVXZ])(?P<year>[0-9]{2})")


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """What one contract of ``product`` is worth: P&L per point and the minimum price step."""

    product: str
    multiplier: Decimal
    tick_size: Decimal

    @property
    def tick_value(self) -> Decimal:
        """Money per tick per contract."""
        return self.multiplier * self.tick_size


@dataclass(frozen=True, slots=True)
class ContractSymbol:
    """A parsed contract symbol: ``ESZ13`` → product ES, month 12, year 2013."""

    symbol: str
    product: str
    month: int
    year: int


SPECS: MappingProxyType[str, ContractSpec] = MappingProxyType(
    {
        "ES": ContractSpec("ES", Decimal("50"), Decimal("0.25")),
        "NQ": ContractSpec("NQ", Decimal("20"), Decimal("0.25")),
        "CL": ContractSpec("CL", Decimal("1000"), Decimal("0.01")),
        "GC": ContractSpec("GC", Decimal("100"), Decimal("0.10")),
    }
)
"""Every product tradefleet knows, by product root."""


def parse_symbol(symbol: str) -> ContractSymbol:
    """Split ``symbol`` into product, month and year; a malformed or unknown one is ``BadInput``."""
    match = _SYMBOL.fullmatch(symbol) if isinstance(symbol, str) else None
    if match is None:
        raise BadInput(
            f"bad contract symbol {symbol!r} (expected root + month code + YY, e.g. ESZ13)"
        )
    product = match.group("root")
    if product not in SPECS:
        raise BadInput(f"unknown product {product!r} in {symbol!r} (known: {', '.join(SPECS)})")
    return ContractSymbol(
        symbol=symbol,
        product=product,
        month=MONTH_CODES.index(match.group("month")) + 1,
        year=2000 + int(match.group("year")),
    )


def product_of(symbol: str) -> str:
    """The product root of a contract symbol: ``product_of("GCZ13") == "GC"``."""
    return parse_symbol(symbol).product


def spec_for(symbol: str) -> ContractSpec:
    """The spec of the product a contract symbol belongs to."""
    return SPECS[product_of(symbol)]


def spec_for_product(product: str) -> ContractSpec:
    """The spec of a product root (``"ES"``); unknown is ``BadInput``."""
    spec = SPECS.get(product)
    if spec is None:
        raise BadInput(f"unknown product {product!r} (known: {', '.join(SPECS)})")
    return spec
