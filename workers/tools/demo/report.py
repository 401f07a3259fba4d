"""The demo's report: per session, price with entries and exits, and equity; one HTML page.

Prices come from the instrument's stream (what the sessions saw), fills from SQL (what the
broker executed). Equity is realized P&L minus commissions plus the open position marked to
each minute's last price.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import redis

from trading.contracts import spec_for
from trading.positions import apply_fill
from workers.db.engines import engine_for
from workers.db.order_rows import FillRecord, session_fills
from workers.settings import Settings
from workers.ticks.keys import stream_key
from workers.tools.demo.summary import SessionSummary

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def minute_closes(client: redis.Redis, instrument: str) -> list[tuple[datetime, Decimal]]:
    """The last trade price of every minute in the instrument's stream."""
    closes: dict[int, Decimal] = {}
    start = "-"
    key = stream_key(instrument)
    while True:
        batch = client.xrange(key, min=start, count=20_000)
        if not batch:
            break
        for _entry_id, values in batch:  # type: ignore[union-attr]
            try:
                minute = int(values[b"t"]) // 60_000
                closes[minute] = Decimal(values[b"p"].decode())
            except (KeyError, ValueError, ArithmeticError):
                continue
        start = "(" + batch[-1][0].decode()  # type: ignore[index]
    return [(EPOCH + timedelta(minutes=m), p) for m, p in sorted(closes.items())]


def equity_curve(
    closes: Sequence[tuple[datetime, Decimal]], fills: Sequence[FillRecord], multiplier: Decimal
) -> list[tuple[datetime, Decimal]]:
    """Realized minus commissions + open P&L at each minute close, fills applied in time order."""
    quantity, average, realized = 0, None, Decimal(0)
    out = []
    index = 0
    for time, price in closes:
        while index < len(fills) and fills[index].time <= time + timedelta(minutes=1):
            fill = fills[index]
            step = apply_fill(quantity, average, fill.quantity, fill.price, multiplier)
            quantity, average = step.quantity, step.average_price
            realized += step.realized - fill.commission
            index += 1
        open_pnl = Decimal(0) if average is None else (price - average) * quantity * multiplier
        out.append((time, realized + open_pnl))
    return out


def _figure(
    summary: SessionSummary,
    closes: Sequence[tuple[datetime, Decimal]],
    fills: Sequence[FillRecord],
    multiplier: Decimal,
) -> str:
    from matplotlib.figure import Figure  # noqa: PLC0415 - matplotlib costs 0.5 s; only the report needs it

    fig = Figure(figsize=(11, 6))
    ax_price, ax_equity = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    index = list(range(len(closes)))
    ax_price.plot(index, [float(p) for _, p in closes], linewidth=0.7, color="#555555")
    times = [t for t, _ in closes]
    for marker, color, sign in (("^", "#1a9850", 1), ("v", "#d73027", -1)):
        chosen = [f for f in fills if f.quantity * sign > 0]
        xs = [_position_of(times, f.time) for f in chosen]
        ax_price.scatter(
            xs,
            [float(f.price) for f in chosen],
            marker=marker,
            color=color,
            s=22,
            zorder=3,
            label="buy" if marker == "^" else "sell",
        )
    ax_price.set_title(f"{summary.name} — {summary.contract}")
    ax_price.set_ylabel("price")
    ax_price.legend(loc="upper left")
    equity = equity_curve(closes, fills, multiplier)
    ax_equity.plot(index, [float(v) for _, v in equity], color="#2c7fb8", linewidth=0.9)
    ax_equity.axhline(0, color="#999999", linewidth=0.5)
    ax_equity.set_ylabel("equity (USD)")
    ax_equity.set_xlabel("data time (UTC; minutes without trades are left out)")
    if times:
        ticks = list(range(0, len(times), max(1, len(times) // 8)))
        ax_equity.set_xticks(ticks, [times[i].strftime("%m-%d %H:%M") for i in ticks])
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def _position_of(times: Sequence[datetime], t: datetime) -> int:
    lo, hi = 0, len(times)
    while lo < hi:
        mid = (lo + hi) // 2
        if times[mid] < t - timedelta(minutes=1):
            lo = mid + 1
        else:
            hi = mid
    return min(lo, max(0, len(times) - 1))


def rolled_closes(client: redis.Redis, old: str, new: str) -> list[tuple[datetime, Decimal]]:
    """Minute closes of a session that rolled: the old contract's until the new one's start."""
    after = minute_closes(client, new)
    start = after[0][0] if after else None
    before = [c for c in minute_closes(client, old) if start is None or c[0] < start]
    return before + after


def write_report(
    settings: Settings,
    client: redis.Redis,
    summaries: Sequence[SessionSummary],
    folder: Path,
    rolls: Mapping[str, str] | None = None,
    moves: Mapping[str, tuple[str, str]] | None = None,
) -> Path:
    """Draw every session and write ``report.html`` (PNG images inlined) into ``folder``.

    ``rolls``: a line per session id that rolled; ``moves``: its (old, new) contracts, whose
    prices are drawn one after the other."""
    folder.mkdir(parents=True, exist_ok=True)
    engine = engine_for(settings.sqlalchemy_url)
    sections = []
    for summary in summaries:
        move = (moves or {}).get(summary.id)
        if move is None:
            closes = minute_closes(client, summary.contract)
        else:
            closes = rolled_closes(client, *move)
        rolled = (rolls or {}).get(summary.id)
        fills = session_fills(engine, summary.id)
        multiplier = spec_for(summary.contract).multiplier
        image = _figure(summary, closes, fills, multiplier)
        (folder / f"{summary.name}.png").write_bytes(base64.b64decode(image))
        sections.append(
            f"<h2>{html.escape(summary.name)}</h2>"
            f"<p>{summary.product} {summary.contract} · orders {summary.orders} · fills "
            f"{summary.fills} · position {summary.position} (broker {summary.broker_position})"
            f" · realized {html.escape(summary.realized_pnl)} USD</p>"
            + (f"<p>{html.escape(rolled)}</p>" if rolled else "")
            + f'<img src="data:image/png;base64,{image}" alt="{html.escape(summary.name)}">'
        )
    page = folder / "report.html"
    page.write_text(
        "<!doctype html><meta charset='utf-8'><title>tradefleet demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}</style>"
        "<h1>tradefleet demo</h1>" + "".join(sections)
    )
    return page.resolve()
