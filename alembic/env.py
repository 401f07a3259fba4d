"""Alembic environment: which database, and the tables it should match.

The URL is, in order: ``config.attributes["url"]`` (set by ``workers.db.engines.upgrade``), then
``-x url=...`` on the command line, then ``TRADEFLEET_DATABASE_URL`` through
``workers.settings.get_settings().sqlalchemy_url``.

SQLite migrations run with foreign keys off (table rebuilds in batch mode would otherwise
cascade or fail), inside one transaction, and end with ``PRAGMA foreign_key_check``.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from models.tables import metadata
from workers.db.engines import make_engine
from workers.settings import get_settings

config = context.config

if config.config_file_name is not None and not config.attributes.get("url"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = config.attributes.get("url")
    if url:
        return str(url)
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    return get_settings().sqlalchemy_url


def run_migrations_offline() -> None:
    url = database_url()
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=sqlite,
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"foreign key violations after migration: {broken}")


def run_migrations_online() -> None:
    engine = make_engine(database_url(), foreign_keys=False, pooled=False)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
