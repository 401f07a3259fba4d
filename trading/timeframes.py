"""Candle timeframes ("1m", "5m", "15m", "1h", "1d", ...) and their UTC buckets.

A bucket is aligned to whole multiples of the timeframe since the UNIX epoch (UTC), so a
"5m" candle starts at :00, :05, ... and a "1d" candle at UTC midnight. Only timeframes that
divide a UTC day evenly are accepted (or exactly one day), so every bucket of every day lines
up the same way. Integer arithmetic on ``timedelta`` keeps it exact to the microsecond.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from trading.exceptions import BadInput

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_SECONDS = 86_400
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": DAY_SECONDS}
_PATTERN = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A candle period of ``seconds`` seconds; ``name`` is its canonical text ("5m")."""

    seconds: int
    name: str = field(compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.seconds <= DAY_SECONDS or DAY_SECONDS % self.seconds:
            raise BadInput(f"bad timeframe {self.name!r}: must divide a day or be one day")

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def bucket_start(self, t: datetime) -> datetime:
        """The aware-UTC start of the bucket holding ``t`` (a boundary belongs to the new one)."""
        if t.tzinfo is None or t.utcoffset() is None:
            raise BadInput(f"naive datetime {t.isoformat()} (times must be timezone-aware UTC)")
        step = self.delta
        return EPOCH + step * ((t - EPOCH) // step)

    def __str__(self) -> str:
        return self.name


@lru_cache(maxsize=64)
def parse_timeframe(text: str) -> Timeframe:
    """``"15m"`` → ``Timeframe(900, "15m")``; units s, m, h, d; the name is canonical
    (``"60m"`` is named ``"1h"``). Raises ``BadInput``."""
    match = _PATTERN.match(text.strip().lower()) if isinstance(text, str) else None
    if match is None:
        raise BadInput(f"bad timeframe {text!r}: expected <count><s|m|h|d>, e.g. 1m, 5m, 1h, 1d")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return Timeframe(seconds=seconds, name=_canonical_name(seconds))


def _canonical_name(seconds: int) -> str:
    """The name in the largest whole unit: 3600 → "1h", 90 → "90s"."""
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"
