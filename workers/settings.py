"""One typed, frozen settings object read from the environment (``TRADEFLEET_*``).

``Settings`` composes one frozen group per subsystem (``settings.ticks``, ``settings.risk``,
...). The variables keep flat names (``TRADEFLEET_TICK_BATCH``, not ``..._TICKS__BATCH``):
``ENV_NAMES`` is the one table of variable → (group, field). The settings are read once, at a
process's entry (the Celery app and its runtime, the CLI, Flower, Alembic: ``get_settings``),
and each library function is handed the group it needs.

A bad value stops start-up with one line naming the variable: see ``load_settings``.

``Diagnostics`` holds the switches the benchmark and the tests set (never production's).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from trading.exceptions import BadInput

DEFAULT_DATA_DIR = Path("var")
DEFAULT_MARKET_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The real market data (shared/data beside the checkout), read-only; used by replay feeds."""

ENV_PREFIX = "TRADEFLEET_"


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RedisSettings(_Group):
    """The two Redis servers: the sessions' and the paper broker's own."""

    url: str = "redis://127.0.0.1:6379/0"
    """Sessions' state, streams, Celery broker and results."""
    paper_broker_url: str = "redis://127.0.0.1:6379/1"
    """The paper broker's OWN store (never the sessions' database)."""

    @field_validator("url", "paper_broker_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class DatabaseSettings(_Group):
    url: str = ""
    """Empty: the SQLite file in the data folder (``Settings.sqlalchemy_url``)."""

    @field_validator("url")
    @classmethod
    def _db_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be an sqlite:/// or postgresql+psycopg:// URL")
        return value


class PathSettings(_Group):
    data_dir: Path = DEFAULT_DATA_DIR
    """The SQLite file, demo logs and reports."""
    market_data_dir: Path = DEFAULT_MARKET_DATA_DIR


class StateSettings(_Group):
    """The session-state store (``workers.state.store``)."""

    lock_ttl_ms: Annotated[int, Field(ge=100, le=600_000)] = 10_000
    """A session's lease; renewed while held."""
    max_candles: Annotated[int, Field(ge=10, le=100_000)] = 500


class QueueSettings(_Group):
    """The Celery queues, one per kind of work (``workers.celery_app``)."""

    ticks: str = "ticks"
    orders: str = "orders"
    reconcile: str = "reconcile"
    rolls: str = "rolls"
    default: str = "default"
    visibility_timeout_s: Annotated[int, Field(ge=10, le=86_400)] = 3_600
    """The Redis transport's visibility timeout: an unacknowledged task is redelivered after it."""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.ticks, self.orders, self.reconcile, self.rolls, self.default)


class TickSettings(_Group):
    """The tick path's tuning (``workers.ticks``)."""

    batch: Annotated[int, Field(ge=1, le=100_000)] = 2_000
    """Ticks a session's step reads at most."""
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


class ReconcileSettings(_Group):
    """Reconciliation with the broker (``workers.reconcile``)."""

    positions_interval_s: Annotated[float, Field(ge=0.5, le=86_400)] = 30.0
    orders_interval_s: Annotated[float, Field(ge=0.5, le=86_400)] = 300.0
    grace_s: Annotated[float, Field(ge=0, le=3_600)] = 5.0
    """A session with a fill applied this recently is re-checked, not corrected."""
    max_failures: Annotated[int, Field(ge=1, le=1_000)] = 3
    """Consecutive failed broker queries after which a session stops entering."""
    rechecks: Annotated[int, Field(ge=0, le=100)] = 3
    """Short re-checks of a busy session before it waits for the next period."""
    adopt_external_orders: bool = True
    """An order open at the broker and unknown to its session is adopted (else only flagged)."""


class StopSettings(_Group):
    protective: bool = True
    """A position opened with a stop price gets a stop order resting at the broker
    (``workers.stops.sync``), which the tick step watches in data time
    (``trading.stops``); an exit cancels it first, as of its decision, and is
    dropped if it had already filled; a strategy that moves its stop moves the order. Off
    (``TRADEFLEET_PROTECTIVE_STOPS=0``): stops are only the strategies' own."""


class RollSettings(_Group):
    """Contract rolls (``workers.rolls``)."""

    check_interval_s: Annotated[float, Field(ge=0.5, le=604_800)] = 86_400.0
    """How often beat looks for sessions inside their roll window (daily by default)."""
    window_days: Annotated[int, Field(ge=1, le=30)] = 3
    """Calendar days from the roll date during which a session is rolled (never past expiry)."""
    fill_max_tries: Annotated[int, Field(ge=1, le=10_000)] = 60
    """Tries of a roll's await step before the roll fails (the session then stops trading)."""
    fill_retry_s: Annotated[float, Field(ge=0.05, le=3_600)] = 5.0
    """Seconds between two tries of a roll's await step."""
    lease_s: Annotated[float, Field(ge=2, le=3_600)] = 15.0
    """A running roll's chain is carried by the task running its step: that task holds the
    roll's lease (``workers.rolls.carrier``), renewed every third of this while it runs, and
    for this long past the countdown of its retry. A roll whose lease lapsed is carried by
    nobody (its worker's host died with the task): the roll sweep resumes it."""
    sweep_interval_s: Annotated[float, Field(ge=0.5, le=3_600)] = 5.0
    """How often beat looks for running rolls nobody carries (``workers.rolls.chain``)."""


class OrderSettings(_Group):
    """Sending orders (``workers.orders``)."""

    send_stale_s: Annotated[float, Field(ge=10, le=3_600)] = 10.0
    """An order row still ``new`` this long after it was written, whose send task holds no
    lease (each try of a send holds one for this long), lost its send: the send sweep queues
    it again (``workers.orders.sweep``). At least 10 s: longer than a send's retry backoff."""
    sweep_interval_s: Annotated[float, Field(ge=0.5, le=3_600)] = 5.0
    """How often beat looks for orders whose send was lost."""
    send_batch: Annotated[int, Field(ge=1, le=1_000)] = 16
    """A drain round's orders go out in send tasks of up to this many orders each
    (``tradefleet.orders.send_batch``): a task's own cost (its message, its run in a worker)
    is paid once per batch, and a round with more orders still spreads them over the orders
    workers."""


class RiskSettings(_Group):
    """Account risk (``workers.risk``): the defaults of an account without its own (SQL)."""

    heat_warn: Annotated[Decimal, Field(ge=0, le=10)] = Decimal("0.06")
    """Heat warn level (fraction of equity)."""
    heat_block: Annotated[Decimal, Field(ge=0, le=10)] = Decimal("0.10")
    """Heat block level: entries that would take heat above it are refused."""
    heat_hysteresis: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.01")
    """The warned flag clears only below warn - hysteresis (one warning per crossing)."""
    atr_mult: Annotated[Decimal, Field(gt=0, le=100)] = Decimal(2)
    """A position without a stop is charged atr_mult x ATR per contract (``trading.risk``)."""
    atr_periods: Annotated[int, Field(ge=1, le=1_000)] = 14
    max_position: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    """Maximum |position| of one session in contracts (0 = no maximum)."""


TRADOVATE_ENDPOINTS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        # https://partner.tradovate.com/api/rest-api-endpoints/authentication/access-token-request.md
        # (demo base in the request line, live base in its example);
        # https://partner.tradovate.com/overview/conformance-testing/stage-5-market-data-access.md
        # (one market-data socket, md.tradovateapi.com; the docs name no separate demo one).
        "demo": MappingProxyType(
            {
                "rest_url": "https://demo.tradovateapi.com/v1",
                "ws_url": "wss://demo.tradovateapi.com/v1/websocket",
                "md_ws_url": "wss://md.tradovateapi.com/v1/websocket",
            }
        ),
        "live": MappingProxyType(
            {
                "rest_url": "https://live.tradovateapi.com/v1",
                "ws_url": "wss://live.tradovateapi.com/v1/websocket",
                "md_ws_url": "wss://md.tradovateapi.com/v1/websocket",
            }
        ),
    }
)
"""Tradovate's endpoints per environment, the defaults of the URLs left unset."""


class TradovateSettings(_Group):
    """The Tradovate account manager (``workers.brokers.tradovate``). Credentials only here,
    from the environment; the password and the API secret never appear in a repr or a log."""

    environment: Literal["demo", "live"] = "demo"
    allow_live: bool = False
    """Live trades real money: a live broker is refused unless this is set too."""
    rest_url: str = ""
    """Empty: the environment's endpoint (``TRADOVATE_ENDPOINTS``)."""
    ws_url: str = ""
    md_ws_url: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    app_id: str = ""
    app_version: str = "1.0"
    cid: Annotated[int, Field(ge=0)] = 0
    sec: SecretStr = SecretStr("")
    device_id: str = ""
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    """One HTTP request's timeout; a request that takes longer is ``ServiceUnavailable``."""
    token_renew_margin_s: Annotated[float, Field(ge=10, le=3_600)] = 900.0
    """A token this close to its expiry is renewed (the docs renew within 15 minutes)."""

    @model_validator(mode="before")
    @classmethod
    def _default_urls(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        environment = data.get("environment", "demo")
        defaults = TRADOVATE_ENDPOINTS.get(str(environment).lower())
        if defaults is None:
            return data
        filled = dict(data)
        for name, url in defaults.items():
            if not filled.get(name):
                filled[name] = url
        return filled

    @field_validator("environment", mode="before")
    @classmethod
    def _environment(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("rest_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// or http://")
        return value.rstrip("/")

    @field_validator("ws_url", "md_ws_url")
    @classmethod
    def _ws(cls, value: str) -> str:
        if not value.startswith(("wss://", "ws://")):
            raise ValueError("must start with wss:// or ws://")
        return value


class FlowerSettings(_Group):
    user: str = "admin"
    password: SecretStr = SecretStr("")


class WebSettings(_Group):
    """The operations console (``tradefleet web``) and its ``/metrics``."""

    secret_key: SecretStr = SecretStr("")
    """Signs the session cookie and the CSRF tokens; shared by every console instance. The
    console refuses to start without one (at least 32 characters)."""
    session_max_age_s: Annotated[int, Field(ge=60, le=7 * 86_400)] = 8 * 3_600
    """A login's cookie expires this long after the login."""
    login_max_failures: Annotated[int, Field(ge=1, le=1_000)] = 5
    """Failed logins allowed per user name and per client address in ``login_window_s``."""
    login_window_s: Annotated[int, Field(ge=1, le=86_400)] = 300
    metrics_token: SecretStr = SecretStr("")
    """``/metrics`` answers only ``Authorization: Bearer <token>``; unset, it is not served."""
    flower_url: str = "http://127.0.0.1:5555"
    """Where the console links to Flower."""

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value


class LogSettings(_Group):
    level: str = "INFO"

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return upper


ENV_NAMES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "TRADEFLEET_REDIS_URL": ("redis", "url"),
        "TRADEFLEET_PAPER_BROKER_URL": ("redis", "paper_broker_url"),
        "TRADEFLEET_DATABASE_URL": ("database", "url"),
        "TRADEFLEET_DATA_DIR": ("paths", "data_dir"),
        "TRADEFLEET_MARKET_DATA_DIR": ("paths", "market_data_dir"),
        "TRADEFLEET_LOCK_TTL_MS": ("state", "lock_ttl_ms"),
        "TRADEFLEET_MAX_CANDLES": ("state", "max_candles"),
        "TRADEFLEET_QUEUE_TICKS": ("queues", "ticks"),
        "TRADEFLEET_QUEUE_ORDERS": ("queues", "orders"),
        "TRADEFLEET_QUEUE_RECONCILE": ("queues", "reconcile"),
        "TRADEFLEET_QUEUE_ROLLS": ("queues", "rolls"),
        "TRADEFLEET_QUEUE_DEFAULT": ("queues", "default"),
        "TRADEFLEET_VISIBILITY_TIMEOUT_S": ("queues", "visibility_timeout_s"),
        "TRADEFLEET_TICK_BATCH": ("ticks", "batch"),
        "TRADEFLEET_CLAIM_BATCH": ("ticks", "claim_batch"),
        "TRADEFLEET_CLAIM_MIN": ("ticks", "claim_min"),
        "TRADEFLEET_MAX_DRAINERS": ("ticks", "max_drainers"),
        "TRADEFLEET_DRAINER_GRACE_MS": ("ticks", "drainer_grace_ms"),
        "TRADEFLEET_DRAIN_BUDGET_S": ("ticks", "drain_budget_s"),
        "TRADEFLEET_SWEEP_INTERVAL_S": ("ticks", "sweep_interval_s"),
        "TRADEFLEET_STREAM_MAXLEN": ("ticks", "stream_maxlen"),
        "TRADEFLEET_RECONCILE_POSITIONS_INTERVAL_S": ("reconcile", "positions_interval_s"),
        "TRADEFLEET_RECONCILE_ORDERS_INTERVAL_S": ("reconcile", "orders_interval_s"),
        "TRADEFLEET_RECONCILE_GRACE_S": ("reconcile", "grace_s"),
        "TRADEFLEET_RECONCILE_MAX_FAILURES": ("reconcile", "max_failures"),
        "TRADEFLEET_RECONCILE_RECHECKS": ("reconcile", "rechecks"),
        "TRADEFLEET_ADOPT_EXTERNAL_ORDERS": ("reconcile", "adopt_external_orders"),
        "TRADEFLEET_PROTECTIVE_STOPS": ("stops", "protective"),
        "TRADEFLEET_ROLL_CHECK_INTERVAL_S": ("rolls", "check_interval_s"),
        "TRADEFLEET_ROLL_WINDOW_DAYS": ("rolls", "window_days"),
        "TRADEFLEET_ROLL_FILL_MAX_TRIES": ("rolls", "fill_max_tries"),
        "TRADEFLEET_ROLL_FILL_RETRY_S": ("rolls", "fill_retry_s"),
        "TRADEFLEET_ROLL_LEASE_S": ("rolls", "lease_s"),
        "TRADEFLEET_ROLL_SWEEP_INTERVAL_S": ("rolls", "sweep_interval_s"),
        "TRADEFLEET_SEND_STALE_S": ("orders", "send_stale_s"),
        "TRADEFLEET_SEND_SWEEP_INTERVAL_S": ("orders", "sweep_interval_s"),
        "TRADEFLEET_SEND_BATCH": ("orders", "send_batch"),
        "TRADEFLEET_RISK_HEAT_WARN": ("risk", "heat_warn"),
        "TRADEFLEET_RISK_HEAT_BLOCK": ("risk", "heat_block"),
        "TRADEFLEET_RISK_HEAT_HYSTERESIS": ("risk", "heat_hysteresis"),
        "TRADEFLEET_RISK_ATR_MULT": ("risk", "atr_mult"),
        "TRADEFLEET_RISK_ATR_PERIODS": ("risk", "atr_periods"),
        "TRADEFLEET_RISK_MAX_POSITION": ("risk", "max_position"),
        "TRADEFLEET_TRADOVATE_ENVIRONMENT": ("tradovate", "environment"),
        "TRADEFLEET_TRADOVATE_ALLOW_LIVE": ("tradovate", "allow_live"),
        "TRADEFLEET_TRADOVATE_REST_URL": ("tradovate", "rest_url"),
        "TRADEFLEET_TRADOVATE_WS_URL": ("tradovate", "ws_url"),
        "TRADEFLEET_TRADOVATE_MD_WS_URL": ("tradovate", "md_ws_url"),
        "TRADEFLEET_TRADOVATE_USERNAME": ("tradovate", "username"),
        "TRADEFLEET_TRADOVATE_PASSWORD": ("tradovate", "password"),
        "TRADEFLEET_TRADOVATE_APP_ID": ("tradovate", "app_id"),
        "TRADEFLEET_TRADOVATE_APP_VERSION": ("tradovate", "app_version"),
        "TRADEFLEET_TRADOVATE_CID": ("tradovate", "cid"),
        "TRADEFLEET_TRADOVATE_SEC": ("tradovate", "sec"),
        "TRADEFLEET_TRADOVATE_DEVICE_ID": ("tradovate", "device_id"),
        "TRADEFLEET_TRADOVATE_TIMEOUT_S": ("tradovate", "timeout_s"),
        "TRADEFLEET_TRADOVATE_TOKEN_RENEW_MARGIN_S": ("tradovate", "token_renew_margin_s"),
        "TRADEFLEET_FLOWER_USER": ("flower", "user"),
        "TRADEFLEET_FLOWER_PASSWORD": ("flower", "password"),
        "TRADEFLEET_WEB_SECRET_KEY": ("web", "secret_key"),
        "TRADEFLEET_WEB_SESSION_MAX_AGE_S": ("web", "session_max_age_s"),
        "TRADEFLEET_WEB_LOGIN_MAX_FAILURES": ("web", "login_max_failures"),
        "TRADEFLEET_WEB_LOGIN_WINDOW_S": ("web", "login_window_s"),
        "TRADEFLEET_METRICS_TOKEN": ("web", "metrics_token"),
        "TRADEFLEET_FLOWER_URL": ("web", "flower_url"),
        "TRADEFLEET_LOG_LEVEL": ("log", "level"),
    }
)
"""Every variable ``Settings`` reads, and the group and field it sets."""


def grouped(variables: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Values by variable name (``TRADEFLEET_TICK_BATCH``), put into their groups: keyword
    arguments for ``Settings`` (``{"ticks": {"batch": ...}}``). An unknown name is a
    ``KeyError``."""
    groups: dict[str, dict[str, Any]] = {}
    for name, value in variables.items():
        group, field = ENV_NAMES[name]
        groups.setdefault(group, {})[field] = value
    return groups


class _FlatEnvironment(PydanticBaseSettingsSource):
    """The flat ``TRADEFLEET_*`` variables, each put into its group (``ENV_NAMES``); names are
    matched without regard to case, as pydantic-settings does."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        environ = {name.upper(): value for name, value in os.environ.items()}
        return grouped({name: environ[name] for name in ENV_NAMES if name in environ})


class _GivenFields(PydanticBaseSettingsSource):
    """The constructor's arguments, a group given as a model reduced to the fields it was
    given: those override the environment field by field (as they did when flat)."""

    def __init__(self, settings_cls: type[BaseSettings], given: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._given = given

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return {
            name: value.model_dump(exclude_unset=True) if isinstance(value, _Group) else value
            for name, value in self._given().items()
        }


class Settings(BaseSettings):
    """Every production setting tradefleet reads, one frozen group per subsystem.

    ``Settings(ticks=TickSettings(batch=10))``: the fields given win, the environment fills
    the rest (here the other tick settings too).
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    redis: RedisSettings = Field(default_factory=RedisSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    queues: QueueSettings = Field(default_factory=QueueSettings)
    ticks: TickSettings = Field(default_factory=TickSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    stops: StopSettings = Field(default_factory=StopSettings)
    rolls: RollSettings = Field(default_factory=RollSettings)
    orders: OrderSettings = Field(default_factory=OrderSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    tradovate: TradovateSettings = Field(default_factory=TradovateSettings)
    flower: FlowerSettings = Field(default_factory=FlowerSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Constructor arguments, then the flat variables (never ``TRADEFLEET_TICKS__BATCH``)."""
        return _GivenFields(settings_cls, init_settings), _FlatEnvironment(settings_cls)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL; the embedded default is an SQLite file in the data folder."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.paths.data_dir / 'tradefleet.db').resolve()}"


def _bad_setting(exc: ValidationError) -> BadInput:
    """One line naming the variable of the first error (``ENV_NAMES``, else the prefixed
    field: ``Diagnostics``'s variables are named after their fields)."""
    first = exc.errors()[0]
    loc = tuple(str(part) for part in first["loc"])
    named = (name for name, place in ENV_NAMES.items() if place == loc[:2])
    name = next(named, ENV_PREFIX + "_".join(loc).upper())
    return BadInput(f"bad setting {name}: {first['msg']}")


def load_settings() -> Settings:
    """Read the environment; a bad value raises ``BadInput`` naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise _bad_setting(exc) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once: only a process's entry points call this."""
    return load_settings()


class Diagnostics(BaseSettings):
    """Switches for the benchmark and the tests, NOT for production (left unset, each is off).

    Read from the environment where they are used (``get_diagnostics``), apart from
    ``Settings``: a deployment has nothing here to set.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    latency_probe: bool = False
    """Benchmark only (``tradefleet bench`` sets ``TRADEFLEET_LATENCY_PROBE=1`` in its
    workers): drainers record each step's oldest-tick age, send tasks each order's age when the
    broker accepted it (``workers.ticks.latency_probe``)."""
    roll_test_pause_at: str = ""
    """Tests only (empty = off): a roll step of this name pauses forever just before it records
    itself done, so a crash test can SIGKILL the worker there (``workers.rolls.steps``)."""
    send_test_pause: bool = False
    """Tests only (off unless set): a send task pauses forever once it holds its order's send
    lease, before it sends, so a crash test can SIGKILL the worker holding the send
    (``workers.orders.sweep``)."""


@lru_cache(maxsize=1)
def get_diagnostics() -> Diagnostics:
    """This process's benchmark and test switches, read once; a bad value raises ``BadInput``."""
    try:
        return Diagnostics()
    except ValidationError as exc:
        raise _bad_setting(exc) from None
