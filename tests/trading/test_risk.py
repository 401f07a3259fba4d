"""Heat arithmetic and the integer rules the risk script applies (property tests)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.intents import intents_for
from trading.risk import (
    PPM,
    RiskLevels,
    entry_fits,
    heat,
    is_blocked,
    next_warned,
    position_risk,
    to_cents,
    to_ppm,
    without_entries,
)

money = st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False, allow_infinity=False)
prices = st.decimals(min_value=1, max_value=10**5, places=2, allow_nan=False, allow_infinity=False)
cents = st.integers(min_value=0, max_value=10**11)
ppm = st.integers(min_value=0, max_value=PPM)
positions = st.integers(min_value=-50, max_value=50)


@given(positions, prices, prices)
def test_position_risk_is_symmetric_and_ignores_the_side(
    qty: int, price: Decimal, stop: Decimal
) -> None:
    mult = Decimal(50)
    risk = position_risk(qty, mult, price, stop, Decimal(0))
    assert risk == position_risk(-qty, mult, stop, price, Decimal(0)) >= 0
    assert risk == abs(qty) * mult * abs(price - stop)


@given(st.lists(money, max_size=10), money.filter(lambda e: e > 0))
def test_heat_is_the_sum_over_equity(risks: list[Decimal], equity: Decimal) -> None:
    assert heat(risks, equity) == sum(risks, Decimal(0)) / equity


@given(money)
def test_cents_round_risk_up_and_equity_down(amount: Decimal) -> None:
    value = amount + Decimal("0.001")
    assert to_cents(value, up=True) / Decimal(100) >= value >= to_cents(value, up=False) / 100


@given(cents, cents, cents.filter(lambda e: e > 0), ppm)
def test_an_accepted_entry_never_takes_heat_above_the_block(
    others: int, new: int, equity: int, block: int
) -> None:
    if entry_fits(others, new, equity, block):
        assert Decimal(others + new) / equity <= Decimal(block) / PPM


@st.composite
def heat_paths(draw: st.DrawFn) -> tuple[list[int], int, int, int]:
    """Totals (cents) whose heat wanders around the warn level and through its hysteresis
    band, with the equity, the warn level and the hysteresis (ppm) they are judged by."""
    equity = draw(st.integers(min_value=1, max_value=10**9))
    warn = draw(st.integers(min_value=1, max_value=PPM))
    hyst = draw(st.integers(min_value=0, max_value=warn))
    levels = st.integers(min_value=0, max_value=2 * PPM)
    near = st.integers(min_value=max(0, warn - hyst - 2), max_value=warn + 2)
    heats = draw(st.lists(st.one_of(levels, near), min_size=1, max_size=40))
    return [h * equity // PPM for h in heats], equity, warn, hyst


@given(heat_paths())
def test_warn_sets_exactly_once_per_crossing(path: tuple[list[int], int, int, int]) -> None:
    """The flag rises exactly when heat reaches warn while armed, and re-arms only once heat
    fell below ``warn - hysteresis``: moves inside the band never set it twice (no flapping),
    and the number of sets is the number of crossings, no more, no fewer."""
    totals, equity, warn, hyst = path
    warned, sets, armed, crossings = False, 0, True, 0
    for total in totals:
        hot = total > 0 and total * PPM >= warn * equity
        cold = total * PPM < (warn - hyst) * equity
        if armed and hot:
            crossings, armed = crossings + 1, False
        elif not armed and cold:
            armed = True
        after = next_warned(warned, total, equity, warn, hyst)
        sets += after and not warned
        assert after == (not armed), (total, warned)
        if after and not warned:
            assert hot
        if warned and not after:
            assert cold
        warned = after
    assert sets == crossings


def test_warn_inside_the_band_does_not_flap() -> None:
    """6 % warn, 1 % hysteresis, equity 100 000: 6 % sets, 5.5 % keeps, 6.5 % does not set
    again, 4.99 % clears, 6 % sets again."""
    equity, warn, hyst = 10_000_000, 60_000, 10_000
    flags, warned = [], False
    for total in (600_000, 550_000, 650_000, 500_000, 499_900, 600_000):
        warned = next_warned(warned, total, equity, warn, hyst)
        flags.append(warned)
    assert flags == [True, True, True, True, False, True]


@given(cents, cents.filter(lambda e: e > 0), ppm.filter(lambda b: b > 0))
def test_blocked_means_no_entry_fits(total: int, equity: int, block: int) -> None:
    if is_blocked(total, equity, block):
        assert not entry_fits(total, 1, equity, block)


@given(positions, positions)
def test_a_refused_signal_keeps_only_exits_toward_flat(current: int, target: int) -> None:
    kept = without_entries(intents_for(current, target, None, "r"))
    assert all(i.intent == "exit" for i in kept)
    after = current + sum(i.signed_quantity for i in kept)
    assert abs(after) <= abs(current)
    assert (current > 0) == (after > 0) or after == 0


def test_levels_are_checked() -> None:
    assert to_ppm(Decimal("0.06")) == 60_000
    with pytest.raises(ValueError):
        RiskLevels(Decimal("0.2"), Decimal("0.1"))
