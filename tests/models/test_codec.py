"""The session-state codec is exact: every value comes back equal, of the same type, in the
same string form (compared through ``repr``, which shows Decimal exponents, tz and types)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.codec import (
    HASH_FIELDS,
    candles_key,
    decode_candle,
    decode_field,
    decode_state,
    decode_trade,
    encode_candle,
    encode_field,
    encode_fields,
    encode_state,
    encode_trade,
    fence_key,
    lock_key,
    state_key,
    state_to_json,
    trades_key,
)
from models.state import (
    STATE_FIELDS,
    CollaboratorRef,
    ContractDetails,
    Intent,
    OpenPosition,
    OrderStatus,
    OrderTemplate,
    OrderType,
    PnlInfo,
    SessionInfo,
    SessionState,
    Side,
    StrategyRef,
    TimeInForce,
    Trade,
    WorkingOrder,
)
from trading.exceptions import BadInput
from trading.market import Candle

T0 = datetime(2025, 3, 14, 13, 30, tzinfo=UTC)

# ---------------------------------------------------------------- strategies

decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.builds(
        lambda sign, digits, exp: Decimal((sign, tuple(digits), exp)),
        st.integers(0, 1),
        st.lists(st.integers(0, 9), min_size=1, max_size=30),
        st.integers(-40, 40),
    ),
    st.sampled_from(
        ["1E+3", "-0", "0E-7", "1773.25", "-0.000001", "123456789012345678901234.5"]
    ).map(Decimal),
)
# fold means nothing in UTC (no repeated wall time), so the codec does not keep it.
utc_times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(fold=0))
texts = st.text(max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=4)


def opt(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


candles = st.builds(
    Candle,
    start=utc_times,
    open=decimals,
    high=decimals,
    low=decimals,
    close=decimals,
    volume=st.integers(0, 10**12),
)
trades = st.builds(
    Trade,
    execution_id=texts,
    client_order_id=texts,
    contract=texts,
    quantity=st.integers(-1000, 1000),
    price=decimals,
    commission=decimals,
    time=utc_times,
    realized_pnl=decimals,
)
working_orders = st.builds(
    WorkingOrder,
    client_order_id=texts,
    contract=texts,
    side=st.sampled_from(get_args(Side)),
    quantity=st.integers(1, 1000),
    order_type=st.sampled_from(get_args(OrderType)),
    intent=st.sampled_from(get_args(Intent)),
    status=st.sampled_from(get_args(OrderStatus)),
    created_at=utc_times,
    filled_quantity=st.integers(0, 1000),
    limit_price=opt(decimals),
    stop_price=opt(decimals),
    broker_order_id=opt(texts),
    average_fill_price=opt(decimals),
)
states = st.builds(
    SessionState,
    session=st.builds(
        SessionInfo,
        id=texts,
        name=texts,
        account=texts,
        product=texts,
        contract=texts,
        timeframe=texts,
        created_at=utc_times,
    ),
    strategy=st.builds(StrategyRef, module=texts, args=json_objects, state=json_objects),
    market_data_source=st.builds(CollaboratorRef, module=texts, args=json_objects),
    account_manager=st.builds(CollaboratorRef, module=texts, args=json_objects),
    contract_details=st.builds(
        ContractDetails,
        symbol=texts,
        product=texts,
        multiplier=decimals,
        tick_size=decimals,
        expiry=opt(st.dates()),
    ),
    candle_key=texts,
    trading=st.booleans(),
    orders=st.dictionaries(texts, working_orders, max_size=3),
    trades=st.lists(trades, max_size=4).map(tuple),
    open_position=opt(
        st.builds(
            OpenPosition,
            contract=texts,
            quantity=st.integers(-50, 50),
            average_price=opt(decimals),
            stop_price=opt(decimals),
            opened_at=opt(utc_times),
        )
    ),
    candles=st.lists(candles, max_size=4).map(tuple),
    account_pnl_info=st.builds(
        PnlInfo, realized=decimals, unrealized=decimals, commissions=decimals, as_of=opt(utc_times)
    ),
    account_balance=opt(decimals),
    order_template=st.builds(
        OrderTemplate,
        order_type=st.sampled_from(get_args(OrderType)),
        quantity=st.integers(1, 100),
        time_in_force=st.sampled_from(get_args(TimeInForce)),
    ),
    latest_partial_candle=opt(candles),
    warmup_periods=st.integers(0, 10**6),
    portfolio_heat=decimals,
    portfolio_heat_warned=st.booleans(),
    portfolio_heat_blocked=st.booleans(),
    rolling=st.booleans(),
    rolling_close_order_id=opt(texts),
    rolling_close_qty=opt(st.integers(-100, 100)),
)


def sample_state(session_id: str = "s-1", **changes: object) -> SessionState:
    """A small, fully specified state (also used by the integration tests)."""
    state = SessionState(
        session=SessionInfo(session_id, "es sma", "acct", "ES", "ESM5", "1m", T0),
        strategy=StrategyRef("sma_cross", {"fast": 5, "slow": 20}, {"window": ["1.5", "2"]}),
        market_data_source=CollaboratorRef("replay", {"instrument": "ESM5"}),
        account_manager=CollaboratorRef("paper", {"account": "acct"}),
        contract_details=ContractDetails(
            "ESM5", "ES", Decimal("50"), Decimal("0.25"), date(2025, 6, 20)
        ),
        candle_key="ESM5:1m",
        portfolio_heat=Decimal("1773.25"),
    )
    return replace(state, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------- round trips


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(states)
def test_state_round_trip_is_exact(state: SessionState) -> None:
    encoded = encode_state(state)
    assert set(encoded.hash) == set(HASH_FIELDS)
    assert all(isinstance(v, str) for v in encoded.hash.values())
    # As redis-py returns it without decode_responses: bytes everywhere.
    decoded = decode_state(
        {k.encode(): v.encode() for k, v in encoded.hash.items()},
        [c.encode() for c in encoded.candles],
        [t.encode() for t in encoded.trades],
    )
    assert decoded == state
    assert repr(decoded) == repr(state)


@given(candles, trades)
def test_candle_and_trade_round_trip(candle: Candle, trade: Trade) -> None:
    assert repr(decode_candle(encode_candle(candle))) == repr(candle)
    assert repr(decode_trade(encode_trade(trade))) == repr(trade)


@given(candles)
def test_candle_text_is_the_generic_converters_text(candle: Candle) -> None:
    """Candles are written directly (the tick step's hot path): the same text as the generic
    dataclass converters, read back to an equal candle by either."""
    generic = json.dumps(
        {
            "start": candle.start.astimezone(UTC).isoformat(),
            "open": str(candle.open),
            "high": str(candle.high),
            "low": str(candle.low),
            "close": str(candle.close),
            "volume": candle.volume,
        },
        separators=(",", ":"),
    )
    assert encode_candle(candle) == generic
    assert encode_field("latest_partial_candle", candle) == generic
    assert repr(decode_field("latest_partial_candle", generic)) == repr(candle)
    assert encode_field("latest_partial_candle", None) == "null"
    assert decode_field("latest_partial_candle", "null") is None


def test_a_bad_candle_is_refused_naming_the_place() -> None:
    good = Candle(datetime(2013, 10, 7, tzinfo=UTC), *[Decimal("1")] * 4, 1)
    with pytest.raises(ValueError, match=r"latest_partial_candle\.high: refusing non-finite"):
        encode_field("latest_partial_candle", replace(good, high=Decimal("NaN")))
    with pytest.raises(ValueError, match=r"candle\.start: refusing naive datetime"):
        encode_candle(replace(good, start=datetime(2013, 10, 7)))
    with pytest.raises(ValueError, match=r"candle\.volume: expected int"):
        encode_candle(replace(good, volume="1"))  # type: ignore[arg-type]
    text = encode_candle(good)
    with pytest.raises(ValueError, match=r"latest_partial_candle\.low: not a Decimal"):
        decode_field("latest_partial_candle", text.replace('"low":"1"', '"low":"x"'))
    with pytest.raises(ValueError, match=r"candle: unknown Candle fields \['extra'\]"):
        decode_candle(text[:-1] + ',"extra":1}')


@given(decimals)
def test_decimal_keeps_value_and_string_form(value: Decimal) -> None:
    back = decode_field("portfolio_heat", encode_field("portfolio_heat", value))
    assert type(back) is Decimal
    assert back == value
    assert str(back) == str(value)


def test_explicit_decimals_stay_decimal() -> None:
    for text in ("1773.25", "1E+3", "-0", "0.10", "1e-9"):
        raw = encode_field("account_balance", Decimal(text))
        assert raw == json.dumps(str(Decimal(text)))
        back = decode_field("account_balance", raw)
        assert type(back) is Decimal
        assert str(back) == str(Decimal(text))


def test_partial_fields_encode_and_decode() -> None:
    state = sample_state(warmup_periods=7, rolling_close_qty=None, trading=False)
    raw = encode_fields(state, ["warmup_periods", "rolling_close_qty", "trading", "strategy"])
    assert raw["warmup_periods"] == "7"
    assert raw["rolling_close_qty"] == "null"
    assert decode_field("warmup_periods", raw["warmup_periods"]) == 7
    assert decode_field("rolling_close_qty", raw["rolling_close_qty"]) is None
    assert decode_field("trading", raw["trading"]) is False
    assert decode_field("strategy", raw["strategy"]) == state.strategy
    from_mapping = encode_fields({"portfolio_heat": Decimal("2.50")}, ["portfolio_heat"])
    assert from_mapping == {"portfolio_heat": '"2.50"'}


def test_state_to_json_has_exactly_the_state_fields() -> None:
    candle = Candle(T0, Decimal("1"), Decimal("2"), Decimal("0.5"), Decimal("1.5"), 10)
    view = state_to_json(sample_state(candles=(candle,), account_balance=Decimal("100.00")))
    assert list(view) == list(STATE_FIELDS)
    assert view["portfolio_heat"] == "1773.25"
    assert view["account_balance"] == "100.00"
    assert view["session"]["created_at"] == "2025-03-14T13:30:00+00:00"
    assert view["candles"][0]["close"] == "1.5"
    assert view["contract_details"]["expiry"] == "2025-06-20"
    assert json.loads(json.dumps(view)) == view


# ---------------------------------------------------------------- refusals


def test_naive_datetime_is_refused() -> None:
    naive = datetime(2025, 3, 14, 13, 30)
    with pytest.raises(ValueError, match="naive"):
        encode_state(sample_state(session=replace(sample_state().session, created_at=naive)))
    with pytest.raises(ValueError, match="naive"):
        encode_candle(Candle(naive, Decimal(1), Decimal(1), Decimal(1), Decimal(1), 1))


def test_other_timezones_are_stored_as_the_same_instant_in_utc() -> None:
    local = datetime(2025, 3, 14, 9, 30, tzinfo=timezone(timedelta(hours=-4)))
    raw = encode_field("session", replace(sample_state().session, created_at=local))
    assert '"2025-03-14T13:30:00+00:00"' in raw
    back = decode_field("session", raw).created_at
    assert back == local
    assert back.tzinfo is UTC


def test_non_json_strategy_state_and_non_finite_decimals_are_refused() -> None:
    for bad in ({"x": Decimal("1")}, {"x": (1, 2)}, {1: "a"}, {"x": float("nan")}):
        strategy = StrategyRef("sma_cross", {}, bad)  # type: ignore[dict-item]
        with pytest.raises(ValueError):
            encode_field("strategy", strategy)
    with pytest.raises(ValueError, match="non-finite"):
        encode_field("portfolio_heat", Decimal("NaN"))
    with pytest.raises(ValueError):
        encode_field("warmup_periods", True)
    with pytest.raises(ValueError):
        encode_field("candles", ())


def test_corrupt_stored_values_are_refused() -> None:
    with pytest.raises(ValueError):
        decode_field("warmup_periods", '"7"')
    with pytest.raises(ValueError):
        decode_field("warmup_periods", "true")
    with pytest.raises(ValueError):
        decode_field("portfolio_heat", "1.5")
    with pytest.raises(ValueError):
        decode_field("order_template", '{"order_type":"bogus","quantity":1,"time_in_force":"day"}')
    with pytest.raises(ValueError):
        decode_field("session", '{"id":"x"}')
    with pytest.raises(ValueError, match="not JSON"):
        decode_field("trading", "tru")
    encoded = encode_state(sample_state())
    partial = {k: v for k, v in encoded.hash.items() if k != "candle_key"}
    with pytest.raises(ValueError, match="incomplete"):
        decode_state(partial)


def test_encode_state_keeps_only_the_newest_candles() -> None:
    many = tuple(
        Candle(T0 + timedelta(minutes=i), Decimal(i), Decimal(i), Decimal(i), Decimal(i), i)
        for i in range(10)
    )
    encoded = encode_state(sample_state(candles=many), max_candles=3)
    assert [decode_candle(c) for c in encoded.candles] == list(many[-3:])


def test_keys_share_the_session_hash_tag() -> None:
    sid = "7f7c1f0e-4c57-4a8e-9b42-2d1d0c1b7a11"
    for key in (state_key(sid), candles_key(sid), trades_key(sid), lock_key(sid), fence_key(sid)):
        assert key.startswith(f"tf:{{{sid}}}:")
    for bad in ("", "a{b", "a}b", "has space"):
        with pytest.raises(BadInput):
            state_key(bad)
