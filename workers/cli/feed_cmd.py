"""``tradefleet feed``: run a registered market-data source into the instrument streams."""

from __future__ import annotations

from typing import Annotated

import typer

from workers.celery_app import create_app
from workers.connections import require_redis
from workers.feeds.base import parse_speed
from workers.feeds.registry import create_feed
from workers.feeds.runner import run_feed
from workers.runtime import make_publisher
from workers.settings import get_settings

app = typer.Typer(help="Market-data feeds.", no_args_is_help=True)


@app.command("replay")
def replay_cmd(
    product: Annotated[str, typer.Option(help="Product root, e.g. ES or GC.")],
    contract: Annotated[str, typer.Option(help="Contract symbol, e.g. ESZ13.")],
    date_from: Annotated[str, typer.Option("--from", help="First date, YYYY-MM-DD.")],
    date_to: Annotated[str | None, typer.Option("--to", help="Last date (inclusive).")] = None,
    speed: Annotated[str, typer.Option(help="A multiple of real time, or 'max'.")] = "max",
) -> None:
    """Replay the real data for one contract and date range."""
    args = {
        "product": product.upper(),
        "contract": contract.upper(),
        "date_from": date_from,
        "date_to": date_to or date_from,
        "speed": speed,
    }
    settings = get_settings()
    source = create_feed("replay", args, settings)
    client = require_redis(settings)
    publisher = make_publisher(client, settings, create_app(settings))
    report = run_feed(source.ticks(), publisher, parse_speed(speed))
    typer.echo(f"published {report.published} ticks in {report.seconds:.1f}s")
