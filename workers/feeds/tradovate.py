"""Tradovate's market data as a source: registered feed name ``"tradovate"``.

Candles must be exact, so trades come from ``md/getChart`` 1-minute bars (``MinuteBar``,
``elementSize`` 1), never from summing quotes: each COMPLETED bar is published as the four
ticks the replay makes of a bar (``workers.feeds.bars.bar_ticks``: open, high, low, close at
+0/+15/+30/+45 s, the volume split exactly), with the bid/ask of the last ``md/subscribeQuote``
quote stamped inside the bar's minute (else the last one before it ended; none before any).
Message shapes: ``workers.feeds.tradovate_md`` (each cites its page).

A bar is complete when a bar with a later start arrives (assumed: Tradovate sends the bar in
progress again, whole, on every change — EX-10's chart packets carry whole bars — so a bar is
final once the next minute's bar exists). The bar in progress is held back. So the stream
never holds a bar that changes afterwards, at the cost of publishing each bar when the next
minute's first trade prints.

Connection (``workers.brokers.tradovate.usersync``'s pattern and reader): ``o``, ``authorize``
with the market-data access token (``Tokens.md_access_token``), ``md/subscribeQuote``,
``md/getChart``; the heartbeat ``[]`` every 2.5 s, the server's silence watched. Anything that
ends a connection (a close frame, a dropped socket, a silent server, a refused connection or
authorize) leads to a new one after a back-off (1 s doubling to 30 s, jitter). Each new chart
asks for the bars from the last bar published on (``asFarAsTimestamp``; that bar itself is
skipped): no gap, no duplicate, whatever the socket did. The first chart of a feed resumes from
the instrument stream's last entry (its bar), so a restarted feed process neither repeats nor
skips; with an empty stream it starts with ``warmup_bars`` bars of history
(``asMuchAsElements``) published before the live ones.

History (``TradovateHistory``, the warm-up capability of ``workers.feeds.history``): one
connection, one ``md/getChart`` with ``closestTimestamp`` and ``asMuchAsElements``, the bars
until ``eoh``, then ``md/cancelChart``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import redis
from websockets.exceptions import WebSocketException

from trading.exceptions import BadInput, ServiceUnavailable
from trading.market import EPOCH, Candle, Tick
from workers.brokers.tradovate import wsproto
from workers.brokers.tradovate.auth import tokens_for
from workers.brokers.tradovate.socket import (
    CONNECTION_OVER,
    Backoff,
    ConnectionOver,
    Connector,
    FrameReader,
    closing,
    default_connector,
    describe,
    open_authorized,
    run_reconnecting,
)
from workers.brokers.tradovate.symbols import to_tradovate
from workers.brokers.tradovate.wsproto import DataFrame, Event
from workers.connections import redis_client
from workers.feeds import tradovate_md as md
from workers.feeds.bars import MINUTE, bar_ticks
from workers.feeds.base import FeedArgs
from workers.settings import Settings

log = logging.getLogger(__name__)

NAME = "tradovate"
DEFAULT_STALL_S = 120.0
MAX_WARMUP_BARS = 10_000
"""assumed: a bound on one history request; the docs give none."""
QUOTE_ID, CHART_ID = 1, 2
_ALLOWED_ARGS = frozenset({"contract", "instrument", "warmup_bars", "stall_s"})


@dataclass(frozen=True, slots=True)
class TradovateFeedConfig:
    contract: str
    """tradefleet's symbol (``ESZ26``); Tradovate's is ``symbols.to_tradovate`` of it."""
    warmup_bars: int = 0
    stall_s: float = DEFAULT_STALL_S

    @property
    def symbol(self) -> str:
        return to_tradovate(self.contract)

    @classmethod
    def from_args(cls, args: FeedArgs) -> TradovateFeedConfig:
        unknown = set(args) - _ALLOWED_ARGS
        if unknown:
            raise BadInput(
                f"tradovate: unknown args {sorted(unknown)} (known: {sorted(_ALLOWED_ARGS)})"
            )
        raw = args.get("contract", args.get("instrument"))
        if not isinstance(raw, str) or not raw.strip():
            raise BadInput("tradovate: arg 'contract' must be a contract symbol like ESZ26")
        contract = raw.strip().upper()
        to_tradovate(contract)
        warmup = args.get("warmup_bars", 0)
        if isinstance(warmup, str) and warmup.strip().isdigit():
            warmup = int(warmup.strip())
        if type(warmup) is not int or not 0 <= warmup <= MAX_WARMUP_BARS:
            raise BadInput(f"tradovate: warmup_bars must be 0..{MAX_WARMUP_BARS}, got {warmup!r}")
        stall = args.get("stall_s", DEFAULT_STALL_S)
        try:
            stall_s = float(stall) if isinstance(stall, int | float | str) else float("nan")
        except ValueError:
            stall_s = float("nan")
        if isinstance(stall, bool) or not 1 <= stall_s <= 86_400:
            raise BadInput(f"tradovate: stall_s must be 1..86400 seconds, got {stall!r}")
        return cls(contract, warmup, stall_s)


# --------------------------------------------------------------------------- bars (pure)


@dataclass
class BarTracker:
    """Which bars are complete and not published yet (pure; see the module).

    ``last_published``: the start of the last bar published (None: none yet). ``pending``: the
    bar in progress (held back). Bars at or before ``last_published`` are never returned again.
    """

    last_published: datetime | None = None
    pending: Candle | None = None
    quotes: deque[md.Quote] = field(default_factory=lambda: deque(maxlen=512))

    def resume_from(self) -> datetime | None:
        """Where a new chart starts (``asFarAsTimestamp``): the last bar published, else the
        bar that was in progress, else nowhere (the first chart)."""
        if self.last_published is not None:
            return self.last_published
        return None if self.pending is None else self.pending.start

    def new_connection(self) -> None:
        """A bar in progress is asked for again by the next chart."""
        self.pending = None

    def bar(self, bar: Candle) -> list[Candle]:
        """``bar`` arrived (history or live): the bars it completes, oldest first."""
        if self.last_published is not None and bar.start <= self.last_published:
            return []
        if self.pending is None or bar.start == self.pending.start:
            self.pending = bar
            return []
        if bar.start < self.pending.start:
            return []  # assumed: an older bar after a newer one is a repeat; ignored
        done, self.pending = self.pending, bar
        return [done]

    def quote(self, quote: md.Quote) -> None:
        self.quotes.append(quote)

    def touch_for(self, bar: Candle) -> tuple[Decimal | None, Decimal | None]:
        """The bid/ask of the last quote stamped before the bar's minute ended."""
        end = bar.start + MINUTE
        for quote in reversed(self.quotes):
            if quote.time < end:
                return quote.bid, quote.ask
        return None, None

    def published(self, bar: Candle) -> tuple[Tick, ...]:
        """Record ``bar`` as published; its ticks, with the touch."""
        self.last_published = bar.start
        bid, ask = self.touch_for(bar)
        while len(self.quotes) > 1 and self.quotes[1].time < bar.start:
            self.quotes.popleft()
        return bar_ticks(bar, "", bid, ask)


# --------------------------------------------------------------------------- the socket


TokenSource = Callable[[], str]


class MarketDataFeed:
    """The live loop (module docstring): ``run`` until ``stop``; ``on_ticks`` gets each
    completed bar's four ticks (publish them as one batch), ``on_data`` every quote or bar
    received (the stall watch's heartbeat)."""

    def __init__(
        self,
        url: str,
        config: TradovateFeedConfig,
        token: TokenSource,
        on_ticks: Callable[[tuple[Tick, ...]], None],
        stop: threading.Event,
        *,
        resume_after: datetime | None = None,
        on_data: Callable[[], None] | None = None,
        connect: Connector = default_connector,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
        heartbeat_s: float = wsproto.HEARTBEAT_INTERVAL_S,
        silence_s: float = wsproto.SERVER_SILENCE_LIMIT_S,
    ) -> None:
        self.url = url
        self.config = config
        self.token = token
        self.on_ticks = on_ticks
        self.on_data = on_data or (lambda: None)
        self.stop = stop
        self.connect = connect
        self.clock = clock
        self.backoff = backoff if backoff is not None else Backoff()
        self.heartbeat_s = heartbeat_s
        self.silence_s = silence_s
        self.bars = BarTracker(last_published=resume_after)
        self.connections = 0
        """Connections whose chart started (for tests and status)."""

    def run(self) -> None:
        """Connect, chart, read; on any failure wait and do it all again, until ``stop``."""
        stop, clock = self.stop, self.clock
        run_reconnecting("market data", self.run_once, stop, clock, stop.wait, self.backoff)

    def probe(self) -> None:
        """Connect and authorize once, then close: ``ServiceUnavailable`` with one line when
        the endpoint is unreachable or refuses the token (the command's exit 2)."""
        try:
            conn = self.connect(self.url)
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise ServiceUnavailable(
                f"Tradovate market data at {self.url} did not answer ({describe(exc)})"
            ) from None
        try:
            with closing(conn):
                reader = FrameReader(conn, self.clock, self.heartbeat_s, self.silence_s, self.stop)
                open_authorized(conn, reader, self.token(), _ignore)
        except CONNECTION_OVER as exc:
            raise ServiceUnavailable(
                f"Tradovate market data at {self.url} failed: {describe(exc)}"
            ) from None

    def rewind(self, to: datetime) -> None:
        """Publish again from the bar holding ``to`` on: the next chart starts there (the
        instrument's stream was lost; ``workers.feeds.live``). Ends the connection (raises
        ``ConnectionOver``): the bars come again on a new one."""
        self.bars.last_published = to.replace(second=0, microsecond=0) - MINUTE
        self.bars.pending = None
        raise ConnectionOver(f"{self.config.contract}: charting again from {to.isoformat()}")

    def run_once(self) -> None:
        """One connection, from its ``o`` to its end (always an exception, or ``stop``)."""
        with closing(self.connect(self.url)) as conn:
            self._session(conn)

    def _session(self, conn: Any) -> None:
        reader = FrameReader(conn, self.clock, self.heartbeat_s, self.silence_s, self.stop)
        self.bars.new_connection()
        open_authorized(conn, reader, self.token(), self._event)
        symbol = self.config.symbol
        conn.send(md.subscribe_quote(QUOTE_ID, symbol))
        reader.sent()
        answer = reader.response(QUOTE_ID, self._event)
        if not answer.ok:
            raise ConnectionOver(f"md/subscribeQuote {symbol} answered {answer.status}")
        since = self.bars.resume_from()
        if since is None:
            request = md.get_chart(CHART_ID, symbol, as_much_as=self.config.warmup_bars + 1)
        else:
            request = md.get_chart(CHART_ID, symbol, as_far_as=since)
        conn.send(request)
        reader.sent()
        started = reader.response(CHART_ID, self._event)
        if not started.ok:
            raise ConnectionOver(f"md/getChart {symbol} answered {started.status}")
        md.parse_chart_started(started.data)
        self.connections += 1
        log.info("tradovate market data: %s charted (connection %d)", symbol, self.connections)
        while not self.stop.is_set():
            frame = reader.next_frame()
            if isinstance(frame, DataFrame):
                for message in frame.messages:
                    if isinstance(message, Event):
                        self._event(message)

    def _event(self, event: Event) -> None:
        if event.name == md.QUOTE_EVENT:
            for quote in md.parse_quotes(event.data):
                self.bars.quote(quote)
            self.on_data()
        elif event.name == md.CHART_EVENT:
            for packet in md.parse_charts(event.data):
                for bar in packet.bars:
                    for done in self.bars.bar(bar):
                        ticks = self.bars.published(done)
                        self.on_ticks(tuple(_named(t, self.config.contract) for t in ticks))
            self.on_data()


def _named(tick: Tick, instrument: str) -> Tick:
    return Tick(instrument, tick.time, tick.price, tick.size, tick.bid, tick.ask)


# --------------------------------------------------------------------------- history


class TradovateHistory:
    """Minute bars before a moment from ``md/getChart`` (``workers.feeds.base.HistorySource``)."""

    def __init__(
        self,
        url: str,
        token: TokenSource,
        *,
        connect: Connector = default_connector,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = url
        self.token = token
        self.connect = connect
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> TradovateHistory:
        client = redis_client(settings.redis.url)
        tokens = tokens_for(settings.tradovate, client)
        return cls(settings.tradovate.md_ws_url, tokens.md_access_token)

    def history(self, contract: str, until: datetime, minutes: int) -> list[Candle]:
        if minutes <= 0:
            return []
        symbol = to_tradovate(contract)
        stop = threading.Event()
        deadline = time.monotonic() + self.timeout_s
        try:
            conn = self.connect(self.url)
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise ServiceUnavailable(
                f"Tradovate market data at {self.url} did not answer ({describe(exc)})"
            ) from exc
        try:
            reader = FrameReader(
                conn, time.monotonic, wsproto.HEARTBEAT_INTERVAL_S, self.timeout_s, stop
            )
            open_authorized(conn, reader, self.token(), _ignore)
            # closestTimestamp: the newest bar wanted; the bar starting at ``until`` (if any)
            # is cut below (assumed: closestTimestamp is inclusive).
            newest = until - timedelta(milliseconds=1)
            conn.send(md.get_chart(CHART_ID, symbol, as_much_as=minutes, closest=newest))
            reader.sent()
            packets: list[md.ChartPacket] = []

            def collect(event: Event) -> None:
                if event.name == md.CHART_EVENT:
                    packets.extend(md.parse_charts(event.data))

            answer = reader.response(CHART_ID, collect)
            if not answer.ok:
                raise ServiceUnavailable(f"md/getChart {symbol} answered {answer.status}")
            started = md.parse_chart_started(answer.data)
            mine = started.historical_id
            while not any(p.eoh and p.subscription_id == mine for p in packets):
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(f"md/getChart {symbol}: no end of history in time")
                frame = reader.next_frame()
                if isinstance(frame, DataFrame):
                    for message in frame.messages:
                        if isinstance(message, Event):
                            collect(message)
            got = [bar for p in packets if p.subscription_id == mine for bar in p.bars]
            with contextlib.suppress(*CONNECTION_OVER):
                conn.send(md.cancel_chart(CHART_ID + 1, started.realtime_id))
        except ConnectionOver as exc:
            raise ServiceUnavailable(f"Tradovate market data: {exc}") from exc
        except (OSError, TimeoutError, WebSocketException, wsproto.ProtocolError) as exc:
            raise ServiceUnavailable(f"Tradovate market data: {describe(exc)}") from exc
        finally:
            with contextlib.suppress(OSError, WebSocketException):
                conn.close()
        unique = {bar.start: bar for bar in got if bar.start < until}
        return [unique[start] for start in sorted(unique)][-minutes:]


class TradovateSource:
    """The registered source (``workers.feeds.base.MarketDataSource``): ``ticks()`` runs the
    live loop on a thread and yields each completed bar's ticks; the feed command runs the
    loop itself (``workers.feeds.live``) to publish a bar's four ticks as one batch."""

    name = NAME

    def __init__(self, config: TradovateFeedConfig, url: str, token: TokenSource) -> None:
        self.config = config
        self.url = url
        self.token = token

    @classmethod
    def from_args(cls, args: FeedArgs, settings: Settings) -> TradovateSource:
        config = TradovateFeedConfig.from_args(args)
        url = settings.tradovate.md_ws_url
        tokens = tokens_for(settings.tradovate, redis_client(settings.redis.url))
        return cls(config, url, tokens.md_access_token)

    @property
    def instruments(self) -> tuple[str, ...]:
        return (self.config.contract,)

    @property
    def speed(self) -> float | None:
        return None  # live: already real time

    def feed(
        self,
        on_ticks: Callable[[tuple[Tick, ...]], None],
        stop: threading.Event,
        *,
        resume_after: datetime | None = None,
        on_data: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> MarketDataFeed:
        return MarketDataFeed(
            self.url,
            self.config,
            self.token,
            on_ticks,
            stop,
            resume_after=resume_after,
            on_data=on_data,
            **kwargs,
        )

    def ticks(self) -> Iterator[Tick]:

        got: queue.Queue[tuple[Tick, ...]] = queue.Queue()
        stop = threading.Event()
        loop = self.feed(got.put, stop)
        thread = threading.Thread(target=loop.run, name="tradovate-md", daemon=True)
        thread.start()
        try:
            while True:
                yield from got.get()
        finally:
            stop.set()

    def history(self, contract: str, until: datetime, minutes: int) -> list[Candle]:
        return TradovateHistory(self.url, self.token).history(contract, until, minutes)


def _ignore(_event: Event) -> None:
    return None


def stream_resume_point(client: redis.Redis, stream: str) -> datetime | None:
    """The start of the bar of the stream's last entry (the feed published whole bars)."""
    last: Any = client.xrevrange(stream, count=1)
    if not last:
        return None
    values = last[0][1]
    raw = values.get(b"t") if isinstance(values, dict) else None
    if raw is None:
        return None
    moment = EPOCH + timedelta(milliseconds=int(raw))
    return moment.replace(second=0, microsecond=0)


__all__ = [
    "NAME",
    "BarTracker",
    "MarketDataFeed",
    "TradovateFeedConfig",
    "TradovateHistory",
    "TradovateSource",
    "stream_resume_point",
]
