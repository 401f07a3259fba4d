"""The operator CLI end to end: the real ``tradefleet`` process against real Redis and SQL.

Every refusal is exit code 2 with exactly one ``tradefleet:`` line on stderr, no traceback, and
nothing written anywhere (every Redis key of both databases and every SQL row count compared
before and after).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import cast

import httpx
import pytest
import redis
from alembic.script import ScriptDirectory

from models.codec import state_key
from models.state import STATE_FIELDS
from tests.kit.cli import (
    REPO,
    cli_env,
    redis_keys,
    run_cli,
    run_cli_concurrently,
    sql_row_counts,
    store_snapshot,
)
from tests.kit.redis import RedisServer, paper_url
from tests.kit.wait import wait_until
from workers.db.engines import alembic_config, make_engine
from workers.db.user_rows import list_users
from workers.ticks.keys import subscribers_key
from workers.tools.bench.env import free_port
from workers.web.passwords import verify_password

pytestmark = pytest.mark.integration

DB_FILE = "tradefleet.db"
CREATE_ARGS = ("--account", "ACC-1", "--product", "ES", "--contract", "ESZ13")
STRATEGY_ARGS = ("fast=5", "slow=20")


def create_args(
    name: str, *overrides: str, strategy_args: tuple[str, ...] = STRATEGY_ARGS
) -> list[str]:
    """``session create`` for ``name`` with the standard options (later options override)."""
    pairs = [item for arg in strategy_args for item in ("--strategy-arg", arg)]
    return [
        "session",
        "create",
        "--name",
        name,
        *CREATE_ARGS,
        "--strategy",
        "sma_cross",
        *pairs,
        *overrides,
    ]


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / DB_FILE}"


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


@pytest.fixture(scope="module")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding an SQLite database migrated once by ``tradefleet db upgrade``."""
    folder = tmp_path_factory.mktemp("migrated")
    env = cli_env("redis://127.0.0.1:1/0", sqlite_url(folder), "redis://127.0.0.1:1/1")
    run_cli(env, "db", "upgrade").ok()
    return folder


@pytest.fixture
def env(migrated_template: Path, tmp_path: Path, redis_url: str) -> dict[str, str]:
    """The CLI's environment: the private Redis (sessions db 0, broker db 1) and a migrated
    SQLite file of this test's own."""
    folder = tmp_path / "db"
    folder.mkdir()
    for path in migrated_template.iterdir():
        shutil.copy2(path, folder / path.name)
    return cli_env(redis_url, sqlite_url(folder), paper_url(redis_url))


@pytest.fixture
def oom_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A second private redis-server that refuses every write that needs memory."""
    workdir = tmp_path / "oom"
    workdir.mkdir()
    server = RedisServer(workdir)
    client = server.client()
    try:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", "1")
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            client.set("probe", "1")
    finally:
        client.close()
    yield server
    server.stop()


def test_db_upgrade_prints_the_revision_and_can_run_twice(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(redis_url, sqlite_url(tmp_path), paper_url(redis_url))
    head = head_revision()
    first = run_cli(env, "db", "upgrade").ok()
    assert first.stdout.strip() == f"database at revision {head}"
    second = run_cli(env, "db", "upgrade").ok()
    assert second.stdout.strip() == f"database at revision {head}"
    counts = sql_row_counts(env["TRADEFLEET_DATABASE_URL"])
    assert set(counts) == {
        "trading_sessions",
        "orders",
        "fills",
        "events",
        "rolls",
        "strategy_snapshots",
        "accounts",
        "console_users",
    }
    assert set(counts.values()) == {0}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_create_show_list(
    backend: str, request: pytest.FixtureRequest, redis_client: redis.Redis
) -> None:
    env: dict[str, str] = request.getfixturevalue("env")
    if backend == "postgresql":
        pg_url: str = request.getfixturevalue("pg_url")
        env = {**env, "TRADEFLEET_DATABASE_URL": pg_url}
        upgraded = run_cli(env, "db", "upgrade").ok()
        assert upgraded.stdout.strip() == f"database at revision {head_revision()}"

    created = run_cli(env, *create_args("alpha"), "--json").ok()
    reply = json.loads(created.stdout)
    assert isinstance(reply, dict)
    first_id = reply["id"]
    assert str(uuid.UUID(first_id)) == first_id
    assert reply["name"] == "alpha"

    plain = run_cli(env, *create_args("beta", "--account", "ACC-2")).ok()
    assert plain.stdout.count("\n") == 1
    second_id = plain.stdout.strip()
    assert str(uuid.UUID(second_id)) == second_id != first_id

    shown = run_cli(env, "session", "show", first_id, "--json").ok()
    view = json.loads(shown.stdout)
    assert list(view) == list(STATE_FIELDS)
    session = view["session"]
    assert session["id"] == first_id
    assert session["name"] == "alpha"
    assert session["account"] == "ACC-1"
    assert (session["product"], session["contract"], session["timeframe"]) == ("ES", "ESZ13", "1m")
    assert datetime.fromisoformat(session["created_at"]).utcoffset() is not None
    assert view["strategy"]["module"] == "sma_cross"
    assert view["strategy"]["args"]["fast"] == 5
    assert view["strategy"]["args"]["slow"] == 20
    assert view["warmup_periods"] == 20
    assert view["trading"] is True
    assert view["rolling"] is False
    assert view["portfolio_heat"] == "0"
    assert view["portfolio_heat_warned"] is False
    assert view["portfolio_heat_blocked"] is False
    assert view["contract_details"]["multiplier"] == "50"
    assert view["contract_details"]["tick_size"] == "0.25"
    assert view["contract_details"]["symbol"] == "ESZ13"
    assert view["candle_key"] == "ESZ13:1m"
    assert view["market_data_source"] == {"module": "replay", "args": {"instrument": "ESZ13"}}
    assert view["account_manager"] == {"module": "paper", "args": {"account": "ACC-1"}}
    assert view["order_template"] == {"order_type": "market", "quantity": 1, "time_in_force": "day"}
    assert view["open_position"]["contract"] == "ESZ13"
    assert view["open_position"]["quantity"] == 0
    assert (view["orders"], view["trades"], view["candles"]) == ({}, [], [])
    assert view["latest_partial_candle"] is None
    assert view["rolling_close_order_id"] is None
    assert view["rolling_close_qty"] is None

    table, listed_json, plain_list = run_cli_concurrently(
        [
            (env, ["session", "show", first_id]),
            (env, ["session", "list", "--json"]),
            (env, ["session", "list"]),
        ]
    )
    table.ok()
    for field in STATE_FIELDS:
        assert field in table.stdout
    assert first_id in table.stdout
    assert "ESZ13:1m" in table.stdout

    listed = json.loads(listed_json.ok().stdout)
    by_id = {row["id"]: row for row in listed}
    assert set(by_id) == {first_id, second_id}
    assert by_id[first_id]["name"] == "alpha"
    assert by_id[second_id]["account"] == "ACC-2"
    for row in listed:
        assert (row["product"], row["contract"], row["strategy"]) == ("ES", "ESZ13", "sma_cross")
        assert row["status"] == "active"

    plain_list.ok()
    for session_id, name in ((first_id, "alpha"), (second_id, "beta")):
        assert session_id in plain_list.stdout
        assert name in plain_list.stdout

    members = cast("set[bytes]", redis_client.smembers(subscribers_key("ESZ13")))
    subscribed = {member.decode() for member in members}
    assert subscribed == {first_id, second_id}
    assert redis_client.hexists(state_key(first_id), "_cursor")
    assert sql_row_counts(env["TRADEFLEET_DATABASE_URL"])["trading_sessions"] == 2


def test_bad_input_is_refused_with_one_line_and_writes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    run_cli(env, *create_args("taken")).ok()
    before = store_snapshot(env)
    assert before.sql["trading_sessions"] == 1
    assert before.redis[env["TRADEFLEET_REDIS_URL"]]

    closed = free_port()
    secret_url = f"redis://user:s3cret@127.0.0.1:{closed}/0"
    fresh_db = sqlite_url(tmp_path / "never-migrated")
    cases: list[tuple[list[str], dict[str, str], tuple[str, ...]]] = [
        (create_args("n", "--strategy", "nope"), {}, ("unknown strategy 'nope'",)),
        (create_args("n", strategy_args=("fast",)), {}, ("malformed --strategy-arg 'fast'",)),
        (create_args("n", strategy_args=("=3",)), {}, ("malformed --strategy-arg '=3'",)),
        (create_args("n", strategy_args=("fast=abc",)), {}, ("fast", "abc")),
        (create_args("n", strategy_args=("bogus=3",)), {}, ("unknown argument 'bogus'",)),
        (create_args("n", strategy_args=("fast=5", "fast=6")), {}, ("'fast' given twice",)),
        (create_args("n", "--product", "GC"), {}, ("ESZ13 is not a GC contract",)),
        (create_args("n", "--product", "ZZ"), {}, ("unknown product 'ZZ'",)),
        (create_args("n", "--contract", "ZZZ13"), {}, ("unknown product",)),
        (create_args("n", "--timeframe", "7x"), {}, ("bad timeframe '7x'",)),
        (create_args("n", "--quantity", "0"), {}, ("quantity",)),
        (create_args("n", "--quantity", "abc"), {}, ("--quantity",)),
        (create_args("taken"), {}, ("'taken' already exists",)),
        (["session", "create", "--name", "n"], {}, ("Missing option",)),
        (["session", "show", str(uuid.uuid4())], {}, ("unknown session",)),
        (["session", "show", "{a b}"], {}, ("bad session id",)),
        (["bogus"], {}, ("No such command",)),
        (
            create_args("n"),
            {"TRADEFLEET_REDIS_URL": secret_url},
            ("Redis is not answering", f"127.0.0.1:{closed}", "redis-server"),
        ),
        (["session", "list"], {"TRADEFLEET_LOCK_TTL_MS": "abc"}, ("TRADEFLEET_LOCK_TTL_MS",)),
        (create_args("n"), {"TRADEFLEET_DATABASE_URL": fresh_db}, ("tradefleet db upgrade",)),
        (["session", "list"], {"TRADEFLEET_DATABASE_URL": fresh_db}, ("tradefleet db upgrade",)),
    ]
    results = run_cli_concurrently([({**env, **overrides}, args) for args, overrides, _ in cases])
    for result, (_, _, fragments) in zip(results, cases, strict=True):
        result.refused(*fragments)
        assert "s3cret" not in result.stdout + result.stderr, result.describe()
    after = store_snapshot(env)
    assert after.sql == before.sql
    assert after.redis == before.redis
    assert sql_row_counts(fresh_db) == {}


def test_create_writes_nothing_when_redis_refuses_the_write(
    env: dict[str, str], oom_redis: RedisServer
) -> None:
    oom_env = {
        **env,
        "TRADEFLEET_REDIS_URL": oom_redis.url,
        "TRADEFLEET_PAPER_BROKER_URL": paper_url(oom_redis.url),
    }
    before = sql_row_counts(env["TRADEFLEET_DATABASE_URL"])

    run_cli(oom_env, *create_args("starved")).refused("refused to store the session", "nothing")

    assert sql_row_counts(env["TRADEFLEET_DATABASE_URL"]) == before
    leftovers = redis_keys(oom_redis.url)[oom_redis.url]
    assert not [key for key in leftovers if not key.endswith(b":fence")], leftovers

    client = oom_redis.client()
    try:
        client.config_set("maxmemory", "0")
    finally:
        client.close()
    created = run_cli(oom_env, *create_args("starved")).ok()
    assert sql_row_counts(env["TRADEFLEET_DATABASE_URL"])["trading_sessions"] == 1
    shown = json.loads(run_cli(oom_env, "session", "show", created.stdout.strip(), "--json").stdout)
    assert shown["session"]["name"] == "starved"


WEB_KEY = "cli-test-console-key-0123456789abcdef"


def console_users(env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Every console user's (role, password hash), by name."""
    engine = make_engine(env["TRADEFLEET_DATABASE_URL"], pooled=False)
    try:
        return {row.name: (row.role, row.password_hash) for row in list_users(engine)}
    finally:
        engine.dispose()


def test_web_adduser_stores_an_argon2_hash_and_web_refuses_without_key_or_user(
    env: dict[str, str],
) -> None:
    keyed = {**env, "TRADEFLEET_WEB_SECRET_KEY": WEB_KEY}
    before = store_snapshot(env)
    refusals: list[tuple[list[str], str, tuple[str, ...]]] = [
        (["web"], "", ("TRADEFLEET_WEB_SECRET_KEY is not set",)),
        (["web", "adduser", "bob", "--role", "viewer"], "", ("the password is empty",)),
        (["web", "adduser", "bob", "--role", "viewer"], "\n", ("the password is empty",)),
        (["web", "adduser", "bob", "--role", "viewer"], "short\n", ("too short",)),
        (["web", "adduser", "bob", "--role", "viewer"], "one-line-1\ntwo\n", ("one line",)),
        (["web", "adduser", "bob", "--role", "admin"], "long-enough-pw\n", ("unknown role",)),
        (["web", "adduser", "b b", "--role", "viewer"], "long-enough-pw\n", ("bad user name",)),
        (["web", "adduser", "bob"], "long-enough-pw\n", ("--role",)),
        (
            ["web", "adduser", "bob", "--role", "viewer", "--update"],
            "long-enough-pw\n",
            ("unknown console user: bob",),
        ),
        (["web", "deluser", "bob"], "", ("unknown console user: bob",)),
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda case: run_cli(env, *case[0], stdin=case[1]), refusals))
    for result, (_, _, fragments) in zip(results, refusals, strict=True):
        assert "long-enough-pw" not in result.refused(*fragments)
    run_cli(keyed, "web").refused("no console user", "tradefleet web adduser NAME --role operator")
    after = store_snapshot(env)
    assert (after.sql, after.redis) == (before.sql, before.redis)

    added = run_cli(env, "web", "adduser", "alice", "--role", "operator", stdin="Tr0ub4dor&3x\n")
    assert added.ok().stdout.strip() == "added console user alice (operator)"
    role, stored = console_users(env)["alice"]
    assert role == "operator"
    assert stored.startswith("$argon2id$") and "Tr0ub4dor" not in stored
    assert verify_password(stored, "Tr0ub4dor&3x")

    run_cli(env, "web", "adduser", "alice", "--role", "viewer", stdin="other-password\n").refused(
        "already exists", "--update"
    )
    assert console_users(env)["alice"] == ("operator", stored)
    run_cli(
        env, "web", "adduser", "alice", "--role", "viewer", "--update", stdin="new-password\r\n"
    ).ok()
    role, changed = console_users(env)["alice"]
    assert role == "viewer" and changed != stored and verify_password(changed, "new-password")

    run_cli(env, "web", "adduser", "carol", "--role", "operator", stdin="carol-password").ok()
    listed = run_cli(env, "web", "users").ok().stdout
    assert listed.splitlines() == ["alice\tviewer", "carol\toperator"]
    assert "$argon2" not in listed
    assert run_cli(env, "web", "deluser", "alice").ok().stdout.strip() == (
        "deleted console user alice"
    )
    assert set(console_users(env)) == {"carol"}


def test_session_actions_refuse_an_unknown_session_and_write_nothing(env: dict[str, str]) -> None:
    run_cli(env, *create_args("known")).ok()
    before = store_snapshot(env)
    unknown = str(uuid.uuid4())
    runs = [(env, ["session", action, unknown]) for action in ("stop", "start", "flatten")]
    for result in run_cli_concurrently(runs):
        result.refused(f"unknown session: {unknown}")
    after = store_snapshot(env)
    assert (after.sql, after.redis) == (before.sql, before.redis)


def test_web_serves_the_console_until_stopped(env: dict[str, str]) -> None:
    keyed = {**env, "TRADEFLEET_WEB_SECRET_KEY": WEB_KEY}
    run_cli(keyed, "web", "adduser", "alice", "--role", "operator", stdin="alice-password\n").ok()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.cli.main", "web", "--port", str(port)],
        cwd=REPO,
        env=keyed,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/login"
        wait_until(lambda: _answers(url), timeout=30, what="the console to answer")
        page = httpx.get(url, timeout=5)
        assert page.status_code == 200 and 'name="login_token"' in page.text
        assert "tf_login=" in page.headers["set-cookie"]
        run_cli(keyed, "web", "--port", str(port)).refused(f"cannot listen on 127.0.0.1:{port}")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err
    assert WEB_KEY not in err and "alice-password" not in err


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
