"""The SQL rows of a drain round: its order rows and events are written before the fenced
state writes (``write_decisions``), its strategy snapshots after them (``save_round_snapshots``).

A retry of a round decides the same orders with the same client ids and derives the same events
with the same keys (``workers.ticks.events``): the rows are found, and none is written twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from workers.db.event_rows import record_events_once
from workers.db.order_rows import OrderToWrite, insert_orders_if_absent
from workers.ticks.events import step_events
from workers.ticks.snapshots import StrategySnapshot, save_snapshots
from workers.ticks.step import NewOrder, StepResult

log = logging.getLogger(__name__)

StepDecisions = tuple[str, str, StepResult]
"""One step's session id, the cursor it began at, and what it decided."""


def write_decisions(engine: Engine, steps: Sequence[StepDecisions]) -> tuple[list[NewOrder], int]:
    """The order rows of the steps (one transaction), then their events (once each); returns
    the orders to send and how many rows were new (a re-run finds them written). Raises if
    the rows could not be written: then nothing may be sent."""
    orders = [new for _, _, result in steps for new in result.new_orders]
    rows = [OrderToWrite(o.session_id, o.order, o.decided_at, o.time_in_force) for o in orders]
    created = insert_orders_if_absent(engine, rows)
    events = [
        row
        for session_id, cursor_before, result in steps
        for row in step_events(session_id, cursor_before, result.events)
    ]
    record_events_once(engine, events)
    return orders, created


def save_round_snapshots(engine: Engine, snapshots: Sequence[StrategySnapshot]) -> None:
    """One upsert per round, once its writes were accepted; a failure is logged: the next step
    that closes a candle snapshots again."""
    try:
        save_snapshots(engine, snapshots)
    except Exception:
        log.exception("strategy snapshots of %s sessions not saved", len(snapshots))
