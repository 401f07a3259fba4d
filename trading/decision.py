"""What a session decides when candles close: strategy → signals → risk answer → orders.

``decide_at_close`` is the whole decision of one step's closed candles, over typed inputs
(``CloseInputs``) and returning a typed ``Decision``; the tick step (``workers.ticks.step``)
decodes the session's fields into the inputs, calls it, and encodes the decision into the
fields, order rows and events it writes. Nothing here touches Redis, SQL or the clock itself:
the one outside answer it needs, the risk gate's, comes through the gate it is given.

Unless the session is not trading, is rolling, or has not closed ``warmup`` candles yet (then
the strategy is not called at all and its state is left as it is), for each closed candle:

1. with protective stops on, the stop the session expects is watched on the step's ticks up
   to the candle's end (``trading.stops.watch``): a touch takes its position as closed;
2. candles still inside the warm-up are skipped; otherwise the strategy is called through its
   wrapper (``trading.strategies.call_strategy``) with the position the session expects (held
   + pending + taken as closed). A ``StrategyError`` stops trading (``Decision.stopped``, an
   error event): no later candle of the batch runs;
3. each signal for the position it already expects with a new stop price moves that stop
   (``_move_stop``); any other becomes intents (``trading.intents``): entries are dropped while
   reconciliation blocks them (exits never are), then the entry is checked and reserved through
   the risk gate (``trading.risk.check_entry``), whose refusal drops the entry but not the exits;
4. the intents left become orders with deterministic client order ids (the next signal
   sequence, ``trading.intents.client_order_id``), decided at the candle's end; with protective
   stops on, an entry with a stop price is decided with its attached stop order
   (``trading.stops.attached_stop_id``).

The risk gate is passed in (``trading.risk.EntryGate``; the tick path gives the Redis risk
book, tests an in-memory one) rather than answered in a second phase: its answer feeds back
into the same batch (an accepted entry changes the position the strategy is told on the next
candle and takes a signal sequence number, a refused one does neither), so a two-phase API
would have to stop and resume the decision at every entry. The candle history before the
closed candles comes in the same way, as a reader called once and only when the strategy
runs, for exactly the candles it needs, and the strategy itself (resolved by its registered
name only when it runs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from trading.events import Event
from trading.exceptions import StrategyError
from trading.intents import OrderIntent, Side, client_order_id, intents_for
from trading.market import Candle, Tick
from trading.orders import (
    OPEN_STATUSES,
    Order,
    OrderType,
    OrderView,
    Position,
    PositionView,
    TimeInForce,
)
from trading.risk import (
    EntryCheck,
    EntryGate,
    GateOutcome,
    RiskAnswer,
    check_entry,
    refuse_entries_while_stalled,
    risk_after_move,
)
from trading.stops import (
    StopOut,
    attached_stop_id,
    expected_stop,
    move_stop_id,
    pending_quantity,
    taken_as_closed,
    watch,
)
from trading.strategies import (
    JsonObject,
    JsonValue,
    Strategy,
    StrategyContext,
    call_strategy,
    get_strategy,
)

History = Callable[[int], Sequence[Candle]]
"""The session's last ``n`` closed candles before the ones just closed, oldest first."""


@dataclass(frozen=True, slots=True)
class CloseInputs:
    """What the decision reads of the session when candles close."""

    session_id: str
    account: str
    closed: Sequence[Candle]
    """The candles this step closed, oldest first."""
    candle_span: timedelta
    candles_before: int
    """Candles the session closed before these."""
    trading: bool
    rolling: bool
    warmup: int
    strategy: str
    """The registered strategy's name (``trading.strategies.get_strategy``)."""
    strategy_args: Mapping[str, JsonValue]
    strategy_state: JsonObject
    contract: str
    tick_size: Decimal
    multiplier: Decimal
    balance: Decimal | None
    order_type: OrderType
    order_quantity: int
    """Contracts per unit of a signal's target position."""
    time_in_force: TimeInForce
    position: PositionView | None
    orders: Mapping[str, OrderView]
    """The session's working orders by client order id."""
    signal_seq: int
    """The last signal sequence used."""
    entries_blocked: bool
    """Reconciliation blocks entries (``trading.reconcile.entries_blocked``)."""
    protective_stops: bool
    ticks: Sequence[Tick] = ()
    """The step's good ticks, watched for the protective stop (with ``protective_stops``)."""
    stops_out: tuple[StopOut, ...] = ()
    """Protective stops seen touched, their fills not applied yet (``trading.stops``)."""
    feed_stalled: bool = False
    """The instrument's market data stalled in market hours (``workers.risk.feed_stall``):
    entries are refused (``trading.risk.refuse_entries_while_stalled``), exits pass."""


@dataclass(frozen=True, slots=True)
class DecidedOrder:
    """An order to write and send: ``working`` orders are also the session's working copies;
    protective stops (attached to an entry, or a stop move) are sent only."""

    order: Order
    time_in_force: TimeInForce
    working: bool


@dataclass(frozen=True, slots=True)
class Decision:
    """What the session does about its closed candles."""

    strategy_state: JsonObject | None
    """The strategy's new state (after its last good call); None when it was not called at
    all (nothing to write)."""
    signal_seq: int
    orders: tuple[DecidedOrder, ...] = ()
    """In the order decided (each as decided: a later stop move does not change it)."""
    stops_moved: Mapping[str, Decimal] = field(default_factory=dict)
    """Working orders whose stop price moved, by client order id: their new stop price."""
    position_stop: Decimal | None = None
    """The position's stop moved to this price (None: not moved)."""
    heat: RiskAnswer | None = None
    """The risk gate's last answer, if it was asked."""
    events: tuple[Event, ...] = ()
    stopped: str | None = None
    """The strategy failed with this message: the session stops trading."""
    stops_out: tuple[StopOut, ...] = ()
    """The inputs' touched stops and those the watch saw touched since."""
    watched: int = 0
    """How many of the inputs' ticks were watched (from the first)."""
    entries_dropped: int = 0
    """Signals whose entries were dropped because reconciliation blocks them."""
    moves_ignored: int = 0
    """Stop moves ignored because the order template is not market."""

    @property
    def orders_changed(self) -> bool:
        """Whether the session's working orders changed (a working order or a moved stop)."""
        return bool(self.stops_moved) or any(decided.working for decided in self.orders)


def strategy_runs(inputs: CloseInputs) -> bool:
    """Whether the strategy may run on these candles: the session trades, does not roll, and
    has closed its ``warmup`` candles with them."""
    closed = inputs.candles_before + len(inputs.closed)
    return inputs.trading and not inputs.rolling and closed >= inputs.warmup


def decide_at_close(
    inputs: CloseInputs,
    history: History,
    gate: EntryGate | None = None,
    *,
    strategies: Callable[[str], Strategy] = get_strategy,
) -> Decision:
    """The session's decision on ``inputs.closed`` (see the module); ``gate`` None: no risk
    check (and no heat measured). ``strategies`` resolves the strategy's registered name (the
    registry; tests give their own)."""
    if not strategy_runs(inputs):
        return Decision(None, inputs.signal_seq, stops_out=inputs.stops_out)
    return _Batch(inputs, gate).run(strategies(inputs.strategy), history)


class _Batch:
    """The decision's working values while it goes through the closed candles."""

    def __init__(self, inputs: CloseInputs, gate: EntryGate | None) -> None:
        self.inputs = inputs
        self.gate = gate
        self.position: PositionView | None = inputs.position
        self.orders: Mapping[str, OrderView] = inputs.orders
        self.stops_out = inputs.stops_out
        self.watched = 0
        self.decided: list[DecidedOrder] = []
        self.stops_moved: dict[str, Decimal] = {}
        self.position_stop: Decimal | None = None
        self.heat: RiskAnswer | None = None
        self.events: list[Event] = []
        self.stopped: str | None = None
        self.dropped = 0
        self.ignored = 0

    def run(self, strategy: Strategy, history: History) -> Decision:
        inputs = self.inputs
        need = max(inputs.warmup, 1) + 1
        candles = [*history(need), *inputs.closed]
        held = 0 if self.position is None else self.position.quantity
        state = inputs.strategy_state
        seq = inputs.signal_seq
        for index in range(len(candles) - len(inputs.closed), len(candles)):
            candle = candles[index]
            now = candle.start + inputs.candle_span
            self._watch(now)
            if index + 1 < inputs.warmup:
                continue
            expected = held + pending_quantity(self.orders) + taken_as_closed(self.stops_out)
            context = StrategyContext(
                candles=candles[max(0, index + 1 - need) : index + 1],
                position=expected,
                contract=inputs.contract,
                tick_size=inputs.tick_size,
                balance=inputs.balance,
                now=now,
                state=state,
            )
            try:
                signals, state = call_strategy(strategy, context, inputs.strategy_args)
            except StrategyError as exc:
                self.stopped = str(exc)
                self.events.append(Event("strategy", "error", self.stopped, {}))
                break
            for signal in signals:
                target = signal.target_position * inputs.order_quantity
                if target == expected:
                    if signal.stop_price is not None and self._move_stop(
                        signal.stop_price, expected, candle.close, now, seq + 1
                    ):
                        seq += 1
                    continue
                intents = self._allowed(
                    intents_for(expected, target, signal.stop_price, signal.reason)
                )
                if inputs.feed_stalled and intents:
                    intents = self._gated(
                        refuse_entries_while_stalled(intents, inputs.contract, now)
                    )
                if self.gate is not None and intents:
                    check = EntryCheck(target, signal.stop_price, context.candles, now)
                    intents = self._gated(
                        check_entry(
                            self.gate,
                            inputs.account,
                            inputs.session_id,
                            inputs.multiplier,
                            inputs.balance,
                            intents,
                            check,
                        )
                    )
                if not intents:
                    continue
                seq += 1
                for intent in intents:
                    self._order(intent, seq, now)
                expected += sum(intent.signed_quantity for intent in intents)
        return Decision(
            state,
            seq,
            tuple(self.decided),
            self.stops_moved,
            self.position_stop,
            self.heat,
            tuple(self.events),
            self.stopped,
            self.stops_out,
            self.watched,
            self.dropped,
            self.ignored,
        )

    def _watch(self, until: datetime) -> None:
        """Watch the expected protective stop over the ticks not watched yet that come before
        ``until``."""
        if not self.inputs.protective_stops:
            return
        ticks, start = self.inputs.ticks, self.watched
        end = start
        while end < len(ticks) and ticks[end].time < until:
            end += 1
        self.watched = end
        if end == start:
            return
        touched = watch(self.position, self.orders, self.stops_out, ticks[start:end])
        if touched is not None:
            self.stops_out = (*self.stops_out, touched[0])
            self.events.append(touched[1])

    def _allowed(self, intents: list[OrderIntent]) -> list[OrderIntent]:
        """Entries are dropped while reconciliation blocks them (the broker stopped answering,
        ``trading.reconcile``); exits always pass."""
        if not intents or not self.inputs.entries_blocked:
            return intents
        kept = [intent for intent in intents if intent.intent != "entry"]
        if len(kept) < len(intents):
            self.dropped += 1
        return kept

    def _gated(self, outcome: GateOutcome) -> list[OrderIntent]:
        if outcome.answer is not None:
            self.heat = outcome.answer
        self.events.extend(outcome.events)
        return outcome.intents

    def _order(self, intent: OrderIntent, seq: int, now: datetime) -> None:
        """The order of one intent of signal ``seq``, and its attached stop (an entry with a
        stop price, protective stops on; the stop is no working copy: no pending quantity)."""
        inputs = self.inputs
        order = Order(
            client_order_id(inputs.session_id, seq, intent.leg),
            inputs.contract,
            intent.side,
            intent.quantity,
            inputs.order_type,
            intent.intent,
            now,
            intent.stop_price,
        )
        self.orders = {**self.orders, order.client_order_id: order}
        self.decided.append(DecidedOrder(order, inputs.time_in_force, working=True))
        if inputs.protective_stops and order.intent == "entry" and order.stop_price is not None:
            side: Side = "sell" if order.side == "buy" else "buy"
            coid = attached_stop_id(order.client_order_id)
            self._stop_order(coid, side, order.quantity, order.stop_price, now)

    def _stop_order(
        self, coid: str, side: Side, quantity: int, price: Decimal, now: datetime
    ) -> None:
        """A protective stop order decided at ``now`` (good till cancelled)."""
        stop = Order(coid, self.inputs.contract, side, quantity, "stop", "exit", now, price)
        self.decided.append(DecidedOrder(stop, "gtc", working=False))

    def _move_stop(
        self, price: Decimal, expected: int, close: Decimal, now: datetime, seq: int
    ) -> bool:
        """The strategy moved the stop of the position it holds (``expected``, signed) to
        ``price`` when a candle closed (``close`` at ``now``, its end): the stop the session
        expects takes the new price (the position's, or its pending entry's, which the
        position takes on its fill), the account's heat is measured to it, and, with
        protective stops on, a stop order ``<hex>-move-<seq>`` is decided that replaces the
        resting one as of the candle's end (``workers.stops.sync``). True if a move was
        decided (it uses ``seq``).

        Ignored when nothing would change, when the expected stop is not the held side's,
        and for templates other than market: a resting entry may not have filled at ``now``,
        and a stop moved ahead of its entry could reverse the position."""
        inputs = self.inputs
        stop = expected_stop(self.position, self.orders, self.stops_out)
        direction = 1 if expected > 0 else -1
        if stop is None or stop.price == price or stop.direction != direction:
            return False
        if inputs.order_type != "market":
            self.ignored += 1
            return False
        pending = [o for o in self.orders.values() if o.status in OPEN_STATUSES]
        if pending:
            newest = max(pending, key=lambda o: (o.created_at, o.intent == "entry"))
            self.orders = {**self.orders, newest.client_order_id: Order.of(newest, price)}
            self.stops_moved[newest.client_order_id] = price
        else:
            assert self.position is not None
            self.position = Position.of(self.position, price)
            self.position_stop = price
        self.events.append(
            Event(
                "risk",
                "info",
                f"stop moved from {stop.price} to {price}",
                {"at": now.isoformat(), "from": str(stop.price), "to": str(price)},
            )
        )
        if self.gate is not None:
            moved = risk_after_move(
                self.gate,
                inputs.account,
                inputs.session_id,
                inputs.multiplier,
                inputs.balance,
                expected,
                price,
                close,
            )
            self._gated(moved)
        if inputs.protective_stops:
            side: Side = "sell" if direction > 0 else "buy"
            coid = move_stop_id(inputs.session_id, seq)
            self._stop_order(coid, side, abs(expected), price, now)
        return True


__all__ = [
    "CloseInputs",
    "DecidedOrder",
    "Decision",
    "History",
    "decide_at_close",
    "strategy_runs",
]
