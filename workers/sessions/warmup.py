"""A new session's warm-up from its source's history (``workers.feeds.history``).

Where the history ends (``until``): given (a replay's first date: its session is created
before the replay publishes), else the end of the minute of the instrument stream's last entry
(a live feed publishes whole bars, so the stream ends with a bar's close tick), else the
current minute's start (nothing published yet). The session then reads the stream from the
entry it stood at when the history was read (``_cursor``), not from wherever the stream stands
when it is subscribed: nothing published in between is lost. Its tick counters start after the
history (``_progress``: ``last_ms``, ``candles_closed``), so the strategy runs on the
``warmup_periods``-th candle as if the session had read those bars from the stream.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from models.meta import CURSOR_FIELD, PROGRESS_FIELD
from models.progress import TickProgress
from models.state import SessionState
from trading.market import EPOCH
from trading.timeframes import parse_timeframe
from workers.feeds.history import (
    candles_before_start,
    minute_after,
    minute_of,
    warm_from_history,
)
from workers.feeds.registry import history_source
from workers.settings import Settings
from workers.ticks.keys import stream_key

DATA_TIME_SOURCES = frozenset({"replay"})
"""Sources whose clock is the data's (not the wall clock): warmed up only with ``until``."""


def stream_tail(client: redis.Redis, instrument: str) -> tuple[str, datetime | None]:
    """The stream's last entry id ("0-0" when empty) and its data time."""
    last: Any = client.xrevrange(stream_key(instrument), count=1)
    if not last:
        return "0-0", None
    raw_id, values = last[0]
    entry = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
    raw_t = values.get(b"t") if isinstance(values, dict) else None
    moment = None if raw_t is None else EPOCH + timedelta(milliseconds=int(raw_t))
    return entry, moment


def warm_new_session(
    settings: Settings,
    client: redis.Redis,
    state: SessionState,
    until: datetime | None = None,
    now: datetime | None = None,
) -> tuple[SessionState, dict[str, str]] | None:
    """The state with its warm-up candles and the meta fields to create it with; None when its
    source has no history (the session warms up from the stream, as before)."""
    if until is None and state.market_data_source.module in DATA_TIME_SOURCES:
        return None  # a replay's clock is its data: only the caller knows where it starts
    source = history_source(state.market_data_source.module, settings)
    if source is None:
        return None
    instrument = state.session.contract
    cursor, last_time = stream_tail(client, instrument)
    if until is None:
        if last_time is not None:
            until = minute_after(last_time)
        else:
            until = minute_of(now or datetime.now(UTC))
    timeframe = parse_timeframe(state.session.timeframe)
    closed = candles_before_start(state.warmup_periods)
    warmed = warm_from_history(source, instrument, until, timeframe, closed)
    progress = TickProgress(
        last_ms=warmed.last_ms,
        candles_closed=len(warmed.closed),
        ticks_processed=warmed.ticks,
        rejected=dict(warmed.rejected),
    )
    warmed_state = replace(state, candles=warmed.closed, latest_partial_candle=warmed.partial)
    return warmed_state, {CURSOR_FIELD: cursor, PROGRESS_FIELD: progress.to_json()}
