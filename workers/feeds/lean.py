"""Readers for the real QuantConnect/Lean (AlgoSeek) futures files in ``market_data_dir``.

Layout (see shared/data/README.md)::

    <dir>/<product>/minute/YYYYMMDD_<product>_minute_{trade|quote}_<YYYYMM>.csv
    <dir>/<product>/tick/YYYYMMDD_<product>_tick_trade_<YYYYMM>.csv

The first column is milliseconds since midnight UTC of the file's date. Prices are parsed
straight from the text to ``Decimal`` (never through float). Contract symbols map to the file
month: ESZ13 ↔ 201312, ESH14 ↔ 201403 (month codes F G H J K M N Q U V X Z).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from trading.exceptions import BadInput
from trading.market import Candle

MONTH_CODES = "FGHJKMNQUVXZ"
"""Futures month codes, January (F) to December (Z)."""

Resolution = Literal["minute", "tick"]
_SYMBOL = re.compile(r"^([A-Z0-9]+?)([FGHJKMNQUVXZ])([0-9]{2})$")
_DAY_MS = 86_400_000


class LeanFileError(BadInput):
    """A data file row that cannot be read; names the file and line."""


def contract_month(contract: str, product: str | None = None) -> str:
    """``"ESZ13"`` → ``"201312"``; ``product`` (if given) must prefix the symbol."""
    match = _SYMBOL.match(contract.strip().upper())
    if match is None or (product is not None and match.group(1) != product.strip().upper()):
        raise BadInput(f"bad contract symbol {contract!r} (expected e.g. ESZ13 for product ES)")
    month = MONTH_CODES.index(match.group(2)) + 1
    return f"20{match.group(3)}{month:02d}"


def contract_symbol(product: str, yyyymm: str) -> str:
    """``("ES", "201403")`` → ``"ESH14"``."""
    if not re.fullmatch(r"20[0-9]{2}(0[1-9]|1[0-2])", yyyymm):
        raise BadInput(f"bad contract month {yyyymm!r} (expected YYYYMM)")
    return f"{product.upper()}{MONTH_CODES[int(yyyymm[4:]) - 1]}{yyyymm[2:4]}"


@dataclass(frozen=True, slots=True)
class QuoteBar:
    """One 1-minute quote bar. A side with no quotes in the minute has ``None`` prices."""

    start: datetime
    bid_open: Decimal | None
    bid_high: Decimal | None
    bid_low: Decimal | None
    bid_close: Decimal | None
    last_bid_size: int
    ask_open: Decimal | None
    ask_high: Decimal | None
    ask_low: Decimal | None
    ask_close: Decimal | None
    last_ask_size: int


@dataclass(frozen=True, slots=True)
class TradeTickRow:
    """One trade print from a tick file, the ``suspicious`` flag kept as the vendor gave it."""

    time: datetime
    price: Decimal
    quantity: int
    exchange: str
    sale_condition: str
    suspicious: bool


def day_start(day: date) -> datetime:
    """Midnight UTC of ``day``: the origin of the files' millisecond column."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def minute_path(data_dir: Path, product: str, kind: str, day: date, yyyymm: str) -> Path:
    """The minute file of ``kind`` (trade, quote, openinterest) for ``day`` and contract month."""
    p = product.lower()
    return data_dir / p / "minute" / f"{day:%Y%m%d}_{p}_minute_{kind}_{yyyymm}.csv"


def tick_path(data_dir: Path, product: str, day: date, yyyymm: str) -> Path:
    """The trade-tick file for ``day`` and contract month."""
    p = product.lower()
    return data_dir / p / "tick" / f"{day:%Y%m%d}_{p}_tick_trade_{yyyymm}.csv"


def available_dates(data_dir: Path, product: str, yyyymm: str) -> dict[date, Resolution]:
    """Every date with trade data for the contract, and its resolution (tick preferred)."""
    p = product.lower()
    found: dict[date, Resolution] = {}
    for resolution, pattern in (
        ("minute", f"*_{p}_minute_trade_{yyyymm}.csv"),
        ("tick", f"*_{p}_tick_trade_{yyyymm}.csv"),
    ):
        folder = data_dir / p / resolution
        if not folder.is_dir():
            continue
        for path in folder.glob(pattern):
            try:
                day = datetime.strptime(path.name[:8], "%Y%m%d").replace(tzinfo=UTC).date()
            except ValueError:
                continue
            found[day] = "tick" if resolution == "tick" else found.get(day, "minute")
    return dict(sorted(found.items()))


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with path.open(newline="", encoding="ascii") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if row:
                yield line_no, row


def _ms_time(origin: datetime, text: str) -> datetime:
    ms = int(text)
    if not 0 <= ms < _DAY_MS:
        raise ValueError(f"milliseconds {ms} outside the file's day")
    return origin + timedelta(milliseconds=ms)


def _price(text: str) -> Decimal | None:
    return Decimal(text) if text else None


def _required(value: Decimal | None) -> Decimal:
    if value is None:
        raise ValueError("empty price")
    return value


def read_trade_bars(path: Path, day: date) -> Iterator[Candle]:
    """The 1-minute trade bars of a ``..._minute_trade_...`` file, in file order."""
    origin = day_start(day)
    for line_no, row in _rows(path):
        try:
            ms, o, h, lo, c, volume = row
            yield Candle(
                start=_ms_time(origin, ms),
                open=_required(_price(o)),
                high=_required(_price(h)),
                low=_required(_price(lo)),
                close=_required(_price(c)),
                volume=int(volume),
            )
        except (ValueError, InvalidOperation) as exc:
            raise LeanFileError(f"{path.name}:{line_no}: {exc}") from None


def read_quote_bars(path: Path, day: date) -> Iterator[QuoteBar]:
    """The 1-minute quote bars of a ``..._minute_quote_...`` file, in file order."""
    origin = day_start(day)
    for line_no, row in _rows(path):
        try:
            ms, bo, bh, bl, bc, bsize, ao, ah, al, ac, asize = row
            yield QuoteBar(
                start=_ms_time(origin, ms),
                bid_open=_price(bo),
                bid_high=_price(bh),
                bid_low=_price(bl),
                bid_close=_price(bc),
                last_bid_size=int(bsize or 0),
                ask_open=_price(ao),
                ask_high=_price(ah),
                ask_low=_price(al),
                ask_close=_price(ac),
                last_ask_size=int(asize or 0),
            )
        except (ValueError, InvalidOperation) as exc:
            raise LeanFileError(f"{path.name}:{line_no}: {exc}") from None


def read_trade_ticks(path: Path, day: date) -> Iterator[TradeTickRow]:
    """The trade prints of a ``..._tick_trade_...`` file, in file order."""
    origin = day_start(day)
    for line_no, row in _rows(path):
        try:
            ms, price, quantity, exchange, condition, suspicious = row
            if suspicious not in {"0", "1"}:
                raise ValueError(f"suspicious flag {suspicious!r} is not 0/1")
            yield TradeTickRow(
                time=_ms_time(origin, ms),
                price=_required(_price(price)),
                quantity=int(quantity),
                exchange=exchange,
                sale_condition=condition,
                suspicious=suspicious == "1",
            )
        except (ValueError, InvalidOperation) as exc:
            raise LeanFileError(f"{path.name}:{line_no}: {exc}") from None
