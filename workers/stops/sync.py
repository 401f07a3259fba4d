"""Protective stops at the broker: every position opened with a stop has a stop order resting.

An entry decided with a stop price is decided together with its stop: the tick step writes both
rows, and the stop (``<hex>-stop-<seq>-<leg>``: ``trading.stops.attached_stop_id``) is
sent right after its entry, attached to it (one-triggers-other: the broker works it from the
entry's fill on, in data time). So whether a stop rested, and from when, never depends on how
fast the entry's fill came back.

Afterwards the stop a position needs follows from the session's state:
``open_position.stop_price`` (set by ``workers.orders.fills`` when an entry carrying a
``stop_price`` fills), ``|quantity|`` contracts on the opposite side, in the position's contract
(a position that lost its stop price to a rebuild keeps the price of its open stop).
``sync_stop`` makes the broker match it, under the session's lock (so two deliveries cannot
race): it reads the session's state and open stop rows, plans with ``trading.stops.plan_stop``
(pure: the stop wanted, the row kept, the rows cancelled, and ``cancel_as_of`` the data time
they are cancelled as of), and acts on the plan at the broker and in SQL:

- no stop needed (flat, or no stop price): every open stop order of the session is cancelled;
- the newest open stop row matches (contract, side, quantity, price): it is placed if its row
  is still ``new`` (a crash between writing the row and sending it; placing is idempotent by
  client order id), and every older open stop is cancelled;
- otherwise (first stop, the stop price or the quantity changed, or the last stop is gone): a
  new row ``<16 hex of the session>-stop-<n>`` (``n`` = stop rows so far + 1) is written, the
  other open stops are cancelled, THEN the new one is placed (never two stops resting at once,
  which could reverse the position).

A strategy that moves its stop (a signal for the position it holds with a new stop price)
gets a stop move ``<hex>-move-<seq>``, decided by the tick step with the new
``open_position.stop_price``: sent like an exit (``clear_for_exit`` cancels the older stops as
of its decision, and drops the move if the newest of them had filled), then placed. Older
stops are cancelled as of the decision of the newest matching row, and never worked past it.

Stop orders are not working copies in the session's ``orders`` (the tick step would count
them as pending quantity); their record is the SQL order row (``order_type`` stop, ``intent``
exit). A resting stop is polled (``tradefleet.orders.poll``: the paper broker matches resting
orders only when asked) for as long as it rests; a Redis guard key keeps one poll chain per
stop, and a chain that died is restarted by the next sync (every fill, every orders pass).

A strategy that exits by itself (``breakout`` closes on a candle close through its stop)
races the broker stop touched inside that candle. Every exit therefore cancels the session's
resting stops as of its decision's data time before it is sent (``clear_for_exit``) and is
dropped when one had filled before that, and ``sync_stop`` leaves the stops alone while an
exit of the session is open (``exit_pending``): the two never both fill. The broker works a
session's stops only on the prices the session has seen (``workers.stops.horizon``), and the
tick step watches the same stop on the same prices (``trading.stops``), so the
same replay fills the same stops whatever the workers' speed. Behind the
``TRADEFLEET_PROTECTIVE_STOPS`` setting (on by default, see ``workers.settings``).

Heat needs nothing here: it is measured to ``open_position.stop_price``, which is the price of
the stop resting at the broker whenever the two are in sync.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import redis
from celery import current_app
from sqlalchemy.engine import Engine

from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.state import OrderStatus, Side, WorkingOrder
from models.tables import OrderRow
from trading.stops import WantedStop, cancel_as_of, exit_pending, plan_stop
from workers.brokers.base import AccountManager, StopModifier, works_in_data_time
from workers.brokers.commands import CancelOrder, OrderAck, PlaceOrder, QueryOrder
from workers.db.event_rows import record_event
from workers.db.order_rows import get_order_row, insert_order_if_absent, update_order_row
from workers.dispatch import names
from workers.state.store import StateStore
from workers.stops.rows import (
    is_move_id,
    is_stop_id,
    last_decided,
    newest_stop,
    open_stop_rows,
    parent_of,
    stop_count,
    stop_id,
)

log = logging.getLogger(__name__)

LOCK_WAIT_S = 5.0
EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
MS_DELTA = timedelta(milliseconds=1)
"""The last stream entry the session's tick step processed (``workers.ticks.step``)."""
STOP_POLL_INTERVAL_S = 0.5
"""How often a resting stop is matched against new prices (the paper broker)."""
CLEAR_KEY_TTL_S = 7 * 86_400
"""How long an exit's ``clear_for_exit`` answer is kept (its sends are long over by then)."""
POLL_GUARD_TTL_S = 30
"""A stop's poll chain holds its guard this long past its last poll; then it may restart."""
ACK_TO_LOCAL: dict[str, OrderStatus] = {
    "working": "working",
    "cancelled": "cancelled",
    "rejected": "rejected",
    "unknown": "lost",
}
__all__ = ["is_move_id", "is_stop_id", "open_stop_rows", "parent_of", "stop_id"]


@dataclass(slots=True)
class StopOutcome:
    """What one sync did: ``placed`` the new stop's id (if one was written), ``cancelled``
    ids, ``resting`` the id of the stop resting now (if any)."""

    session_id: str
    placed: str | None = None
    cancelled: list[str] = field(default_factory=list)
    resting: str | None = None
    missing: str | None = None
    status: str = ""

    @property
    def changed(self) -> bool:
        return self.placed is not None or bool(self.cancelled)


def poll_guard_key(coid: str) -> str:
    return f"tf:stoppoll:{coid}"


def _data_now(fields: dict[str, str], hint: datetime | None) -> datetime:
    """The data time a stop is decided at: the later of ``hint`` (the fill's time) and the
    session's last processed tick; wall-clock now when neither is known."""
    times = [] if hint is None else [hint]
    last_ms = _last_ms(fields)
    if last_ms is not None and last_ms > 0:
        times.append(EPOCH_UTC + last_ms * MS_DELTA)
    return max(times) if times else datetime.now(UTC)


def _last_ms(fields: Mapping[str, str]) -> int | None:
    """The data time (epoch ms) of the session's last processed tick, if any."""
    raw = fields.get(PROGRESS_FIELD)
    return TickProgress.from_json(raw).last_ms if raw else None


def sync_stop(
    store: StateStore,
    engine: Engine,
    broker: AccountManager,
    session_id: str,
    account: str,
    as_of: datetime | None = None,
    *,
    verify: bool = False,
) -> StopOutcome:
    """Make the broker hold exactly the stop the session's position needs (see the module).

    ``as_of``: the data time of the fill that changed the position. ``verify``: also ask the
    broker whether the stop the session holds as working still rests there (reconciliation);
    one that does not (cancelled or lost behind the session's back) is ``missing`` and is
    replaced. A stop that filled while being cancelled stops the sync: its fill comes first.
    """
    outcome = StopOutcome(session_id)
    with store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        if exit_pending(lease.value("orders")):
            return outcome
        rows = open_stop_rows(engine, session_id, pending=lease.value("orders"))
        plan = plan_stop(lease.value("open_position"), rows)
        if (
            plan.keep is not None
            and verify
            and not _still_working(engine, store.client, broker, account, plan.keep)
        ):
            outcome.missing = plan.keep.client_order_id
            plan = replace(plan, keep=None)
        horizon = cancel_as_of(as_of, _last_ms(lease.fields), plan.keep)
        raced = False
        for row in plan.cancel:
            raced = (
                not _cancel(engine, store.client, broker, account, row, outcome, horizon) or raced
            )
        keep, wanted = plan.keep, plan.wanted
        if wanted is None or raced:
            return outcome
        if keep is None:
            decided = as_of or _data_now(dict(lease.fields), last_decided(engine, session_id))
            outcome.placed, status = _place_new(
                engine, store.client, broker, account, session_id, wanted, decided
            )
        elif keep.status == "new":
            assert keep.decided_at is not None
            order = _as_order(keep)
            status = _place(
                engine, store.client, broker, account, session_id, order, keep.decided_at
            )
            if status in ENDED_THERE and not works_in_data_time(broker):
                outcome.missing = keep.client_order_id
                decided = as_of or _data_now(dict(lease.fields), last_decided(engine, session_id))
                outcome.placed, status = _place_new(
                    engine, store.client, broker, account, session_id, wanted, decided
                )
                _record_replaced(engine, session_id, keep.client_order_id, outcome.placed)
        else:
            status = keep.status
        outcome.status = status
        if status == "working":
            outcome.resting = outcome.placed or (None if keep is None else keep.client_order_id)
    if outcome.resting is not None:
        start_polling(store.client, session_id, outcome.resting)
    return outcome


def move_in_place(
    store: StateStore,
    engine: Engine,
    broker: AccountManager,
    move_row: OrderRow,
    account: str,
) -> OrderAck | None:
    """A stop move at a broker that moves stops in place (``StopModifier``): the one stop
    resting before the move is modified to the move's price and goes by the move's id from
    then on, so a stop rests throughout (cancel-then-place leaves the position bare between
    the two). None when it cannot be done that way: not such a broker, not exactly one working
    stop of the move's contract, side and quantity before it, the move already decided by
    ``clear_for_exit``, or the broker refused; the move then goes out by cancel, then place.
    The stop having filled first drops the move, as ``clear_for_exit`` would. Under the
    session's lock; a repeated send finds the move at the broker and answers with it."""
    if not isinstance(broker, StopModifier) or move_row.stop_price is None:
        return None
    session_id, coid = move_row.session_id, move_row.client_order_id
    with store.locked(session_id, wait_s=LOCK_WAIT_S):
        existing = broker.order(QueryOrder(account, coid))
        if existing is not None:
            return OrderAck(coid, existing.broker_order_id, existing.status, duplicate=True)
        if store.client.get(clear_key(session_id, coid)) is not None:
            return None
        rows = open_stop_rows(engine, session_id, before=move_row.id)
        shape = (move_row.contract, move_row.side, move_row.quantity)
        if len(rows) != 1 or rows[0].status != "working":
            return None
        old = rows[0]
        if (old.contract, old.side, old.quantity) != shape:
            return None
        ack = broker.modify_stop(account, old.client_order_id, move_row.stop_price, coid)
        if ack.status == "working":
            update_order_row(engine, old.client_order_id, "cancelled", metrics=store.client)
            log.info(
                "session %s: stop %s moved in place as %s", session_id, old.client_order_id, coid
            )
            return ack
        if ack.status == "filled":
            store.client.set(clear_key(session_id, coid), "drop", ex=CLEAR_KEY_TTL_S)
            update_order_row(engine, coid, "cancelled", metrics=store.client)
            log.info("stop move %s dropped: its stop filled before it could move", coid)
            return OrderAck(coid, "", "cancelled")
        return None


def clear_for_exit(
    store: StateStore,
    engine: Engine,
    broker: AccountManager,
    exit_row: OrderRow,
    account: str,
) -> bool:
    """Before an exit (or a stop move) of the session is sent: cancel its protective stops
    decided before it, as of the exit's decision (data) time. False when the newest stop
    decided before it, the one protecting the position the exit closes, had filled before it
    (it closed that position: the exit must not be sent); an older one filling closed an
    earlier position, which the session had already taken as closed when it saw its stop
    touched. The newest is judged whatever its row says (an open row, or one whose fill was
    applied), so the answer does not depend on how far the account's fills have come back.

    Decided once, under the session's lock, and kept (``clear_key``): every other send of the
    same exit (a retry, or the send of a later order placing earlier ones first) gets the
    same answer; a dropped exit's row is also marked cancelled."""
    session_id, decided_at = exit_row.session_id, exit_row.decided_at
    if decided_at is None:
        return True
    outcome = StopOutcome(session_id)
    key = clear_key(session_id, exit_row.client_order_id)
    with store.locked(session_id, wait_s=LOCK_WAIT_S):
        decided = store.client.get(key)
        current = get_order_row(engine, exit_row.client_order_id)
        if decided is not None or (current is not None and current.status == "cancelled"):
            return decided == b"place"
        rows = open_stop_rows(engine, session_id, before=exit_row.id)
        still_open = {
            row.client_order_id: _cancel(
                engine, store.client, broker, account, row, outcome, decided_at
            )
            for row in rows
        }
        newest = newest_stop(engine, session_id, exit_row.id)
        closed = newest is not None and (
            newest.status == "filled" or still_open.get(newest.client_order_id) is False
        )
        store.client.set(key, "drop" if closed else "place", ex=CLEAR_KEY_TTL_S)
        if closed:
            update_order_row(engine, exit_row.client_order_id, "cancelled", metrics=store.client)
        return not closed


def clear_key(session_id: str, coid: str) -> str:
    """Where ``clear_for_exit`` keeps its answer for one exit (the session's hash tag)."""
    return f"tf:{{{session_id}}}:clear:{coid}"


def _as_order(row: OrderRow) -> WorkingOrder:
    side: Side = "sell" if row.side == "sell" else "buy"
    return WorkingOrder(
        client_order_id=row.client_order_id,
        contract=row.contract,
        side=side,
        quantity=row.quantity,
        order_type="stop",
        intent="exit",
        status="new",
        created_at=row.created_at,
        stop_price=None if row.stop_price is None else Decimal(row.stop_price),
    )


ENDED_THERE = frozenset({"cancelled", "unknown"})
"""What the broker may answer for a stop it had acknowledged and then ended unfilled (an OSO
bracket it never worked): the position is unprotected and gets a new stop at once."""


def _place_new(
    engine: Engine,
    metrics: redis.Redis,
    broker: AccountManager,
    account: str,
    session_id: str,
    wanted: WantedStop,
    decided: datetime,
) -> tuple[str, str]:
    """A new stop row ``<hex>-stop-<n>`` for ``wanted``, placed; its id and status."""
    coid = stop_id(session_id, stop_count(engine, session_id) + 1)
    order = WorkingOrder(
        client_order_id=coid,
        contract=wanted.contract,
        side=wanted.side,
        quantity=wanted.quantity,
        order_type="stop",
        intent="exit",
        status="new",
        created_at=datetime.now(UTC),
        stop_price=wanted.stop_price,
    )
    insert_order_if_absent(engine, session_id, order, decided, "gtc", metrics=metrics)
    return coid, _place(engine, metrics, broker, account, session_id, order, decided)


def _record_replaced(engine: Engine, session_id: str, lost: str, placed: str) -> None:
    message = (
        f"protective stop missing (stop {lost} was acknowledged but the broker does not work "
        f"it): placed {placed}"
    )
    log.warning("session %s: %s", session_id, message)
    details = {"missing": lost, "placed": placed}
    record_event(engine, session_id, "reconciliation", "warning", message, details)


def _place(
    engine: Engine,
    metrics: redis.Redis,
    broker: AccountManager,
    account: str,
    session_id: str,
    order: WorkingOrder,
    decided: datetime,
) -> str:
    ack = broker.place_order(
        PlaceOrder(
            account=account,
            session_id=session_id,
            client_order_id=order.client_order_id,
            contract=order.contract,
            side=order.side,
            quantity=order.quantity,
            order_type="stop",
            stop_price=order.stop_price,
            time_in_force="gtc",
            decided_at=decided,
            parent_client_order_id=parent_of(order.client_order_id),
        )
    )
    _record(engine, metrics, ack)
    log.info("session %s: protective stop %s is %s", session_id, ack.client_order_id, ack.status)
    return ack.status


def _cancel(
    engine: Engine,
    metrics: redis.Redis,
    broker: AccountManager,
    account: str,
    row: OrderRow,
    outcome: StopOutcome,
    as_of: datetime | None,
) -> bool:
    """Cancel one stop as of ``as_of`` (True); False when it filled before: its row stays open
    for its fill. A stop whose send has not run yet is placed first (as of its decision, an
    idempotent send by its id): in data time it has rested since then, and a touch before
    ``as_of`` fills it, whichever worker got there first."""
    if row.status == "new" and as_of is not None and row.decided_at is not None:
        _place(engine, metrics, broker, account, row.session_id, _as_order(row), row.decided_at)
    ack = broker.cancel_order(CancelOrder(account, row.client_order_id, as_of))
    if ack.status == "filled":
        log.warning("protective stop %s filled before it could be cancelled", row.client_order_id)
        return False
    _record(engine, metrics, ack)
    outcome.cancelled.append(row.client_order_id)
    return True


def _still_working(
    engine: Engine, metrics: redis.Redis, broker: AccountManager, account: str, row: OrderRow
) -> bool:
    """Whether the broker still works ``row``'s stop; a dead one takes the broker's status
    (a filled one stays open here: its fill is delivered like any fill)."""
    if row.status == "new":
        return True
    answer = broker.order(QueryOrder(account, row.client_order_id))
    status = "unknown" if answer is None else answer.status
    if status in {"working", "filled"}:
        return True
    update_order_row(engine, row.client_order_id, ACK_TO_LOCAL[status], metrics=metrics)
    return False


def _record(engine: Engine, metrics: redis.Redis, ack: OrderAck) -> None:
    local = ACK_TO_LOCAL.get(ack.status)
    if local is not None:
        broker_id = ack.broker_order_id or None
        update_order_row(engine, ack.client_order_id, local, broker_id, metrics=metrics)


def start_polling(client: redis.Redis, session_id: str, coid: str) -> bool:
    """Start the poll chain of a resting stop unless one holds its guard; True if started.
    The app routes the poll to the orders queue (``workers.dispatch.names.task_routes``)."""
    if not client.set(poll_guard_key(coid), "1", nx=True, ex=POLL_GUARD_TTL_S):
        return False
    current_app.send_task(
        names.ORDERS_POLL,
        args=[session_id, coid, 1],
        countdown=STOP_POLL_INTERVAL_S,
    )
    return True


def keep_polling(client: redis.Redis, coid: str) -> None:
    """A stop's poll chain is alive: hold its guard for another ``POLL_GUARD_TTL_S``."""
    client.set(poll_guard_key(coid), "1", ex=POLL_GUARD_TTL_S)
