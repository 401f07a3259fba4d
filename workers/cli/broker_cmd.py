"""``tradefleet broker paper fill``: book a fill at the paper broker behind every session's back.

For drills and tests: the account now holds a position its sessions do not know about, which
reconciliation must find and correct.
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
