"""What the fleet counted in Redis (``workers.metrics``), read the way a test compares it."""

from __future__ import annotations

from typing import cast

import redis

from tests.kit.wait import wait_until
from workers.metrics.catalog import Metric


def counted(client: redis.Redis, metric: Metric) -> dict[str, int]:
    """The metric's counts by label field (a field per label value; ``""`` without labels)."""
    raw = cast(dict[bytes, bytes], client.hgetall(metric.key))
    return {k.decode(): int(v) for k, v in raw.items()}


def wait_counted(
    client: redis.Redis, metric: Metric, expected: dict[str, int], timeout: float = 10.0
) -> None:
    """Until the metric's counts are ``expected`` (a count follows the row it counts)."""
    try:
        wait_until(
            lambda: counted(client, metric) == expected,
            timeout=timeout,
            what=f"{metric.name} counts",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {counted(client, metric)} != {expected}") from exc
