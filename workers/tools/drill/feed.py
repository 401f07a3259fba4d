"""The feed host's process: ``python -m workers.tools.drill.feed SCENARIO [--fuzz SEED]``.

It publishes the scenario's contracts from the replay files, merged in data time and paced at
the scenario's speed, to the fleet's Redis (``TRADEFLEET_REDIS_URL``), as ``tradefleet feed``
does with one contract. A publish that fails because Redis cannot be reached is retried with a
growing pause until it goes through (a feed host whose link is down keeps its place in its
source; nothing it read is dropped). It prints one line when it is done: how many ticks.
"""

from __future__ import annotations

import argparse
import heapq
import sys
from collections.abc import Iterator

from trading.exceptions import BadInput
from trading.market import Tick
from workers.celery_app import create_app
from workers.connections import require_redis
from workers.feeds.replay import ReplayConfig, ReplaySource
from workers.feeds.runner import run_feed
from workers.runtime import make_publisher
from workers.settings import Settings, get_settings
from workers.tools.drill.scenario import Scenario, scenario_named


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drill-feed")
    parser.add_argument("scenario")
    args = parser.parse_args(argv)
    try:
        scenario = scenario_named(args.scenario)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = get_settings()
    client = require_redis(settings)
    publisher = make_publisher(client, settings, create_app(settings))
    report = run_feed(scenario_ticks(scenario, settings), publisher, scenario.speed)
    print(f"published {report.published} ticks in {report.seconds:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
