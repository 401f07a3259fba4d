"""A tick publisher with no worker behind it: the drain tasks it would start go nowhere, so a
test reads the streams exactly as the publisher left them."""

from __future__ import annotations

import redis

from workers.dispatch.sending import one_by_one
from workers.ticks.publisher import TickPublisher


def publisher_without_workers(client: redis.Redis) -> TickPublisher:
    return TickPublisher(
        client,
        one_by_one(lambda *_a, **_k: None),
        queue="ticks",
        max_drainers=1,
        stream_maxlen=100_000,
        drainer_grace_ms=60_000,
    )
