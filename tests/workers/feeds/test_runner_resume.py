"""The general feed runner publishes a stream again after Redis lost it (restarted empty), from
the point its sessions resume at, with the ids the entries had: against a real Redis."""

from __future__ import annotations

from typing import Any, cast

import redis

from tests.kit.publishing import publisher_without_workers
from tests.kit.redis import paper_url
from workers.feeds.runner import FeedAgain, run_feed
from workers.feeds.synthetic import SyntheticConfig, SyntheticSource
from workers.ticks.keys import stream_key, subscribers_key

ES, NQ = "ESZ26", "NQZ26"
TICKS = 600
BATCH = 20


def _source() -> SyntheticSource:
    return SyntheticSource(SyntheticConfig(instruments=(ES, NQ), seed=7, count=TICKS))


def _entries(client: redis.Redis, instrument: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(stream_key(instrument)))


def _subscribe(client: redis.Redis) -> None:
    for instrument in (ES, NQ):
        client.sadd(subscribers_key(instrument), f"s-{instrument}")


def test_a_lost_stream_is_published_again_from_its_sessions_point(redis_url: str) -> None:
    reference = redis.Redis.from_url(paper_url(redis_url))  # another database, same server
    _subscribe(reference)
    run_feed(_source().ticks(), publisher_without_workers(reference), None, batch=BATCH)
    expected_all = {i: _entries(reference, i) for i in (ES, NQ)}
    assert sum(len(entries) for entries in expected_all.values()) == TICKS
    assert min(len(entries) for entries in expected_all.values()) > 200

    client = redis.Redis.from_url(redis_url)
    _subscribe(client)
    points = {ES: int(expected_all[ES][100][1][b"t"]), NQ: int(expected_all[NQ][120][1][b"t"])}
    asked: list[str] = []
    flushed: list[int] = []

    def lose_redis_once(published: int) -> None:
        if not flushed and published >= 300:
            client.flushall()  # Redis restarted empty: streams and feed records gone
            flushed.append(published)

    def from_ms(instrument: str) -> int:
        asked.append(instrument)
        _subscribe(client)  # the sessions' recovery subscribed them again
        return points[instrument]

    again = FeedAgain(reread=lambda: _source().ticks(), from_ms=from_ms)
    report = run_feed(
        _source().ticks(),
        publisher_without_workers(client),
        None,
        batch=BATCH,
        on_progress=lose_redis_once,
        again=again,
    )

    assert flushed and sorted(asked) == [ES, NQ], "each stream was found lost once"
    assert report.lost == 2
    for instrument in (ES, NQ):
        want = [e for e in expected_all[instrument] if int(e[1][b"t"]) >= points[instrument]]
        got = _entries(client, instrument)
        assert got == want, f"{instrument}: from its point on, each entry once, same ids"
    reference.close()
    client.close()


def test_a_feed_without_a_way_back_publishes_on_without_the_lost_entries(redis_url: str) -> None:
    """Without ``FeedAgain`` (a source that cannot be read again) the runner publishes
    unguarded: after a flush mid-run the streams hold only the entries published since."""
    client = redis.Redis.from_url(redis_url)
    _subscribe(client)
    done: list[Any] = []

    def flush_once(published: int) -> None:
        if not done and published >= 300:
            client.flushall()
            done.append(published)

    publisher = publisher_without_workers(client)
    report = run_feed(_source().ticks(), publisher, None, batch=BATCH, on_progress=flush_once)
    assert report.published == TICKS and report.lost == 0
    assert sum(len(_entries(client, i)) for i in (ES, NQ)) == TICKS - done[0]
    client.close()
