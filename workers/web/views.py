"""What the pages and the streams show: the read models' JSON with each table cell's text.

The text of a live cell is made here once, for the server-rendered page and for the
server-sent snapshot alike (``cells``), so ``static/console.js`` only copies texts into the
cells named by ``data-field``; numbers keep their exact Decimal digits (no rounding, so the
totals visibly add up).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from trading.fleet_view import duration_text
from workers.operations.fleet import FleetView
from workers.operations.session_view import SessionLive
from workers.web.serialize import fleet_json, live_json

STATUS_TEXT = {
    "trading": "trading",
    "rolling": "rolling",
    "halted": "halted",
    "stale": "stale",
    "stopped": "stopped",
    "needs_operator": "needs operator",
}


def age(seconds: int | None) -> str:
    """``12 s``, ``5 min``, ``3 h``, ``12 d``; ``-`` when unknown."""
    return "-" if seconds is None else duration_text(seconds)


def lag(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1_000:
        return f"{ms} ms"
    return age(ms // 1_000)


def when(value: str | None) -> str:
    """An ISO time as ``2013-10-07 14:30:05`` (UTC, whole seconds); ``-`` when None."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def percent(fraction: str | Decimal | None) -> str:
    """A fraction as an exact percentage: ``0.012`` → ``1.2 %``."""
    if fraction is None:
        return "-"
    value = Decimal(fraction) * 100
    text = format(value.normalize(), "f") if value else "0"
    return f"{text} %"


def broker_text(session: dict[str, Any]) -> str:
    broker = session["broker"]
    if broker is None:
        return "broker not seen yet"
    text = f"broker {broker['quantity']}, {age(broker['age_s'])} ago"
    if session["group_sessions"] > 1:
        text = (
            f"broker {broker['quantity']} for {session['group_sessions']} sessions holding "
            f"{session['group_position']}, {age(broker['age_s'])} ago"
        )
    check = session["broker_check"]
    if check == "mismatch":
        return f"{text}: MISMATCH"
    if check == "unverified":
        return f"{text} (before the last fill)"
    return text


def session_cells(session: dict[str, Any]) -> dict[str, str]:
    """The text of every live cell of a session's row (keys are the cells' ``data-field``)."""
    event = session["last_event"]
    position = str(session["position"])
    if session["position_contract"] != session["contract"]:
        position = f"{position} ({session['position_contract']})"
    return {
        "status": STATUS_TEXT[session["status"]],
        "reasons": "; ".join(session["reasons"]),
        "contract": session["contract"],
        "position": position,
        "stop": session["stop_price"] or "-",
        "broker": broker_text(session),
        "realized": session["realized"],
        "unrealized": session["unrealized"],
        "commissions": session["commissions"],
        "heat": percent(session["heat"]),
        "tick_age": age(session["tick_age_s"]),
        "tick_lag": lag(session["tick_lag_ms"]),
        "candles": str(session["candles_closed"]),
        "last_event": "-"
        if event is None
        else f"{event['severity']} {event['kind']}: {event['message']}"[:120],
    }


def totals_cells(totals: dict[str, Any]) -> dict[str, str]:
    return {
        "sessions": str(totals["sessions"]),
        "position": str(totals["position"]),
        "realized": totals["realized"],
        "unrealized": totals["unrealized"],
        "commissions": totals["commissions"],
        "heat": percent(totals["heat"]),
    }


def fleet_snapshot(fleet: FleetView) -> dict[str, Any]:
    """``/api/fleet`` and the fleet stream's event: the fleet JSON, each session and account
    with its ``cells``."""
    data = fleet_json(fleet)
    for session in data["sessions"]:
        session["cells"] = session_cells(session)
    for totals in data["accounts"]:
        totals["cells"] = totals_cells(totals)
    return {"type": "fleet", **data}


def session_snapshot(live: SessionLive) -> dict[str, Any]:
    """The session stream's event: its row (with ``cells``), its newest closed candle, the
    forming one, the resting stop and the entry and exit markers."""
    data = live_json(live)
    data["session"]["cells"] = session_cells(data["session"])
    return {"type": "session", **data}


__all__ = [
    "age",
    "broker_text",
    "fleet_snapshot",
    "lag",
    "percent",
    "session_cells",
    "session_snapshot",
    "totals_cells",
    "when",
]
