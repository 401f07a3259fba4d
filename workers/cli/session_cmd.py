"""``tradefleet session``: create, show and list trading sessions; stop, start and flatten one
(``workers.operations``, the console's functions, each an ``operator`` event naming
``cli:<user>``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Protocol

import typer
from rich.console import Console
from rich.table import Table

from models.codec import state_to_json
from workers.cli.actor import cli_actor
from workers.cli.reconcile_cmd import quiet_logs
from workers.connections import require_redis
from workers.db.engines import engine_for
from workers.db.session_rows import list_session_rows
from workers.operations.flatten import flatten_session
from workers.operations.stop import start_session, stop_session
from workers.runtime import Runtime
from workers.sessions.create import NewSession, create_session, parse_key_values
from workers.settings import get_settings
from workers.state.store import StateStore

app = typer.Typer(help="Trading sessions.", no_args_is_help=True)

PIPED_WIDTH = 160
"""Width of ``session list`` when stdout is not a terminal, so no column is cut."""


@app.command("create")
def create_cmd(
    name: Annotated[str, typer.Option(help="Unique session name.")],
    account: Annotated[str, typer.Option(help="Broker account.")],
    product: Annotated[str, typer.Option(help="Product root, e.g. ES or GC.")],
    contract: Annotated[str, typer.Option(help="Contract symbol, e.g. ESZ13.")],
    strategy: Annotated[str, typer.Option(help="Registered strategy name.")],
    strategy_arg: Annotated[
        list[str] | None, typer.Option("--strategy-arg", help="Strategy argument KEY=VALUE.")
    ] = None,
    timeframe: Annotated[str, typer.Option(help="Candle timeframe, e.g. 1m, 5m, 1h.")] = "1m",
    feed: Annotated[str, typer.Option(help="Registered market-data source.")] = "replay",
    broker: Annotated[str, typer.Option(help="Registered account manager.")] = "paper",
    order_type: Annotated[str, typer.Option(help="market, limit or stop.")] = "market",
    quantity: Annotated[int, typer.Option(help="Contracts per unit of signal.")] = 1,
    time_in_force: Annotated[str, typer.Option(help="day, gtc or ioc.")] = "day",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Create a session: its SQL row and its initial Redis state; prints the new id."""
    request = NewSession(
        name=name,
        account=account,
        product=product,
        contract=contract,
        strategy=strategy,
        strategy_args=parse_key_values(strategy_arg or [], "--strategy-arg"),
        timeframe=timeframe,
        feed=feed,
        broker=broker,
        order_type=order_type,
        quantity=quantity,
        time_in_force=time_in_force,
    )
    settings = get_settings()
    state = create_session(settings, request)
    if as_json:
        typer.echo(json.dumps({"id": state.session.id, "name": state.session.name}))
    else:
        typer.echo(state.session.id)


@app.command("show")
def show_cmd(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole state as JSON.")] = False,
) -> None:
    """Show the whole state struct of one session."""
    settings = get_settings()
    client = require_redis(settings)
    try:
        state = StateStore(client, settings.state.lock_ttl_ms).load(session_id)
    finally:
        client.close()
    view = state_to_json(state)
    if as_json:
        typer.echo(json.dumps(view, sort_keys=False))
        return
    table = Table(title=f"session {session_id}", show_header=True)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in view.items():
        shown = value if isinstance(value, str) else json.dumps(value)
        if key in {"candles", "trades"} and isinstance(value, list):
            shown = f"{len(value)} entries" + (f", last {json.dumps(value[-1])}" if value else "")
        table.add_row(key, shown)
    Console().print(table)


@app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List the sessions recorded in SQL."""
    settings = get_settings()
    engine = engine_for(settings.sqlalchemy_url)
    rows = list_session_rows(engine)
    records = [
        {
            "id": row.id,
            "name": row.name,
            "account": row.account,
            "product": row.product,
            "contract": row.contract,
            "timeframe": row.timeframe,
            "strategy": row.strategy_name,
            "status": row.status,
            "created_at": row.created_at.isoformat(),
        }
        for row in rows
    ]
    if as_json:
        typer.echo(json.dumps(records))
        return
    if not records:
        typer.echo("no sessions")
        return
    table = Table(show_header=True)
    for column in records[0]:
        table.add_column(column, no_wrap=column == "id", min_width=36 if column == "id" else None)
    for record in records:
        table.add_row(*(str(v) for v in record.values()))
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, PIPED_WIDTH))
    console.print(table)


class _Report(Protocol):
    def line(self) -> str: ...


SessionId = Annotated[str, typer.Argument(help="Session id.")]


def _act(action: Callable[[Runtime, str, str], _Report], session_id: str) -> None:
    quiet_logs()
    settings = get_settings()
    require_redis(settings).close()
    rt = Runtime(settings)
    try:
        report = action(rt, session_id, cli_actor())
    finally:
        rt.engine.dispose()
        rt.redis.close()
    typer.echo(report.line())


@app.command("stop")
def stop_cmd(session_id: SessionId) -> None:
    """Stop a flat session with no open order: its strategy stops, nothing serves it (refused
    while it holds a position or an order: flatten it first)."""
    _act(stop_session, session_id)


@app.command("start")
def start_cmd(session_id: SessionId) -> None:
    """Start a stopped (or not trading) session: active and trading again."""
    _act(start_session, session_id)


@app.command("flatten")
def flatten_cmd(session_id: SessionId) -> None:
    """Cancel the session's open entries and send its exit to flat, here and now."""
    _act(flatten_session, session_id)
