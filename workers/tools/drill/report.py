"""The drills' table (stdout) and their JSON line."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from workers.tools.drill.drills import REFERENCE
from workers.tools.drill.run import DrillReport

COLUMNS = (
    ("drill", "name"),
    ("faults", "faults"),
    ("fills", "fills"),
    ("ticks lost", "ticks_lost"),
    ("orders duplicated", "orders_duplicated"),
    ("position mismatches", "position_mismatches"),
    ("fills differing", "fills_differing"),
    ("orders unmatched", "orders_unmatched"),
    ("recovery s", "recovery_s"),
)


def drill_table(report: DrillReport) -> Table:
    table = Table(title=f"tradefleet drills ({report.scenario} scenario, {report.seconds:.0f} s)")
    for title, _ in COLUMNS:
        table.add_column(title, justify="left" if title == "drill" else "right")
    table.add_column("verdict")
    for fig in report.figures:
        row = fig.as_json()
        table.add_row(*(str(row[key]) for _, key in COLUMNS), "pass" if fig.passed else "FAIL")
    return table


def drill_json(report: DrillReport) -> dict[str, Any]:
    """``{"drills": [...]}`` with the issue's keys (and ``fills``, ``orders_unmatched``,
    ``candles_differing``, ``passed``, ``notes``); the reference run's own line apart."""
    reference = [f.as_json() for f in report.figures if f.name == REFERENCE.name]
    return {
        "scenario": report.scenario,
        "seconds": round(report.seconds, 1),
        "reference": reference[0] if reference else None,
        "drills": [f.as_json() for f in report.figures if f.name != REFERENCE.name],
    }
