"""The library-backed holiday provider: real CME Group holidays, real expiries, the real roll.

Known dates are the exchanges' published ones; the ES roll is checked against the daily volume
and open interest of ESZ13/ESH14 in the shared market data.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from trading.calendar import (
    contract_dates,
    first_notice_date,
    front_contract,
    last_trade_date,
    roll_date,
)
from trading.exceptions import BadInput
from workers.calendars.exchange_holidays import (
    CME_GROUP_EXCHANGES,
    LibraryExchangeHolidays,
    cme_trade_date_holidays,
    exchange_holidays,
)
from workers.settings import load_settings

HOLIDAYS = exchange_holidays()


def test_provider_is_cached_and_library_loaded_lazily() -> None:
    assert exchange_holidays() is HOLIDAYS
    assert cme_trade_date_holidays() is cme_trade_date_holidays()
    code = (
        "import sys, workers.calendars.exchange_holidays, trading.calendar; "
        "assert 'pandas_market_calendars' not in sys.modules; "
        "assert 'pandas' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("day", "closed"),
    [
        (date(2013, 3, 29), True),  # Good Friday
        (date(2013, 11, 28), True),  # Thanksgiving
        (date(2013, 11, 29), False),  # day after Thanksgiving: a (short) trade date
        (date(2013, 12, 24), False),  # Christmas Eve: a (short) trade date
        (date(2013, 12, 25), True),  # Christmas
        (date(2014, 1, 1), True),  # New Year
        (date(2014, 1, 20), True),  # Martin Luther King Day: Globex halts, no trade date
        (date(2020, 4, 10), True),  # Good Friday
        (date(2020, 5, 25), True),  # Memorial Day
        (date(2020, 7, 3), True),  # Independence Day observed (July 4 was a Saturday)
        (date(2021, 12, 24), True),  # Christmas observed (Dec 25 was a Saturday)
        (date(2021, 12, 31), False),  # New Year 2022 fell on a Saturday: no Friday closure
        (date(2023, 6, 19), True),  # Juneteenth (observed by CME from 2022)
        (date(2013, 10, 14), False),  # Columbus Day: CME open
    ],
)
def test_library_holidays(day: date, closed: bool) -> None:
    for exchange in sorted(CME_GROUP_EXCHANGES):
        assert HOLIDAYS.is_holiday(exchange, day) is closed


def test_unknown_exchange_and_uncovered_year_are_refused() -> None:
    with pytest.raises(BadInput, match="no holiday calendar for exchange 'XNYS'"):
        HOLIDAYS.is_holiday("XNYS", date(2013, 12, 25))
    last = cme_trade_date_holidays().last_year
    with pytest.raises(BadInput, match="outside the holiday calendar"):
        LibraryExchangeHolidays().is_holiday("CME", date(last + 1, 1, 2))


@pytest.mark.parametrize(
    ("symbol", "last_trade", "first_notice", "roll"),
    [
        ("ESZ13", date(2013, 12, 20), None, date(2013, 12, 12)),
        ("ESH14", date(2014, 3, 21), None, date(2014, 3, 13)),
        ("ESH20", date(2020, 3, 20), None, date(2020, 3, 12)),
        ("ESM20", date(2020, 6, 19), None, date(2020, 6, 11)),
        ("NQZ13", date(2013, 12, 20), None, date(2013, 12, 12)),
        ("NQH20", date(2020, 3, 20), None, date(2020, 3, 12)),
        ("GCZ13", date(2013, 12, 27), date(2013, 11, 29), date(2013, 11, 25)),
        ("CLF14", date(2013, 12, 19), None, date(2013, 12, 12)),
        ("CLG14", date(2014, 1, 21), None, date(2014, 1, 13)),
    ],
)
def test_known_expiries_with_real_holidays(
    symbol: str, last_trade: date, first_notice: date | None, roll: date
) -> None:
    dates = contract_dates(symbol, HOLIDAYS)
    assert (dates.last_trade, dates.first_notice, dates.roll) == (last_trade, first_notice, roll)


def test_good_friday_christmas_and_minor_holidays_through_the_library() -> None:
    # Good Friday 2008-03-21 was the third Friday: ESH08 and NQH08 expired on Thursday.
    assert last_trade_date("ESH08", HOLIDAYS) == date(2008, 3, 20)
    assert last_trade_date("NQH08", HOLIDAYS) == date(2008, 3, 20)
    # Good Friday 2011-04-22 is one of the 3 business days before CLK11's 25th (a Monday).
    assert last_trade_date("CLK11", HOLIDAYS) == date(2011, 4, 19)
    # Good Friday 2018-03-30 was the last weekday of March.
    assert first_notice_date("GCJ18", HOLIDAYS) == date(2018, 3, 29)
    # Christmas 2013 (a Wednesday) is the 25th itself for CLF14.
    assert last_trade_date("CLF14", HOLIDAYS) == date(2013, 12, 19)
    # Thanksgiving 2012-11-22 is skipped counting back from Friday 2012-11-23.
    assert last_trade_date("CLZ12", HOLIDAYS) == date(2012, 11, 19)
    # Memorial Day 2021-05-31 is no business day.
    assert first_notice_date("GCM21", HOLIDAYS) == date(2021, 5, 28)


def _daily_volume(path: Path) -> dict[date, int]:
    with path.open(newline="") as handle:
        return {date.fromisoformat(row[0].split()[0]): int(row[-1]) for row in csv.reader(handle)}


def test_esz13_to_esh14_volume_and_open_interest_cross_at_the_computed_roll() -> None:
    """ESH14 volume overtakes ESZ13 on 2013-12-13, the business day after the 12-12 roll.

    Daily volume (ESZ13 / ESH14): 12-11 1,514,064 / 64,855; 12-12 1,113,344 / 354,874;
    12-13 347,764 / 868,208. Open interest follows a few days later (it lags volume).
    """
    daily = load_settings().paths.market_data_dir / "es" / "daily"
    old = _daily_volume(daily / "es_trade_201312.csv")
    new = _daily_volume(daily / "es_trade_201403.csv")
    roll = roll_date("ESZ13", HOLIDAYS)
    assert roll == date(2013, 12, 12)

    weekdays = sorted(day for day in old.keys() & new.keys() if day.weekday() < 5)
    crossover = next(day for day in weekdays if new[day] > old[day])
    assert crossover == date(2013, 12, 13)
    assert 0 <= (crossover - roll).days <= 2
    assert all(new[day] < old[day] for day in weekdays if day < roll)
    assert all(new[day] > old[day] for day in weekdays if crossover <= day <= date(2013, 12, 19))
    assert front_contract("ES", crossover, HOLIDAYS) == "ESH14"
    assert front_contract("ES", roll - (crossover - roll), HOLIDAYS) == "ESZ13"

    old_oi = _daily_volume(daily / "es_openinterest_201312.csv")
    new_oi = _daily_volume(daily / "es_openinterest_201403.csv")
    assert new_oi[date(2013, 12, 16)] < old_oi[date(2013, 12, 16)]
    assert new_oi[date(2013, 12, 20)] > old_oi[date(2013, 12, 20)]
