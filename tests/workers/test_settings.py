"""The settings: flat ``TRADEFLEET_*`` variables read into frozen groups, a bad value named in
one line, benchmark and test switches apart, and read only at the processes' entry points."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from trading.exceptions import BadInput
from workers.settings import (
    ENV_NAMES,
    Diagnostics,
    Settings,
    TickSettings,
    get_diagnostics,
    load_settings,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKERS = REPO_ROOT / "workers"

ENTRY_POINTS = {"celery_app.py", "runtime.py", "flower.py", "settings.py", "cli"}
"""Where ``get_settings`` may be called (paths under ``workers/``): the Celery app, the
worker's runtime, Flower, the CLI; and the module that defines it."""

EVERY_VARIABLE: dict[str, tuple[str, str, object]] = {
    "TRADEFLEET_REDIS_URL": ("redis.url", "redis://10.0.0.1:6380/2", "redis://10.0.0.1:6380/2"),
    "TRADEFLEET_PAPER_BROKER_URL": (
        "redis.paper_broker_url",
        "unix:///run/paper.sock",
        "unix:///run/paper.sock",
    ),
    "TRADEFLEET_DATABASE_URL": (
        "database.url",
        "postgresql+psycopg://u@h/db",
        "postgresql+psycopg://u@h/db",
    ),
    "TRADEFLEET_DATA_DIR": ("paths.data_dir", "/srv/tf", Path("/srv/tf")),
    "TRADEFLEET_MARKET_DATA_DIR": ("paths.market_data_dir", "/srv/md", Path("/srv/md")),
    "TRADEFLEET_LOCK_TTL_MS": ("state.lock_ttl_ms", "2500", 2500),
    "TRADEFLEET_MAX_CANDLES": ("state.max_candles", "321", 321),
    "TRADEFLEET_QUEUE_TICKS": ("queues.ticks", "q-ticks", "q-ticks"),
    "TRADEFLEET_QUEUE_ORDERS": ("queues.orders", "q-orders", "q-orders"),
    "TRADEFLEET_QUEUE_RECONCILE": ("queues.reconcile", "q-rec", "q-rec"),
    "TRADEFLEET_QUEUE_ROLLS": ("queues.rolls", "q-rolls", "q-rolls"),
    "TRADEFLEET_QUEUE_DEFAULT": ("queues.default", "q-default", "q-default"),
    "TRADEFLEET_VISIBILITY_TIMEOUT_S": ("queues.visibility_timeout_s", "77", 77),
    "TRADEFLEET_TICK_BATCH": ("ticks.batch", "11", 11),
    "TRADEFLEET_CLAIM_BATCH": ("ticks.claim_batch", "12", 12),
    "TRADEFLEET_CLAIM_MIN": ("ticks.claim_min", "13", 13),
    "TRADEFLEET_MAX_DRAINERS": ("ticks.max_drainers", "14", 14),
    "TRADEFLEET_DRAINER_GRACE_MS": ("ticks.drainer_grace_ms", "15000", 15_000),
    "TRADEFLEET_DRAIN_BUDGET_S": ("ticks.drain_budget_s", "1.5", 1.5),
    "TRADEFLEET_SWEEP_INTERVAL_S": ("ticks.sweep_interval_s", "2.5", 2.5),
    "TRADEFLEET_STREAM_MAXLEN": ("ticks.stream_maxlen", "5000", 5000),
    "TRADEFLEET_RECONCILE_POSITIONS_INTERVAL_S": ("reconcile.positions_interval_s", "31", 31.0),
    "TRADEFLEET_RECONCILE_ORDERS_INTERVAL_S": ("reconcile.orders_interval_s", "301", 301.0),
    "TRADEFLEET_RECONCILE_GRACE_S": ("reconcile.grace_s", "0", 0.0),
    "TRADEFLEET_RECONCILE_MAX_FAILURES": ("reconcile.max_failures", "9", 9),
    "TRADEFLEET_RECONCILE_RECHECKS": ("reconcile.rechecks", "0", 0),
    "TRADEFLEET_ADOPT_EXTERNAL_ORDERS": ("reconcile.adopt_external_orders", "0", False),
    "TRADEFLEET_PROTECTIVE_STOPS": ("stops.protective", "false", False),
    "TRADEFLEET_ROLL_CHECK_INTERVAL_S": ("rolls.check_interval_s", "60", 60.0),
    "TRADEFLEET_ROLL_WINDOW_DAYS": ("rolls.window_days", "5", 5),
    "TRADEFLEET_ROLL_FILL_MAX_TRIES": ("rolls.fill_max_tries", "7", 7),
    "TRADEFLEET_ROLL_FILL_RETRY_S": ("rolls.fill_retry_s", "0.25", 0.25),
    "TRADEFLEET_ROLL_LEASE_S": ("rolls.lease_s", "30", 30.0),
    "TRADEFLEET_ROLL_SWEEP_INTERVAL_S": ("rolls.sweep_interval_s", "2", 2.0),
    "TRADEFLEET_SEND_STALE_S": ("orders.send_stale_s", "20", 20.0),
    "TRADEFLEET_SEND_SWEEP_INTERVAL_S": ("orders.sweep_interval_s", "1.5", 1.5),
    "TRADEFLEET_SEND_BATCH": ("orders.send_batch", "4", 4),
    "TRADEFLEET_RISK_HEAT_WARN": ("risk.heat_warn", "0.05", Decimal("0.05")),
    "TRADEFLEET_RISK_HEAT_BLOCK": ("risk.heat_block", "0.2", Decimal("0.2")),
    "TRADEFLEET_RISK_HEAT_HYSTERESIS": ("risk.heat_hysteresis", "0.02", Decimal("0.02")),
    "TRADEFLEET_RISK_ATR_MULT": ("risk.atr_mult", "1.5", Decimal("1.5")),
    "TRADEFLEET_RISK_ATR_PERIODS": ("risk.atr_periods", "20", 20),
    "TRADEFLEET_RISK_MAX_POSITION": ("risk.max_position", "3", 3),
    "TRADEFLEET_TRADOVATE_ENVIRONMENT": ("tradovate.environment", "LIVE", "live"),
    "TRADEFLEET_TRADOVATE_ALLOW_LIVE": ("tradovate.allow_live", "1", True),
    "TRADEFLEET_TRADOVATE_REST_URL": (
        "tradovate.rest_url",
        "http://127.0.0.1:8765/v1/",
        "http://127.0.0.1:8765/v1",
    ),
    "TRADEFLEET_TRADOVATE_WS_URL": (
        "tradovate.ws_url",
        "ws://127.0.0.1:8765/v1/websocket",
        "ws://127.0.0.1:8765/v1/websocket",
    ),
    "TRADEFLEET_TRADOVATE_MD_WS_URL": (
        "tradovate.md_ws_url",
        "ws://127.0.0.1:8765/md/v1/websocket",
        "ws://127.0.0.1:8765/md/v1/websocket",
    ),
    "TRADEFLEET_TRADOVATE_USERNAME": ("tradovate.username", "trader", "trader"),
    "TRADEFLEET_TRADOVATE_PASSWORD": ("tradovate.password", "pw2", SecretStr("pw2")),
    "TRADEFLEET_TRADOVATE_APP_ID": ("tradovate.app_id", "tradefleet", "tradefleet"),
    "TRADEFLEET_TRADOVATE_APP_VERSION": ("tradovate.app_version", "2.1", "2.1"),
    "TRADEFLEET_TRADOVATE_CID": ("tradovate.cid", "42", 42),
    "TRADEFLEET_TRADOVATE_SEC": ("tradovate.sec", "s3", SecretStr("s3")),
    "TRADEFLEET_TRADOVATE_DEVICE_ID": ("tradovate.device_id", "box-1", "box-1"),
    "TRADEFLEET_TRADOVATE_TIMEOUT_S": ("tradovate.timeout_s", "2.5", 2.5),
    "TRADEFLEET_TRADOVATE_TOKEN_RENEW_MARGIN_S": ("tradovate.token_renew_margin_s", "60", 60.0),
    "TRADEFLEET_FLOWER_USER": ("flower.user", "ops", "ops"),
    "TRADEFLEET_FLOWER_PASSWORD": ("flower.password", "pw", SecretStr("pw")),
    "TRADEFLEET_WEB_SECRET_KEY": ("web.secret_key", "k" * 32, SecretStr("k" * 32)),
    "TRADEFLEET_WEB_SESSION_MAX_AGE_S": ("web.session_max_age_s", "3600", 3600),
    "TRADEFLEET_WEB_LOGIN_MAX_FAILURES": ("web.login_max_failures", "3", 3),
    "TRADEFLEET_WEB_LOGIN_WINDOW_S": ("web.login_window_s", "60", 60),
    "TRADEFLEET_METRICS_TOKEN": ("web.metrics_token", "tok", SecretStr("tok")),
    "TRADEFLEET_FLOWER_URL": ("web.flower_url", "http://flower:5555", "http://flower:5555"),
    "TRADEFLEET_LOG_LEVEL": ("log.level", "debug", "DEBUG"),
}
"""Each variable, where it lands, a value that is not its default and what it reads as."""


def _at(settings: Settings, path: str) -> Any:
    group, field = path.split(".")
    return getattr(getattr(settings, group), field)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``TRADEFLEET_*`` variable of this process leaks into a test."""
    for name in [*ENV_NAMES, *(f"TRADEFLEET_{f.upper()}" for f in Diagnostics.model_fields)]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def fresh_diagnostics() -> Iterator[None]:
    get_diagnostics.cache_clear()
    yield
    get_diagnostics.cache_clear()


def test_every_variable_lands_in_its_group(clean_env: pytest.MonkeyPatch) -> None:
    assert set(EVERY_VARIABLE) == set(ENV_NAMES)
    defaults = load_settings()
    for name, (_, raw, _) in EVERY_VARIABLE.items():
        clean_env.setenv(name, raw)
    settings = load_settings()
    for name, (path, _, expected) in EVERY_VARIABLE.items():
        assert ENV_NAMES[name] == tuple(path.split(".")), name
        assert _at(settings, path) == expected, name
        assert _at(defaults, path) != expected, f"{name}: the test value is the default"


def test_the_readme_table_names_only_variables_that_are_read() -> None:
    """Every variable of README's Settings table (``_CLAIM_MIN`` short for
    ``TRADEFLEET_CLAIM_MIN``) is one ``Settings`` reads."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    first_cells = [row.split("|")[1] for row in rows]
    named = {
        name if name.startswith("TRADEFLEET_") else "TRADEFLEET" + name
        for cell in first_cells
        for name in re.findall(r"`(\w+)`", cell)
    }
    assert "TRADEFLEET_TICK_BATCH" in named and "TRADEFLEET_CLAIM_MIN" in named
    assert named <= set(ENV_NAMES), named - set(ENV_NAMES)


def test_nested_variable_names_are_not_read(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRADEFLEET_TICKS__BATCH", "7")
    clean_env.setenv("TRADEFLEET_TICKS", '{"batch": 7}')
    assert load_settings().ticks.batch == TickSettings().batch


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TRADEFLEET_TICK_BATCH", "many"),
        ("TRADEFLEET_CLAIM_MIN", "0"),
        ("TRADEFLEET_REDIS_URL", "http://127.0.0.1:6379/0"),
        ("TRADEFLEET_DATABASE_URL", "mysql://h/db"),
        ("TRADEFLEET_RISK_HEAT_WARN", "six percent"),
        ("TRADEFLEET_PROTECTIVE_STOPS", "maybe"),
        ("TRADEFLEET_LOG_LEVEL", "loud"),
        ("TRADEFLEET_TRADOVATE_ENVIRONMENT", "paper"),
        ("TRADEFLEET_TRADOVATE_ALLOW_LIVE", "perhaps"),
        ("TRADEFLEET_TRADOVATE_REST_URL", "ftp://demo.tradovateapi.com/v1"),
        ("TRADEFLEET_TRADOVATE_WS_URL", "https://demo.tradovateapi.com/v1/websocket"),
        ("TRADEFLEET_TRADOVATE_MD_WS_URL", "md.tradovateapi.com"),
        ("TRADEFLEET_TRADOVATE_CID", "abc"),
        ("TRADEFLEET_TRADOVATE_TIMEOUT_S", "0"),
        ("TRADEFLEET_TRADOVATE_TOKEN_RENEW_MARGIN_S", "1"),
        ("TRADEFLEET_WEB_SECRET_KEY", "too-short"),
        ("TRADEFLEET_WEB_LOGIN_MAX_FAILURES", "0"),
        ("TRADEFLEET_ROLL_LEASE_S", "1"),
        ("TRADEFLEET_ROLL_SWEEP_INTERVAL_S", "0"),
        ("TRADEFLEET_SEND_STALE_S", "5"),
        ("TRADEFLEET_SEND_SWEEP_INTERVAL_S", "never"),
        ("TRADEFLEET_SEND_BATCH", "0"),
    ],
)
def test_a_bad_value_names_its_variable_in_one_line(
    clean_env: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    clean_env.setenv(name, raw)
    with pytest.raises(BadInput) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"bad setting {name}: ")
    assert "\n" not in message


def test_given_fields_win_and_the_environment_fills_the_rest(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("TRADEFLEET_TICK_BATCH", "7")
    clean_env.setenv("TRADEFLEET_CLAIM_MIN", "3")
    settings = Settings(ticks=TickSettings(batch=10))
    assert (settings.ticks.batch, settings.ticks.claim_min) == (10, 3)


def test_an_old_flat_keyword_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(tick_batch=10)


def test_settings_and_every_group_are_frozen() -> None:
    settings = Settings()
    groups = {name: getattr(settings, name) for name in Settings.model_fields}
    assert set(groups) == {group for group, _ in ENV_NAMES.values()}
    for name, group in groups.items():
        assert isinstance(group, BaseModel), name
        field = next(iter(type(group).model_fields))
        with pytest.raises(ValidationError):
            setattr(group, field, getattr(group, field))
    with pytest.raises(ValidationError):
        settings.ticks = TickSettings()


def test_benchmark_and_test_switches_are_not_production_settings(
    clean_env: pytest.MonkeyPatch,
) -> None:
    fields = {field for _, field in ENV_NAMES.values()}
    assert not {"latency_probe", "roll_test_pause_at", "send_test_pause"} & (
        fields | set(ENV_NAMES)
    )
    clean_env.setenv("TRADEFLEET_LATENCY_PROBE", "1")
    clean_env.setenv("TRADEFLEET_ROLL_TEST_PAUSE_AT", "switch")
    clean_env.setenv("TRADEFLEET_SEND_TEST_PAUSE", "1")
    assert Diagnostics() == Diagnostics(
        latency_probe=True, roll_test_pause_at="switch", send_test_pause=True
    )
    assert load_settings() == Settings(), "the switches leave the production settings alone"


@pytest.mark.usefixtures("fresh_diagnostics")
def test_a_bad_switch_names_its_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRADEFLEET_LATENCY_PROBE", "sometimes")
    with pytest.raises(BadInput, match=r"^bad setting TRADEFLEET_LATENCY_PROBE: "):
        get_diagnostics()


def _calls_get_settings(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.Name) and node.id == "get_settings")
        or (isinstance(node, ast.Attribute) and node.attr == "get_settings")
        or (isinstance(node, ast.ImportFrom) and any(a.name == "get_settings" for a in node.names))
    ]


def test_only_entry_points_read_the_process_settings() -> None:
    """Library code is handed its settings (or the group it needs); ``get_settings`` is read
    only where a process starts."""
    offenders = {
        str(path.relative_to(REPO_ROOT)): lines
        for path in sorted(WORKERS.rglob("*.py"))
        if path.relative_to(WORKERS).parts[0] not in ENTRY_POINTS
        and (lines := _calls_get_settings(path))
    }
    assert offenders == {}
    assert _calls_get_settings(WORKERS / "runtime.py"), "the scan finds a real use"


def test_tradovate_defaults_to_demo_and_live_urls_follow_the_environment(
    clean_env: pytest.MonkeyPatch,
) -> None:
    demo = load_settings().tradovate
    assert demo.environment == "demo" and not demo.allow_live
    assert demo.rest_url == "https://demo.tradovateapi.com/v1"
    assert demo.ws_url == "wss://demo.tradovateapi.com/v1/websocket"
    clean_env.setenv("TRADEFLEET_TRADOVATE_ENVIRONMENT", "live")
    clean_env.setenv("TRADEFLEET_TRADOVATE_WS_URL", "ws://127.0.0.1:9/v1/websocket")
    live = load_settings().tradovate
    assert live.rest_url == "https://live.tradovateapi.com/v1"
    assert live.ws_url == "ws://127.0.0.1:9/v1/websocket", "a URL that is set wins"


def test_tradovate_secrets_never_show(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRADEFLEET_TRADOVATE_PASSWORD", "hunter2-secret")
    clean_env.setenv("TRADEFLEET_TRADOVATE_SEC", "api-secret-value")
    settings = load_settings()
    shown = repr(settings) + str(settings) + repr(settings.tradovate) + str(settings.model_dump())
    assert "hunter2-secret" not in shown and "api-secret-value" not in shown
    assert settings.tradovate.password.get_secret_value() == "hunter2-secret"
