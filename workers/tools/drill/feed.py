"""The feed host's process (``tradefleet drill-feed SCENARIO [--fuzz SEED]``).

It publishes the scenario's contracts from the replay files to the fleet's Redis
(``TRADEFLEET_REDIS_URL``), merged in data time and paced at the scenario's speed, in batches
of consecutive entries of one contract, each under the feed's own numbering (``FeedSeq``). A
publish that fails because Redis cannot be reached is sent again, with the same numbering,
until it goes through: a batch whose reply was lost is then skipped by the stream, never
appended twice, and a feed cut off for a while loses nothing it read. With ``--fuzz SEED`` it
publishes the fuzzed plan of the same entries instead (``workers.tools.drill.fuzz``).
It ends with one line: how many entries it published.

The clean replay notices a Redis that lost its history (restarted empty): its batches are
published with the publisher's guard, so a batch numbered past the first that finds its
instrument's feed record gone appends nothing (``StreamLost``). The feed then waits until the
instrument's active sessions were rebuilt (their recovery subscribed them again, at their
snapshot's cursor) and publishes that instrument again, from the oldest of those cursors
(``workers.feeds.resume``), as fast as it can until it is back on pace; its numbering of the
instrument starts over. Its source keeps the history: the replay files.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import redis
from sqlalchemy import Engine

from trading.market import Tick
from workers.celery_app import create_app
from workers.connections import require_redis
from workers.db.engines import make_engine
from workers.feeds.replay import ReplayConfig, ReplaySource
from workers.feeds.resume import RESUME_WAIT_S, resume_ms
from workers.runtime import make_publisher
from workers.settings import Settings
from workers.ticks.publisher import RawTick, StreamLost, TickPublisher, encode_tick
from workers.tools.drill.fuzz import FeedBatch, fuzz_feed
from workers.tools.drill.scenario import Scenario

log = logging.getLogger(__name__)

BATCH = 200
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0

Resume = Callable[[str, Sequence[RawTick]], int]
"""The index in an instrument's entries to publish again from once its stream was lost."""


def scenario_ticks(scenario: Scenario, settings: Settings) -> Iterator[Tick]:
    """Every contract's ticks inside the scenario's window, merged in data time."""
    first, last = scenario.days
    sources = [
        ReplaySource(
            ReplayConfig(feed.product, feed.contract, first, last),
            settings.paths.market_data_dir,
        ).ticks()
        for feed in scenario.feeds
    ]
    for tick in heapq.merge(*sources, key=lambda t: t.time):
        if scenario.start <= tick.time < scenario.end:
            yield tick


def scenario_rows(scenario: Scenario, settings: Settings) -> dict[str, list[RawTick]]:
    """The scenario's stream entries per contract, in order (what the fuzz takes)."""
    rows: dict[str, list[RawTick]] = {feed.contract: [] for feed in scenario.feeds}
    for tick in scenario_ticks(scenario, settings):
        rows[tick.instrument].append(encode_tick(tick))
    return rows


def publish_paced(
    batches: Iterator[tuple[str, FeedBatch]] | tuple[tuple[str, FeedBatch], ...],
    publisher: TickPublisher,
    scenario: Scenario,
) -> int:
    """Publish each batch when its data time is due at the scenario's speed; how many
    entries went out."""
    started = time.monotonic()
    start_ms = int(scenario.start.timestamp() * 1000)
    latest = start_ms
    published = 0
    for instrument, batch in batches:
        latest = max(latest, _first_ms(batch.rows, scenario, latest))
        due = started + (latest - start_ms) / 1000 / scenario.speed
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # pacing: the batch is not due yet
        _publish(publisher, instrument, batch)
        published += len(batch.rows)
    return published


def _first_ms(rows: tuple[RawTick, ...], scenario: Scenario, fallback: int) -> int:
    """The first data time of a batch inside the scenario's window (a fuzzed row may have an
    unreadable or absurd one: it does not pace the feed)."""
    low, high = (int(t.timestamp() * 1000) for t in (scenario.start, scenario.end))
    for row in rows:
        if row[0].isdigit() and low <= int(row[0]) <= high:
            return int(row[0])
    return fallback


def publish_resuming(
    rows: Mapping[str, Sequence[RawTick]],
    publisher: TickPublisher,
    scenario: Scenario,
    resume: Resume,
) -> int:
    """Publish every instrument's entries merged in data time, in batches of consecutive
    entries of one instrument, each due at the scenario's speed; an instrument whose stream
    was lost is published again from ``resume``'s index (see the module). How many entries
    went out (those published again included)."""
    started = time.monotonic()
    start_ms = int(scenario.start.timestamp() * 1000)
    latest = start_ms
    published = 0
    heads = dict.fromkeys(rows, 0)
    while (chosen := _next_batch(rows, heads)) is not None:
        instrument, batch_rows = chosen
        latest = max(latest, int(batch_rows[0][0]))
        due = started + (latest - start_ms) / 1000 / scenario.speed
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # pacing: the batch is not due yet
        batch = FeedBatch(batch_rows, publisher.number(instrument, len(batch_rows)))
        try:
            _publish(publisher, instrument, batch, guard=True)
        except StreamLost as lost:
            for name in lost.instruments:
                heads[name] = resume(name, rows[name])
                publisher.restart_numbering(name)
                log.warning("%s: stream lost; published again from entry %d", name, heads[name])
            continue
        heads[instrument] += len(batch_rows)
        published += len(batch_rows)
    return published


def _next_batch(
    rows: Mapping[str, Sequence[RawTick]], heads: Mapping[str, int]
) -> tuple[str, tuple[RawTick, ...]] | None:
    """The next run of consecutive entries of one instrument in data-time order (at most
    ``BATCH``; on equal times the instrument named first goes first)."""
    pending = [(name, entries, heads[name]) for name, entries in rows.items()]
    pending = [(name, entries, at) for name, entries, at in pending if at < len(entries)]
    if not pending:
        return None
    name, entries, at = min(pending, key=lambda p: int(p[1][p[2]][0]))
    others = [int(e[a][0]) for n, e, a in pending if n != name]
    limit = min(others, default=None)
    end = at
    while end < len(entries) and end - at < BATCH:
        if limit is not None and int(entries[end][0]) > limit:
            break
        end += 1
    return name, tuple(entries[at:end])


def resume_from_sessions(
    engine: Engine, client: redis.Redis, wait_s: float = RESUME_WAIT_S
) -> Resume:
    """``Resume`` from the instrument's active sessions (``workers.feeds.resume``): the first
    entry at or after the data time to publish again from."""

    def resume(instrument: str, entries: Sequence[RawTick]) -> int:
        from_ms = resume_ms(engine, client, instrument, wait_s)
        return next((i for i, row in enumerate(entries) if int(row[0]) >= from_ms), len(entries))

    return resume


def _publish(
    publisher: TickPublisher, instrument: str, batch: FeedBatch, *, guard: bool = False
) -> None:
    pause = RETRY_FIRST_S
    while True:
        try:
            publisher.publish_raw(instrument, batch.rows, batch.at, guard=guard)
            return
        except (redis.ConnectionError, redis.TimeoutError):
            time.sleep(pause)  # Redis cannot be reached: the same batch again, later
            pause = min(RETRY_MAX_S, pause * 2)


def run_feed(scenario: Scenario, settings: Settings, fuzz_seed: int | None = None) -> str:
    """Publish the scenario (or, with ``fuzz_seed``, its fuzzed plan) to the fleet's Redis;
    the line that says how many entries went out."""
    client = require_redis(settings)
    publisher = make_publisher(client, settings, create_app(settings))
    started = time.monotonic()
    if fuzz_seed is None:
        engine = make_engine(settings.sqlalchemy_url)
        try:
            resume = resume_from_sessions(engine, client)
            rows = scenario_rows(scenario, settings)
            published = publish_resuming(rows, publisher, scenario, resume)
        finally:
            engine.dispose()
    else:
        plan = fuzz_feed(scenario_rows(scenario, settings), fuzz_seed)
        published = publish_paced(plan.batches, publisher, scenario)
    return f"published {published} entries in {time.monotonic() - started:.1f}s"
