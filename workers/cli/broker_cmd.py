"""``tradefleet broker paper fill``: book a fill at the paper broker behind every session's back
(for drills and tests: the account now holds a position its sessions do not know about, which
reconciliation must find and correct).

``tradefleet broker check --broker tradovate [--account NAME] [--contract ESZ26]``: the token,
the account, a contract lookup; one line per check, one line and exit 2 on the first failure.

``tradefleet broker listen --broker tradovate --account NAME``: the user-sync listener
(``workers.orders.listener``), a process of its own (Procfile ``listen_tradovate``).
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer

from trading.exceptions import BadInput, TradefleetError
from workers.brokers.commands import QueryPositions
from workers.brokers.paper.broker import PaperBroker
from workers.brokers.registry import build_broker
from workers.brokers.tradovate.broker import TradovateBroker
from workers.celery_app import create_app
from workers.orders.listener import run_listener
from workers.settings import get_settings

app = typer.Typer(help="Broker drills.", no_args_is_help=True)
paper = typer.Typer(help="The paper broker.", no_args_is_help=True)
app.add_typer(paper, name="paper")


@app.command("check")
def check_cmd(
    broker: Annotated[str, typer.Option(help="Broker name (tradovate).")] = "tradovate",
    account: Annotated[str | None, typer.Option(help="Broker account to look for.")] = None,
    contract: Annotated[
        str | None,
        typer.Option(
            help="Contract to look up, e.g. ESZ26 (tradefleet's symbol; Tradovate calls it ESZ6)."
        ),
    ] = None,
) -> None:
    """Check the broker's credentials, account and a contract; exit 2 on the first failure."""
    if broker != "tradovate":
        raise BadInput(f"broker check knows only tradovate, not {broker!r}")
    settings = get_settings()
    built = build_broker("tradovate", {"account": account or "-"}, settings)
    if not isinstance(built, TradovateBroker):
        raise BadInput("the tradovate broker is not configured")
    tradovate = settings.tradovate
    typer.echo(f"environment: {tradovate.environment} ({tradovate.rest_url})")
    try:
        built.api.tokens.access_token()
        typer.echo(f"token: ok (user id {built.api.tokens.user_id()})")
        if account:
            typer.echo(f"account: {account} ok (id {built.account_id()})")
        if contract:
            info = built.contract(contract.strip().upper())
            typer.echo(
                f"contract: {info.symbol} = Tradovate {info.tradovate_name} (id "
                f"{info.contract_id}), tick size {info.tick_size}, point value {info.point_value}"
            )
    except TradefleetError as exc:
        raise BadInput(f"broker check failed: {exc}") from None


@paper.command("fill")
def fill_cmd(
    account: Annotated[str, typer.Option(help="Broker account.")],
    contract: Annotated[str, typer.Option(help="Contract symbol, e.g. ESZ13.")],
    qty: Annotated[int, typer.Option(help="Signed quantity: positive bought, negative sold.")],
    price: Annotated[str, typer.Option(help="Fill price, e.g. 1680.25.")],
) -> None:
    """Book an external fill (no session sent it) and print the account's new position."""
    try:
        amount = Decimal(price)
    except InvalidOperation:
        raise BadInput(f"--price is not a number: {price!r}") from None
    symbol = contract.strip().upper()
    broker = build_broker("paper", {"account": account}, get_settings())
    if not isinstance(broker, PaperBroker):
        raise BadInput("the paper broker is not configured")
    fill = broker.book_external_fill(account, symbol, qty, amount, datetime.now(UTC))
    held = broker.positions(QueryPositions(account)).get(symbol, 0)
    typer.echo(
        f"booked {fill.execution_id}: {account} {symbol} {qty:+d} @ {fill.price}; "
        f"broker position now {held}"
    )


# --------------------------------------------------------------------------- broker listen


@app.command("listen")
def listen_cmd(
    account: Annotated[
        list[str], typer.Option("--account", help="Broker account to listen for (repeatable).")
    ],
    broker: Annotated[str, typer.Option(help="The broker that pushes: tradovate.")] = "tradovate",
) -> None:
    """Listen to the broker's pushed order and fill events and queue a fill delivery
    (``tradefleet.orders.deliver``) per changed account; runs until SIGINT or SIGTERM."""

    if broker.strip().lower() != "tradovate":
        raise BadInput(f"--broker {broker!r} pushes nothing to listen to (known: tradovate)")
    settings = get_settings()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    celery = create_app(settings)
    typer.echo(f"listening to tradovate for {', '.join(account)}", err=True)
    run_listener(settings, account, stop, celery.send_task)
