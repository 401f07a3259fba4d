"""The meta fields of a session's state hash: kept beside the ``SessionState`` struct, never
part of it (the struct's fields never start with ``_``, these always do).

Each is written under the session's lock, by the subsystem named here, and read by others; this
module is the one place their names are spelled.
"""

from __future__ import annotations

from string import Template
from typing import Final

FENCE_FIELD: Final = "_fence"
"""The fencing token of the last accepted write (``workers.state``)."""
CURSOR_FIELD: Final = "_cursor"
"""The id of the last instrument-stream entry the session has folded (the tick path)."""
PROGRESS_FIELD: Final = "_progress"
"""The tick path's counters, JSON ``models.progress.TickProgress``."""
LAST_FILL_FIELD: Final = "_last_fill_at"
"""When the last fill was applied to the session (``workers.orders.fills``); reconciliation's
grace period is measured from it."""
RECONCILE_FIELD: Final = "_reconcile"
"""Reconciliation's record, JSON ``trading.reconcile.ReconcileMeta``."""
ROLL_FIELD: Final = "_roll"
"""The roll holding the session, JSON ``workers.rolls.marks.RollMeta``."""

META_FIELDS: Final = (
    FENCE_FIELD,
    CURSOR_FIELD,
    PROGRESS_FIELD,
    LAST_FILL_FIELD,
    RECONCILE_FIELD,
    ROLL_FIELD,
)


def in_lua(script: str) -> str:
    """A Lua script's text with each ``$FENCE_FIELD``, ``$CURSOR_FIELD``, ... replaced by the
    field's name (quoted where it stands in the script), so no script spells one itself."""
    names = {
        "FENCE_FIELD": FENCE_FIELD,
        "CURSOR_FIELD": CURSOR_FIELD,
        "PROGRESS_FIELD": PROGRESS_FIELD,
        "LAST_FILL_FIELD": LAST_FILL_FIELD,
        "RECONCILE_FIELD": RECONCILE_FIELD,
        "ROLL_FIELD": ROLL_FIELD,
    }
    return Template(script).substitute(names)
