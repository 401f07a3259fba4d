"""The exact codec between ``models.state.SessionState`` and Redis, and the session's key names.

Layout of one session (every key carries the hash tag ``{<session_id>}``, so one Lua script can
touch them all and Redis Cluster keeps them in one slot):

- ``tf:{<sid>}:state``   hash, one field per field of ``SessionState`` except ``candles`` and
  ``trades``; each value is JSON text. The store adds the meta field ``_fence``.
- ``tf:{<sid>}:candles`` list, one JSON entry per closed candle, oldest first, bounded.
- ``tf:{<sid>}:trades``  list, one JSON entry per trade, oldest first, bounded (SQL holds the
  durable record).
- ``tf:{<sid>}:lock`` and ``tf:{<sid>}:fence``: the lease and the fencing counter.

Exactness: a Decimal is a JSON string of ``str(d)`` and comes back equal with the same string
form; ints stay ints, bools bools, None is JSON null; datetimes must be aware and are stored as
ISO-8601 in UTC (``+00:00``); dates as ISO dates; nested strategy state and args must already be
plain JSON (dict with str keys, list, str, int, finite float, bool, None) and stay exactly that.
Anything else is refused with ``ValueError`` rather than stored approximately.

Decoding is typed per field: the dataclass annotations say what each JSON value must become,
and a value of the wrong shape raises ``ValueError`` naming where it was found.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Literal

from models.state import STATE_FIELDS, SessionState, Trade
from trading.exceptions import BadInput
from trading.market import Candle

KEY_PREFIX = "tf"
DEFAULT_MAX_CANDLES = 500
DEFAULT_MAX_TRADES = 1000

LIST_FIELDS: tuple[str, ...] = ("candles", "trades")
HASH_FIELDS: tuple[str, ...] = tuple(name for name in STATE_FIELDS if name not in LIST_FIELDS)
"""The ``SessionState`` fields stored in the state hash, in DESIGN.md's order."""

_SESSION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

Encoder = Callable[[Any, str], Any]
Decoder = Callable[[Any, str], Any]


# ---------------------------------------------------------------- keys


def check_session_id(session_id: str) -> str:
    """Return ``session_id`` if it can be used in a key (no braces, no spaces); else BadInput."""
    if not isinstance(session_id, str) or _SESSION_ID.fullmatch(session_id) is None:
        raise BadInput(
            f"bad session id {session_id!r}: use 1-128 characters of letters, digits, _ . : -"
        )
    return session_id


def _key(session_id: str, suffix: str) -> str:
    return f"{KEY_PREFIX}:{{{check_session_id(session_id)}}}:{suffix}"


def state_key(session_id: str) -> str:
    return _key(session_id, "state")


def candles_key(session_id: str) -> str:
    return _key(session_id, "candles")


def trades_key(session_id: str) -> str:
    return _key(session_id, "trades")


def lock_key(session_id: str) -> str:
    return _key(session_id, "lock")


def fence_key(session_id: str) -> str:
    return _key(session_id, "fence")


def lock_wanted_key(session_id: str) -> str:
    """Set while a worker waits for the session's lock: the tick path lets it go first
    (``workers.state.scripts.ACQUIRE``); it expires on its own."""
    return _key(session_id, "lock-wanted")


def session_keys(session_id: str) -> tuple[str, ...]:
    """Every key of one session: state, candles, trades, lock, fence."""
    return (
        state_key(session_id),
        candles_key(session_id),
        trades_key(session_id),
        lock_key(session_id),
        fence_key(session_id),
    )


# ---------------------------------------------------------------- scalar converters


def _fail(where: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"{where}: expected {expected}, got {type(value).__name__} {value!r:.80}")


def _enc_decimal(value: Any, where: str) -> str:
    if not isinstance(value, Decimal):
        raise _fail(where, "Decimal", value)
    if not value.is_finite():
        raise ValueError(f"{where}: refusing non-finite Decimal {value}")
    return str(value)


def _dec_decimal(raw: Any, where: str) -> Decimal:
    if not isinstance(raw, str):
        raise _fail(where, "a Decimal string", raw)
    try:
        value = Decimal(raw)
    except ArithmeticError:
        raise ValueError(f"{where}: not a Decimal: {raw!r:.80}") from None
    if not value.is_finite():
        raise ValueError(f"{where}: refusing non-finite Decimal {raw!r}")
    return value


def _enc_datetime(value: Any, where: str) -> str:
    if not isinstance(value, datetime):
        raise _fail(where, "datetime", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{where}: refusing naive datetime {value.isoformat()}")
    return value.astimezone(UTC).isoformat()


def _dec_datetime(raw: Any, where: str) -> datetime:
    if not isinstance(raw, str):
        raise _fail(where, "an ISO-8601 string", raw)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{where}: not an ISO-8601 datetime: {raw!r:.80}") from None
    if value.tzinfo is None:
        raise ValueError(f"{where}: stored datetime is naive: {raw!r}")
    return value.astimezone(UTC)


def _enc_date(value: Any, where: str) -> str:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise _fail(where, "date", value)
    return value.isoformat()


def _dec_date(raw: Any, where: str) -> date:
    if not isinstance(raw, str):
        raise _fail(where, "an ISO date string", raw)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{where}: not an ISO date: {raw!r:.80}") from None


def _exact(kind: type) -> tuple[Encoder, Decoder]:
    """int / str / bool: the JSON value is the Python value (bool is never taken as int)."""

    def check(value: Any, where: str) -> Any:
        if type(value) is not kind:
            raise _fail(where, kind.__name__, value)
        return value

    return check, check


def _json_value(value: Any, where: str) -> Any:
    """Check that ``value`` is plain JSON that round-trips exactly; return it unchanged."""
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise ValueError(f"{where}: refusing non-finite float {value}")
        return value
    if type(value) is list:
        for index, item in enumerate(value):
            _json_value(item, f"{where}[{index}]")
        return value
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"{where}: JSON object key {key!r} is not a str")
            _json_value(item, f"{where}.{key}")
        return value
    raise ValueError(
        f"{where}: {type(value).__name__} is not plain JSON"
        " (use dict/list/str/int/float/bool/None; Decimals as strings)"
    )


# ---------------------------------------------------------------- compiled type converters


@cache
def _converters(tp: Any) -> tuple[Encoder, Decoder]:
    """Encoder (value -> JSON value) and decoder (JSON value -> value) for one annotated type."""
    if tp is Any:
        return _json_value, _json_value
    if tp is Decimal:
        return _enc_decimal, _dec_decimal
    if tp is datetime:
        return _enc_datetime, _dec_datetime
    if tp is date:
        return _enc_date, _dec_date
    if tp in (int, str, bool):
        return _exact(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass_converters(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return _literal_converters(args)
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        return _optional_converters(next(a for a in args if a is not type(None)))
    if origin is dict and args[0] is str:
        return _dict_converters(args[1])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _tuple_converters(args[0])
    raise TypeError(f"models.codec cannot store values of type {tp!r}")


def _literal_converters(choices: tuple[Any, ...]) -> tuple[Encoder, Decoder]:
    def check(value: Any, where: str) -> Any:
        if not any(value == c and type(value) is type(c) for c in choices):
            raise ValueError(f"{where}: {value!r:.80} is not one of {list(choices)}")
        return value

    return check, check


def _optional_converters(inner: Any) -> tuple[Encoder, Decoder]:
    enc, dec = _converters(inner)

    def encode(value: Any, where: str) -> Any:
        return None if value is None else enc(value, where)

    def decode(raw: Any, where: str) -> Any:
        return None if raw is None else dec(raw, where)

    return encode, decode


def _dict_converters(value_type: Any) -> tuple[Encoder, Decoder]:
    enc, dec = _converters(value_type)

    def encode(value: Any, where: str) -> Any:
        if type(value) is not dict:
            raise _fail(where, "dict", value)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"{where}: key {key!r} is not a str")
            out[key] = enc(item, f"{where}[{key!r}]")
        return out

    def decode(raw: Any, where: str) -> Any:
        if type(raw) is not dict:
            raise _fail(where, "a JSON object", raw)
        return {key: dec(item, f"{where}[{key!r}]") for key, item in raw.items()}

    return encode, decode


def _tuple_converters(item_type: Any) -> tuple[Encoder, Decoder]:
    enc, dec = _converters(item_type)

    def encode(value: Any, where: str) -> Any:
        if type(value) is not tuple:
            raise _fail(where, "tuple", value)
        return [enc(item, f"{where}[{i}]") for i, item in enumerate(value)]

    def decode(raw: Any, where: str) -> Any:
        if type(raw) is not list:
            raise _fail(where, "a JSON array", raw)
        return tuple(dec(item, f"{where}[{i}]") for i, item in enumerate(raw))

    return encode, decode


def _dataclass_converters(cls: type) -> tuple[Encoder, Decoder]:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _converters(hints[f.name])) for f in dataclasses.fields(cls)]
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    names = {name for name, _ in fields}

    def encode(value: Any, where: str) -> Any:
        if type(value) is not cls:
            raise _fail(where, cls.__name__, value)
        return {name: enc(getattr(value, name), f"{where}.{name}") for name, (enc, _) in fields}

    def decode(raw: Any, where: str) -> Any:
        if type(raw) is not dict:
            raise _fail(where, f"a JSON object for {cls.__name__}", raw)
        unknown = raw.keys() - names
        if unknown:
            raise ValueError(f"{where}: unknown {cls.__name__} fields {sorted(unknown)}")
        missing = required - raw.keys()
        if missing:
            raise ValueError(f"{where}: missing {cls.__name__} fields {sorted(missing)}")
        kwargs = {
            name: dec(raw[name], f"{where}.{name}") for name, (_, dec) in fields if name in raw
        }
        return cls(**kwargs)

    return encode, decode


@cache
def _state_field_converters() -> dict[str, tuple[Encoder, Decoder]]:
    hints = typing.get_type_hints(SessionState)
    return {name: _converters(hints[name]) for name in STATE_FIELDS}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _loads(raw: str | bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError(f"{where}: stored value is not JSON: {raw!r:.80}") from None


# ---------------------------------------------------------------- public codec


@dataclass(frozen=True, slots=True)
class EncodedState:
    """A whole ``SessionState`` as Redis values: the state hash and the two lists."""

    hash: dict[str, str]
    candles: list[str]
    trades: list[str]


def encode_field(name: str, value: Any) -> str:
    """One state-hash field as JSON text."""
    if name == _PARTIAL and value is not None:
        return _candle_text(value, name)
    if name not in HASH_FIELDS:
        raise ValueError(f"{name!r} is not a state-hash field (one of {', '.join(HASH_FIELDS)})")
    encode, _ = _state_field_converters()[name]
    return _dumps(encode(value, name))


def decode_field(name: str, raw: str | bytes) -> Any:
    """The Python value of one state-hash field from its stored JSON text."""
    if name not in HASH_FIELDS:
        raise ValueError(f"{name!r} is not a state-hash field (one of {', '.join(HASH_FIELDS)})")
    if name == _PARTIAL:
        data = _loads(raw, name)
        return None if data is None else _candle_of(data, name)
    _, decode = _state_field_converters()[name]
    return decode(_loads(raw, name), name)


def encode_fields(source: SessionState | Mapping[str, Any], names: Iterable[str]) -> dict[str, str]:
    """Encode the named hash fields, read from a ``SessionState`` or a name->value mapping."""
    if isinstance(source, SessionState):
        return {name: encode_field(name, getattr(source, name)) for name in names}
    return {name: encode_field(name, source[name]) for name in names}


def encode_candle(candle: Candle) -> str:
    return _candle_text(candle, "candle")


def decode_candle(raw: str | bytes) -> Candle:
    return _candle_of(_loads(raw, "candle"), "candle")


# Candles are written on every tick step (the partial candle) and read back by the dozen when
# one closes (the strategy's history): their text is written and read directly, with the same
# checks and the same text as the generic converters, which still name a bad value's place.
_PARTIAL = "latest_partial_candle"
_CANDLE_KEYS = frozenset(("start", "open", "high", "low", "close", "volume"))


def _candle_text(candle: Any, where: str) -> str:
    if type(candle) is not Candle or type(candle.volume) is not int:
        encode, _ = _converters(Candle)
        return _dumps(encode(candle, where))
    try:
        start = _enc_datetime(candle.start, where)
        o, h = _enc_decimal(candle.open, where), _enc_decimal(candle.high, where)
        lo, c = _enc_decimal(candle.low, where), _enc_decimal(candle.close, where)
    except ValueError:
        encode, _ = _converters(Candle)
        return _dumps(encode(candle, where))
    return (
        f'{{"start":"{start}","open":"{o}","high":"{h}","low":"{lo}","close":"{c}",'
        f'"volume":{candle.volume}}}'
    )


def _candle_of(data: Any, where: str) -> Candle:
    if type(data) is dict and data.keys() == _CANDLE_KEYS and type(data["volume"]) is int:
        try:
            return Candle(
                _dec_datetime(data["start"], where),
                _dec_decimal(data["open"], where),
                _dec_decimal(data["high"], where),
                _dec_decimal(data["low"], where),
                _dec_decimal(data["close"], where),
                data["volume"],
            )
        except ValueError:
            pass
    _, decode = _converters(Candle)
    candle: Candle = decode(data, where)
    return candle


def encode_trade(trade: Trade) -> str:
    encode, _ = _converters(Trade)
    return _dumps(encode(trade, "trade"))


def decode_trade(raw: str | bytes) -> Trade:
    _, decode = _converters(Trade)
    trade: Trade = decode(_loads(raw, "trade"), "trade")
    return trade


def encode_state(
    state: SessionState,
    max_candles: int = DEFAULT_MAX_CANDLES,
    max_trades: int = DEFAULT_MAX_TRADES,
) -> EncodedState:
    """All of ``state`` as Redis values; the lists keep only their newest entries."""
    if type(state) is not SessionState:
        raise _fail("state", "SessionState", state)
    if max_candles < 1 or max_trades < 1:
        raise ValueError("list bounds must be at least 1")
    return EncodedState(
        hash=encode_fields(state, HASH_FIELDS),
        candles=[encode_candle(c) for c in state.candles[-max_candles:]],
        trades=[encode_trade(t) for t in state.trades[-max_trades:]],
    )


def _text(raw: str | bytes) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def decode_state(
    hash_fields: Mapping[str, str] | Mapping[bytes, bytes],
    candles: Iterable[str | bytes] = (),
    trades: Iterable[str | bytes] = (),
) -> SessionState:
    """Rebuild a ``SessionState`` from the state hash (meta fields ignored) and the lists."""
    values: dict[str, Any] = {}
    for raw_name, raw in hash_fields.items():
        name = _text(raw_name)
        if name.startswith("_"):
            continue
        values[name] = decode_field(name, raw)
    values["candles"] = tuple(decode_candle(c) for c in candles)
    values["trades"] = tuple(decode_trade(t) for t in trades)
    try:
        return SessionState(**values)
    except TypeError as exc:
        raise ValueError(f"stored state is incomplete: {exc}") from None


def state_to_json(state: SessionState) -> dict[str, Any]:
    """The JSON view of ``state`` (``session show --json``): every STATE_FIELDS name, in order."""
    converters = _state_field_converters()
    return {name: converters[name][0](getattr(state, name), name) for name in STATE_FIELDS}
