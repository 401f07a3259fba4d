"""A position check asked for by an operator, the CLI and the console alike: the pass
(``workers.reconcile.position_check``), then the ``operator`` event naming who asked and what
it found."""

from __future__ import annotations

from workers.operations.audit import operator_event
from workers.reconcile.position_check import PositionReport, reconcile_positions
from workers.runtime import Runtime


def reconcile_now(rt: Runtime, session_id: str, actor: str) -> PositionReport:
    """Compare the session's position with the broker's here and now (a difference is
    corrected to the broker's, with its own event)."""
    report = reconcile_positions(rt, session_id)
    operator_event(
        rt.engine,
        session_id,
        actor,
        f"positions reconciled: {report.outcome}",
        {"outcome": report.outcome, "local": report.local, "broker": report.broker},
    )
    return report
