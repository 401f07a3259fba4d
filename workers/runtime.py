"""What a worker process holds: its Redis client, its database engine, its brokers.

Made on first use in each process (never at import time) and dropped in a forked child, so a
prefork pool's children each open their own connections (Celery's guidance for DB engines).
"""

from __future__ import annotations

import json
import os
import threading
from functools import cached_property, partial
from typing import Any

import redis
from celery import Celery, current_app
from sqlalchemy.engine import Engine

from workers.brokers.base import AccountManager
from workers.brokers.registry import build_broker
from workers.connections import redis_client
from workers.db.engines import engine_for
from workers.dispatch.sending import send_many
from workers.settings import Diagnostics, Settings, get_diagnostics, get_settings
from workers.state.store import StateStore
from workers.ticks.drain import TickDrainer
from workers.ticks.publisher import TickPublisher


class Runtime:
    """Per-process resources for tasks, built lazily from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._brokers: dict[str, AccountManager] = {}
        self._lock = threading.Lock()

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(self.settings.redis.url)

    @cached_property
    def engine(self) -> Engine:
        return engine_for(self.settings.sqlalchemy_url)

    @cached_property
    def store(self) -> StateStore:
        return StateStore(
            self.redis, self.settings.state.lock_ttl_ms, max_candles=self.settings.state.max_candles
        )

    @cached_property
    def diagnostics(self) -> Diagnostics:
        """The benchmark's and the tests' switches (all off in a deployment)."""
        return get_diagnostics()

    @cached_property
    def drainer(self) -> TickDrainer:
        app = current_app
        return TickDrainer(
            self.redis, self.engine, self.settings, app.send_task, partial(send_many, app)
        )

    @cached_property
    def publisher(self) -> TickPublisher:
        return make_publisher(self.redis, self.settings, current_app)

    def broker(self, name: str, args: dict[str, Any]) -> AccountManager:
        """The registered broker ``name`` with ``args`` (one instance per distinct pair)."""
        key = json.dumps([name, args], sort_keys=True)
        with self._lock:
            broker = self._brokers.get(key)
            if broker is None:
                broker = self._brokers[key] = build_broker(name, args, self.settings)
            return broker


def make_publisher(client: redis.Redis, settings: Settings, app: Celery) -> TickPublisher:
    return TickPublisher(
        client,
        partial(send_many, app),
        queue=settings.queues.ticks,
        max_drainers=settings.ticks.max_drainers,
        stream_maxlen=settings.ticks.stream_maxlen,
        drainer_grace_ms=settings.ticks.drainer_grace_ms,
    )


_current: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime (built on first use)."""
    global _current  # noqa: PLW0603
    if _current is None:
        _current = Runtime(get_settings())
    return _current


def _forget_in_child() -> None:
    global _current  # noqa: PLW0603
    _current = None


os.register_at_fork(after_in_child=_forget_in_child)
