"""The Celery application: JSON only, late acks, one queue per kind of work.

``create_app`` builds an app from a ``Settings``; the module attribute ``app`` (what
``celery -A workers.celery_app`` finds) is built from the environment on first access.
Building an app never connects anywhere: Celery opens broker and backend connections on first
use.
"""

from __future__ import annotations

import gc
from datetime import timedelta

from celery import Celery
from celery.signals import worker_init, worker_process_init
from kombu import Queue
from sqlalchemy.orm import configure_mappers

from workers.dispatch import names
from workers.settings import Settings, get_settings

APP_NAME = names.APP_NAME

TASK_MODULES: tuple[str, ...] = (
    "workers.tasks.health",
    "workers.tasks.ticks",
    "workers.tasks.orders",
    "workers.tasks.reconcile",
    "workers.tasks.recovery",
    "workers.tasks.rolls",
)

RESULT_EXPIRES = timedelta(hours=1)


def task_queues(settings: Settings) -> tuple[Queue, ...]:
    """The five queues, each bound to its own direct exchange with its name as routing key."""
    return tuple(Queue(name, routing_key=name) for name in settings.queues.names)


def beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    """Periodic work; each run expires before the next one is due, so backlogs never pile up."""
    sweep = settings.ticks.sweep_interval_s
    positions = settings.reconcile.positions_interval_s
    orders = settings.reconcile.orders_interval_s
    return {
        "sweep-ready-sessions": {
            "task": names.TICKS_SWEEP,
            "schedule": sweep,
            "options": {"expires": sweep, "queue": settings.queues.ticks},
        },
        "reconcile-positions": {
            "task": names.RECONCILE_FAN_OUT_POSITIONS,
            "schedule": positions,
            "options": {"expires": positions, "queue": settings.queues.reconcile},
        },
        "reconcile-orders": {
            "task": names.RECONCILE_FAN_OUT_ORDERS,
            "schedule": orders,
            "options": {"expires": orders, "queue": settings.queues.reconcile},
        },
        "sweep-rolls": {
            "task": names.ROLLS_SWEEP,
            "schedule": settings.rolls.sweep_interval_s,
            "options": {"expires": settings.rolls.sweep_interval_s, "queue": settings.queues.rolls},
        },
        "sweep-sends": {
            "task": names.ORDERS_SWEEP,
            "schedule": settings.orders.sweep_interval_s,
            "options": {
                "expires": settings.orders.sweep_interval_s,
                "queue": settings.queues.orders,
            },
        },
        "roll-check": {
            "task": names.ROLLS_CHECK,
            "schedule": settings.rolls.check_interval_s,
            "options": {"expires": settings.rolls.check_interval_s, "queue": settings.queues.rolls},
        },
    }


def create_app(settings: Settings | None = None) -> Celery:
    """A configured Celery app for ``settings`` (the process's settings when omitted)."""
    settings = settings if settings is not None else get_settings()
    app = Celery(
        APP_NAME,
        broker=settings.redis.url,
        backend=settings.redis.url,
        include=list(TASK_MODULES),
    )
    transport_options = {"visibility_timeout": settings.queues.visibility_timeout_s}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport_options,
        result_backend_transport_options=dict(transport_options),
        task_queues=task_queues(settings),
        task_default_queue=settings.queues.default,
        task_default_exchange=settings.queues.default,
        task_default_routing_key=settings.queues.default,
        task_routes=names.task_routes(settings.queues),
        task_create_missing_queues=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        enable_utc=True,
        timezone="UTC",
        result_expires=RESULT_EXPIRES,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule=beat_schedule(settings),
    )
    return app


@worker_init.connect
def _configure_orm(**_: object) -> None:
    """The ORM's mappers are configured once, in the worker's main process (its task modules
    imported) before its pool forks. Otherwise each pool process configures them at its first
    ORM query: 100-300 ms of CPU that a tick worker spent on the first order it decided."""
    configure_mappers()


@worker_process_init.connect
def _freeze_startup_objects(**_: object) -> None:
    """A pool process starts with everything its parent imported: those objects live as long
    as the process, so they are moved out of the collector's reach. Otherwise each full
    collection walks them all, which pauses a tick drainer for 50-90 ms every few seconds."""
    gc.freeze()


def __getattr__(name: str) -> Celery:
    """``app`` (what ``celery -A workers.celery_app`` finds), built from the environment on
    first access, so importing this module reads no settings and connects nowhere."""
    if name not in {"app", "celery"}:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = create_app()
    globals()["app"] = globals()["celery"] = built
    return built
