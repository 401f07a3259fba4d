"""``tradefleet feed``: run a registered market-data source into the instrument streams."""

from __future__ import annotations

import signal
import threading
from functools import partial
from typing import Annotated, Any

import typer

from trading.exceptions import BadInput
from trading.market_hours import globex_open
from workers.calendars.exchange_holidays import exchange_holidays
from workers.celery_app import create_app
from workers.connections import require_redis
from workers.db.engines import engine_for
from workers.feeds.base import parse_speed
from workers.feeds.live import live_feed
from workers.feeds.registry import create_feed
from workers.feeds.resume import resume_ms
from workers.feeds.runner import FeedAgain, run_feed
from workers.feeds.stall import StallWatch
from workers.feeds.tradovate import TradovateSource
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
    """Replay the real data for one contract and date range. A stream Redis lost (restarted
    empty) is published again from where its rebuilt sessions resume."""
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
    resume = partial(resume_ms, engine_for(settings.sqlalchemy_url), client)
    again = FeedAgain(reread=source.ticks, from_ms=resume)
    report = run_feed(source.ticks(), publisher, parse_speed(speed), again=again)
    lost = f" (streams lost and published again {report.lost} times)" if report.lost else ""
    typer.echo(f"published {report.published} ticks in {report.seconds:.1f}s{lost}")


@app.command("live")
def live_cmd(
    source: Annotated[str, typer.Option(help="The live source: tradovate.")],
    contract: Annotated[
        str, typer.Option(help="Contract symbol (tradefleet's, two year digits), e.g. ESZ26.")
    ],
    warmup_bars: Annotated[
        int, typer.Option(help="Minute bars of history to publish first (empty stream only).")
    ] = 0,
    stall_s: Annotated[
        float, typer.Option(help="Seconds without a bar or quote, market open, that stall it.")
    ] = 120.0,
) -> None:
    """Run a live market-data source into its instrument stream until SIGINT or SIGTERM."""

    if source.strip().lower() != "tradovate":
        raise BadInput(f"--source {source!r} is no live source (known: tradovate)")
    args: dict[str, Any] = {
        "contract": contract.strip().upper(),
        "warmup_bars": warmup_bars,
        "stall_s": stall_s,
    }
    settings = get_settings()
    live = create_feed("tradovate", args, settings)
    assert isinstance(live, TradovateSource)
    client = require_redis(settings)
    publisher = make_publisher(client, settings, create_app(settings))
    stop = threading.Event()
    holidays = exchange_holidays()
    engine = engine_for(settings.sqlalchemy_url)
    watch = StallWatch(
        client,
        engine,
        live.config.contract,
        live.config.stall_s,
        lambda now: globex_open(now, holidays),
    )
    again = partial(resume_ms, engine, client)
    loop, counters = live_feed(live, publisher, watch, stop, again)
    loop.probe()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    typer.echo(f"feeding {live.config.contract} from tradovate ({live.config.symbol})", err=True)
    watch.start()
    try:
        loop.run()
    finally:
        watch.stop()
    typer.echo(f"published {counters.bars} bars ({counters.ticks} ticks)")
