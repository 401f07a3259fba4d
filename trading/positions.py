"""Position arithmetic: applying a fill to a signed position, realized and unrealized P&L."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class PositionChange:
    """The position after one fill, and the P&L that fill realized (before commission)."""

    quantity: int
    average_price: Decimal | None
    realized: Decimal


def apply_fill(
    quantity: int,
    average_price: Decimal | None,
    fill_quantity: int,
    fill_price: Decimal,
    multiplier: Decimal,
) -> PositionChange:
    """Apply a signed fill (positive bought) to a signed position with its average price.

    Adding to a position moves the average; reducing realizes (price - average) * closed *
    multiplier on the closed part; crossing zero closes all and opens the rest at the fill
    price.
    """
    if fill_quantity == 0:
        return PositionChange(quantity, average_price, Decimal(0))
    new_quantity = quantity + fill_quantity
    if quantity == 0 or (quantity > 0) == (fill_quantity > 0):
        held = abs(quantity)
        base = average_price if average_price is not None else fill_price
        average = (base * held + fill_price * abs(fill_quantity)) / (held + abs(fill_quantity))
        return PositionChange(new_quantity, average, Decimal(0))
    if average_price is None:
        raise ValueError("a non-flat position needs an average price")
    closed = min(abs(fill_quantity), abs(quantity))
    direction = 1 if quantity > 0 else -1
    realized = (fill_price - average_price) * closed * direction * multiplier
    if new_quantity == 0:
        return PositionChange(0, None, realized)
    if (new_quantity > 0) != (quantity > 0):
        return PositionChange(new_quantity, fill_price, realized)
    return PositionChange(new_quantity, average_price, realized)


def unrealized_pnl(
    quantity: int, average_price: Decimal | None, price: Decimal, multiplier: Decimal
) -> Decimal:
    """Open P&L of a signed position marked at ``price``."""
    if quantity == 0 or average_price is None:
        return Decimal(0)
    return (price - average_price) * quantity * multiplier
