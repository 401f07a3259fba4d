"""Flower never runs without authentication, and its password never reaches argv."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.kit.cli import REPO
from tests.kit.wait import wait_until
from trading.exceptions import BadInput
from workers.flower import BASIC_AUTH_ENV, PASSWORD_ENV, flower_command
from workers.settings import FlowerSettings, RedisSettings, Settings
from workers.tools.bench.env import free_port

PASSWORD = "s3cret-Pa55:word"


def _settings(redis_url: str = "redis://127.0.0.1:1/0", password: str = PASSWORD) -> Settings:
    flower = FlowerSettings(user="ops", password=SecretStr(password))
    return Settings(redis=RedisSettings(url=redis_url), flower=flower)


def test_refuses_to_build_without_a_password() -> None:
    with pytest.raises(BadInput) as caught:
        flower_command(_settings(password=""))
    assert str(caught.value) == (
        "TRADEFLEET_FLOWER_PASSWORD is not set: Flower never runs without authentication"
    )


def test_refuses_a_comma_flower_would_split_on() -> None:
    with pytest.raises(BadInput, match="must not contain"):
        flower_command(_settings(password="a,b"))


def test_password_is_in_the_environment_never_in_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    argv, env = flower_command(_settings(redis_url="redis://127.0.0.1:7/2"), port=5999)
    assert not any(PASSWORD in arg for arg in argv)
    assert argv[1:6] == ["-m", "celery", "-A", "workers.celery_app", "flower"]
    assert "--port=5999" in argv
    assert env[BASIC_AUTH_ENV] == f"ops:{PASSWORD}"
    assert env["TRADEFLEET_REDIS_URL"] == "redis://127.0.0.1:7/2"
    assert PASSWORD_ENV not in env


def test_module_entry_exits_2_with_one_line_without_a_password() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "workers.flower"],
        cwd=REPO,
        env={"TRADEFLEET_FLOWER_PASSWORD": "", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "TRADEFLEET_FLOWER_PASSWORD is not set: Flower never runs without authentication"
    ]


def _status(url: str, credentials: str | None = None) -> int | None:
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@pytest.mark.integration
def test_running_flower_demands_basic_auth(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    argv, env = flower_command(_settings(redis_url), port=port, address="127.0.0.1")
    log_path = tmp_path / "flower.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(
            lambda: proc.poll() is not None or _status(url) is not None,
            timeout=60,
            what="Flower to answer HTTP",
        )
        assert proc.poll() is None, log_path.read_text()
        assert _status(url) == 401
        assert _status(url, f"ops:{PASSWORD}x") == 401
        assert _status(url, f"ops:{PASSWORD}") == 200
        assert PASSWORD not in log_path.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
