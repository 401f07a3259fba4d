"""One typed, frozen settings object read from the environment (``TRADEFLEET_*``).

A bad value stops start-up with one line naming the variable: see ``load_settings``.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trading.exceptions import BadInput

DEFAULT_DATA_DIR = Path("var")
DEFAULT_MARKET_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The real market data (shared/data beside the checkout), read-only; used by replay feeds."""


class Settings(BaseSettings):
    """Every setting tradefleet reads. Immutable once loaded."""

    model_config = SettingsConfigDict(env_prefix="TRADEFLEET_", frozen=True, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    paper_broker_url: str = "redis://127.0.0.1:6379/1"
    """The paper broker's OWN store (never the sessions' database)."""
    data_dir: Path = DEFAULT_DATA_DIR
    market_data_dir: Path = DEFAULT_MARKET_DATA_DIR
    database_url: str = ""
    lock_ttl_ms: Annotated[int, Field(ge=100, le=600_000)] = 10_000
    visibility_timeout_s: Annotated[int, Field(ge=10, le=86_400)] = 3_600
    queue_ticks: str = "ticks"
    queue_orders: str = "orders"
    queue_reconcile: str = "reconcile"
    queue_rolls: str = "rolls"
    queue_default: str = "default"
    tick_batch: Annotated[int, Field(ge=1, le=100_000)] = 2_000
    claim_batch: Annotated[int, Field(ge=1, le=1_000)] = 128
    claim_min: Annotated[int, Field(ge=1, le=1_000)] = 32
    """A claim takes every due session up to this many before a backlog is shared among the
    drainers: a round costs two round trips whatever its size, so a few due sessions are
    served by one round, not split into one round per drainer."""
    max_drainers: Annotated[int, Field(ge=1, le=1_000)] = 4
    drainer_grace_ms: Annotated[int, Field(ge=1_000, le=3_600_000)] = 30_000
    drain_budget_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    sweep_interval_s: Annotated[float, Field(ge=0.5, le=3_600)] = 5.0
    stream_maxlen: Annotated[int, Field(ge=1_000)] = 1_000_000
    reconcile_positions_interval_s: Annotated[float, Field(ge=0.5, le=86_400)] = 30.0
    reconcile_orders_interval_s: Annotated[float, Field(ge=0.5, le=86_400)] = 300.0
    reconcile_grace_s: Annotated[float, Field(ge=0, le=3_600)] = 5.0
    """A session with a fill applied this recently is re-checked, not corrected."""
    reconcile_max_failures: Annotated[int, Field(ge=1, le=1_000)] = 3
    """Consecutive failed broker queries after which a session stops entering."""
    reconcile_rechecks: Annotated[int, Field(ge=0, le=100)] = 3
    """Short re-checks of a busy session before it waits for the next period."""
    adopt_external_orders: bool = True
    """An order open at the broker and unknown to its session is adopted (else only flagged)."""
    protective_stops: bool = True
    """A position opened with a stop price gets a stop order resting at the broker
    (``workers.stops.sync``), which the tick step watches in data time
    (``workers.stops.watch``); an exit cancels it first, as of its decision, and is
    dropped if it had already filled; a strategy that moves its stop moves the order. Off
    (``TRADEFLEET_PROTECTIVE_STOPS=0``): stops are only the strategies' own."""
    max_candles: Annotated[int, Field(ge=10, le=100_000)] = 500
    roll_check_interval_s: Annotated[float, Field(ge=0.5, le=604_800)] = 86_400.0
    """How often beat looks for sessions inside their roll window (daily by default)."""
    roll_window_days: Annotated[int, Field(ge=1, le=30)] = 3
    """Calendar days from the roll date during which a session is rolled (never past expiry)."""
    roll_fill_max_tries: Annotated[int, Field(ge=1, le=10_000)] = 60
    """Tries of a roll's await step before the roll fails (the session then stops trading)."""
    roll_fill_retry_s: Annotated[float, Field(ge=0.05, le=3_600)] = 5.0
    """Seconds between two tries of a roll's await step."""
    roll_test_pause_at: str = ""
    """TEST ONLY (empty = off): a roll step of this name pauses forever just before it records
    itself done, so a crash test can SIGKILL the worker there (``workers.rolls.steps``)."""
    risk_heat_warn: Annotated[Decimal, Field(ge=0, le=10)] = Decimal("0.06")
    """Default heat warn level (fraction of equity) of an account without its own (SQL)."""
    risk_heat_block: Annotated[Decimal, Field(ge=0, le=10)] = Decimal("0.10")
    """Default heat block level: entries that would take heat above it are refused."""
    risk_heat_hysteresis: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.01")
    """The warned flag clears only below warn - hysteresis (one warning per crossing)."""
    risk_atr_mult: Annotated[Decimal, Field(gt=0, le=100)] = Decimal(2)
    """A position without a stop is charged risk_atr_mult x ATR per contract (``trading.risk``)."""
    risk_atr_periods: Annotated[int, Field(ge=1, le=1_000)] = 14
    risk_max_position: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    """Maximum |position| of one session in contracts (0 = no maximum)."""
    latency_probe: bool = False
    """Benchmark only: drainers record each step's oldest-tick age (``workers.ticks.drain``)."""
    flower_user: str = "admin"
    flower_password: SecretStr = SecretStr("")
    log_level: str = "INFO"

    @field_validator("redis_url", "paper_broker_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be an sqlite:/// or postgresql+psycopg:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return upper

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL; the embedded default is an SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tradefleet.db').resolve()}"

    @property
    def queues(self) -> tuple[str, ...]:
        return (
            self.queue_ticks,
            self.queue_orders,
            self.queue_reconcile,
            self.queue_rolls,
            self.queue_default,
        )


def load_settings() -> Settings:
    """Read the environment; a bad value raises ``BadInput`` naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "TRADEFLEET_" + str(first["loc"][0]).upper() if first["loc"] else "TRADEFLEET_*"
        raise BadInput(f"bad setting {name}: {first['msg']}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
