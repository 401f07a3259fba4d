"""What a pure decision asks its caller to record: an event (kind, severity, message, details).

``models.tables`` stores them as event rows with these kinds and severities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

EventKind = Literal[
    "reconciliation", "roll", "risk", "operator", "data", "strategy", "recovery", "feed"
]
Severity = Literal["info", "warning", "error", "critical"]


@dataclass(frozen=True, slots=True)
class Event:
    """One event to record; ``details`` is JSON (strings for Decimals and times)."""

    kind: EventKind
    severity: Severity
    message: str
    details: dict[str, Any]


__all__ = ["Event", "EventKind", "Severity"]
