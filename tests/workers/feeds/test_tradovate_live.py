"""The live Tradovate source against the local Tradovate server (its own process), ticks
pushed through ``/_local/market/ticks``: completed minute bars become the replay's four ticks,
the history warm-up, a dropped socket resumed with no gap and no duplicate, a stream Redis lost
published again from its sessions' point, the CLI's exit 2."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from tests.kit.cli import run_cli
from tests.kit.publishing import publisher_without_workers
from tests.kit.tradovate_local import LocalTradovate
from tests.kit.wait import wait_until
from trading.market import Tick
from workers.brokers.tradovate.socket import Backoff
from workers.feeds.live import live_feed
from workers.feeds.tradovate import (
    MarketDataFeed,
    TradovateFeedConfig,
    TradovateHistory,
    TradovateSource,
)
from workers.ticks.keys import stream_key, subscribers_key

pytestmark = pytest.mark.integration

CONTRACT = "ESZ26"  # Tradovate's ESZ6
T0 = datetime(2026, 10, 5, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTradovate]:
    local = LocalTradovate.start(tmp_path_factory.mktemp("tradovate-md"))
    yield local
    local.stop()


def push(server: LocalTradovate, minute: int, *prices: str, bid: str = "", ask: str = "") -> None:
    ticks = []
    for i, price in enumerate(prices):
        tick = {
            "symbol": "ESZ6",
            "time": (T0 + timedelta(minutes=minute, seconds=i)).isoformat(),
            "price": price,
            "size": str(i + 1),
        }
        if bid:
            tick |= {"bid": bid, "ask": ask}
        ticks.append(tick)
    server.ticks(*ticks)


class Rig:
    def __init__(self, server: LocalTradovate, **config: object) -> None:
        self.server = server
        self.ticks: list[Tick] = []
        self.stop = threading.Event()
        md_token = server.token()["mdAccessToken"]
        self.feed = MarketDataFeed(
            server.md_url,
            TradovateFeedConfig.from_args({"contract": CONTRACT, **config}),
            lambda: md_token,
            self.ticks.extend,
            self.stop,
            backoff=Backoff(base_s=0.05, cap_s=0.2),
        )
        self.thread = threading.Thread(target=self.feed.run, daemon=True)

    def __enter__(self) -> Rig:
        self.thread.start()
        wait_until(lambda: self.feed.connections >= 1, what="the chart to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def bars(self) -> list[datetime]:
        return [t.time for t in self.ticks if t.time.second == 0]


def test_a_completed_bar_becomes_the_replays_four_ticks(server: LocalTradovate) -> None:
    push(server, 0, "5000.25")  # a bar before the feed starts: its history
    with Rig(server) as rig:
        push(server, 1, "5001.00", "5003.50", "4999.75", "5002.25", bid="5002.00", ask="5002.50")
        assert rig.ticks[:0] == []
        push(server, 2, "5002.50")
        minute = T0 + timedelta(minutes=1)

        def of_the_minute() -> list[Tick]:
            return [t for t in rig.ticks if minute <= t.time < minute + timedelta(minutes=1)]

        wait_until(lambda: len(of_the_minute()) >= 4, what="the 14:01 bar")
        got = of_the_minute()
        assert [t.time for t in got] == [minute + timedelta(seconds=s) for s in (0, 15, 30, 45)]
        assert [t.price for t in got] == [
            Decimal("5001.00"),
            Decimal("5003.50"),
            Decimal("4999.75"),
            Decimal("5002.25"),
        ]
        assert sum(t.size for t in got) == 1 + 2 + 3 + 4
        assert [t.size for t in got] == [3, 3, 2, 2]  # replay's split of 10
        assert {(t.bid, t.ask) for t in got} == {(Decimal("5002.00"), Decimal("5002.50"))}
        assert all(t.instrument == CONTRACT for t in got)
        # the bar in progress (14:02) is held back
        assert all(t.time < T0 + timedelta(minutes=2) for t in rig.ticks)


def test_dropped_sockets_resume_without_gap_or_duplicate(server: LocalTradovate) -> None:
    push(server, 10, "5010.00")
    with Rig(server) as rig:
        push(server, 11, "5011.00")
        wait_until(lambda: T0 + timedelta(minutes=10) in rig.bars(), what="bar 14:10")
        server.control("POST", "faults", {"drop_sockets": True})
        push(server, 12, "5012.00")  # while the feed reconnects
        push(server, 13, "5013.00")
        wait_until(lambda: rig.feed.connections >= 2, what="a reconnection")
        push(server, 14, "5014.00")
        wait_until(lambda: T0 + timedelta(minutes=13) in rig.bars(), what="bar 14:13")
        bars = [b for b in rig.bars() if b >= T0 + timedelta(minutes=10)]
        assert bars == [T0 + timedelta(minutes=m) for m in (10, 11, 12, 13)]
        assert len(rig.ticks) == len(set((t.time, t.price) for t in rig.ticks))


def test_warmup_bars_then_live(server: LocalTradovate) -> None:
    for m in range(20, 25):
        push(server, m, f"50{m}.00")
    with Rig(server, warmup_bars=3) as rig:
        wait_until(lambda: len(rig.bars()) >= 3, what="three warm-up bars")
        assert rig.bars() == [T0 + timedelta(minutes=m) for m in (21, 22, 23)]
        push(server, 25, "5025.00")
        wait_until(lambda: len(rig.bars()) >= 4, what="the live bar")
        assert rig.bars()[-1] == T0 + timedelta(minutes=24)


def test_history_gives_completed_minute_bars_before_until(server: LocalTradovate) -> None:
    for m in range(30, 36):
        push(server, m, f"50{m}.00", f"50{m}.50")
    token = server.token()["mdAccessToken"]
    history = TradovateHistory(server.md_url, lambda: token)
    bars = history.history(CONTRACT, T0 + timedelta(minutes=35), 4)
    assert [b.start for b in bars] == [T0 + timedelta(minutes=m) for m in (31, 32, 33, 34)]
    assert bars[0].open == Decimal("5031.00") and bars[0].close == Decimal("5031.50")
    assert bars[0].volume == 3


def test_feed_live_refuses_with_exit_2(tmp_path: Path, redis_url: str) -> None:
    env = {
        "TRADEFLEET_REDIS_URL": redis_url,
        "TRADEFLEET_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "TRADEFLEET_TRADOVATE_REST_URL": "http://127.0.0.1:9/v1",
        "TRADEFLEET_TRADOVATE_MD_WS_URL": "ws://127.0.0.1:9/md/v1/websocket",
        "TRADEFLEET_TRADOVATE_USERNAME": "someone",
        "TRADEFLEET_TRADOVATE_PASSWORD": "hunter2-secret",
    }
    bad = run_cli(env, "feed", "live", "--source", "tradovate", "--contract", "ES")
    assert bad.returncode == 2, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    down = run_cli(env, "feed", "live", "--source", "tradovate", "--contract", "ESZ6")
    assert down.returncode == 2, down.stderr
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert "Traceback" not in down.stderr and "hunter2" not in down.stderr + down.stdout


def test_a_lost_stream_is_published_again_from_its_sessions_point(
    redis_url: str, tmp_path: Path
) -> None:
    """Redis lost the instrument's stream (restarted empty): the next bar's batch finds it so
    and appends nothing; the feed charts again from the bar holding the point its sessions
    resume at, publishes from that point on the entries (and ids) the stream held, then goes
    on live."""
    server = LocalTradovate.start(tmp_path)  # its own bars: no other test's
    client = redis.Redis.from_url(redis_url)
    client.sadd(subscribers_key(CONTRACT), "s-1")  # a session reads the stream
    publisher = publisher_without_workers(client)
    md_token = server.token()["mdAccessToken"]
    config = TradovateFeedConfig.from_args({"contract": CONTRACT})
    source = TradovateSource(config, server.md_url, lambda: md_token)
    point: list[int] = []
    asked: list[str] = []

    def again(instrument: str) -> int:
        asked.append(instrument)
        client.sadd(subscribers_key(CONTRACT), "s-1")  # its recovery subscribed it again
        return point[0]

    stop = threading.Event()
    backoff = Backoff(base_s=0.05, cap_s=0.2)
    loop, counters = live_feed(source, publisher, None, stop, again, backoff=backoff)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()

    def entries() -> list[tuple[bytes, dict[bytes, bytes]]]:
        return client.xrange(stream_key(CONTRACT))  # type: ignore[return-value]

    def ms(minute: int, second: int) -> int:
        return int((T0 + timedelta(minutes=minute, seconds=second)).timestamp() * 1000)

    try:
        wait_until(lambda: loop.connections >= 1, what="the chart to start")
        for minute in range(40, 45):
            push(server, minute, f"50{minute}.00", f"50{minute}.50")
        wait_until(lambda: len(entries()) >= 16, what="bars 14:40-14:43 published")
        before = entries()
        assert [int(e[1][b"t"]) for e in before][::4] == [ms(m, 0) for m in range(40, 44)]
        point.append(ms(41, 15))  # the sessions resume inside the 14:41 bar
        client.flushall()  # Redis restarted empty: the stream and its feed record are gone
        push(server, 45, "5045.00")  # completes 14:44: its batch finds the stream lost
        wait_until(
            lambda: any(int(e[1][b"t"]) == ms(44, 45) for e in entries()),
            what="the stream published again up to 14:44",
        )
        after = entries()
    finally:
        stop.set()
        thread.join(timeout=10)
        client.close()
        server.stop()

    assert asked == [CONTRACT] and counters.lost == 1
    kept = [e for e in before if int(e[1][b"t"]) >= point[0]]
    assert after[: len(kept)] == kept, "from the point on, the entries and ids it had"
    assert [int(e[1][b"t"]) for e in after[len(kept) :]] == [ms(44, s) for s in (0, 15, 30, 45)], (
        "then the bar that found the stream lost, once"
    )
    assert [e[0] for e in after] == [f"{int(e[1][b't'])}-0".encode() for e in after]
