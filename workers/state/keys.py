"""The Redis key names of one session (defined, pure, in ``models.codec``)."""

from models.codec import (
    KEY_PREFIX,
    candles_key,
    check_session_id,
    fence_key,
    lock_key,
    session_keys,
    state_key,
    trades_key,
)

__all__ = [
    "KEY_PREFIX",
    "candles_key",
    "check_session_id",
    "fence_key",
    "lock_key",
    "session_keys",
    "state_key",
    "trades_key",
]
