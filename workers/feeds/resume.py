"""Where a feed publishes an instrument again after Redis lost its stream (restarted empty).

The publisher notices the loss (``workers.ticks.publisher.StreamLost``: a batch numbered past
the first finds its instrument's feed record gone and appends nothing). The instrument's
active sessions are rebuilt by their recovery from SQL and the broker, which subscribes each
again at its strategy snapshot's cursor; the feed waits for that, then publishes the
instrument again from the oldest of those cursors (``workers.ticks.snapshots.resume_point``:
its whole millisecond, so the entries get the ids they had). The source keeps the history:
the replay files, the generator's seed.
"""

from __future__ import annotations

import logging
import time
from typing import cast

import redis
from sqlalchemy import Engine

from workers.ticks.keys import subscribers_key
from workers.ticks.snapshots import resume_point

log = logging.getLogger(__name__)

RESUME_WAIT_S = 60.0
"""How long a feed that found a stream lost waits for the instrument's sessions to be rebuilt
before it publishes again all the same."""
RESUME_POLL_S = 0.2


def resume_ms(
    engine: Engine, client: redis.Redis, instrument: str, wait_s: float = RESUME_WAIT_S
) -> int:
    """The data time (epoch ms) to publish ``instrument`` again from: once each of its active
    sessions is subscribed again (its recovery done), or ``wait_s`` passed, the whole
    millisecond of their oldest snapshot cursor."""
    deadline = time.monotonic() + wait_s
    point = resume_point(engine, instrument)
    while time.monotonic() < deadline:
        try:
            members = cast(set[bytes], client.smembers(subscribers_key(instrument)))
        except (redis.ConnectionError, redis.TimeoutError):
            members = set()
        subscribed = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
        if subscribed >= set(point.session_ids):
            break
        time.sleep(RESUME_POLL_S)  # their recovery has not subscribed them yet
    else:
        log.warning("%s: sessions not all rebuilt; publishing again all the same", instrument)
    return resume_point(engine, instrument).from_ms
