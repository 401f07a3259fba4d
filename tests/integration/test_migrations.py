"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from models.tables import metadata
from tests.kit.cli import REPO
from workers.db.engines import current_revision, downgrade, make_engine, upgrade

pytestmark = pytest.mark.integration

HEAD = "0009"
"""The newest revision (each new migration moves it)."""


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def schema_diff(url: str) -> list[object]:
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def reflected_names(url: str) -> dict[str, set[str]]:
    """Every named constraint and index the database itself reports, per table."""
    engine = make_engine(url, pooled=False)
    try:
        inspector = inspect(engine)
        names: dict[str, set[str]] = {}
        for table in inspector.get_table_names():
            found = {inspector.get_pk_constraint(table)["name"]}
            found |= {c["name"] for c in inspector.get_unique_constraints(table)}
            found |= {c["name"] for c in inspector.get_foreign_keys(table)}
            found |= {c["name"] for c in inspector.get_check_constraints(table)}
            found |= {i["name"] for i in inspector.get_indexes(table)}
            names[table] = found
        return names
    finally:
        engine.dispose()


def model_names() -> dict[str, set[str]]:
    return {
        table.name: {c.name for c in table.constraints} | {i.name for i in table.indexes}
        for table in metadata.tables.values()
    }


def test_upgrade_head_matches_the_models_exactly(db_url: str) -> None:
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == HEAD
    assert schema_diff(db_url) == []
    reflected = reflected_names(db_url)
    assert reflected.pop("alembic_version")
    assert reflected == model_names()


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    upgrade(db_url)
    downgrade(db_url, "base")
    assert current_revision(db_url) is None
    engine = make_engine(db_url, pooled=False)
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(db_url)
    assert current_revision(db_url) == HEAD
    assert schema_diff(db_url) == []


def test_alembic_command_line_reads_the_url_from_settings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'cli.db'}"
    env = {**os.environ, "TRADEFLEET_DATABASE_URL": url}
    alembic = str(Path(sys.executable).with_name("alembic"))
    result = subprocess.run(
        [alembic, "upgrade", "head"],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert current_revision(url) == HEAD
    assert schema_diff(url) == []
