"""A seeded random walk for N instruments: registered feed name ``"synthetic"``.

Deterministic for a seed (same args → same ticks). Each step picks an instrument, moves its
price by -1, 0 or +1 tick (never to zero or below), and stamps the tick ``interval_ms`` after
the previous one (aware UTC, strictly increasing from ``start``). Prices are Decimal multiples
of ``tick_size``; bid/ask are one tick either side of the trade price.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from trading.exceptions import BadInput
from trading.market import Tick
from workers.feeds.base import FeedArgs, parse_speed
from workers.settings import Settings

DEFAULT_START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
_ALLOWED_ARGS = frozenset(
    {"instruments", "seed", "start", "tick_size", "start_price", "interval_ms", "count", "speed"}
)


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    """Typed args of the synthetic source."""

    instruments: tuple[str, ...]
    seed: int = 0
    start: datetime = DEFAULT_START
    tick_size: Decimal = Decimal("0.25")
    start_price: Decimal = Decimal("4000.00")
    interval_ms: int = 250
    count: int | None = None
    """How many ticks in all; ``None`` runs forever."""
    max_size: int = 5
    speed: float | None = None

    def __post_init__(self) -> None:
        if not self.instruments or len(set(self.instruments)) != len(self.instruments):
            raise BadInput("synthetic: instruments must be a non-empty list of distinct symbols")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise BadInput("synthetic: start must be timezone-aware")
        if not self.tick_size.is_finite() or self.tick_size <= 0:
            raise BadInput(f"synthetic: tick_size {self.tick_size} must be positive")
        if not self.start_price.is_finite() or self.start_price <= 0:
            raise BadInput(f"synthetic: start_price {self.start_price} must be positive")
        if self.start_price % self.tick_size != 0:
            raise BadInput(
                f"synthetic: start_price {self.start_price} is not on the {self.tick_size} grid"
            )
        if self.interval_ms <= 0:
            raise BadInput("synthetic: interval_ms must be positive")
        if self.count is not None and self.count < 0:
            raise BadInput("synthetic: count must not be negative")
        if self.max_size < 1:
            raise BadInput("synthetic: max_size must be at least 1")

    @classmethod
    def from_args(cls, args: FeedArgs) -> SyntheticConfig:
        unknown = set(args) - _ALLOWED_ARGS
        if unknown:
            raise BadInput(f"synthetic: unknown args {sorted(unknown)}")
        instruments = args.get("instruments")
        if not isinstance(instruments, list | tuple) or not all(
            isinstance(i, str) and i.strip() for i in instruments
        ):
            raise BadInput("synthetic: instruments must be a list of symbols")
        try:
            start = datetime.fromisoformat(str(args["start"])) if "start" in args else DEFAULT_START
            tick_size = Decimal(str(args.get("tick_size", "0.25")))
            start_price = Decimal(str(args.get("start_price", "4000.00")))
        except (ValueError, InvalidOperation) as exc:
            raise BadInput(f"synthetic: bad arg: {exc}") from None
        count = args.get("count")
        return cls(
            instruments=tuple(i.strip().upper() for i in instruments),
            seed=_int_arg(args.get("seed", 0), "seed"),
            start=start,
            tick_size=tick_size,
            start_price=start_price,
            interval_ms=_int_arg(args.get("interval_ms", 250), "interval_ms"),
            count=None if count is None else _int_arg(count, "count"),
            speed=parse_speed(args.get("speed")),
        )


def _int_arg(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"synthetic: arg {name!r} must be an integer, got {value!r}")
    return value


class SyntheticSource:
    """Seeded random-walk ticks; ``ticks()`` restarts the same walk every time it is called."""

    name = "synthetic"

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config

    @classmethod
    def from_args(cls, args: FeedArgs, settings: Settings) -> SyntheticSource:
        """The registry's factory (no setting is needed)."""
        return cls(SyntheticConfig.from_args(args))

    @property
    def instruments(self) -> tuple[str, ...]:
        return self.config.instruments

    @property
    def speed(self) -> float | None:
        return self.config.speed

    def ticks(self) -> Iterator[Tick]:
        cfg = self.config
        rng = random.Random(cfg.seed)  # noqa: S311 - a reproducible simulation, not security
        tick = cfg.tick_size
        prices = [cfg.start_price] * len(cfg.instruments)
        step = timedelta(milliseconds=cfg.interval_ms)
        start = cfg.start.astimezone(UTC)
        n = 0
        while cfg.count is None or n < cfg.count:
            k = rng.randrange(len(prices))
            price = prices[k] + tick * rng.choice((-1, 0, 1))
            if price <= 0:
                price = prices[k] + tick
            prices[k] = price
            bid = price - tick
            yield Tick(
                instrument=cfg.instruments[k],
                time=start + step * n,
                price=price,
                size=rng.randint(1, cfg.max_size),
                bid=bid if bid > 0 else None,
                ask=price + tick,
            )
            n += 1
