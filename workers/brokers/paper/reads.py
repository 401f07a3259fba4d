"""The paper broker's reads of Redis, and one error for a Redis that does not answer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import redis

from trading.exceptions import ServiceUnavailable
from workers.brokers.paper.model import strings, text

_DOWN = (redis.ConnectionError, redis.TimeoutError)


def read_members(client: redis.Redis, key: str) -> list[str]:
    """A set's members as text, sorted."""
    return sorted(text(m) for m in cast(set[Any], client.smembers(key)))


def read_entries(
    client: redis.Redis, key: str, start: str, count: int
) -> list[tuple[str, dict[str, str]]]:
    """Stream entries after ``start`` (``(id`` exclusive, ``id`` inclusive), oldest first."""
    raw = cast(list[Any], client.xrange(key, min=start, max="+", count=count))
    return [(text(entry_id), strings(fields)) for entry_id, fields in raw]


@contextmanager
def answering(what: str) -> Iterator[None]:
    """Redis not answering becomes ``ServiceUnavailable`` (retry later), naming ``what``."""
    try:
        yield
    except _DOWN as exc:
        raise ServiceUnavailable(
            f"paper broker: {what} did not answer ({type(exc).__name__})"
        ) from exc
