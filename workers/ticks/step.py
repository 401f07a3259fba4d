"""One session's step over a batch of new ticks: validate, fold, run the strategy, decide orders.

This is the work done under the session's lock between the two scripts of the tick path. It
touches no Redis and no database itself: it takes the state fields read by the first script and
the raw stream entries, and answers with what the second script must write (fields, appended
candles, the new cursor) plus the orders and events that follow from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from models.codec import decode_field, encode_field
from models.state import (
    CollaboratorRef,
    ContractDetails,
    OpenPosition,
    OrderTemplate,
    PnlInfo,
    SessionInfo,
    Side,
    StrategyRef,
    WorkingOrder,
)
from models.tables import EventKind, Severity
from trading.candles import UNPARSEABLE, fold_ticks, validate_tick
from trading.exceptions import StrategyError
from trading.intents import OrderIntent, client_order_id, intents_for
from trading.market import Candle, Tick
from trading.orders import OPEN_STATUSES
from trading.reconcile import RECONCILE_FIELD, entries_blocked
from trading.risk import EntryCheck, EntryGate, GateOutcome, check_entry, risk_after_move
from trading.stops import (
    StopOut,
    attached_stop_id,
    expected_stop,
    first_touch,
    move_stop_id,
    pending_quantity,
    taken_as_closed,
)
from trading.strategies import StrategyContext, call_strategy, get_strategy
from trading.timeframes import parse_timeframe
from workers.risk.entry import heat_fields
from workers.ticks.decoded import IMMUTABLE_FIELDS, decoded, encoded, remember
from workers.ticks.progress import PROGRESS_FIELD, TickProgress

log = logging.getLogger(__name__)

_UNREAD = object()

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CURSOR_FIELD = "_cursor"
StreamEntry = tuple[bytes | str, Mapping[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order decided in this step: its working copy and the data time it was decided at."""

    order: WorkingOrder
    decided_at: datetime
    account: str
    session_id: str
    time_in_force: str


@dataclass(frozen=True, slots=True)
class StepEvent:
    kind: EventKind
    severity: Severity
    message: str
    details: dict[str, Any]


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


def entry_to_tick(instrument: str, values: Mapping[bytes, bytes]) -> Tick | None:
    """The tick of one stream entry, or None when a field cannot be parsed."""
    try:
        ms = int(values[b"t"])
        price = Decimal(values[b"p"].decode())
        size = int(values[b"s"])
        raw_bid = values.get(b"b")
        raw_ask = values.get(b"a")
        bid = Decimal(raw_bid.decode()) if raw_bid else None
        ask = Decimal(raw_ask.decode()) if raw_ask else None
        time = EPOCH + timedelta(milliseconds=ms)
    except (KeyError, ValueError, InvalidOperation, OverflowError, UnicodeDecodeError):
        return None
    return Tick(instrument=instrument, time=time, price=price, size=size, bid=bid, ask=ask)


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
    ) -> None:
        """``protective_stops``: the session's stops rest at the broker, so the step watches
        them (``trading.stops``)."""
        self.session_id = session_id
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
            progress.last_ms if last_time is None else _epoch_ms(last_time), len(good), rejected
        )
        self._good, self._stops_out = good, progress.stops_out
        if folded.closed:
            progress = self._on_closed(folded.closed, timeframe.delta, progress)
        self._watch(None)
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
        self, closed: Sequence[Candle], step: timedelta, progress: TickProgress
    ) -> TickProgress:
        trading: bool = self._get("trading")
        rolling: bool = self._get("rolling")
        warmup: int = self._get("warmup_periods")
        before = progress.candles_closed
        progress = replace(progress, candles_closed=before + len(closed))
        if not trading or rolling or before + len(closed) < warmup:
            return progress
        strategy_ref: StrategyRef = self._get("strategy")
        strategy = get_strategy(strategy_ref.module)
        need = max(warmup, 1) + 1
        candles = self._history(need) + list(closed)
        details: ContractDetails = self._get("contract_details")
        position = self._open_position()
        orders = self._current_orders()
        template: OrderTemplate = self._get("order_template")
        balance: Decimal | None = self._get("account_balance")
        state = strategy_ref.state
        seq = progress.signal_seq
        orders_changed = False
        first_live = len(candles) - len(closed)
        for index in range(first_live, len(candles)):
            candle = candles[index]
            now = candle.start + step
            self._watch(now)
            if index + 1 < warmup:
                continue
            held = 0 if position is None else position.quantity
            expected = held + pending_quantity(orders) + taken_as_closed(self._stops_out)
            context = StrategyContext(
                candles=candles[max(0, index + 1 - need) : index + 1],
                position=expected,
                contract=details.symbol,
                tick_size=details.tick_size,
                balance=balance,
                now=now,
                state=state,
            )
            try:
                signals, state = call_strategy(strategy, context, strategy_ref.args)
            except StrategyError as exc:
                self._stop_trading(str(exc))
                break
            for signal in signals:
                target = signal.target_position * template.quantity
                if target == expected:
                    if signal.stop_price is not None and self._move_stop(
                        signal.stop_price, expected, template, (candle.close, now), seq + 1
                    ):
                        seq += 1
                        if self._current_orders() is not orders:
                            orders, orders_changed = self._current_orders(), True
                    continue
                intents = intents_for(expected, target, signal.stop_price, signal.reason)
                intents = self._allowed(intents)
                if self._risk is not None and intents:
                    intents = self._risk_checked(
                        intents, EntryCheck(target, signal.stop_price, context.candles, now)
                    )
                if not intents:
                    continue
                seq += 1
                for intent in intents:
                    order = WorkingOrder(
                        client_order_id=client_order_id(self.session_id, seq, intent.leg),
                        contract=details.symbol,
                        side=intent.side,
                        quantity=intent.quantity,
                        order_type=template.order_type,
                        intent=intent.intent,
                        status="new",
                        created_at=now,
                        stop_price=intent.stop_price,
                    )
                    orders = {**orders, order.client_order_id: order}
                    self._orders = orders
                    orders_changed = True
                    self.result.new_orders.append(
                        NewOrder(
                            order, now, self.info.account, self.session_id, template.time_in_force
                        )
                    )
                    self._attach_stop(order, now)
                expected += sum(intent.signed_quantity for intent in intents)
        self.result.fields["strategy"] = encode_field(
            "strategy", replace(strategy_ref, state=state)
        )
        if orders_changed:
            self.result.fields["orders"] = encode_field("orders", orders)
        return replace(progress, signal_seq=seq)

    def _attach_stop(self, entry: WorkingOrder, now: datetime) -> None:
        """An entry with a stop price is decided with its protective stop, attached to it
        (``workers.stops.sync``); the stop is no working copy (no pending quantity)."""
        if not self._stops or entry.intent != "entry" or entry.stop_price is None:
            return
        side: Side = "sell" if entry.side == "buy" else "buy"
        coid = attached_stop_id(entry.client_order_id)
        self._decide_stop(coid, entry.contract, side, entry.quantity, entry.stop_price, now)

    def _decide_stop(
        self, coid: str, contract: str, side: Side, quantity: int, price: Decimal, now: datetime
    ) -> None:
        """A protective stop order decided at ``now`` (good till cancelled)."""
        stop = WorkingOrder(
            coid, contract, side, quantity, "stop", "exit", "new", now, stop_price=price
        )
        self.result.new_orders.append(
            NewOrder(stop, now, self.info.account, self.session_id, "gtc")
        )

    def _move_stop(
        self,
        price: Decimal,
        expected: int,
        template: OrderTemplate,
        at: tuple[Decimal, datetime],
        seq: int,
    ) -> bool:
        """The strategy moved the stop of the position it holds (``expected``, signed) to
        ``price`` when a candle closed (``at``: its close and its end): the stop the session
        expects takes the new price (the position's, or its pending entry's, which the
        position takes on its fill), the account's heat is measured to it, and, with
        protective stops on, a stop order ``<hex>-move-<seq>`` is decided that replaces the
        resting one as of the candle's end (``workers.stops.sync``). True if a move was
        decided (it uses ``seq``).

        Ignored when nothing would change, when the expected stop is not the held side's,
        and for templates other than market: a resting entry may not have filled at ``now``,
        and a stop moved ahead of its entry could reverse the position."""
        close, now = at
        position = self._open_position()
        orders = self._current_orders()
        stop = expected_stop(position, orders, self._stops_out)
        direction = 1 if expected > 0 else -1
        if stop is None or stop.price == price or stop.direction != direction:
            return False
        if template.order_type != "market":
            log.info("session %s: stop move ignored for %s orders", self.session_id, template)
            return False
        pending = [o for o in orders.values() if o.status in OPEN_STATUSES]
        if pending:
            newest = max(pending, key=lambda o: (o.created_at, o.intent == "entry"))
            self._orders = {**orders, newest.client_order_id: replace(newest, stop_price=price)}
        else:
            assert position is not None
            self._position = replace(position, stop_price=price)
            self.result.fields["open_position"] = encode_field("open_position", self._position)
        self.result.events.append(
            StepEvent(
                "risk",
                "info",
                f"stop moved from {stop.price} to {price}",
                {"at": now.isoformat(), "from": str(stop.price), "to": str(price)},
            )
        )
        details: ContractDetails = self._get("contract_details")
        if self._risk is not None:
            balance: Decimal | None = self._get("account_balance")
            outcome = risk_after_move(
                self._risk,
                self.info.account,
                self.session_id,
                details.multiplier,
                balance,
                expected,
                price,
                close,
            )
            self._gated(outcome)
        if self._stops:
            side: Side = "sell" if direction > 0 else "buy"
            coid = move_stop_id(self.session_id, seq)
            self._decide_stop(coid, details.symbol, side, abs(expected), price, now)
        return True

    def _open_position(self) -> OpenPosition | None:
        """The session's position, with a stop this step moved."""
        if self._position is not _UNREAD:
            return self._position  # type: ignore[return-value]
        position: OpenPosition | None = self._get("open_position")
        self._position = position
        return position

    def _current_orders(self) -> dict[str, WorkingOrder]:
        """The session's working copies, with the orders this step decided so far."""
        if self._orders is None:
            raw = self._fields["orders"]
            self._orders = {} if raw == "{}" else self._get("orders")
        return self._orders

    def _watch(self, until: datetime | None) -> None:
        """Watch the expected protective stop over the good ticks not watched yet that come
        before ``until`` (all of them with None): the first that reaches it takes the position
        it protects as closed (``trading.stops``)."""
        if not self._stops:
            return
        good, start = self._good, self._watched
        end = start
        while end < len(good) and (until is None or good[end].time < until):
            end += 1
        self._watched = end
        if end == start:
            return
        position = self._open_position()
        orders = self._current_orders()
        stop = expected_stop(position, orders, self._stops_out)
        tick = None if stop is None else first_touch(stop, good[start:end])
        if stop is None or tick is None:
            return
        held = 0 if position is None else position.quantity
        closed = held + pending_quantity(orders) + taken_as_closed(self._stops_out)
        if closed == 0:
            return
        out = StopOut(stop.direction, stop.price, -closed, _epoch_ms(tick.time))
        self._stops_out = (*self._stops_out, out)
        message = (
            f"protective stop {stop.price} touched at {tick.price}: position {closed} taken "
            "as closed until the stop's fill arrives"
        )
        self.result.events.append(
            StepEvent("risk", "info", message, {"at": tick.time.isoformat(), "closed": closed})
        )

    def _allowed(self, intents: list[OrderIntent]) -> list[OrderIntent]:
        """Entries are dropped while reconciliation blocks them (the broker stopped answering,
        ``trading.reconcile``); exits always pass."""
        if not intents or not entries_blocked(self._fields.get(RECONCILE_FIELD)):
            return intents
        kept = [intent for intent in intents if intent.intent != "entry"]
        if len(kept) < len(intents):
            log.warning("session %s: entry dropped, entries are blocked", self.session_id)
        return kept

    def _risk_checked(self, intents: list[OrderIntent], check: EntryCheck) -> list[OrderIntent]:
        """An entry reserves its risk on the account (``workers.risk``); a refused one is an
        event, and the exits of its signal still go (a reversal goes flat only)."""
        assert self._risk is not None
        details: ContractDetails = self._get("contract_details")
        balance: Decimal | None = self._get("account_balance")
        outcome = check_entry(
            self._risk,
            self.info.account,
            self.session_id,
            details.multiplier,
            balance,
            intents,
            check,
        )
        self._gated(outcome)
        return outcome.intents

    def _gated(self, outcome: GateOutcome) -> None:
        if outcome.answer is not None:
            self.result.fields.update(heat_fields(outcome.answer))
        for event in outcome.events:
            if event.severity == "warning":
                log.warning("session %s: %s", self.session_id, event.message)
            self.result.events.append(
                StepEvent(event.kind, event.severity, event.message, event.details)
            )

    def _stop_trading(self, message: str) -> None:
        log.error("session %s stops trading: %s", self.session_id, message)
        self.result.fields["trading"] = encode_field("trading", False)
        self.result.events.append(StepEvent("strategy", "error", message, {}))

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


def progress_of(session_id: str, raw: str | None) -> TickProgress:
    """The tick path's counters of this text (``TickProgress`` is frozen; ``run`` copies its
    ``rejected`` before counting)."""
    if not raw:
        return TickProgress()
    value = decoded(session_id, PROGRESS_FIELD, raw, TickProgress.from_json)
    assert isinstance(value, TickProgress)
    return value


def _epoch_ms(t: datetime) -> int:
    delta = t - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


__all__ = [
    "OPEN_STATUSES",
    "PROGRESS_FIELD",
    "CollaboratorRef",
    "SessionStep",
    "StepResult",
    "TickProgress",
    "entry_to_tick",
    "progress_of",
]
