from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from trading.positions import apply_fill, unrealized_pnl

ES = Decimal(50)


def test_open_add_reduce_close_long():
    step = apply_fill(0, None, 2, Decimal("1700"), ES)
    assert (step.quantity, step.average_price, step.realized) == (2, Decimal("1700"), 0)
    step = apply_fill(2, step.average_price, 2, Decimal("1702"), ES)
    assert (step.quantity, step.average_price) == (4, Decimal("1701"))
    step = apply_fill(4, step.average_price, -1, Decimal("1705"), ES)
    assert (step.quantity, step.average_price, step.realized) == (3, Decimal("1701"), Decimal(200))
    step = apply_fill(3, step.average_price, -3, Decimal("1700"), ES)
    assert (step.quantity, step.average_price, step.realized) == (0, None, Decimal(-150))


def test_reversal_realizes_and_reopens_at_fill_price():
    step = apply_fill(-2, Decimal("1710.25"), 5, Decimal("1700"), ES)
    assert step.quantity == 3
    assert step.average_price == Decimal("1700")
    assert step.realized == (Decimal("1700") - Decimal("1710.25")) * 2 * -1 * ES


def test_unrealized():
    assert unrealized_pnl(-2, Decimal("1700"), Decimal("1699.5"), ES) == Decimal(50)
    assert unrealized_pnl(0, None, Decimal("1"), ES) == 0


prices = st.decimals(min_value=Decimal("1"), max_value=Decimal("5000"), places=2)


@given(st.lists(st.tuples(st.integers(-5, 5), prices), max_size=30), prices)
def test_round_trip_pnl_equals_cash_flow(fills, final_price):
    """Realized + unrealized P&L always equals the cash flow of the fills marked to market."""
    qty, avg, realized = 0, None, Decimal(0)
    cash = Decimal(0)
    for fill_qty, price in fills:
        step = apply_fill(qty, avg, fill_qty, price, ES)
        qty, avg, realized = step.quantity, step.average_price, realized + step.realized
        cash -= fill_qty * price * ES
    total = realized + unrealized_pnl(qty, avg, final_price, ES)
    assert abs(total - (cash + qty * final_price * ES)) < Decimal("1e-12")
