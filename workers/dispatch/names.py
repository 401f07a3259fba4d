"""Every task's name, and the queue each runs on (DESIGN.md, "Queues and processes").

Tasks are declared with these names (``workers.tasks``) and sent by them; no other module spells
a task name. A name is ``tradefleet.<kind>.<action>``, and its kind chooses its queue
(``queue_of``, and the app's routes, ``task_routes``), so that slow work never delays ticks.
The queues' own names are settings (``workers.settings.QueueSettings``).
"""

from __future__ import annotations

from typing import Final

from workers.settings import QueueSettings

APP_NAME: Final = "tradefleet"
"""The Celery app's name (``workers.celery_app``), by which a process tells it has ours."""
PREFIX: Final = "tradefleet"

HEALTH_PING: Final = "tradefleet.health.ping"
TICKS_DRAIN: Final = "tradefleet.ticks.drain"
TICKS_SWEEP: Final = "tradefleet.ticks.sweep"
ORDERS_SEND: Final = "tradefleet.orders.send"
ORDERS_SEND_BATCH: Final = "tradefleet.orders.send_batch"
ORDERS_POLL: Final = "tradefleet.orders.poll"
ORDERS_DELIVER: Final = "tradefleet.orders.deliver"
ORDERS_SWEEP: Final = "tradefleet.orders.sweep"
RECONCILE_POSITIONS: Final = "tradefleet.reconcile.positions"
RECONCILE_ORDERS: Final = "tradefleet.reconcile.orders"
RECONCILE_FAN_OUT_POSITIONS: Final = "tradefleet.reconcile.fan_out_positions"
RECONCILE_FAN_OUT_ORDERS: Final = "tradefleet.reconcile.fan_out_orders"
RECOVER: Final = "tradefleet.reconcile.recover"
ROLLS_CHECK: Final = "tradefleet.rolls.check"
ROLLS_FAILED: Final = "tradefleet.rolls.failed"
ROLLS_WAKE: Final = "tradefleet.rolls.wake"
ROLLS_SWEEP: Final = "tradefleet.rolls.sweep"
ROLL_STEP_PREFIX: Final = "tradefleet.rolls."


def roll_step(step: str) -> str:
    """The task of one step of a roll, ``tradefleet.rolls.<step>`` (steps: ``trading.rolls``)."""
    return ROLL_STEP_PREFIX + step


KINDS: Final = ("ticks", "orders", "reconcile", "rolls")
"""The kinds of work with a queue of their own; every other task runs on the default queue."""


def queue_of(task: str, queues: QueueSettings) -> str:
    """The queue ``task`` runs on: its kind's, or the default queue."""
    parts = task.split(".")
    kind = parts[1] if len(parts) > 2 and parts[0] == PREFIX and parts[1] in KINDS else "default"
    return str(getattr(queues, kind))


def task_routes(queues: QueueSettings) -> dict[str, dict[str, str]]:
    """The app's routes: ``tradefleet.<kind>.*`` goes to its kind's queue."""
    return {f"{PREFIX}.{kind}.*": {"queue": str(getattr(queues, kind))} for kind in KINDS}
