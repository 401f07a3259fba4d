"""The feed host's process (``tradefleet drill-feed SCENARIO [--fuzz SEED]``).

It publishes the scenario's contracts from the replay files to the fleet's Redis
(``TRADEFLEET_REDIS_URL``), merged in data time and paced at the scenario's speed, in batches
of consecutive entries of one contract, each under the feed's own numbering (``FeedSeq``). A
publish that fails because Redis cannot be reached is sent again, with the same numbering,
until it goes through: a batch whose reply was lost is then skipped by the stream, never
appended twice, and a feed cut off for a while loses nothing it read. With ``--fuzz SEED`` it
publishes the fuzzed plan of the same entries instead (``workers.tools.drill.fuzz``).
It ends with one line: how many entries it published.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator

import redis

from trading.market import Tick
from workers.celery_app import create_app
from workers.connections import require_redis
from workers.feeds.replay import ReplayConfig, ReplaySource
from workers.runtime import make_publisher
from workers.settings import Settings
from workers.ticks.publisher import RawTick, TickPublisher, encode_tick
from workers.tools.drill.fuzz import FeedBatch, fuzz_feed
from workers.tools.drill.scenario import Scenario

BATCH = 200
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0


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


def clean_batches(
    scenario: Scenario, settings: Settings, publisher: TickPublisher
) -> Iterator[tuple[str, FeedBatch]]:
    """Runs of consecutive entries of one contract (at most ``BATCH``), each numbered."""
    instrument, rows = "", list[RawTick]()
    for tick in scenario_ticks(scenario, settings):
        if rows and (tick.instrument != instrument or len(rows) >= BATCH):
            yield instrument, FeedBatch(tuple(rows), publisher.number(instrument, len(rows)))
            rows = []
        instrument = tick.instrument
        rows.append(encode_tick(tick))
    if rows:
        yield instrument, FeedBatch(tuple(rows), publisher.number(instrument, len(rows)))


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


def _publish(publisher: TickPublisher, instrument: str, batch: FeedBatch) -> None:
    pause = RETRY_FIRST_S
    while True:
        try:
            publisher.publish_raw(instrument, batch.rows, batch.at)
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
        published = publish_paced(clean_batches(scenario, settings, publisher), publisher, scenario)
    else:
        plan = fuzz_feed(scenario_rows(scenario, settings), fuzz_seed)
        published = publish_paced(plan.batches, publisher, scenario)
    return f"published {published} entries in {time.monotonic() - started:.1f}s"
