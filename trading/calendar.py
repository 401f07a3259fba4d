"""Futures contract calendar (pure): listed months, last trade, first notice and roll dates.

Multipliers and tick sizes live in ``trading.contracts.SPECS``; this module holds the calendar
facts per product in ``CALENDARS`` (one row per product of ``SPECS``; ``ProductCalendar.spec``
reads the spec, so each fact has one home).

- ES, NQ (CME), listed H M U Z: last trade on the third Friday of the contract month (the
  business day before it if that Friday is a holiday); roll 8 calendar days before last trade.
- CL (NYMEX), every month: last trade 3 business days before the 25th of the preceding month
  (if the 25th is not a business day, 3 business days before the last business day before
  it); roll 5 business days before last trade.
- GC (COMEX), active months G J M Q V Z: last trade on the third-last business day of the
  contract month; first notice on the last business day of the preceding month; roll 3
  business days before first notice.

Roll choices: ES/NQ follow the CME convention (the Thursday eight days before expiry, when
volume moves to the next quarter: ESZ13 rolled 2013-12-12). CL rolls a week (5 business days)
before last trade, while the front month is still liquid. GC rolls 3 business days before first
notice, i.e. the business day before first position day (2 business days before first notice),
so a long is never open when delivery can be assigned. A calendar-day roll that lands on a closed
day moves to the business day before it.

Business days are weekdays on which the exchange is open; which weekdays are holidays is not
known here: every function takes a ``HolidayProvider`` (``workers.calendars.exchange_holidays``
backs one with a maintained calendar library; ``FixedHolidays`` is a plain set of dates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from trading.contracts import MONTH_CODES, SPECS, ContractSpec, parse_symbol
from trading.exceptions import BadInput

_MAX_CLOSED_RUN = 14
"""More consecutive closed days than this means the holiday provider is broken."""
_FIRST_YEAR, _LAST_YEAR = 2000, 2099
"""Years a two-digit contract code can name."""


class HolidayProvider(Protocol):
    """Tells whether an exchange is closed on a (week)day for a holiday."""

    def is_holiday(self, exchange: str, day: date) -> bool: ...


@dataclass(frozen=True, slots=True)
class FixedHolidays:
    """A fixed set of holiday dates shared by ``exchanges``; other exchanges are ``BadInput``."""

    exchanges: frozenset[str]
    days: frozenset[date]

    def is_holiday(self, exchange: str, day: date) -> bool:
        if exchange not in self.exchanges:
            raise BadInput(f"no holidays known for exchange {exchange!r}")
        return day in self.days


class ExpiryRule(StrEnum):
    """How the last trading day of a contract month is found."""

    THIRD_FRIDAY = "third_friday"
    BEFORE_25TH_OF_PRIOR_MONTH = "before_25th_of_prior_month"
    THIRD_LAST_BUSINESS_DAY = "third_last_business_day"


class NoticeRule(StrEnum):
    """Whether delivery notices can come before last trade, and when the first one can."""

    NONE = "none"
    LAST_BUSINESS_DAY_OF_PRIOR_MONTH = "last_business_day_of_prior_month"


class RollAnchor(StrEnum):
    """The date a roll is counted back from."""

    LAST_TRADE = "last_trade"
    FIRST_NOTICE = "first_notice"


class DayCount(StrEnum):
    CALENDAR = "calendar"
    BUSINESS = "business"


@dataclass(frozen=True, slots=True)
class RollRule:
    """Roll ``days`` (calendar or business) before the anchor date."""

    anchor: RollAnchor
    days: int
    count: DayCount


@dataclass(frozen=True, slots=True)
class ProductCalendar:
    """The calendar facts of one product."""

    product: str
    exchange: str
    listed_months: tuple[int, ...]
    expiry: ExpiryRule
    notice: NoticeRule
    roll: RollRule

    @property
    def spec(self) -> ContractSpec:
        """Multiplier and tick size, from ``trading.contracts.SPECS``."""
        return SPECS[self.product]

    @property
    def listed_codes(self) -> str:
        """The listed months as month codes: ``"HMUZ"`` for ES."""
        return "".join(MONTH_CODES[month - 1] for month in self.listed_months)


@dataclass(frozen=True, slots=True)
class ContractDates:
    """Every calendar date of one contract."""

    symbol: str
    last_trade: date
    first_notice: date | None
    roll: date


_QUARTERLY = (3, 6, 9, 12)
_EQUITY_ROLL = RollRule(RollAnchor.LAST_TRADE, 8, DayCount.CALENDAR)

CALENDARS: MappingProxyType[str, ProductCalendar] = MappingProxyType(
    {
        "ES": ProductCalendar(
            "ES", "CME", _QUARTERLY, ExpiryRule.THIRD_FRIDAY, NoticeRule.NONE, _EQUITY_ROLL
        ),
        "NQ": ProductCalendar(
            "NQ", "CME", _QUARTERLY, ExpiryRule.THIRD_FRIDAY, NoticeRule.NONE, _EQUITY_ROLL
        ),
        "CL": ProductCalendar(
            "CL",
            "NYMEX",
            tuple(range(1, 13)),
            ExpiryRule.BEFORE_25TH_OF_PRIOR_MONTH,
            NoticeRule.NONE,
            RollRule(RollAnchor.LAST_TRADE, 5, DayCount.BUSINESS),
        ),
        "GC": ProductCalendar(
            "GC",
            "COMEX",
            (2, 4, 6, 8, 10, 12),
            ExpiryRule.THIRD_LAST_BUSINESS_DAY,
            NoticeRule.LAST_BUSINESS_DAY_OF_PRIOR_MONTH,
            RollRule(RollAnchor.FIRST_NOTICE, 3, DayCount.BUSINESS),
        ),
    }
)
"""The calendar of every product in ``SPECS``, by product root."""


def product_calendar(product: str) -> ProductCalendar:
    """The calendar of a product root (``"ES"``); unknown is ``BadInput``."""
    found = CALENDARS.get(product)
    if found is None:
        raise BadInput(f"unknown product {product!r} (known: {', '.join(CALENDARS)})")
    return found


def listed_months(product: str) -> tuple[int, ...]:
    """The contract months (1-12) a product lists: ``(3, 6, 9, 12)`` for ES."""
    return product_calendar(product).listed_months


def contract_code(product: str, year: int, month: int) -> str:
    """``contract_code("ES", 2013, 12) == "ESZ13"``; an unlisted month or bad year is refused."""
    cal = product_calendar(product)
    if not _FIRST_YEAR <= year <= _LAST_YEAR:
        raise BadInput(f"contract year {year} outside {_FIRST_YEAR}..{_LAST_YEAR}")
    if month not in cal.listed_months:
        raise BadInput(f"month {month} is not listed for {product} (listed: {cal.listed_codes})")
    return f"{product}{MONTH_CODES[month - 1]}{year % 100:02d}"


def contract_month(symbol: str) -> tuple[int, int]:
    """``contract_month("ESZ13") == (2013, 12)``."""
    parsed = parse_symbol(symbol)
    return parsed.year, parsed.month


def _listed(symbol: str) -> tuple[ProductCalendar, int, int]:
    parsed = parse_symbol(symbol)
    cal = product_calendar(parsed.product)
    if parsed.month not in cal.listed_months:
        raise BadInput(f"{symbol}: month not listed for {cal.product} (listed: {cal.listed_codes})")
    return cal, parsed.year, parsed.month


def is_business_day(exchange: str, day: date, holidays: HolidayProvider) -> bool:
    """A weekday on which ``exchange`` is not closed for a holiday."""
    return day.weekday() < 5 and not holidays.is_holiday(exchange, day)


def business_day_on_or_before(exchange: str, day: date, holidays: HolidayProvider) -> date:
    """``day`` if it is a business day, else the last business day before it."""
    for back in range(_MAX_CLOSED_RUN + 1):
        candidate = day - timedelta(days=back)
        if is_business_day(exchange, candidate, holidays):
            return candidate
    raise BadInput(f"{exchange} has no business day in the {_MAX_CLOSED_RUN} days up to {day}")


def business_days_before(exchange: str, day: date, count: int, holidays: HolidayProvider) -> date:
    """The ``count``-th business day strictly before ``day`` (``count`` >= 1)."""
    if count < 1:
        raise BadInput(f"business day count must be >= 1, got {count}")
    found = day
    for _ in range(count):
        found = business_day_on_or_before(exchange, found - timedelta(days=1), holidays)
    return found


def _third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def _month_before(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _month_after(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def last_trade_date(symbol: str, holidays: HolidayProvider) -> date:
    """The last trading day (expiry) of a contract, by its product's ``ExpiryRule``."""
    cal, year, month = _listed(symbol)
    exchange = cal.exchange
    if cal.expiry is ExpiryRule.THIRD_FRIDAY:
        return business_day_on_or_before(exchange, _third_friday(year, month), holidays)
    if cal.expiry is ExpiryRule.BEFORE_25TH_OF_PRIOR_MONTH:
        twenty_fifth = date(*_month_before(year, month), 25)
        anchor = business_day_on_or_before(exchange, twenty_fifth, holidays)
        return business_days_before(exchange, anchor, 3, holidays)
    return business_days_before(exchange, date(*_month_after(year, month), 1), 3, holidays)


def first_notice_date(symbol: str, holidays: HolidayProvider) -> date | None:
    """The first notice day, or None when no delivery notice can come before last trade."""
    cal, year, month = _listed(symbol)
    if cal.notice is NoticeRule.NONE:
        return None
    return business_days_before(cal.exchange, date(year, month, 1), 1, holidays)


def roll_date(symbol: str, holidays: HolidayProvider) -> date:
    """The day a session holding ``symbol`` moves to ``next_contract(symbol)``."""
    cal = _listed(symbol)[0]
    anchor = last_trade_date(symbol, holidays)
    if cal.roll.anchor is RollAnchor.FIRST_NOTICE:
        notice = first_notice_date(symbol, holidays)
        if notice is None:
            raise BadInput(f"{symbol}: roll counts from first notice, which it does not have")
        anchor = notice
    if cal.roll.count is DayCount.BUSINESS:
        return business_days_before(cal.exchange, anchor, cal.roll.days, holidays)
    shifted = anchor - timedelta(days=cal.roll.days)
    return business_day_on_or_before(cal.exchange, shifted, holidays)


def contract_dates(symbol: str, holidays: HolidayProvider) -> ContractDates:
    """Last trade, first notice and roll date of ``symbol`` together."""
    return ContractDates(
        symbol=symbol,
        last_trade=last_trade_date(symbol, holidays),
        first_notice=first_notice_date(symbol, holidays),
        roll=roll_date(symbol, holidays),
    )


def next_contract(symbol: str) -> str:
    """The next listed contract: ESZ13 → ESH14, GCZ13 → GCG14, CLF14 → CLG14."""
    cal, year, month = _listed(symbol)
    later = [listed for listed in cal.listed_months if listed > month]
    if later:
        return contract_code(cal.product, year, later[0])
    return contract_code(cal.product, year + 1, cal.listed_months[0])


def front_contract(product: str, on: date, holidays: HolidayProvider) -> str:
    """The contract a session should hold on ``on``: the first whose roll date is after ``on``.

    On its roll date a contract is no longer the front: the roll happens that day.
    """
    cal = product_calendar(product)
    months = [listed for listed in cal.listed_months if listed >= on.month]
    year, month = (on.year, months[0]) if months else (on.year + 1, cal.listed_months[0])
    symbol = contract_code(product, year, month)
    for _ in range(len(cal.listed_months) + 2):
        if roll_date(symbol, holidays) > on:
            return symbol
        symbol = next_contract(symbol)
    raise BadInput(f"no {product} contract rolls after {on}")


def in_roll_window(symbol: str, on: date, holidays: HolidayProvider, window_days: int) -> bool:
    """Whether a session holding ``symbol`` should roll on ``on``.

    The window opens on the roll date and stays open ``window_days`` calendar days, but never
    past last trade: a roll missed for longer than that is an operator's decision.
    """
    if window_days < 1:
        raise BadInput(f"roll window must be >= 1 day, got {window_days}")
    start = roll_date(symbol, holidays)
    end = min(start + timedelta(days=window_days - 1), last_trade_date(symbol, holidays))
    return start <= on <= end
