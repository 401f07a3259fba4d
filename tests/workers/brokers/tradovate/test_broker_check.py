"""``tradefleet broker check``: one line per check; a failure is one line and exit 2, with no
traceback and no secret."""

from __future__ import annotations

import pytest

from workers.cli.main import run
from workers.settings import ENV_NAMES, get_settings
from workers.tools.bench.env import free_port


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> pytest.MonkeyPatch:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRADEFLEET_REDIS_URL", redis_url)
    monkeypatch.setenv("TRADEFLEET_TRADOVATE_REST_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("TRADEFLEET_TRADOVATE_USERNAME", "trader")
    monkeypatch.setenv("TRADEFLEET_TRADOVATE_PASSWORD", "pw-not-shown")
    monkeypatch.setenv("TRADEFLEET_TRADOVATE_APP_ID", "tradefleet")
    monkeypatch.setenv("TRADEFLEET_TRADOVATE_SEC", "sec-not-shown")
    monkeypatch.setenv("TRADEFLEET_TRADOVATE_TIMEOUT_S", "2")
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_an_unreachable_tradovate_is_one_line_and_exit_2(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["broker", "check", "--broker", "tradovate", "--account", "DEMO0001"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("tradefleet: broker check failed: ")
    assert "unreachable" in err and "Traceback" not in err
    assert "not-shown" not in out + err


def test_live_without_allow_live_is_refused_naming_the_variable(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("TRADEFLEET_TRADOVATE_ENVIRONMENT", "live")
    code = run(["broker", "check", "--broker", "tradovate"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1
    assert "TRADEFLEET_TRADOVATE_ALLOW_LIVE" in err
