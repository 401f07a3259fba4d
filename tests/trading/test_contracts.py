"""Contract specs and symbol parsing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading.contracts import (
    SPECS,
    ContractSpec,
    parse_symbol,
    product_of,
    spec_for,
    spec_for_product,
)
from trading.exceptions import BadInput


@pytest.mark.parametrize(
    ("symbol", "product", "multiplier", "tick"),
    [
        ("ESZ13", "ES", "50", "0.25"),
        ("NQH14", "NQ", "20", "0.25"),
        ("CLF14", "CL", "1000", "0.01"),
        ("GCZ13", "GC", "100", "0.10"),
    ],
)
def test_spec_for_known_products(symbol: str, product: str, multiplier: str, tick: str) -> None:
    spec = spec_for(symbol)
    assert spec == ContractSpec(product, Decimal(multiplier), Decimal(tick))
    assert product_of(symbol) == product
    assert isinstance(spec.multiplier, Decimal)
    assert isinstance(spec.tick_size, Decimal)


def test_tick_value_is_multiplier_times_tick_size() -> None:
    assert spec_for("ESZ13").tick_value == Decimal("12.5")
    assert spec_for("CLF14").tick_value == Decimal("10")
    assert spec_for("GCZ13").tick_value == Decimal("10")


@pytest.mark.parametrize(
    ("symbol", "month", "year"),
    [("ESZ13", 12, 2013), ("CLF14", 1, 2014), ("GCG14", 2, 2014), ("ESH14", 3, 2014)],
)
def test_parse_symbol_month_and_year(symbol: str, month: int, year: int) -> None:
    parsed = parse_symbol(symbol)
    assert (parsed.symbol, parsed.month, parsed.year) == (symbol, month, year)


def test_every_month_code_parses_in_order() -> None:
    months = [parse_symbol(f"ES{code}15").month for code in "FGHJKMNQUVXZ"]
    assert months == list(range(1, 13))


@pytest.mark.parametrize("symbol", ["ZZZ13", "6EZ13", "MESZ13", "YMH14"])
def test_unknown_product_is_bad_input(symbol: str) -> None:
    with pytest.raises(BadInput, match="unknown product"):
        spec_for(symbol)


@pytest.mark.parametrize(
    "symbol", ["", "ES", "ESZ", "ESZ1", "ESZ013", "esz13", "ESA13", "ES Z13", "ESZ13 ", "Z13"]
)
def test_malformed_symbol_is_bad_input(symbol: str) -> None:
    with pytest.raises(BadInput, match="bad contract symbol"):
        product_of(symbol)


def test_spec_for_product_and_table_is_read_only() -> None:
    assert spec_for_product("GC").multiplier == Decimal("100")
    with pytest.raises(BadInput):
        spec_for_product("XX")
    with pytest.raises(TypeError):
        SPECS["XX"] = ContractSpec("XX", Decimal("1"), Decimal("1"))  # type: ignore[index]
    assert set(SPECS) == {"ES", "NQ", "CL", "GC"}
