"""What the market looks like from the ticks the server has seen: the last quote of each
contract and its minute bars. Plain Python, no I/O.

Quote shape: https://partner.tradovate.com/overview/core-concepts/web-sockets/market-data/market-data-request-reference
(``md/subscribeQuote`` data message: ``{timestamp, contractId, entries: {Bid, Offer, Trade,
TotalTradeVolume, LowPrice, HighPrice, OpeningPrice, ...}}``).
Bar shape: https://github.com/tradovate/example-api-js tutorial/WebSockets/EX-10-Chart-Data
(``{timestamp, open, high, low, close, upVolume, downVolume, upTicks, downTicks, bidVolume,
offerVolume}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

_CHICAGO = ZoneInfo("America/Chicago")


@dataclass(frozen=True)
class Tick:
    time: datetime
    price: Decimal
    size: Decimal
    bid: Decimal | None = None
    ask: Decimal | None = None


def trade_date(moment: datetime) -> datetime:
    """The CME trade date of ``moment`` (assumed: the day rolls at 17:00 America/Chicago), as a
    midnight datetime in Chicago."""
    local = moment.astimezone(_CHICAGO) + timedelta(hours=7)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def trade_date_entity(moment: datetime) -> dict[str, int]:
    # TradeDate {year, month, day} (fill-list: https://partner.tradovate.com/api/rest-api-endpoints/orders/fill-list).
    day = trade_date(moment)
    return {"year": day.year, "month": day.month, "day": day.day}


@dataclass
class Bar:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    up_volume: Decimal = Decimal(0)
    down_volume: Decimal = Decimal(0)
    up_ticks: int = 0
    down_ticks: int = 0
    bid_volume: Decimal = Decimal(0)
    offer_volume: Decimal = Decimal(0)

    def entity(self) -> dict[str, Any]:
        return {
            "timestamp": self.start,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "upVolume": self.up_volume,
            "downVolume": self.down_volume,
            "upTicks": self.up_ticks,
            "downTicks": self.down_ticks,
            "bidVolume": self.bid_volume,
            "offerVolume": self.offer_volume,
        }


@dataclass
class ContractMarket:
    """One contract's market: last trade, bid/ask, session stats and minute bars."""

    contract_id: int
    seq: int = 0
    last: Tick | None = None
    bid: Decimal | None = None
    ask: Decimal | None = None
    volume: Decimal = Decimal(0)
    session: datetime | None = None
    opening: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    bars: list[Bar] = field(default_factory=list)
    _up: bool = True

    def apply(self, tick: Tick) -> Bar:
        """Fold ``tick`` in; the minute bar it updated. assumed: a tick older than the current
        bar updates the current bar (ticks arrive in time order from tradefleet's streams)."""
        self.seq += 1
        previous = self.last
        self.last = tick
        if tick.bid is not None:
            self.bid = tick.bid
        if tick.ask is not None:
            self.ask = tick.ask
        day = trade_date(tick.time)
        if day != self.session:
            # assumed: session statistics restart at each trade date.
            self.session, self.opening = day, tick.price
            self.high, self.low = tick.price, tick.price
            self.volume = Decimal(0)
        self.volume += tick.size
        self.high = tick.price if self.high is None else max(self.high, tick.price)
        self.low = tick.price if self.low is None else min(self.low, tick.price)
        # assumed: a tick is "up" above the previous trade, "down" below it, and keeps the
        # previous direction when unchanged; bid/offer volume by the side of the book it hit.
        if previous is not None and tick.price != previous.price:
            self._up = tick.price > previous.price
        start = tick.time.replace(second=0, microsecond=0)
        bar = self.bars[-1] if self.bars else None
        if bar is None or start > bar.start:
            bar = Bar(start, tick.price, tick.price, tick.price, tick.price)
            self.bars.append(bar)
        else:
            bar.high = max(bar.high, tick.price)
            bar.low = min(bar.low, tick.price)
            bar.close = tick.price
        if self._up:
            bar.up_volume += tick.size
            bar.up_ticks += 1
        else:
            bar.down_volume += tick.size
            bar.down_ticks += 1
        if self.ask is not None and tick.price >= self.ask:
            bar.offer_volume += tick.size
        elif self.bid is not None and tick.price <= self.bid:
            bar.bid_volume += tick.size
        return bar

    def quote(self) -> dict[str, Any] | None:
        """The quote object of ``md/subscribeQuote`` (market-data-request-reference). assumed:
        the feed has no book sizes, so Bid/Offer carry size 0; no OpenInterest/SettlementPrice."""
        if self.last is None:
            return None
        entries: dict[str, Any] = {
            "Trade": {"price": self.last.price, "size": self.last.size},
            "TotalTradeVolume": {"size": self.volume},
            "OpeningPrice": {"price": self.opening},
            "HighPrice": {"price": self.high},
            "LowPrice": {"price": self.low},
        }
        if self.bid is not None:
            entries["Bid"] = {"price": self.bid, "size": Decimal(0)}
        if self.ask is not None:
            entries["Offer"] = {"price": self.ask, "size": Decimal(0)}
        return {"timestamp": self.last.time, "contractId": self.contract_id, "entries": entries}

    def history(
        self,
        as_much_as: int | None,
        closest: datetime | None,
        as_far_as: datetime | None,
    ) -> list[Bar]:
        """The bars a ``timeRange`` asks for (EX-10-Chart-Data: closestTimestamp,
        asFarAsTimestamp, asMuchAsElements; at least one is given)."""
        bars = self.bars
        if closest is not None:
            bars = [b for b in bars if b.start <= closest]
        if as_far_as is not None:
            bars = [b for b in bars if b.start >= as_far_as]
        if as_much_as is not None:
            bars = bars[-as_much_as:] if as_much_as > 0 else []
        return list(bars)
