"""Replay of the real Lean files as ticks: registered feed name ``"replay"``.

Minute bars become ticks so that 1-minute candles folded with ``trading.candles.fold_ticks``
reproduce every source bar exactly:

- four ticks per bar, always in the order open, high, low, close, stamped +0 s, +15 s, +30 s,
  +45 s into the bar's minute (the +0 s tick opens the bar's candle, all stay inside it);
- the bar's volume is split as an integer: ``volume // 4`` each, the remainder given one unit
  at a time to the first ticks, so the sizes sum to the bar volume exactly (zero-volume bars
  give four zero-size ticks);
- bid/ask: every tick of a minute carries the close of that minute's quote bar (``bid_close``,
  ``ask_close``), the touch as the minute ended. The quote bar's open/high/low are not matched
  to the trade ticks because the files do not say when within the minute they happened. A side
  with no quotes, or a minute with no quote bar, gives ``None``. Quote bars of minutes without
  trades produce no ticks (ticks are trade prints).

Tick files (GC) pass through one tick per row: size = quantity, no bid/ask. The vendor's
``suspicious`` flag is not carried on the tick: the tick path's validator decides.
Files are read one day at a time, days in order; dates without data are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from trading.exceptions import BadInput
from trading.market import Candle, Tick
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

BAR_TICK_OFFSETS = (
    timedelta(seconds=0),
    timedelta(seconds=15),
    timedelta(seconds=30),
    timedelta(seconds=45),
)
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


def split_volume(volume: int, parts: int = len(BAR_TICK_OFFSETS)) -> tuple[int, ...]:
    """``volume`` as ``parts`` non-negative integers summing to it exactly (first ones larger)."""
    base, remainder = divmod(volume, parts)
    return tuple(base + (1 if i < remainder else 0) for i in range(parts))


def bar_ticks(bar: Candle, quote: QuoteBar | None, instrument: str) -> tuple[Tick, ...]:
    """The four ticks (open, high, low, close) whose 1-minute candle is exactly ``bar``."""
    bid = quote.bid_close if quote is not None else None
    ask = quote.ask_close if quote is not None else None
    prices = (bar.open, bar.high, bar.low, bar.close)
    sizes = split_volume(bar.volume)
    return tuple(
        Tick(instrument, bar.start + offset, price, size, bid, ask)
        for offset, price, size in zip(BAR_TICK_OFFSETS, prices, sizes, strict=True)
    )


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
