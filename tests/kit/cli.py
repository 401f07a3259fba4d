"""Running the real ``tradefleet`` command as a subprocess, and seeing what it wrote.

``run_cli`` starts ``python -m workers.cli.main`` with an environment holding only the
``TRADEFLEET_*`` settings given (nothing leaks in from the caller's environment).
``store_snapshot`` captures every Redis key (DUMP of db 0 and 1) and every SQL row count, so a
refused command can be shown to have written nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis
from sqlalchemy import func, inspect, select

from models.tables import metadata
from workers.db.engines import make_engine

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CliResult:
    """What one run of the command returned and printed."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"tradefleet {' '.join(self.args)} -> exit {self.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )

    def ok(self) -> CliResult:
        """Assert a clean success (exit 0, nothing on stderr); returns self for chaining."""
        assert self.returncode == 0, self.describe()
        assert self.stderr == "", self.describe()
        return self

    def refused(self, *fragments: str) -> str:
        """Assert a refusal: exit 2, ONE ``tradefleet:`` line on stderr containing every
        fragment, no traceback anywhere. Returns the line."""
        assert self.returncode == 2, self.describe()
        assert "Traceback" not in self.stdout + self.stderr, self.describe()
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.describe()
        line = lines[0]
        assert line.startswith("tradefleet: "), self.describe()
        assert len(line) > len("tradefleet: ") + 5, self.describe()
        for fragment in fragments:
            assert fragment in line, f"{fragment!r} not in the error line\n{self.describe()}"
        return line


def cli_env(
    redis_url: str, database_url: str, paper_broker_url: str, **settings: str
) -> dict[str, str]:
    """A subprocess environment: the caller's, minus every ``TRADEFLEET_*``, plus ours.

    ``settings`` are extra ``TRADEFLEET_<NAME>`` values, e.g. ``lock_ttl_ms="abc"``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEFLEET_")}
    env.pop("COLUMNS", None)
    env["TRADEFLEET_REDIS_URL"] = redis_url
    env["TRADEFLEET_PAPER_BROKER_URL"] = paper_broker_url
    env["TRADEFLEET_DATABASE_URL"] = database_url
    for name, value in settings.items():
        env[f"TRADEFLEET_{name.upper()}"] = value
    return env


def run_cli(env: dict[str, str], *args: str, stdin: str = "") -> CliResult:
    """Run ``tradefleet ARGS`` in a fresh interpreter (``stdin`` its standard input, not a
    terminal) and wait for it."""
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli.main", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    return CliResult(tuple(args), proc.returncode, proc.stdout, proc.stderr)


def run_cli_concurrently(
    runs: Sequence[tuple[dict[str, str], Sequence[str]]], workers: int = 8
) -> list[CliResult]:
    """Run several independent commands at once (each its own process); results in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda run: run_cli(run[0], *run[1]), runs))


def redis_keys(*urls: str) -> dict[str, dict[bytes, bytes | None]]:
    """Every key of each Redis database (by URL) with its DUMP (its exact serialized value)."""
    snapshot: dict[str, dict[bytes, bytes | None]] = {}
    for url in urls:
        client = redis.Redis.from_url(url)
        try:
            snapshot[url] = {
                key: cast("bytes | None", client.dump(key)) for key in client.scan_iter(count=1000)
            }
        finally:
            client.close()
    return snapshot


def sql_row_counts(url: str) -> dict[str, int]:
    """Rows per table, for every table of the schema that exists in the database."""
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            return {
                table.name: int(connection.scalar(select(func.count()).select_from(table)) or 0)
                for table in metadata.sorted_tables
                if table.name in present
            }
    finally:
        engine.dispose()


@dataclass(frozen=True)
class StoreSnapshot:
    """Everything a command could have written: Redis keys and values, SQL row counts."""

    redis: dict[str, dict[bytes, bytes | None]]
    sql: dict[str, int]


def store_snapshot(env: dict[str, str]) -> StoreSnapshot:
    """The snapshot of the sessions' Redis, the paper broker's Redis and the database of ``env``."""
    return StoreSnapshot(
        redis_keys(env["TRADEFLEET_REDIS_URL"], env["TRADEFLEET_PAPER_BROKER_URL"]),
        sql_row_counts(env["TRADEFLEET_DATABASE_URL"]),
    )
