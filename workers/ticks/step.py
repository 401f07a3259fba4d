"""One session's step over a batch of new ticks: validate, fold, decide at closed candles.

This is the work done under the session's lock between the two scripts of the tick path. It
touches no Redis and no database itself: it takes the state fields read by the first script and
the raw stream entries, and answers with what the second script must write (fields, appended
candles, the new cursor) plus the orders and events that follow from it.

What the session decides when candles close (strategy, signals, risk gate, orders, stop moves,
the strategy's new state) is the pure ``trading.decision.decide_at_close``. The step decodes its
inputs from the session's fields (the working orders and position go in as they are decoded,
``trading.orders``' views), calls it with the candle history reader and the risk gate, and
encodes the ``Decision``: working copies, order rows to write and send, fields and events. It
also watches the protective stop on the ticks after the last closed candle
(``trading.stops.watch``) and marks the position to market.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from models.codec import decode_field, encode_field
from models.meta import PROGRESS_FIELD, RECONCILE_FIELD
from models.progress import TickProgress
from models.state import (
    CollaboratorRef,
    ContractDetails,
    OpenPosition,
    OrderTemplate,
    PnlInfo,
    SessionInfo,
    StrategyRef,
    WorkingOrder,
)
from trading.candles import UNPARSEABLE, fold_ticks, validate_tick
from trading.decision import CloseInputs, Decision, decide_at_close
from trading.events import Event
from trading.market import EPOCH, Candle, StreamEntry, Tick, entry_to_tick, epoch_ms
from trading.orders import OPEN_STATUSES, Order
from trading.reconcile import entries_blocked
from trading.risk import EntryGate
from trading.stops import StopOut, watch
from trading.timeframes import parse_timeframe
from workers.risk.entry import heat_fields
from workers.ticks.decoded import IMMUTABLE_FIELDS, decoded, encoded, remember

log = logging.getLogger(__name__)

_UNREAD = object()


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order decided in this step: its working copy and the data time it was decided at."""

    order: WorkingOrder
    decided_at: datetime
    account: str
    session_id: str
    time_in_force: str


StepEvent = Event
"""An event the step records (a bad tick, a touched stop, the decision's)."""


@dataclass(slots=True)
class StepResult:
    """What the end script writes, and what follows once it has."""

    fields: dict[str, str] = field(default_factory=dict)
    candles: list[Candle] = field(default_factory=list)
    cursor: str | None = None
    new_orders: list[NewOrder] = field(default_factory=list)
    events: list[StepEvent] = field(default_factory=list)
    ticks_processed: int = 0
    ticks_rejected: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    """This step's rejected entries by reason (``ticks_rejected`` in all)."""


class SessionStep:
    """Applies a batch of stream entries to one session's state fields."""

    def __init__(
        self,
        session_id: str,
        fields: Mapping[str, str],
        history: Callable[[int], list[Candle]],
        risk: EntryGate | None = None,
        *,
        protective_stops: bool = False,
        feed_stalled: Callable[[str], bool] | None = None,
    ) -> None:
        """``protective_stops``: the session's stops rest at the broker, so the step watches
        them (``trading.stops``). ``feed_stalled``: whether an instrument's market data is
        flagged stalled (``workers.risk.feed_stall``), asked only when candles close."""
        self.session_id = session_id
        self._feed_stalled = feed_stalled
        self._risk = risk
        self._stops = protective_stops
        self._good: list[Tick] = []
        self._watched = 0
        self._stops_out: tuple[StopOut, ...] = ()
        self._orders: dict[str, WorkingOrder] | None = None
        self._position: OpenPosition | object | None = _UNREAD
        self._fields = fields
        self._history = history
        self.progress = progress_of(session_id, fields.get(PROGRESS_FIELD))
        self.info: SessionInfo = decoded(session_id, "session", fields["session"])
        self.result = StepResult()

    def _get(self, name: str) -> Any:
        raw = self._fields[name]
        if name in IMMUTABLE_FIELDS:
            return decoded(self.session_id, name, raw)
        return decode_field(name, raw)

    def run(self, entries: Sequence[StreamEntry]) -> StepResult:
        if not entries:
            return self.result
        instrument = self.info.contract
        progress = self.progress
        last_time = (
            None if progress.last_ms is None else EPOCH + timedelta(milliseconds=progress.last_ms)
        )
        good: list[Tick] = []
        rejected = dict(progress.rejected)
        for _entry_id, values in entries:
            tick = entry_to_tick(instrument, values)
            reason = UNPARSEABLE if tick is None else validate_tick(tick, last_time)
            if reason is not None:
                if reason not in rejected:
                    self._first_reject(reason, values)
                rejected[reason] = rejected.get(reason, 0) + 1
                self.result.rejected[reason] = self.result.rejected.get(reason, 0) + 1
                continue
            assert tick is not None
            good.append(tick)
            last_time = tick.time
        last_id = entries[-1][0]
        self.result.cursor = last_id.decode() if isinstance(last_id, bytes) else last_id
        self.result.ticks_processed = len(good)
        self.result.ticks_rejected = len(entries) - len(good)
        timeframe = parse_timeframe(self.info.timeframe)
        partial: Candle | None = self._get("latest_partial_candle")
        folded = fold_ticks(partial, good, timeframe, last_time=None)
        self.result.fields["latest_partial_candle"] = encoded(
            self.session_id, "latest_partial_candle", folded.partial
        )
        self.result.candles.extend(folded.closed)
        progress = progress.advanced(
            progress.last_ms if last_time is None else epoch_ms(last_time), len(good), rejected
        )
        self._good, self._stops_out = good, progress.stops_out
        if folded.closed:
            progress = self._on_closed(folded.closed, timeframe.delta, progress)
        self._watch_rest()
        if good:
            self._mark_to_market(good[-1].price)
        if self._stops_out != progress.stops_out:
            progress = replace(progress, stops_out=self._stops_out)
        self.progress = progress
        raw = progress.to_json()
        remember(self.session_id, PROGRESS_FIELD, raw, progress)
        self.result.fields[PROGRESS_FIELD] = raw
        return self.result

    def _first_reject(self, reason: str, values: Mapping[bytes, bytes]) -> None:
        sample = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in values.items()}
        log.warning("session %s: rejected a bad tick (%s): %s", self.session_id, reason, sample)
        self.result.events.append(
            StepEvent("data", "warning", f"bad tick rejected: {reason}", {"sample": sample})
        )

    def _on_closed(
        self, closed: Sequence[Candle], span: timedelta, progress: TickProgress
    ) -> TickProgress:
        """The session's decision on the candles this step closed (``trading.decision``): the
        inputs decoded from its fields, the decision encoded into what the step writes."""
        before = progress.candles_closed
        progress = replace(progress, candles_closed=before + len(closed))
        strategy: StrategyRef = self._get("strategy")
        details: ContractDetails = self._get("contract_details")
        template: OrderTemplate = self._get("order_template")
        inputs = CloseInputs(
            session_id=self.session_id,
            account=self.info.account,
            closed=closed,
            candle_span=span,
            candles_before=before,
            trading=self._get("trading"),
            rolling=self._get("rolling"),
            warmup=self._get("warmup_periods"),
            strategy=strategy.module,
            strategy_args=strategy.args,
            strategy_state=strategy.state,
            contract=details.symbol,
            tick_size=details.tick_size,
            multiplier=details.multiplier,
            balance=self._get("account_balance"),
            order_type=template.order_type,
            order_quantity=template.quantity,
            time_in_force=template.time_in_force,
            position=self._open_position(),
            orders=self._current_orders(),
            signal_seq=progress.signal_seq,
            entries_blocked=entries_blocked(self._fields.get(RECONCILE_FIELD)),
            protective_stops=self._stops,
            ticks=self._good,
            stops_out=self._stops_out,
            feed_stalled=(
                self._feed_stalled is not None
                and strategy_runs_now(before, closed, self._get)
                and self._feed_stalled(details.symbol)
            ),
        )
        decision = decide_at_close(inputs, self._history, self._risk)
        self._record(decision, strategy, template)
        return replace(progress, signal_seq=decision.signal_seq)

    def _record(self, decision: Decision, strategy: StrategyRef, template: OrderTemplate) -> None:
        """Encode ``decision`` into the fields, orders and events the step writes."""
        sid, result = self.session_id, self.result
        self._stops_out, self._watched = decision.stops_out, decision.watched
        for event in decision.events:
            if event.severity == "warning":
                log.warning("session %s: %s %s", sid, event.message, event.details)
        result.events.extend(decision.events)
        if decision.entries_dropped:
            log.warning("session %s: entry dropped, entries are blocked", sid)
        if decision.moves_ignored:
            log.info("session %s: stop move ignored for %s orders", sid, template)
        if decision.stopped is not None:
            log.error("session %s stops trading: %s", sid, decision.stopped)
            result.fields["trading"] = encode_field("trading", False)
        if decision.strategy_state is not None:
            result.fields["strategy"] = encode_field(
                "strategy", replace(strategy, state=decision.strategy_state)
            )
        if decision.heat is not None:
            result.fields.update(heat_fields(decision.heat))
        if decision.position_stop is not None:
            position = self._open_position()
            assert position is not None
            self._position = replace(position, stop_price=decision.position_stop)
            result.fields["open_position"] = encode_field("open_position", self._position)
        orders = dict(self._current_orders()) if decision.orders_changed else None
        account = self.info.account
        for decided in decision.orders:
            order = working_order(decided.order)
            if orders is not None and decided.working:
                orders[order.client_order_id] = order
            result.new_orders.append(
                NewOrder(order, order.created_at, account, sid, decided.time_in_force)
            )
        if orders is not None:
            for coid, price in decision.stops_moved.items():
                orders[coid] = replace(orders[coid], stop_price=price)
            self._orders = orders
            result.fields["orders"] = encode_field("orders", orders)

    def _open_position(self) -> OpenPosition | None:
        """The session's position, with a stop this step moved."""
        if self._position is not _UNREAD:
            return self._position  # type: ignore[return-value]
        position: OpenPosition | None = self._get("open_position")
        self._position = position
        return position

    def _current_orders(self) -> dict[str, WorkingOrder]:
        """The session's working copies, with the orders this step decided."""
        if self._orders is None:
            raw = self._fields["orders"]
            self._orders = {} if raw == "{}" else self._get("orders")
        return self._orders

    def _watch_rest(self) -> None:
        """Watch the expected protective stop over the good ticks the decision did not watch
        (all of them when no candle closed): the first that reaches it takes the position it
        protects as closed (``trading.stops``)."""
        if not self._stops or self._watched == len(self._good):
            return
        ticks = self._good[self._watched :]
        self._watched = len(self._good)
        touched = watch(self._open_position(), self._current_orders(), self._stops_out, ticks)
        if touched is not None:
            self._stops_out = (*self._stops_out, touched[0])
            self.result.events.append(touched[1])

    def _mark_to_market(self, price: Decimal) -> None:
        position = self._open_position()
        if position is None or position.quantity == 0 or position.average_price is None:
            return
        details: ContractDetails = self._get("contract_details")
        pnl: PnlInfo = self._get("account_pnl_info")
        unrealized = (price - position.average_price) * position.quantity * details.multiplier
        self.result.fields["account_pnl_info"] = encoded(
            self.session_id, "account_pnl_info", replace(pnl, unrealized=unrealized)
        )


def strategy_runs_now(before: int, closed: Sequence[Candle], get: Callable[[str], Any]) -> bool:
    """Whether the strategy may run on these candles (so the stall flag is worth a read)."""
    return (
        bool(get("trading"))
        and not get("rolling")
        and before + len(closed) >= get("warmup_periods")
    )


def progress_of(session_id: str, raw: str | None) -> TickProgress:
    """The tick path's counters of this text (``TickProgress`` is frozen; ``run`` copies its
    ``rejected`` before counting)."""
    if not raw:
        return TickProgress()
    value = decoded(session_id, PROGRESS_FIELD, raw, TickProgress.from_json)
    assert isinstance(value, TickProgress)
    return value


def working_order(order: Order) -> WorkingOrder:
    """The working copy (and order row) of an order the decision made."""
    return WorkingOrder(
        client_order_id=order.client_order_id,
        contract=order.contract,
        side=order.side,
        quantity=order.quantity,
        order_type=order.order_type,
        intent=order.intent,
        status=order.status,
        created_at=order.created_at,
        filled_quantity=order.filled_quantity,
        stop_price=order.stop_price,
    )


__all__ = [
    "EPOCH",
    "OPEN_STATUSES",
    "PROGRESS_FIELD",
    "CollaboratorRef",
    "SessionStep",
    "StepResult",
    "TickProgress",
    "progress_of",
]
