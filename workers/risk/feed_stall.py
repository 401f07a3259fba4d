"""The market-data stall flag of an instrument: set by its feed (``workers.feeds.stall``)
while the market is open and no bar or quote arrived for ``stall_s``; while it is set, the
tick path refuses that instrument's ENTRIES (exits always pass: ``trading.decision``).

Key ``md:{<instrument>}:stalled`` (the instrument stream's hash tag), a JSON value
``{"since": ISO time, "stall_s": seconds}``, no expiry: a feed that dies while stalled leaves
entries refused until data flows again (the safe side). Here, below the tick path and the
feeds, so both read one key without importing each other (the layers contract).
"""

from __future__ import annotations

import json
import re
from datetime import datetime

import redis

_INSTRUMENT = re.compile(r"[A-Z0-9]{1,16}")


def stall_key(instrument: str) -> str:
    if _INSTRUMENT.fullmatch(instrument) is None:
        raise ValueError(f"bad instrument {instrument!r}")
    return f"md:{{{instrument}}}:stalled"


def feed_stalled(client: redis.Redis, instrument: str) -> bool:
    """Whether ``instrument``'s feed is flagged stalled (entries are refused)."""
    return bool(client.exists(stall_key(instrument)))


def set_stalled(client: redis.Redis, instrument: str, since: datetime, stall_s: float) -> bool:
    """Flag ``instrument`` stalled; True if it was not flagged before."""
    value = json.dumps({"since": since.isoformat(), "stall_s": stall_s})
    return bool(client.set(stall_key(instrument), value, nx=True))


def clear_stalled(client: redis.Redis, instrument: str) -> bool:
    """Data flows again: drop the flag; True if it was set."""
    return bool(client.delete(stall_key(instrument)))
