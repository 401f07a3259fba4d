"""Decoded state fields kept per worker process, one slot per (session, field).

Most of a session's fields do not change from one step to the next, and the ones that do
(the partial candle, the tick counters, unrealized P&L) are written by the step itself, which
knows the value it encoded. Each slot holds the last text seen for that field of that session
and its decoded value, so a step decodes only what someone else changed. A slot is replaced in
place when its text changes: the cache grows with the sessions a process serves, not with the
steps (a cache keyed by text alone fills with every step's partial candle and counters, and with
a thousand sessions is emptied before a session comes round again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models.codec import decode_field, encode_field

IMMUTABLE_FIELDS = frozenset(
    {
        "session",
        "latest_partial_candle",
        "open_position",
        "contract_details",
        "order_template",
        "account_pnl_info",
        "account_balance",
        "trading",
        "rolling",
        "warmup_periods",
    }
)
"""State fields whose decoded values are immutable (frozen dataclasses of scalars, scalars),
so a decoded value may be handed to every step that reads the same stored text."""

MAX_SLOTS = 250_000
"""Slots kept per process (emptied when full): about twenty per session served."""

_SLOTS: dict[tuple[str, str], tuple[str, Any]] = {}


def decoded(
    session_id: str, name: str, raw: str, decode: Callable[[str], Any] | None = None
) -> Any:
    """The value of ``raw`` for this session's field ``name`` (decoded only when the text
    differs from the one last seen; ``decode`` defaults to the field's codec)."""
    key = (session_id, name)
    slot = _SLOTS.get(key)
    if slot is not None and slot[0] == raw:
        return slot[1]
    value = decode_field(name, raw) if decode is None else decode(raw)
    remember(session_id, name, raw, value)
    return value


def encoded(session_id: str, name: str, value: Any) -> str:
    """Encode ``value``, remembering it for its text: the session's next step reads it back."""
    raw = encode_field(name, value)
    remember(session_id, name, raw, value)
    return raw


def remember(session_id: str, name: str, raw: str, value: Any) -> None:
    """Keep ``value`` as the decoded ``raw`` of this session's field (it must be immutable)."""
    if len(_SLOTS) >= MAX_SLOTS:
        _SLOTS.clear()
    _SLOTS[(session_id, name)] = (raw, value)


__all__ = ["IMMUTABLE_FIELDS", "MAX_SLOTS", "decoded", "encoded", "remember"]
