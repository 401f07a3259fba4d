"""The table definitions: names, columns, constraints and the two exact column types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import CheckConstraint, ForeignKeyConstraint, UniqueConstraint
from sqlalchemy.dialects import postgresql, sqlite

from models.tables import ExactDecimal, UtcDateTime, metadata, to_exact_decimal
from trading.exceptions import BadInput

EXPECTED_COLUMNS = {
    "trading_sessions": {
        "id",
        "name",
        "account",
        "product",
        "contract",
        "timeframe",
        "strategy_name",
        "strategy_args",
        "market_data_source",
        "market_data_args",
        "account_manager",
        "account_manager_args",
        "order_template",
        "status",
        "created_at",
        "updated_at",
    },
    "orders": {
        "id",
        "client_order_id",
        "broker_order_id",
        "session_id",
        "contract",
        "side",
        "quantity",
        "order_type",
        "limit_price",
        "stop_price",
        "time_in_force",
        "status",
        "intent",
        "decided_at",
        "created_at",
        "updated_at",
        "external",
    },
    "fills": {"id", "execution_id", "order_id", "quantity", "price", "commission", "filled_at"},
    "events": {
        "id",
        "session_id",
        "kind",
        "severity",
        "message",
        "details",
        "created_at",
        "dedupe_key",
    },
    "rolls": {
        "id",
        "session_id",
        "from_contract",
        "to_contract",
        "quantity",
        "status",
        "step",
        "decided_at",
        "close_client_order_id",
        "open_client_order_id",
        "close_fill_price",
        "open_fill_price",
        "error",
        "created_at",
        "updated_at",
    },
    "strategy_snapshots": {
        "session_id",
        "strategy_state",
        "signal_seq",
        "candles_closed",
        "last_ms",
        "cursor",
        "taken_at",
        "ticks_processed",
        "rejected",
        "partial_candle",
        "open_position",
    },
    "accounts": {
        "account",
        "heat_warn",
        "heat_block",
        "max_daily_loss",
        "halted",
        "updated_at",
    },
    "console_users": {"name", "role", "password_hash", "created_at", "updated_at"},
}

PREFIX = {
    CheckConstraint: "ck_",
    ForeignKeyConstraint: "fk_",
    UniqueConstraint: "uq_",
}


def test_tables_and_columns_are_exactly_as_specified() -> None:
    actual = {name: {c.name for c in table.columns} for name, table in metadata.tables.items()}
    assert actual == EXPECTED_COLUMNS


def test_every_constraint_and_index_is_named_with_its_prefix() -> None:
    for table in metadata.tables.values():
        for constraint in table.constraints:
            name = constraint.name
            assert isinstance(name, str), f"unnamed constraint on {table.name}: {constraint}"
            prefix = PREFIX.get(type(constraint), "pk_")
            assert name.startswith(f"{prefix}{table.name}"), name
            assert not name.startswith(f"{prefix}{table.name}_{prefix}"), f"doubled: {name}"
        for index in table.indexes:
            assert isinstance(index.name, str) and index.name.startswith(f"ix_{table.name}_")


def test_key_constraints_exist() -> None:
    names = {c.name for t in metadata.tables.values() for c in t.constraints}
    assert {
        "uq_trading_sessions_name",
        "uq_orders_client_order_id",
        "uq_fills_execution_id",
        "ck_orders_side",
        "ck_orders_quantity_positive",
        "ck_orders_order_type",
        "ck_orders_status",
        "ck_orders_intent",
        "ck_events_kind",
        "ck_events_severity",
        "ck_trading_sessions_status",
        "ck_console_users_role",
        "fk_orders_session_id_trading_sessions",
        "fk_fills_order_id_orders",
        "fk_events_session_id_trading_sessions",
    } <= names
    events_index = {i.name: [c.name for c in i.columns] for i in metadata.tables["events"].indexes}
    assert events_index == {
        "ix_events_session_id_created_at": ["session_id", "created_at"],
        "ix_events_dedupe_key": ["dedupe_key"],
    }
    unique = {i.name for i in metadata.tables["events"].indexes if i.unique}
    assert unique == {"ix_events_dedupe_key"}


def test_nullability() -> None:
    orders = metadata.tables["orders"]
    nullable = {c.name for c in orders.columns if c.nullable}
    assert nullable == {"broker_order_id", "limit_price", "stop_price", "decided_at"}
    assert metadata.tables["events"].c.session_id.nullable
    assert not metadata.tables["fills"].c.price.nullable


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()])
@pytest.mark.parametrize(
    "value",
    [Decimal("1773.25"), Decimal("0.00000001"), Decimal("-37.63"), Decimal("9999999999.99999999")],
)
def test_exact_decimal_binds_and_reads_back_the_same_value(dialect, value: Decimal) -> None:
    column_type = ExactDecimal()
    stored = column_type.process_bind_param(value, dialect)
    if dialect.name == "sqlite":
        assert isinstance(stored, str)
    back = column_type.process_result_value(stored, dialect)
    assert isinstance(back, Decimal)
    assert back == value
    assert back.as_tuple().exponent == -8


@pytest.mark.parametrize(
    "bad", [1773.25, Decimal("0.000000001"), Decimal("NaN"), Decimal("1e10"), True, "abc"]
)
def test_exact_decimal_refuses_floats_rounding_and_overflow(bad: object) -> None:
    with pytest.raises(BadInput):
        to_exact_decimal(bad)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()])
def test_utc_datetime_refuses_naive_and_normalizes_to_utc(dialect) -> None:
    column_type = UtcDateTime()
    with pytest.raises(BadInput, match="naive"):
        column_type.process_bind_param(datetime(2025, 3, 1, 12, 0), dialect)
    chicago = timezone(timedelta(hours=-6))
    stored = column_type.process_bind_param(datetime(2025, 3, 1, 6, 0, tzinfo=chicago), dialect)
    back = column_type.process_result_value(stored, dialect)
    assert back == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert back is not None and back.tzinfo is UTC
