"""Replay of the real Lean files as ticks: registered feed name ``"replay"``.

Minute bars become ticks through ``workers.feeds.bars.bar_ticks`` (four ticks per bar, open,
high, low, close at +0/+15/+30/+45 s, the volume split exactly), so that 1-minute candles folded
with ``trading.candles.fold_ticks`` reproduce every source bar exactly.

- bid/ask: every tick of a minute carries the close of that minute's quote bar (``bid_close``,
  ``ask_close``), the touch as the minute ended. The quote bar's open/high/low are not matched
  to the trade ticks because the files do not say when within the minute they happened. A side
  with no quotes, or a minute with no quote bar, gives ``None``. Quote bars of minutes without
  trades produce no ticks (ticks are trade prints).

Tick files (GC) pass through one tick per row: size = quantity, no bid/ask. The vendor's
``suspicious`` flag is not carried on the tick: the tick path's validator decides.
Files are read one day at a time, days in order; dates without data are skipped.

History (``ReplayHistory``, the warm-up of ``workers.feeds.history``): the minute bars before a
moment, read back from the same files day by day; a tick-file day gives the 1-minute candles
its prints fold into (validated as the tick path validates them), which fold further exactly
as the prints would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from trading.candles import fold_ticks, validate_tick
from trading.exceptions import BadInput
from trading.market import Candle, Tick
from trading.timeframes import parse_timeframe
from workers.feeds import bars
from workers.feeds.bars import BAR_TICK_OFFSETS, split_volume
from workers.feeds.base import FeedArgs, parse_speed
from workers.feeds.lean import (
    QuoteBar,
    Resolution,
    available_dates,
    contract_month,
    minute_path,
    read_quote_bars,
    read_trade_bars,
    read_trade_ticks,
    tick_path,
)
from workers.settings import Settings

_ALLOWED_ARGS = frozenset({"product", "contract", "date_from", "date_to", "speed"})


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """What to replay: one contract of one product over an inclusive date range."""

    product: str
    contract: str
    date_from: date
    date_to: date
    speed: float | None = None

    def __post_init__(self) -> None:
        if self.date_to < self.date_from:
            raise BadInput(f"replay: date_to {self.date_to} is before date_from {self.date_from}")
        contract_month(self.contract, self.product)

    @property
    def contract_month(self) -> str:
        return contract_month(self.contract, self.product)

    @classmethod
    def from_args(cls, args: FeedArgs) -> ReplayConfig:
        """From JSON args: product, contract, date_from, date_to (defaults to date_from), speed."""
        unknown = set(args) - _ALLOWED_ARGS
        if unknown:
            raise BadInput(
                f"replay: unknown args {sorted(unknown)} (known: {sorted(_ALLOWED_ARGS)})"
            )
        product = _text_arg(args, "product").upper()
        contract = _text_arg(args, "contract").upper()
        date_from = _date_arg(args.get("date_from"), "date_from")
        date_to = _date_arg(args.get("date_to", args.get("date_from")), "date_to")
        return cls(product, contract, date_from, date_to, parse_speed(args.get("speed")))


def _text_arg(args: FeedArgs, name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"replay: arg {name!r} must be a non-empty string")
    return value.strip()


def _date_arg(value: object, name: str) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise BadInput(f"replay: arg {name!r} must be a date YYYY-MM-DD, got {value!r}")


def bar_ticks(bar: Candle, quote: QuoteBar | None, instrument: str) -> tuple[Tick, ...]:
    """The four ticks (open, high, low, close) whose 1-minute candle is exactly ``bar``."""
    bid = quote.bid_close if quote is not None else None
    ask = quote.ask_close if quote is not None else None
    return bars.bar_ticks(bar, instrument, bid, ask)


class ReplaySource:
    """Ticks from the real files for one contract and an inclusive date range, in time order."""

    name = "replay"

    def __init__(self, config: ReplayConfig, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        every = available_dates(data_dir, config.product, config.contract_month)
        self._dates = {d: r for d, r in every.items() if config.date_from <= d <= config.date_to}
        if not self._dates:
            span = f"{min(every)}..{max(every)}" if every else "none"
            raise BadInput(
                f"replay: no data for {config.contract} between {config.date_from} and "
                f"{config.date_to} in {data_dir} (dates with data: {span})"
            )

    @classmethod
    def from_args(cls, args: FeedArgs, settings: Settings) -> ReplaySource:
        """The registry's factory: args as stored in ``market_data_source.args``, the files in
        ``TRADEFLEET_MARKET_DATA_DIR``."""
        return cls(ReplayConfig.from_args(args), settings.paths.market_data_dir)

    @property
    def instruments(self) -> tuple[str, ...]:
        return (self.config.contract,)

    @property
    def speed(self) -> float | None:
        return self.config.speed

    def dates(self) -> dict[date, Resolution]:
        """The dates in range that have data, in order, with their resolution."""
        return dict(self._dates)

    def ticks(self) -> Iterator[Tick]:
        for day, resolution in self._dates.items():
            if resolution == "tick":
                yield from self._tick_file_ticks(day)
            else:
                yield from self._minute_bar_ticks(day)

    def _minute_bar_ticks(self, day: date) -> Iterator[Tick]:
        cfg = self.config
        month = cfg.contract_month
        quote_file = minute_path(self.data_dir, cfg.product, "quote", day, month)
        quotes = (
            {q.start: q for q in read_quote_bars(quote_file, day)} if quote_file.is_file() else {}
        )
        trade_file = minute_path(self.data_dir, cfg.product, "trade", day, month)
        for bar in read_trade_bars(trade_file, day):
            yield from bar_ticks(bar, quotes.get(bar.start), cfg.contract)

    def _tick_file_ticks(self, day: date) -> Iterator[Tick]:
        cfg = self.config
        path = tick_path(self.data_dir, cfg.product, day, cfg.contract_month)
        for row in read_trade_ticks(path, day):
            yield Tick(cfg.contract, row.time, row.price, row.quantity)


class ReplayHistory:
    """The minute bars of the real files before a moment (``workers.feeds.base.HistorySource``)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplayHistory:
        return cls(settings.paths.market_data_dir)

    def history(self, contract: str, until: datetime, minutes: int) -> list[Candle]:
        """The last ``minutes`` 1-minute bars of ``contract`` starting before ``until``, oldest
        first (fewer when the files hold fewer)."""
        if minutes <= 0:
            return []
        product = _product_of(contract)
        month = contract_month(contract, product)
        days = available_dates(self.data_dir, product, month)
        newest_first: list[Candle] = []
        for day in sorted((d for d in days if d <= until.date()), reverse=True):
            if days[day] == "tick":
                day_bars = self._tick_day_bars(product, contract, month, day)
            else:
                path = minute_path(self.data_dir, product, "trade", day, month)
                day_bars = list(read_trade_bars(path, day))
            for bar in reversed(day_bars):
                if bar.start < until:
                    newest_first.append(bar)
                    if len(newest_first) == minutes:
                        return list(reversed(newest_first))
        return list(reversed(newest_first))

    def _tick_day_bars(self, product: str, contract: str, month: str, day: date) -> list[Candle]:
        good: list[Tick] = []
        last: datetime | None = None
        for row in read_trade_ticks(tick_path(self.data_dir, product, day, month), day):
            tick = Tick(contract, row.time, row.price, row.quantity)
            if validate_tick(tick, last) is None:
                good.append(tick)
                last = tick.time
        folded = fold_ticks(None, good, parse_timeframe("1m"))
        return [*folded.closed, *(() if folded.partial is None else (folded.partial,))]


def _product_of(contract: str) -> str:
    symbol = contract.strip().upper()
    if len(symbol) < 4:
        raise BadInput(f"bad contract symbol {contract!r} (expected e.g. ESZ13)")
    return symbol[:-3]


__all__ = [
    "BAR_TICK_OFFSETS",
    "ReplayConfig",
    "ReplayHistory",
    "ReplaySource",
    "bar_ticks",
    "split_volume",
]
