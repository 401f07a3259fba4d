"""``tradefleet broker check``: one line per check; a failure is one line and exit 2, with no
traceback and no secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.cli import cli_env, run_cli
from tests.kit.tradovate_local import PASSWORD, LocalTradovate, fleet_overrides
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


@pytest.mark.integration
def test_a_reachable_tradovate_passes_every_check(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against the local Tradovate server (its own process): the token, the account and a
    contract lookup each one line, exit 0; an unknown account is one line and exit 2."""
    server = LocalTradovate.start(tmp_path, "--account", "DEMO0001:100000")
    try:
        variables = {f"TRADEFLEET_{k.upper()}": v for k, v in fleet_overrides(server).items()}
        env = cli_env(redis_url, f"sqlite:///{tmp_path / 'db.sqlite'}", redis_url)
        env.update(variables)
        ok = run_cli(env, "broker", "check", "--broker", "tradovate", "--account", "DEMO0001",
                     "--contract", "ESZ26")  # fmt: skip
        missing = run_cli(env, "broker", "check", "--broker", "tradovate", "--account", "NOPE")
    finally:
        server.stop()
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["environment", "token", "account", "contract"]
    assert "DEMO0001" in ok.stdout and "ESZ26" in ok.stdout and "ESZ6" in ok.stdout
    assert "0.25" in ok.stdout and "50" in ok.stdout
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "NOPE" in missing.stderr and "Traceback" not in missing.stderr
    assert PASSWORD not in ok.stdout + ok.stderr + missing.stdout + missing.stderr
