"""``tradefleet broker paper fill``: book a fill at the paper broker behind every session's back.

For drills and tests: the account now holds a position its sessions do not know about, which
reconciliation must find and correct.

``tradefleet broker listen --broker tradovate --account NAME``: the user-sync listener
(``workers.orders.listener``), a process of its own (Procfile ``listen_tradovate``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer

from trading.exceptions import BadInput
from workers.brokers.commands import QueryPositions
from workers.brokers.paper.broker import PaperBroker
from workers.brokers.registry import build_broker
from workers.settings import get_settings

app = typer.Typer(help="Broker drills.", no_args_is_help=True)
paper = typer.Typer(help="The paper broker.", no_args_is_help=True)
app.add_typer(paper, name="paper")


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
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from workers.celery_app import create_app  # noqa: PLC0415
    from workers.orders.listener import run_listener  # noqa: PLC0415

    if broker.strip().lower() != "tradovate":
        raise BadInput(f"--broker {broker!r} pushes nothing to listen to (known: tradovate)")
    settings = get_settings()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    celery = create_app(settings)
    typer.echo(f"listening to tradovate for {', '.join(account)}", err=True)
    run_listener(settings, account, stop, celery.send_task)
