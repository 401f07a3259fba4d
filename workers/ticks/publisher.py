"""Publishing ticks: one capped stream per instrument, and waking the sessions it feeds.

One script call per batch (of any number of instruments) appends the ticks, marks every
subscribed session ready once (``ZADD NX``: however many ticks arrive) and names the drain
tasks to start, so that at most ``max_drainers`` drain tasks count as queued or running (a
dead one stops counting after its grace time).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from celery import Celery

from trading.market import Tick
from workers.dispatch import names
from workers.ticks import scripts
from workers.ticks.keys import DRAINERS_KEY, READY_KEY, stream_key, subscribers_key
from workers.ticks.pipelines import Batch

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CALL_TICKS = 1_000
"""``publish_many`` starts a new script call once one holds this many ticks."""
RawTick = tuple[str, str, str, str, str]
"""A stream entry as published: (t epoch ms, price, size, bid or '', ask or '')."""


def epoch_ms(tick: Tick) -> int:
    """The tick's data time in whole epoch milliseconds (exact, no float)."""
    delta = tick.time - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def encode_tick(tick: Tick) -> RawTick:
    return (
        str(epoch_ms(tick)),
        str(tick.price),
        str(tick.size),
        "" if tick.bid is None else str(tick.bid),
        "" if tick.ask is None else str(tick.ask),
    )


@dataclass(frozen=True, slots=True)
class PublishResult:
    published: int
    sessions_woken: int
    drain_tasks_started: int


class TickPublisher:
    """Appends ticks to an instrument's stream and wakes its sessions."""

    def __init__(
        self,
        client: redis.Redis,
        app: Celery,
        *,
        queue: str,
        max_drainers: int,
        stream_maxlen: int,
        drainer_grace_ms: int,
    ) -> None:
        self._client = client
        self._app = app
        self._queue = queue
        self._max_drainers = max_drainers
        self._maxlen = stream_maxlen
        self._grace_ms = drainer_grace_ms
        self._publish = client.register_script(scripts.PUBLISH)
        self._wake = client.register_script(scripts.WAKE)

    @property
    def client(self) -> redis.Redis:
        return self._client

    def publish(self, instrument: str, ticks: Iterable[Tick]) -> PublishResult:
        return self.publish_raw(instrument, [encode_tick(t) for t in ticks])

    def publish_raw(self, instrument: str, rows: Sequence[RawTick]) -> PublishResult:
        """Publish stream entries as given (consumers validate them; a bad one is counted)."""
        return self.publish_many({instrument: rows})

    def publish_many(self, batches: Mapping[str, Sequence[RawTick]]) -> PublishResult:
        """``publish_raw`` for several instruments in one round trip: one script call per
        ``CALL_TICKS`` ticks or so (a long script would hold up every other client)."""
        calls: list[tuple[list[str], list[str | int]]] = []
        keys: list[str] = []
        args: list[str | int] = []
        now = _now_ms()
        published = size = 0
        for instrument, rows in batches.items():
            if not rows:
                continue
            if not keys or size >= CALL_TICKS:
                keys = [READY_KEY, DRAINERS_KEY]
                args = [self._maxlen, now, self._max_drainers, self._grace_ms]
                calls.append((keys, args))
                size = 0
            published += len(rows)
            size += len(rows)
            keys += [stream_key(instrument), subscribers_key(instrument)]
            args.append(len(rows))
            for row in rows:
                args.extend(row)
        if not calls:
            return PublishResult(0, 0, 0)
        batch = Batch(self._client)
        for call_keys, call_args in calls:
            batch.script(self._publish, call_keys, call_args)
        replies = batch.execute([self._publish])
        newly = started = 0
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
            woken, drainer_ids = reply
            newly += int(woken)
            started += len(drainer_ids)
            self._start_drainers(drainer_ids)
        return PublishResult(published, newly, started)

    def wake(self) -> int:
        """Start drain tasks for due sessions nobody is draining (after a worker died)."""
        drainer_ids = self._wake(
            keys=[READY_KEY, DRAINERS_KEY], args=[_now_ms(), self._max_drainers, self._grace_ms]
        )
        self._start_drainers(drainer_ids)
        return len(drainer_ids)

    def _start_drainers(self, drainer_ids: Sequence[bytes | str]) -> None:
        for raw in drainer_ids:
            drainer_id = raw.decode() if isinstance(raw, bytes) else raw
            self._app.send_task(names.TICKS_DRAIN, args=[drainer_id], queue=self._queue)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
