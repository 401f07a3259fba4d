"""Exchange holidays from a maintained calendar library: the ``HolidayProvider`` of the app.

CME, NYMEX and COMEX (every product tradefleet knows) share CME Group's trade-date calendar,
taken from ``pandas_market_calendars``' ``CME_TradeDate`` calendar: the days on which CME Group
has no trade date, which is what "business day" means in its expiry and notice rules.

Why that calendar and not another one:
- ``exchange_calendars``' ``CMES`` (aliased ``CME``, ``NYMEX``, ``COMEX``) is a Globex *session*
  calendar: Thanksgiving, Independence Day, Memorial Day and the other days on which Globex
  only opens a short session count as sessions there, so business days counted with it are
  wrong (CLZ12 would expire on 2012-11-20 instead of 2012-11-19, GCM21's first notice would be
  2021-05-31, Memorial Day, instead of 2021-05-28).
- ``holidays``' ``XCME`` lists full closures and the minor holidays with a trading halt in one
  half-day category together with days that are ordinary trade dates (day after Thanksgiving,
  Christmas Eve), and it closes 2012-10-29/30 (Hurricane Sandy) although CME kept energy and
  metals open.

The library is imported on first use, not at import time, and its holiday set is built once
per process (about a second).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from trading.exceptions import BadInput

CME_GROUP_EXCHANGES = frozenset({"CME", "NYMEX", "COMEX"})
"""Exchanges served by CME Group's trade-date calendar."""
LIBRARY_CALENDAR = "CME_TradeDate"
"""The ``pandas_market_calendars`` calendar used for every exchange in ``CME_GROUP_EXCHANGES``."""


@dataclass(frozen=True, slots=True)
class HolidaySet:
    """The library's holidays with the years its rules cover."""

    days: frozenset[date]
    first_year: int
    last_year: int


@lru_cache(maxsize=1)
def cme_trade_date_holidays() -> HolidaySet:
    """Every date without a CME Group trade date, from the library (loaded once)."""
    import pandas_market_calendars  # noqa: PLC0415 - heavy (pandas): loaded on first use only

    calendar = pandas_market_calendars.get_calendar(LIBRARY_CALENDAR)
    days = frozenset(date.fromisoformat(str(day)) for day in calendar.holidays().holidays)
    if not days:
        raise BadInput(f"calendar library returned no holidays for {LIBRARY_CALENDAR}")
    return HolidaySet(
        days=days,
        first_year=min(days).year,
        last_year=max(days).year,
    )


class LibraryExchangeHolidays:
    """``trading.calendar.HolidayProvider`` backed by the calendar library."""

    def is_holiday(self, exchange: str, day: date) -> bool:
        if exchange not in CME_GROUP_EXCHANGES:
            known = ", ".join(sorted(CME_GROUP_EXCHANGES))
            raise BadInput(f"no holiday calendar for exchange {exchange!r} (known: {known})")
        holidays = cme_trade_date_holidays()
        if not holidays.first_year <= day.year <= holidays.last_year:
            raise BadInput(
                f"{day} is outside the holiday calendar's years "
                f"{holidays.first_year}..{holidays.last_year}"
            )
        return day in holidays.days


@lru_cache(maxsize=1)
def exchange_holidays() -> LibraryExchangeHolidays:
    """The process's holiday provider."""
    return LibraryExchangeHolidays()
