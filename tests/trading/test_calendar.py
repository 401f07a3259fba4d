"""Contract calendar: codes, last trade, first notice, roll dates, front contract.

The holidays here are a small hand-copied set of real CME Group holidays (the days the tests
touch), given through ``FixedHolidays``; tests/workers/calendars/test_exchange_holidays.py
checks the same dates against the maintained calendar library.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.calendar import (
    CALENDARS,
    ContractDates,
    DayCount,
    FixedHolidays,
    RollAnchor,
    business_days_before,
    contract_code,
    contract_dates,
    contract_month,
    first_notice_date,
    front_contract,
    in_roll_window,
    last_trade_date,
    listed_months,
    next_contract,
    product_calendar,
    roll_date,
)
from trading.contracts import SPECS
from trading.exceptions import BadInput

CME_GROUP = frozenset({"CME", "NYMEX", "COMEX"})
HOLIDAYS = FixedHolidays(
    exchanges=CME_GROUP,
    days=frozenset(
        {
            date(2008, 3, 21),  # Good Friday (the third Friday of March 2008)
            date(2013, 11, 28),  # Thanksgiving
            date(2013, 12, 25),  # Christmas
            date(2014, 1, 1),  # New Year
            date(2014, 1, 20),  # Martin Luther King Day
            date(2014, 2, 17),  # Presidents Day
            date(2018, 3, 30),  # Good Friday
            date(2020, 2, 17),  # Presidents Day
            date(2021, 5, 31),  # Memorial Day
        }
    ),
)
NO_HOLIDAYS = FixedHolidays(exchanges=CME_GROUP, days=frozenset())


@pytest.mark.parametrize(
    ("product", "year", "month", "code"),
    [
        ("ES", 2013, 12, "ESZ13"),
        ("ES", 2014, 3, "ESH14"),
        ("NQ", 2020, 6, "NQM20"),
        ("CL", 2014, 1, "CLF14"),
        ("GC", 2014, 2, "GCG14"),
        ("ES", 2005, 9, "ESU05"),
    ],
)
def test_contract_code_and_contract_month(product: str, year: int, month: int, code: str) -> None:
    assert contract_code(product, year, month) == code
    assert contract_month(code) == (year, month)


def test_listed_months_per_product() -> None:
    assert listed_months("ES") == (3, 6, 9, 12)
    assert listed_months("NQ") == (3, 6, 9, 12)
    assert listed_months("CL") == tuple(range(1, 13))
    assert listed_months("GC") == (2, 4, 6, 8, 10, 12)
    assert product_calendar("ES").listed_codes == "HMUZ"
    assert product_calendar("GC").listed_codes == "GJMQVZ"
    assert product_calendar("CL").listed_codes == "FGHJKMNQUVXZ"


def test_one_calendar_per_spec_and_spec_comes_from_contracts() -> None:
    assert set(CALENDARS) == set(SPECS)
    for product, cal in CALENDARS.items():
        assert cal.product == product
        assert cal.spec is SPECS[product]
    assert {cal.exchange for cal in CALENDARS.values()} == CME_GROUP
    es_roll = product_calendar("ES").roll
    assert (es_roll.anchor, es_roll.days, es_roll.count) == (
        RollAnchor.LAST_TRADE,
        8,
        DayCount.CALENDAR,
    )
    with pytest.raises(TypeError):
        CALENDARS["XX"] = CALENDARS["ES"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("symbol", "last_trade", "roll"),
    [
        ("ESZ13", date(2013, 12, 20), date(2013, 12, 12)),
        ("ESH14", date(2014, 3, 21), date(2014, 3, 13)),
        ("ESH20", date(2020, 3, 20), date(2020, 3, 12)),
        ("ESM20", date(2020, 6, 19), date(2020, 6, 11)),
        ("NQZ13", date(2013, 12, 20), date(2013, 12, 12)),
        ("NQH14", date(2014, 3, 21), date(2014, 3, 13)),
        ("NQH20", date(2020, 3, 20), date(2020, 3, 12)),
        ("NQM20", date(2020, 6, 19), date(2020, 6, 11)),
    ],
)
def test_equity_index_last_trade_is_third_friday_and_roll_eight_days_before(
    symbol: str, last_trade: date, roll: date
) -> None:
    assert last_trade_date(symbol, HOLIDAYS) == last_trade
    assert roll_date(symbol, HOLIDAYS) == roll
    assert first_notice_date(symbol, HOLIDAYS) is None


def test_good_friday_on_third_friday_moves_expiry_to_thursday() -> None:
    # March 21, 2008 was both the third Friday and Good Friday: ESH08 expired on the Thursday.
    assert last_trade_date("ESH08", NO_HOLIDAYS) == date(2008, 3, 21)
    assert last_trade_date("ESH08", HOLIDAYS) == date(2008, 3, 20)
    assert roll_date("ESH08", HOLIDAYS) == date(2008, 3, 12)


def test_gold_last_trade_first_notice_and_roll() -> None:
    dates = contract_dates("GCZ13", HOLIDAYS)
    assert dates == ContractDates(
        symbol="GCZ13",
        last_trade=date(2013, 12, 27),
        first_notice=date(2013, 11, 29),
        # 3 business days before first notice, skipping Thanksgiving 2013-11-28.
        roll=date(2013, 11, 25),
    )
    # Good Friday 2018-03-30 closes the last weekday of March: first notice is the Thursday.
    assert first_notice_date("GCJ18", HOLIDAYS) == date(2018, 3, 29)
    # Memorial Day 2021-05-31 is the last weekday of May.
    assert first_notice_date("GCM21", HOLIDAYS) == date(2021, 5, 28)
    assert last_trade_date("GCM21", HOLIDAYS) == date(2021, 6, 28)


def test_crude_last_trade_around_the_25th() -> None:
    # Dec 25, 2013 is Christmas: 3 business days before Dec 24.
    assert last_trade_date("CLF14", HOLIDAYS) == date(2013, 12, 19)
    assert last_trade_date("CLF14", NO_HOLIDAYS) == date(2013, 12, 20)
    # Jan 25, 2014 is a Saturday: 3 business days before Friday Jan 24.
    assert last_trade_date("CLG14", HOLIDAYS) == date(2014, 1, 21)
    # Feb 25, 2020 is a business day (Tuesday): 3 business days before it.
    assert last_trade_date("CLH20", HOLIDAYS) == date(2020, 2, 20)
    assert roll_date("CLF14", HOLIDAYS) == date(2013, 12, 12)
    # Five business days before 2014-01-21 skip Martin Luther King Day.
    assert roll_date("CLG14", HOLIDAYS) == date(2014, 1, 13)
    assert first_notice_date("CLF14", HOLIDAYS) is None


@pytest.mark.parametrize(
    ("symbol", "following"),
    [
        ("ESZ13", "ESH14"),
        ("ESH14", "ESM14"),
        ("NQU19", "NQZ19"),
        ("GCZ13", "GCG14"),
        ("GCG14", "GCJ14"),
        ("CLF14", "CLG14"),
        ("CLZ13", "CLF14"),
    ],
)
def test_next_contract(symbol: str, following: str) -> None:
    assert next_contract(symbol) == following


def test_next_contract_chain_over_a_year() -> None:
    chain = ["ESZ13"]
    for _ in range(4):
        chain.append(next_contract(chain[-1]))
    assert chain == ["ESZ13", "ESH14", "ESM14", "ESU14", "ESZ14"]


def test_front_contract_switches_on_the_roll_date() -> None:
    assert front_contract("ES", date(2013, 12, 11), HOLIDAYS) == "ESZ13"
    assert front_contract("ES", date(2013, 12, 12), HOLIDAYS) == "ESH14"
    assert front_contract("ES", date(2013, 10, 7), HOLIDAYS) == "ESZ13"
    assert front_contract("ES", date(2013, 12, 25), HOLIDAYS) == "ESH14"
    assert front_contract("GC", date(2013, 11, 22), HOLIDAYS) == "GCZ13"
    assert front_contract("GC", date(2013, 11, 25), HOLIDAYS) == "GCG14"
    assert front_contract("CL", date(2013, 12, 1), HOLIDAYS) == "CLF14"
    assert front_contract("CL", date(2013, 12, 12), HOLIDAYS) == "CLG14"
    assert front_contract("ES", date(2020, 1, 6), HOLIDAYS) == "ESH20"


def test_in_roll_window_opens_on_roll_date_and_closes_by_last_trade() -> None:
    assert not in_roll_window("ESZ13", date(2013, 12, 11), HOLIDAYS, window_days=3)
    assert in_roll_window("ESZ13", date(2013, 12, 12), HOLIDAYS, window_days=3)
    assert in_roll_window("ESZ13", date(2013, 12, 14), HOLIDAYS, window_days=3)
    assert not in_roll_window("ESZ13", date(2013, 12, 15), HOLIDAYS, window_days=3)
    assert in_roll_window("ESZ13", date(2013, 12, 20), HOLIDAYS, window_days=30)
    assert not in_roll_window("ESZ13", date(2013, 12, 21), HOLIDAYS, window_days=30)
    with pytest.raises(BadInput, match="roll window"):
        in_roll_window("ESZ13", date(2013, 12, 12), HOLIDAYS, window_days=0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: contract_code("ES", 2014, 1), "not listed"),
        (lambda: contract_code("GC", 2014, 3), "not listed"),
        (lambda: contract_code("ES", 1999, 12), "outside"),
        (lambda: contract_code("YM", 2014, 3), "unknown product"),
        (lambda: last_trade_date("ESF14", HOLIDAYS), "not listed"),
        (lambda: next_contract("GCH14"), "not listed"),
        (lambda: next_contract("ESZ99"), "outside"),
        (lambda: contract_month("esz13"), "bad contract symbol"),
        (lambda: front_contract("XX", date(2014, 1, 2), HOLIDAYS), "unknown product"),
        (lambda: business_days_before("CME", date(2014, 1, 2), 0, HOLIDAYS), ">= 1"),
    ],
)
def test_bad_input_is_refused(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(BadInput, match=message):
        call()


def test_unknown_exchange_and_broken_provider_are_refused() -> None:
    other = FixedHolidays(exchanges=frozenset({"ICE"}), days=frozenset())
    with pytest.raises(BadInput, match="no holidays known for exchange 'CME'"):
        last_trade_date("ESZ13", other)

    class AlwaysClosed:
        def is_holiday(self, exchange: str, day: date) -> bool:
            return True

    with pytest.raises(BadInput, match="no business day"):
        last_trade_date("ESZ13", AlwaysClosed())


products = st.sampled_from(sorted(CALENDARS))


@st.composite
def contracts(draw: st.DrawFn) -> str:
    product = draw(products)
    year = draw(st.integers(min_value=2001, max_value=2097))
    month = draw(st.sampled_from(listed_months(product)))
    return contract_code(product, year, month)


@st.composite
def holidays_near(draw: st.DrawFn, symbol: str) -> FixedHolidays:
    """Up to eight weekday holidays in the months around ``symbol`` and its successor."""
    year, month = contract_month(symbol)
    start = date(year, month, 1) - timedelta(days=62)
    offsets = draw(st.frozensets(st.integers(min_value=0, max_value=160), max_size=8))
    days = {start + timedelta(days=offset) for offset in offsets}
    return FixedHolidays(CME_GROUP, frozenset(day for day in days if day.weekday() < 5))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), symbol=contracts())
def test_roll_precedes_notice_and_last_trade_and_contracts_follow_each_other(
    data: st.DataObject, symbol: str
) -> None:
    holidays = data.draw(holidays_near(symbol))
    dates = contract_dates(symbol, holidays)
    assert dates.roll < dates.last_trade
    if dates.first_notice is not None:
        assert dates.roll < dates.first_notice < dates.last_trade
    following = next_contract(symbol)
    following_dates = contract_dates(following, holidays)
    assert following_dates.last_trade > dates.last_trade
    assert following_dates.roll > dates.roll
    product = CALENDARS[symbol[:2]].product
    assert front_contract(product, dates.roll - timedelta(days=1), holidays) == symbol
    assert front_contract(product, dates.roll, holidays) == following


@given(symbol=contracts())
def test_codes_round_trip(symbol: str) -> None:
    year, month = contract_month(symbol)
    assert contract_code(symbol[:2], year, month) == symbol
