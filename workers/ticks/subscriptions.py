"""Which sessions an instrument's ticks wake, and where each session starts reading."""

from __future__ import annotations

import redis

from models.codec import state_key
from trading.exceptions import UnknownSession
from workers.ticks import scripts
from workers.ticks.keys import stream_key, subscribers_key


def subscribe(client: redis.Redis, session_id: str, instrument: str) -> None:
    """Feed ``session_id`` from ``instrument``'s stream, from the stream's current end."""
    script = client.register_script(scripts.SUBSCRIBE)
    keys = [state_key(session_id), stream_key(instrument), subscribers_key(instrument)]
    if not script(keys=keys, args=[session_id]):
        raise UnknownSession(session_id)


def unsubscribe(client: redis.Redis, session_id: str, instrument: str) -> None:
    client.srem(subscribers_key(instrument), session_id)
