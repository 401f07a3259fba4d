"""The steps of a roll (``trading.rolls.STEPS``), each idempotent, each taking the roll's id.

``run_step(rt, roll_id, step, runner)`` is what a roll task runs (``runner``: its task id). It
reads the roll's row and answers:

- ``STALE``: the roll is not running (aborted, failed, waiting for the operator) or its row
  says an earlier step has not finished, or another task holds the claim of this await step
  (``workers.rolls.wake``): this copy of the chain stops;
- ``SKIPPED``: the row says this step already finished (a redelivered task): the chain goes on;
- ``WAIT``: an await step's order is still working: the task retries later (bounded);
- ``DONE``: the step did its work and recorded it (the row's step moved on).

A step is recorded done by one task only: the chain's task while its chain still carries the
roll (``workers.rolls.carrier``), and the one whose record moves the row
(``roll_rows.advance``); a copy that finds the row moved by another answers ``STALE``.

An await step may run in two tasks at once, the chain's and a wake's (sent when the fill of its
order is applied): only the one holding the step's claim records it done or, finding it done,
goes on; so the rest of the chain runs once.

Every order-touching step first asks the broker (the roll's two orders by their deterministic
client order ids, and the account's positions in both contracts) and acts on
``trading.rolls.decide``: it sends its order only when the broker has none and the positions
are exactly where the plan says they should be, so a step re-run after a crash at any point
never sends a second close or open. Where the answers contradict the plan, the roll stops
(``needs_operator``), the session stops trading, an event says why.

The order row is written before the order is sent, and the order is among the session's working
copies before it can fill (``workers.orders.fills`` applies a fill only to an order its session
holds). Orders are sent through ``workers.orders.send.send_order`` (the session's own broker).
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from typing import Any

from models.state import OpenPosition, WorkingOrder
from models.tables import RollRow, TradingSessionRow
from trading.exceptions import RetryLater, UnknownSession
from trading.rolls import (
    DONE,
    ORDER_STEPS,
    STEPS,
    Action,
    Assessment,
    OrderFact,
    RollPlan,
    assess,
    decide,
    next_step,
)
from workers.brokers.base import AccountManager
from workers.brokers.commands import QueryOrder, QueryPositions
from workers.db import roll_rows
from workers.db.order_rows import fill_time, insert_order_if_absent
from workers.db.session_rows import get_session_row
from workers.orders.fills import LOCK_WAIT_S, deliver_fills
from workers.orders.send import poll_order, send_order, session_broker
from workers.rolls import marks
from workers.rolls.carrier import Carrier
from workers.rolls.marks import RollMeta, RollNeedsOperator, meta_of
from workers.rolls.switch import end_roll, switch_contract
from workers.rolls.wake import take_claim
from workers.runtime import Runtime
from workers.settings import get_diagnostics
from workers.stops.sync import sync_stop

log = logging.getLogger(__name__)

PAUSED_KEY = "tf:test:roll-paused:{roll_id}"
"""TEST ONLY: set when a step pauses at ``TRADEFLEET_ROLL_TEST_PAUSE_AT`` (see ``_test_pause``)."""


class Outcome(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"
    WAIT = "wait"
    STALE = "stale"


def plan_of(row: RollRow) -> RollPlan:
    return RollPlan(row.id, row.session_id, row.from_contract, row.to_contract, row.quantity)


def run_step(
    rt: Runtime, roll_id: int, step: str, runner: str, carrier: Carrier | None = None
) -> Outcome:
    """Run one step of roll ``roll_id`` in task ``runner`` (see the module); a chain's task
    records the step done only while its ``carrier`` still holds the roll's lease."""
    row = roll_rows.require_roll(rt.engine, roll_id)
    if row.status != "running":
        log.info("roll %s is %s: step %s not run", roll_id, row.status, step)
        return Outcome.STALE
    if row.step == DONE or STEPS.index(row.step) > STEPS.index(step):
        return Outcome.SKIPPED if _goes_on(rt, roll_id, step, runner) else Outcome.STALE
    if row.step != step:
        log.warning("roll %s is at step %s: a chain copy at %s stops", roll_id, row.step, step)
        return Outcome.STALE
    session = get_session_row(rt.engine, row.session_id)
    if session is None:
        raise UnknownSession(row.session_id)
    if step == "begin":
        begin(rt, row, session)
    elif step in ORDER_STEPS and row.quantity != 0:
        if _order_step(rt, row, session, step) is Outcome.WAIT:
            return Outcome.WAIT
    elif step == "switch":
        switch_contract(rt, roll_rows.require_roll(rt.engine, roll_id), session)
    elif step == "end":
        end_roll(rt, row)
        _protect_rolled(rt, row, session)
    if not _goes_on(rt, roll_id, step, runner):
        return Outcome.STALE
    _test_pause(rt, roll_id, step)
    if carrier is not None and not carrier.holds():
        log.warning("roll %s: another chain carries the roll; this copy stops at %s", roll_id, step)
        return Outcome.STALE
    after = next_step(step)
    if not roll_rows.advance(rt.engine, roll_id, step, after, metrics=rt.redis):  # type: ignore[arg-type]
        log.warning("roll %s: %s was recorded done by another task; this copy stops", roll_id, step)
        return Outcome.STALE
    if after != DONE:
        marks.mark_step(rt, row.session_id, roll_id, after)
    return Outcome.DONE


def _goes_on(rt: Runtime, roll_id: int, step: str, runner: str) -> bool:
    """Whether task ``runner`` may go past ``step``: an await step only with its claim."""
    if take_claim(rt.redis, roll_id, step, runner):
        return True
    log.info("roll %s: another task holds %s and goes on; task %s stops", roll_id, step, runner)
    return False


# ------------------------------------------------------------------ begin


def begin(rt: Runtime, row: RollRow, session: TradingSessionRow) -> None:
    """The strategy stops (``rolling`` true); the quantity to roll is fixed once the session has
    no order of its own in flight, and checked against the broker."""
    with rt.store.locked(row.session_id, wait_s=LOCK_WAIT_S) as lease:
        contract = lease.value("session").contract
        position: OpenPosition | None = lease.value("open_position")
        orders: dict[str, WorkingOrder] = lease.value("orders")
        if contract == row.from_contract and (
            meta_of(lease).roll_id != row.id or not lease.value("rolling")
        ):
            stop = None if position is None else position.stop_price
            marks.write(rt, lease, {"rolling": True}, RollMeta(row.id, "begin", stop_price=stop))
    if contract != row.from_contract:
        _stop(rt, row, f"the session trades {contract}, not {row.from_contract}")
    in_flight = [coid for coid in orders if not coid.startswith(f"roll-{row.id}-")]
    if in_flight:
        raise RetryLater(f"roll {row.id} waits for {len(in_flight)} order(s) in flight")
    quantity = 0
    if position is not None and position.quantity != 0:
        if position.contract != row.from_contract:
            _stop(rt, row, f"the session holds {position.quantity} {position.contract}")
        quantity = position.quantity
    plan = RollPlan(row.id, row.session_id, row.from_contract, row.to_contract, quantity)
    roll_rows.update_roll(
        rt.engine,
        row.id,
        quantity=quantity,
        close_client_order_id=plan.close_id if quantity else None,
        open_client_order_id=plan.open_id if quantity else None,
    )
    broker = session_broker(rt, session)
    _act(rt, row, "begin", _assess(broker, session.account, plan))
    marks.event(
        rt,
        row.session_id,
        "info",
        f"roll {row.id} began: {quantity} {row.from_contract} -> {row.to_contract}",
        {"roll_id": row.id, "quantity": quantity},
    )


# ------------------------------------------------------------------ orders


def _order_step(rt: Runtime, row: RollRow, session: TradingSessionRow, step: str) -> Outcome:
    plan = plan_of(row)
    broker = session_broker(rt, session)
    order_id = plan.close_id if step in {"close", "await_close"} else plan.open_id
    if step.startswith("await"):
        poll_order(rt, row.session_id, order_id)
        deliver_fills(
            rt.redis,
            rt.store,
            rt.engine,
            broker,
            session.account,
            rt.settings.risk,
            rt.settings.stops,
        )
    assessment = _assess(broker, session.account, plan)
    action = _act(rt, row, step, assessment)
    if action is Action.WAIT:
        return Outcome.WAIT
    if action is Action.SEND:
        _send(rt, row, plan, step)
        return Outcome.DONE
    if step == "await_close":
        roll_rows.record_prices(rt.engine, row.id, assessment.close_price, None)
        if not _session_holds(rt, plan, plan.from_contract, 0):
            return Outcome.WAIT
    elif step == "await_open":
        roll_rows.record_prices(rt.engine, row.id, assessment.close_price, assessment.open_price)
        if not _session_holds(rt, plan, plan.to_contract, plan.quantity):
            return Outcome.WAIT
    return Outcome.DONE


def _assess(broker: AccountManager, account: str, plan: RollPlan) -> Assessment:
    return assess(
        plan,
        _fact(broker, account, plan.close_id),
        _fact(broker, account, plan.open_id),
        broker.positions(QueryPositions(account)),
    )


def _fact(broker: AccountManager, account: str, client_order_id: str) -> OrderFact | None:
    order = broker.order(QueryOrder(account, client_order_id))
    if order is None:
        return None
    return OrderFact(order.status, order.quantity, order.filled_quantity, order.average_fill_price)


def _act(rt: Runtime, row: RollRow, step: str, assessment: Assessment) -> Action:
    decision = decide(step, assessment)
    if decision.action is Action.STOP:
        _stop(rt, row, decision.reason)
    return decision.action


def _send(rt: Runtime, row: RollRow, plan: RollPlan, step: str) -> None:
    """Write the order row, put the working copy in the session, then send (in that order)."""
    closing = step == "close"
    order = WorkingOrder(
        client_order_id=plan.close_id if closing else plan.open_id,
        contract=plan.from_contract if closing else plan.to_contract,
        side=plan.close_side if closing else plan.open_side,
        quantity=abs(plan.quantity),
        order_type="market",
        intent="exit" if closing else "roll",
        status="new",
        created_at=row.decided_at,
    )
    insert_order_if_absent(
        rt.engine, plan.session_id, order, row.decided_at, "day", metrics=rt.redis
    )
    extra: dict[str, Any] = {}
    if closing:
        extra = {"rolling_close_order_id": plan.close_id, "rolling_close_qty": plan.quantity}
    marks.add_working_order(rt, plan.session_id, order, extra)
    outcome = send_order(rt, plan.session_id, order.client_order_id)
    log.info("roll %s: %s %s sent (%s)", row.id, step, order.client_order_id, outcome.status)


def _protect_rolled(rt: Runtime, row: RollRow, session: TradingSessionRow) -> None:
    """The rolled position gets its protective stop (the old one, moved by the spread at the
    switch), resting from the open's fill; the roll's close cancelled the old contract's."""
    if not rt.settings.stops.protective or row.quantity == 0 or not row.open_client_order_id:
        return
    opened = fill_time(rt.engine, row.open_client_order_id)
    broker = session_broker(rt, session)
    sync_stop(rt.store, rt.engine, broker, row.session_id, session.account, opened)


def _session_holds(rt: Runtime, plan: RollPlan, contract: str, quantity: int) -> bool:
    """Whether the session's own copy shows the fill (``workers.orders.fills`` applied it)."""
    position = rt.store.load(plan.session_id).open_position
    held = 0 if position is None or position.contract != contract else position.quantity
    return held == quantity


def _stop(rt: Runtime, row: RollRow, reason: str) -> None:
    """The roll waits for the operator: status ``needs_operator``, the session stops trading,
    an event; raises ``RollNeedsOperator`` (the chain stops)."""
    roll_rows.set_status(rt.engine, row.id, "needs_operator", reason, metrics=rt.redis)
    marks.stop_trading(rt, row.session_id, row.id)
    marks.event(
        rt,
        row.session_id,
        "critical",
        f"roll {row.id} needs the operator: {reason}",
        {"roll_id": row.id, "step": row.step},
    )
    raise RollNeedsOperator(f"roll {row.id}: {reason}")


def _test_pause(rt: Runtime, roll_id: int, step: str) -> None:
    """TEST ONLY, off unless ``TRADEFLEET_ROLL_TEST_PAUSE_AT`` names ``step``: the step has done
    its work (an await step: and taken its claim) but not recorded itself done; it says so in
    Redis and hangs, so that a crash test can SIGKILL the worker exactly here."""
    if get_diagnostics().roll_test_pause_at != step:
        return
    rt.redis.set(PAUSED_KEY.format(roll_id=roll_id), f"{step}:{time.time():.3f}")
    log.warning("roll %s: TEST pause at step %s", roll_id, step)
    while True:
        time.sleep(3600)
