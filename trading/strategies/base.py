"""The strategy protocol, and the one wrapper through which user strategy code is called.

A strategy is stateless code: everything it remembers between candles lives in a JSON object
(``state``) that the session stores in Redis and hands back on the next candle. It sees only
closed candles and the data's own time (never the clock), and answers with ``Signal``s: the
signed position it wants (positive long, negative short, 0 flat).

Args arrive from the outside (CLI strings such as ``"10"``) and are stored as JSON. Each
strategy's ``validate_args`` turns raw args into its canonical JSON args (ints as ints, Decimals
as strings) and refuses a malformed or unknown argument with ``BadInput``; the canonical form is
a fixed point, so ``validate_args(validate_args(raw)) == validate_args(raw)``. The helpers at the
end of this module (``refuse_unknown_args``, ``int_arg``, ``decimal_arg``) do that parsing.

A contract roll back-adjusts the session's candles by the roll spread (the new contract's price
minus the old one's). A strategy that remembers prices in its state (a stop, a level) also
implements ``RollsState.roll_state``, which answers that state in the new contract's terms;
a strategy without it keeps its state as it is through a roll.

User code is only ever run through ``call_strategy`` (each closed candle), ``prepare_strategy``
(session creation) and ``call_roll_state`` (a roll). Any exception from the strategy, and any
malformed answer, becomes ``StrategyError`` naming the strategy: that session stops, the others
go on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Protocol, TypeAlias, TypeVar, runtime_checkable

from trading.exceptions import BadInput, StrategyError
from trading.market import Candle

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
"""A JSON value. Decimals are stored as strings; floats must be finite."""

JsonObject: TypeAlias = "dict[str, JsonValue]"
_J = TypeVar("_J")

_MAX_JSON_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Signal:
    """The position the strategy wants now.

    ``target_position`` is signed, in contracts (positive long, negative short, 0 flat);
    ``stop_price`` is the protective stop for the position it asks for (None for none).
    """

    target_position: int
    stop_price: Decimal | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyContext:
    """What a strategy sees when a candle closes.

    ``candles`` are closed candles, oldest first; the last one is the candle that just closed.
    ``now`` is the data's time (the end of that candle), never the wall clock. ``state`` is the
    strategy's own JSON state as it returned it last time (or its ``initial_state``).
    """

    candles: Sequence[Candle]
    position: int
    contract: str
    tick_size: Decimal
    balance: Decimal | None
    now: datetime
    state: Mapping[str, JsonValue]


@runtime_checkable
class Strategy(Protocol):
    """What a registered strategy provides (an instance; built-ins are plain classes)."""

    @property
    def name(self) -> str:
        """The registered name (``sma_cross``, ``breakout``, ...)."""
        ...

    def warmup_periods(self, args: Mapping[str, JsonValue]) -> int:
        """How many closed candles it needs before it may trade."""
        ...

    def initial_state(self, args: Mapping[str, JsonValue]) -> JsonObject:
        """Its JSON state before the first candle."""
        ...

    def validate_args(self, raw: Mapping[str, object]) -> JsonObject:
        """Raw args (CLI strings or stored JSON) to canonical JSON args; ``BadInput`` if bad."""
        ...

    def on_candle(
        self, context: StrategyContext, args: Mapping[str, JsonValue]
    ) -> tuple[list[Signal], JsonObject]:
        """The signals for the candle that just closed, and the new JSON state."""
        ...


@runtime_checkable
class RollsState(Protocol):
    """A strategy whose state holds prices, which a roll moves by the spread."""

    def roll_state(
        self, state: Mapping[str, JsonValue], args: Mapping[str, JsonValue], spread: Decimal
    ) -> JsonObject:
        """``state`` after a roll that shifted every price by ``spread`` (new minus old)."""
        ...


@dataclass(frozen=True, slots=True)
class PreparedStrategy:
    """What a new session stores for its strategy: canonical args, warm-up, initial state."""

    args: JsonObject
    warmup_periods: int
    state: JsonObject


def call_strategy(
    strategy: Strategy, context: StrategyContext, args: Mapping[str, JsonValue]
) -> tuple[list[Signal], JsonObject]:
    """Run ``strategy.on_candle`` and check its answer.

    The strategy gets copies of the candles, state and args, so a failure half-way through
    leaves the caller's values untouched. Raises ``StrategyError`` (with the strategy's name
    and the original error text) if it raises or answers anything but a list of ``Signal``
    and a JSON object.
    """
    name = _strategy_name(strategy)
    safe_context = replace(
        context, candles=tuple(context.candles), state=json_copy(dict(context.state))
    )
    try:
        result = strategy.on_candle(safe_context, json_copy(dict(args)))
    except Exception as exc:
        raise StrategyError(f"strategy {name!r} failed: {_describe(exc)}") from exc
    if type(result) is not tuple or len(result) != 2:
        raise StrategyError(
            f"strategy {name!r} returned {type(result).__name__}, expected a (signals, state) tuple"
        )
    signals, state = result
    return _checked_signals(name, signals), _checked_state(name, "state", state)


def call_roll_state(
    strategy: Strategy,
    state: Mapping[str, JsonValue],
    args: Mapping[str, JsonValue],
    spread: Decimal,
) -> JsonObject:
    """The strategy's state in the new contract's terms after a roll by ``spread``: its own
    ``roll_state`` answer, checked, or a copy of ``state`` if it has none. Raises
    ``StrategyError`` if it raises or answers anything but a JSON object."""
    if not isinstance(strategy, RollsState):
        return json_copy(dict(state))
    name = _strategy_name(strategy)
    try:
        rolled = strategy.roll_state(json_copy(dict(state)), json_copy(dict(args)), spread)
    except Exception as exc:
        raise StrategyError(f"strategy {name!r} failed at a roll: {_describe(exc)}") from exc
    return _checked_state(name, "rolled state", rolled)


def prepare_strategy(strategy: Strategy, raw_args: Mapping[str, object]) -> PreparedStrategy:
    """Validate raw args and compute warm-up and initial state for a new session.

    A refused argument stays ``BadInput`` (the strategy's one clear line); anything else
    going wrong in the strategy's code becomes ``StrategyError``.
    """
    name = _strategy_name(strategy)
    try:
        args = strategy.validate_args(raw_args)
    except BadInput:
        raise
    except Exception as exc:
        raise StrategyError(f"strategy {name!r} failed validating args: {_describe(exc)}") from exc
    args = _checked_state(name, "args", args)
    try:
        warmup = strategy.warmup_periods(json_copy(args))
        state = strategy.initial_state(json_copy(args))
    except Exception as exc:
        raise StrategyError(f"strategy {name!r} failed: {_describe(exc)}") from exc
    if type(warmup) is not int or warmup < 0:
        raise StrategyError(
            f"strategy {name!r} returned warmup_periods {warmup!r}, expected an int >= 0"
        )
    return PreparedStrategy(
        args=args, warmup_periods=warmup, state=_checked_state(name, "initial state", state)
    )


def json_copy(value: _J) -> _J:
    """A deep copy of a JSON value (dicts and lists copied, anything else shared: JSON's
    scalars are immutable): ``copy.deepcopy`` without its memo, several times faster."""
    kind = type(value)
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}  # type: ignore[attr-defined,return-value]
    if kind is list:
        return [json_copy(item) for item in value]  # type: ignore[attr-defined,return-value]
    return value


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _strategy_name(strategy: object) -> str:
    try:
        name = getattr(strategy, "name", None)
    except Exception:
        name = None
    return name if type(name) is str else type(strategy).__name__


def _checked_signals(name: str, signals: object) -> list[Signal]:
    if type(signals) is not list:
        raise StrategyError(
            f"strategy {name!r} returned signals of type {type(signals).__name__}, expected list"
        )
    for index, signal in enumerate(signals):
        where = f"strategy {name!r} returned signals[{index}]"
        if type(signal) is not Signal:
            raise StrategyError(f"{where} of type {type(signal).__name__}, expected Signal")
        if type(signal.target_position) is not int:
            kind = type(signal.target_position).__name__
            raise StrategyError(f"{where} with target_position of type {kind}, expected int")
        stop = signal.stop_price
        if stop is not None and (type(stop) is not Decimal or not stop.is_finite()):
            raise StrategyError(f"{where} with stop_price {stop!r}, expected a finite Decimal")
        if type(signal.reason) is not str:
            kind = type(signal.reason).__name__
            raise StrategyError(f"{where} with reason of type {kind}, expected str")
    return list(signals)


def _checked_state(name: str, what: str, value: object) -> JsonObject:
    if type(value) is not dict:
        raise StrategyError(
            f"strategy {name!r} returned {what} of type {type(value).__name__}, expected dict"
        )
    problem = _json_problem(value, what, 0)
    if problem is not None:
        raise StrategyError(f"strategy {name!r} returned {what} that is not JSON: {problem}")
    checked: JsonObject = json_copy(value)
    return checked


def _json_problem(value: object, path: str, depth: int) -> str | None:
    """Why ``value`` is not plain JSON (exact builtin types only), or None if it is."""
    if depth > _MAX_JSON_DEPTH:
        return f"{path} is nested more than {_MAX_JSON_DEPTH} levels deep"
    kind = type(value)
    if value is None or kind in (str, int, bool):
        return None
    if isinstance(value, float) and kind is float:
        return None if math.isfinite(value) else f"{path} is {value!r} (not finite)"
    if kind is Decimal:
        return f"{path} is a Decimal (store Decimals as strings)"
    if isinstance(value, list) and kind is list:
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{path}[{index}]", depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict) and kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"{path} has a key {key!r} that is not a string"
            problem = _json_problem(item, f"{path}[{key!r}]", depth + 1)
            if problem is not None:
                return problem
        return None
    return f"{path} is of type {kind.__name__}"


_INT_TEXT = re.compile(r"[+-]?\d{1,12}")


def refuse_unknown_args(strategy: str, raw: Mapping[str, object], known: Sequence[str]) -> None:
    """``BadInput`` naming the first argument ``strategy`` does not take."""
    unknown = sorted(repr(key) for key in raw if key not in known)
    if unknown:
        raise BadInput(
            f"unknown argument {unknown[0]} for strategy {strategy!r} "
            f"(known: {', '.join(sorted(known))})"
        )


def int_arg(
    strategy: str, raw: Mapping[str, object], key: str, default: int, minimum: int = 1
) -> int:
    """The integer argument ``key`` (an int or its decimal text), ``default`` if absent."""
    value = raw.get(key, default)
    parsed: int | None = None
    if type(value) is int:
        parsed = value
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        parsed = int(value.strip())
    if parsed is None or parsed < minimum:
        raise BadInput(
            f"argument {key}={value!r} for strategy {strategy!r} must be an integer >= {minimum}"
        )
    return parsed


def decimal_arg(
    strategy: str,
    raw: Mapping[str, object],
    key: str,
    default: Decimal,
    above: Decimal = Decimal(0),
) -> Decimal:
    """The decimal argument ``key`` (a Decimal, an int or its text), ``default`` if absent.

    It must be finite and greater than ``above``. Floats are refused: write ``"2.5"``.
    """
    value = raw.get(key, default)
    parsed: Decimal | None = None
    if type(value) is Decimal:
        parsed = value
    elif type(value) is int:
        parsed = Decimal(value)
    elif isinstance(value, str) and len(value) <= 64:
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            parsed = None
    if parsed is None or not parsed.is_finite() or parsed <= above:
        raise BadInput(
            f"argument {key}={value!r} for strategy {strategy!r} "
            f"must be a decimal number greater than {above}"
        )
    return parsed
