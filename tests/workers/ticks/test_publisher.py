"""The publisher on a private Redis: publishing is idempotent per batch (a batch sent again,
as after a lost reply, appends nothing twice and is counted), two identical prints are two
entries, another feed starts its own count, a stream nobody reads wakes nothing, and a guarded
feed notices a stream that Redis lost."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.kit.metrics import counted
from workers.dispatch.sending import one_by_one
from workers.metrics.catalog import TICKS_REJECTED
from workers.ticks import pipelines, scripts
from workers.ticks.keys import (
    AWAKE_KEY,
    DRAINERS_KEY,
    READY_KEY,
    SLEEPERS_KEY,
    WAKE_KEY,
    stream_key,
    subscribers_key,
)
from workers.ticks.publisher import FeedSeq, RawTick, StreamLost, TickPublisher

pytestmark = pytest.mark.integration

T = 1_381_152_600_000
ES, UNKNOWN = "ESZ13", "QQZ99"


class Tasks:
    """Stands for the Celery app: records the drain tasks a publish starts."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send_task(self, name: str, args: list[Any], queue: str) -> None:
        self.sent.append((name, args))


def rows(first: int, n: int, price: str = "1676.25") -> list[RawTick]:
    return [(str(T + 1_000 * (first + k)), price, "1", "", "") for k in range(n)]


def publisher(client: redis.Redis, tasks: Tasks) -> TickPublisher:
    return TickPublisher(
        client,
        one_by_one(tasks.send_task),
        queue="ticks",
        max_drainers=2,
        stream_maxlen=100_000,
        drainer_grace_ms=60_000,
    )


def entries(client: redis.Redis, instrument: str = ES) -> list[tuple[str, str]]:
    raw = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(stream_key(instrument)))
    return [(v[b"t"].decode(), v[b"p"].decode()) for _, v in raw]


@pytest.fixture
def tasks() -> Tasks:
    return Tasks()


@pytest.fixture
def subscribed(redis_client: redis.Redis) -> redis.Redis:
    redis_client.sadd(subscribers_key(ES), "s-1")
    return redis_client


def test_a_batch_sent_again_appends_nothing_and_is_counted(
    subscribed: redis.Redis, tasks: Tasks
) -> None:
    pub = publisher(subscribed, tasks)
    batch = rows(0, 5)
    at = pub.number(ES, len(batch))
    first = pub.publish_raw(ES, batch, at)
    again = pub.publish_raw(ES, batch, at)
    assert (first.published, first.duplicates) == (5, 0)
    assert (again.published, again.duplicates, again.sessions_woken) == (0, 5, 0)
    following = rows(5, 3)
    overlapping = pub.publish_raw(ES, batch[3:] + following, FeedSeq(at.source, at.first + 3))
    assert (overlapping.published, overlapping.duplicates) == (3, 2)
    assert entries(subscribed) == [(t, p) for t, p, *_ in batch + following]
    assert counted(subscribed, TICKS_REJECTED) == {"duplicate": 7}


def test_identical_prints_are_two_entries_and_a_new_feed_counts_anew(
    subscribed: redis.Redis, tasks: Tasks
) -> None:
    """A vendor may send two identical prints in one millisecond: two numbers, both kept. A
    restarted feed (another name) numbering from 0 again is not taken for a repeat."""
    pub = publisher(subscribed, tasks)
    print_ = rows(0, 1)
    assert pub.publish_raw(ES, print_ * 2).published == 2
    assert pub.publish_raw(ES, print_).published == 1
    restarted = publisher(subscribed, tasks)
    assert restarted.source != pub.source
    assert restarted.publish_raw(ES, rows(1, 2), FeedSeq(restarted.source, 0)).published == 2
    assert len(entries(subscribed)) == 5
    assert counted(subscribed, TICKS_REJECTED) == {}


def test_a_publish_whose_reply_is_lost_and_resent_appends_once(
    redis_url: str, tasks: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's retry policy sends the script again when the reply is lost after Redis ran
    it (a timeout, a dropped connection): without the numbering, the batch went in twice and
    every session read its ticks twice."""
    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 2))
    client.sadd(subscribers_key(ES), "s-1")
    # In Redis' script cache, as after any first publish: the reply lost is then the script's
    # own. On a server that never ran it, the first reply is NOSCRIPT (nothing ran), and the
    # test would read the later load-and-run as the first publish.
    client.script_load(scripts.PUBLISH)
    real = pipelines._send_and_read
    lost: list[int] = []

    def reply_lost_once(conn: Any, commands: Any) -> list[Any]:
        replies = real(conn, commands)
        if not lost:
            lost.append(len(replies))
            raise redis.ConnectionError("reply lost")
        return replies

    monkeypatch.setattr(pipelines, "_send_and_read", reply_lost_once)
    result = publisher(client, tasks).publish_raw(ES, rows(0, 4))
    client.close()
    check = redis.Redis.from_url(redis_url)
    assert lost == [1], "the script ran and its reply was lost once"
    assert (result.published, result.duplicates) == (0, 4), "the resent call found them all"
    assert len(entries(check)) == 4
    check.close()


def test_a_stream_nobody_reads_wakes_nothing_and_is_counted(
    redis_client: redis.Redis, tasks: Tasks
) -> None:
    """Ticks of an unknown instrument go to their own stream and nowhere else: no session is
    made ready, no drain task starts (even with sessions due elsewhere), no subscriber set."""
    redis_client.zadd(READY_KEY, {"due-elsewhere": 1})
    result = publisher(redis_client, tasks).publish_raw(UNKNOWN, rows(0, 3))
    assert (result.published, result.unread, result.sessions_woken) == (3, 3, 0)
    assert result.drain_tasks_started == 0 and tasks.sent == []
    assert redis_client.exists(DRAINERS_KEY, WAKE_KEY, subscribers_key(UNKNOWN)) == 0
    assert redis_client.zrange(READY_KEY, 0, -1) == [b"due-elsewhere"]
    assert len(entries(redis_client, UNKNOWN)) == 3
    assert counted(redis_client, TICKS_REJECTED) == {"unknown_instrument": 3}


def test_a_subscribed_stream_still_wakes_its_sessions(
    subscribed: redis.Redis, tasks: Tasks
) -> None:
    result = publisher(subscribed, tasks).publish_many({ES: rows(0, 2), UNKNOWN: rows(0, 1)})
    assert (result.published, result.unread, result.sessions_woken) == (3, 1, 1)
    assert result.drain_tasks_started == 2 == len(tasks.sent)


def test_sessions_newly_ready_wake_one_sleeping_drainer_when_none_is_awake(
    redis_client: redis.Redis, tasks: Tasks
) -> None:
    """Idle drainers sleep on the wake list: a publish that makes sessions ready wakes one of
    them (which claims them all: one round for many sessions), none while a drainer is awake
    in a round (it claims them at the round's end), none for sessions ready already."""
    now_ms = int(time.time() * 1000)
    redis_client.sadd(subscribers_key(ES), "s-1", "s-2", "s-3")
    redis_client.zadd(DRAINERS_KEY, {"d-a": now_ms + 60_000, "d-b": now_ms + 60_000})
    redis_client.zadd(SLEEPERS_KEY, {"d-a": now_ms + 60_000, "d-b": now_ms + 60_000})
    feed = publisher(redis_client, tasks)
    assert feed.publish_raw(ES, rows(0, 1)).sessions_woken == 3
    assert tasks.sent == [] and redis_client.llen(WAKE_KEY) == 1, "one sleeper woken"
    assert 0 < redis_client.pttl(WAKE_KEY) <= 2_000, "a token nobody takes expires"
    redis_client.lpop(WAKE_KEY)
    assert feed.publish_raw(ES, rows(1, 1)).sessions_woken == 0
    assert redis_client.llen(WAKE_KEY) == 0, "sessions ready already: no token"
    redis_client.zadd(AWAKE_KEY, {"d-c": now_ms + 60_000})
    redis_client.zrem(READY_KEY, "s-1")
    assert feed.publish_raw(ES, rows(2, 3)).sessions_woken == 1
    assert redis_client.llen(WAKE_KEY) == 0, "a drainer in a round claims it"
    redis_client.zadd(AWAKE_KEY, {"d-c": now_ms - 1})
    redis_client.zrem(READY_KEY, "s-1")
    assert feed.publish_raw(ES, rows(5, 1)).sessions_woken == 1
    assert redis_client.llen(WAKE_KEY) == 1, "its awake time ran out (a long round, or dead)"


@pytest.mark.parametrize("t", ["1.5e12", "1e13", "253402300800000", "0x1F", " 12"])
def test_a_time_the_sessions_cannot_read_is_no_stream_ids_time(
    subscribed: redis.Redis, tasks: Tasks, t: str
) -> None:
    """Redis read ``1.5e12`` as a time (2017, past the replay) and made it the stream's id:
    every later tick of the replay then had a time before its id, and the paper broker, which
    skips such ticks, filled nothing after it."""
    before, after = rows(0, 1), rows(1, 1)
    publisher(subscribed, tasks).publish_raw(ES, [*before, (t, "1", "1", "", ""), *after])
    ids = cast(list[tuple[bytes, Any]], subscribed.xrange(stream_key(ES)))
    assert [entry_id.decode().split("-")[0] for entry_id, _ in ids] == [
        str(T),
        str(T),
        str(T + 1_000),
    ]


def test_a_guarded_batch_notices_a_stream_redis_lost(subscribed: redis.Redis, tasks: Tasks) -> None:
    """Redis restarted empty: the stream and the feed's record of it are gone. The feed's next
    batch (numbered past its first entry) appends nothing and names the instrument, so the
    feed publishes again what was lost; numbered from 0 again, it goes in. Unguarded, the
    batch is appended to the empty stream as before (nothing notices)."""
    pub = publisher(subscribed, tasks)
    assert pub.publish_raw(ES, rows(0, 3), guard=True).published == 3
    subscribed.flushall()
    subscribed.sadd(subscribers_key(ES), "s-1")
    with pytest.raises(StreamLost) as lost:
        pub.publish_raw(ES, rows(3, 2), guard=True)
    assert lost.value.instruments == (ES,)
    assert entries(subscribed) == []
    assert counted(subscribed, TICKS_REJECTED) == {}
    pub.restart_numbering(ES)
    again = pub.publish_raw(ES, rows(0, 5), guard=True)
    assert (again.published, again.duplicates) == (5, 0)
    assert entries(subscribed) == [(t, p) for t, p, *_ in rows(0, 5)]
    unguarded = publisher(subscribed, tasks)
    unguarded.publish_raw(ES, rows(5, 1))
    subscribed.flushall()
    assert unguarded.publish_raw(ES, rows(6, 1)).published == 1
