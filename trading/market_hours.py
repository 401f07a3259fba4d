"""When CME Globex trades the products tradefleet knows (ES, GC): pure, time is an argument.

assumed (CME Group's published Globex hours for equity index and metals futures; no page of
the code base holds them): Sunday 17:00 to Friday 16:00 America/Chicago, with a daily halt
from 16:00 to 17:00; a trade date that is an exchange holiday (``HolidayProvider``) does not
trade at all. Early closes and holiday half-sessions are not modelled: in those hours a quiet
feed counts as stalled (entries refused, exits pass), the safe side.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from trading.calendar import HolidayProvider

CHICAGO = ZoneInfo("America/Chicago")


def trade_date(moment: datetime) -> datetime:
    """The trade date (midnight, Chicago) ``moment`` belongs to: it rolls at 17:00 Chicago."""
    local = moment.astimezone(CHICAGO) + timedelta(hours=7)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def globex_open(
    moment: datetime, holidays: HolidayProvider | None = None, exchange: str = "CME"
) -> bool:
    """Whether Globex trades at ``moment`` (aware)."""
    if moment.tzinfo is None:
        raise ValueError("market hours need an aware time")
    local = moment.astimezone(CHICAGO)
    if local.hour == 16:
        return False  # the daily halt, 16:00-17:00
    weekday = local.weekday()  # Monday 0 .. Sunday 6
    if weekday == 5:
        return False
    if weekday == 4 and local.hour >= 17:
        return False
    if weekday == 6 and local.hour < 17:
        return False
    return holidays is None or not holidays.is_holiday(exchange, trade_date(moment).date())
