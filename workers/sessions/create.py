"""Creating a session: validate everything first, then write SQL and Redis, or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast, get_args

import redis
from sqlalchemy.orm import Session as DbSession

from models.meta import CURSOR_FIELD
from models.state import (
    CollaboratorRef,
    ContractDetails,
    OpenPosition,
    OrderTemplate,
    OrderType,
    SessionInfo,
    SessionState,
    StrategyRef,
    TimeInForce,
)
from trading.calendar import contract_month, listed_months
from trading.candles import parse_timeframe
from trading.contracts import product_of, spec_for_product
from trading.exceptions import BadInput, ServiceUnavailable
from trading.strategies import get_strategy, prepare_strategy
from workers.brokers.registry import broker_names
from workers.connections import redact_url, require_redis
from workers.db.engines import engine_for
from workers.db.session_rows import create_session_row, find_session_row_by_name
from workers.feeds.registry import feed_names
from workers.sessions.warmup import warm_new_session
from workers.settings import Settings
from workers.state.store import StateStore
from workers.ticks.subscriptions import subscribe, subscribe_at, unsubscribe


@dataclass(frozen=True, slots=True)
class NewSession:
    """What an operator asks for when creating a session (unvalidated)."""

    name: str
    account: str
    product: str
    contract: str
    strategy: str
    strategy_args: dict[str, str]
    timeframe: str = "1m"
    feed: str = "replay"
    broker: str = "paper"
    order_type: str = "market"
    quantity: int = 1
    time_in_force: str = "day"
    warmup_until: datetime | None = None
    """Where the warm-up history ends (``workers.sessions.warmup``); None: where the stream
    stands (a live feed), else now."""


def parse_key_values(items: Iterable[str], option: str) -> dict[str, str]:
    """``["fast=10", "slow=30"]`` → ``{"fast": "10", "slow": "30"}``; malformed → ``BadInput``."""
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise BadInput(f"malformed {option} {item!r}: expected KEY=VALUE")
        if key in parsed:
            raise BadInput(f"{option} {key!r} given twice")
        parsed[key] = value.strip()
    return parsed


def build_initial_state(request: NewSession, session_id: str, now: datetime) -> SessionState:
    """Validate ``request`` completely and build the session's initial state (no I/O)."""
    if not request.name.strip():
        raise BadInput("session name must not be empty")
    if not request.account.strip():
        raise BadInput("account must not be empty")
    product = request.product.upper()
    contract = request.contract.upper()
    spec = spec_for_product(product)
    if product_of(contract) != product:
        raise BadInput(f"contract {contract} is not a {product} contract")
    _year, month = contract_month(contract)
    if month not in listed_months(product):
        raise BadInput(f"{product} lists no contract in month {month} ({contract})")
    timeframe = parse_timeframe(request.timeframe)
    prepared = prepare_strategy(get_strategy(request.strategy), request.strategy_args)
    if request.feed not in feed_names():
        raise BadInput(f"unknown feed {request.feed!r} (known: {', '.join(feed_names())})")
    if request.broker not in broker_names():
        raise BadInput(f"unknown broker {request.broker!r} (known: {', '.join(broker_names())})")
    if request.order_type not in get_args(OrderType):
        raise BadInput(f"bad order type {request.order_type!r}: market, limit or stop")
    if request.time_in_force not in get_args(TimeInForce):
        raise BadInput(f"bad time in force {request.time_in_force!r}: day, gtc or ioc")
    if request.quantity <= 0:
        raise BadInput("quantity must be a positive number of contracts")
    return SessionState(
        session=SessionInfo(
            id=session_id,
            name=request.name.strip(),
            account=request.account.strip(),
            product=product,
            contract=contract,
            timeframe=timeframe.name,
            created_at=now,
        ),
        strategy=StrategyRef(module=request.strategy, args=prepared.args, state=prepared.state),
        market_data_source=CollaboratorRef(module=request.feed, args={"instrument": contract}),
        account_manager=CollaboratorRef(module=request.broker, args={"account": request.account}),
        contract_details=ContractDetails(
            symbol=contract,
            product=product,
            multiplier=spec.multiplier,
            tick_size=spec.tick_size,
        ),
        candle_key=f"{contract}:{timeframe.name}",
        open_position=OpenPosition(contract=contract),
        order_template=OrderTemplate(
            order_type=cast(OrderType, request.order_type),
            quantity=request.quantity,
            time_in_force=cast(TimeInForce, request.time_in_force),
        ),
        warmup_periods=prepared.warmup_periods,
    )


def create_session(settings: Settings, request: NewSession) -> SessionState:
    """Write the SQL row and the initial Redis state, all or nothing; returns the state."""
    now = datetime.now(UTC)
    state = build_initial_state(request, str(uuid.uuid4()), now)
    client = require_redis(settings)
    try:
        warm = warm_new_session(settings, client, state, request.warmup_until, now)
    except Exception:
        client.close()
        raise
    if warm is not None:
        state = warm[0]
    engine = engine_for(settings.sqlalchemy_url)
    store = StateStore(client, settings.state.lock_ttl_ms)
    try:
        with DbSession(engine) as db:
            if find_session_row_by_name(db, state.session.name) is not None:
                raise BadInput(f"a session named {state.session.name!r} already exists")
            create_session_row(db, state)
            db.flush()
            try:
                store.create(state, None if warm is None else warm[1])
                try:
                    if warm is None:
                        subscribe(client, state.session.id, state.session.contract)
                    else:
                        cursor = warm[1][CURSOR_FIELD]
                        subscribe_at(client, state.session.id, state.session.contract, cursor)
                    db.commit()
                except Exception:
                    unsubscribe(client, state.session.id, state.session.contract)
                    store.delete(state.session.id)
                    raise
            except redis.RedisError as exc:
                reason = str(exc).split("\n")[0]
                raise ServiceUnavailable(
                    f"Redis at {redact_url(settings.redis.url)} refused to store the session "
                    f"({reason}); nothing was created"
                ) from exc
    finally:
        client.close()
    return state
