"""The event rows of a tick step, written once however often the step is run.

The drain writes a step's events before its fenced state write, with the order rows
(``workers.ticks.round_rows``): a worker killed between the two loses none. A re-run of the step
begins at the same cursor with the same state, derives the same events and gives them the
same keys, so the unique ``events.dedupe_key`` keeps one row of each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from models.tables import EventRow
from workers.ticks.step import StepEvent


def step_events(session_id: str, cursor_before: str, events: Sequence[StepEvent]) -> list[EventRow]:
    """The rows of ``events``, keyed by the session, the cursor its step began at and their
    place in the step."""
    rows = []
    for index, event in enumerate(events):
        text = "\x1f".join((session_id, cursor_before, str(index), event.message))
        rows.append(
            EventRow(
                session_id=session_id,
                kind=event.kind,
                severity=event.severity,
                message=event.message,
                details=dict(event.details),
                dedupe_key=hashlib.blake2b(text.encode(), digest_size=16).hexdigest(),
            )
        )
    return rows
