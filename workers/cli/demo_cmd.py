"""``tradefleet demo``: the main job — see real sessions trade real data on the paper broker,
or through the Tradovate adapter against a local Tradovate server (``--broker tradovate-local``)."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from decimal import Decimal
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from trading.exceptions import BadInput
from workers.cli.demo_web import DEFAULT_WEB_PORT, DemoConsole, check_port
from workers.settings import get_settings
from workers.tools.demo.run import BROKERS, Demo, DemoResult
from workers.tools.demo.summary import SessionSummary
from workers.tools.processes import ChildProcesses

PIPED_WIDTH = 170
"""Width of the tables when the output is not a terminal (a log file, CI)."""


def _table(summaries: list[SessionSummary], *, brokers: bool) -> Table:
    table = Table(show_header=True, header_style="bold")
    for column in (
        "session",
        "contract",
        "ticks",
        "rejected",
        "candles",
        "orders",
        "fills",
        "position",
        "broker",
        "realized",
        "commissions",
        "heat",
    ):
        table.add_column(column, justify="left" if column in {"session", "contract"} else "right")
    for s in summaries:
        table.add_row(
            s.name,
            s.contract,
            f"{s.ticks_processed:,}",
            str(s.ticks_rejected),
            f"{s.candles_closed:,}",
            str(s.orders),
            str(s.fills),
            str(s.position),
            str(s.broker_position) if brokers else "-",
            s.realized_pnl,
            s.commissions,
            _heat(s),
        )
    return table


def _heat(s: SessionSummary) -> str:
    """The session's heat as a percentage of its account's equity, flagged when warned or
    blocked."""
    shown = f"{Decimal(s.portfolio_heat) * 100:.2f}%"
    if s.portfolio_heat_blocked:
        return shown + " BLOCKED"
    return shown + " warn" if s.portfolio_heat_warned else shown


class _LiveView:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.live = Live(console=console, refresh_per_second=4, transient=False)

    def __call__(self, phase: str, published: int, summaries: list[SessionSummary]) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        processed = sum(s.ticks_processed for s in summaries)
        table = _table(summaries, brokers=False)
        table.title = (
            f"{phase} — published {published:,} ticks, processed {processed:,} "
            f"({processed / elapsed:,.0f} ticks/s) — {elapsed:.0f}s"
        )
        self.live.update(table)


def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary last.")] = False,
    broker: Annotated[
        str,
        typer.Option(
            help="paper, or tradovate-local: the Tradovate adapter against a local Tradovate "
            "server the demo starts and stops (no account needed)."
        ),
    ] = "paper",
    since: Annotated[
        str | None,
        typer.Option(
            help="First day of the ES replay, YYYY-MM-DD (default 2013-10-07): a shorter run."
        ),
    ] = None,
    web: Annotated[
        bool,
        typer.Option(
            "--web",
            help="Also serve the console (one-time login shown here) and keep everything up "
            "after the summary until Ctrl-C.",
        ),
    ] = False,
    web_port: Annotated[
        int | None,
        typer.Option(
            "--web-port",
            min=1,
            max=65_535,
            help=f"The console's port on 127.0.0.1 (with --web; default {DEFAULT_WEB_PORT}).",
        ),
    ] = None,
) -> None:
    """Start what it needs, replay ES and GC through three sessions (ES rolling ESZ13 -> ESH14
    on its roll date), report; with --web, watch it in the console."""
    if broker not in BROKERS:
        raise BadInput(f"unknown demo broker {broker!r} (known: {', '.join(BROKERS)})")
    first = None if since is None else _day(since)
    if web_port is not None and not web:
        raise BadInput("--web-port is the console's port: give it with --web")
    port = DEFAULT_WEB_PORT if web_port is None else web_port
    settings = get_settings()
    if web:
        check_port(port)
    console = Console(stderr=as_json)
    if not console.is_terminal:
        console = Console(stderr=as_json, width=PIPED_WIDTH)
    log_dir = settings.paths.data_dir / "demo-logs"
    with ChildProcesses(log_dir=log_dir) as children:
        shown = DemoConsole(settings, children, console, port) if web else None
        try:
            view = _LiveView(console)
            with view.live:
                on_ready = None if shown is None else shown.start
                result = Demo(settings, children, broker, first).run(view, on_ready)
            _print_result(console, result)
            if as_json:
                sys.stdout.write(json.dumps(result.as_json()) + "\n")
                sys.stdout.flush()
            if shown is not None:
                shown.serve_until_stopped()
        finally:
            if shown is not None:
                shown.close()


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"--since must be a date YYYY-MM-DD, got {text!r}") from None


def _print_result(console: Console, result: DemoResult) -> None:
    table = _table(result.sessions, brokers=True)
    table.title = (
        f"tradefleet demo ({result.broker}) — {result.ticks_published:,} ticks in "
        f"{result.wall_seconds:.1f}s"
    )
    console.print(table)
    names = {s.id: s.name for s in result.sessions}
    for roll in result.rolls:
        console.print(f"{names.get(roll.session_id, roll.session)}: {roll.describe()}")
    agree = all(s.position == s.broker_position for s in result.sessions)
    console.print(
        "every session's position agrees with the broker"
        if agree
        else "[red]a session's position disagrees with the broker[/red]"
    )
    if result.report is not None:
        console.print(f"report: {result.report}")
