"""Which sessions an instrument's ticks wake, and where each session starts reading."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis

from models.codec import state_key
from trading.exceptions import UnknownSession
from workers.ticks import scripts
from workers.ticks.keys import READY_KEY, stream_key, subscribers_key


def subscribe(client: redis.Redis, session_id: str, instrument: str) -> None:
    """Feed ``session_id`` from ``instrument``'s stream, from the stream's current end."""
    script = client.register_script(scripts.SUBSCRIBE)
    keys = [state_key(session_id), stream_key(instrument), subscribers_key(instrument)]
    if not script(keys=keys, args=[session_id]):
        raise UnknownSession(session_id)


def subscribe_at(client: redis.Redis, session_id: str, instrument: str, cursor: str) -> None:
    """Feed ``session_id`` from ``instrument``'s stream after ``cursor`` (where its warm-up or
    its recovery stopped folding); ready at once if entries came after it."""
    keys = [subscribers_key(instrument), stream_key(instrument), READY_KEY]
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    client.eval(scripts.SUBSCRIBE_AT, len(keys), *keys, session_id, cursor, now_ms)


def unsubscribe(client: redis.Redis, session_id: str, instrument: str) -> None:
    client.srem(subscribers_key(instrument), session_id)


def stream_end(client: redis.Redis, instrument: str) -> str:
    """The id of the last entry of ``instrument``'s stream (``0-0`` when it has none): a
    cursor there reads only ticks published after now."""
    last: Any = client.xrevrange(stream_key(instrument), count=1)
    if not last:
        return "0-0"
    raw = last[0][0]
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def move_subscription(client: redis.Redis, session_id: str, old: str, new: str) -> None:
    """Feed ``session_id`` from ``new``'s stream instead of ``old``'s (one MULTI; idempotent).
    The session's cursor is the caller's (a roll writes it with the session's new contract)."""
    with client.pipeline(transaction=True) as pipe:
        pipe.srem(subscribers_key(old), session_id)
        pipe.sadd(subscribers_key(new), session_id)
        pipe.execute()
