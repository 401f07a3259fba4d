"""UserSync against a Tradovate-like WebSocket server started inside the test
(``fake_ws.FakeUserSocket``): authorize first, then the sync; heartbeats; props and the
snapshot reach the callback; a dropped, refusing or silent server leads to a fresh authorize
and sync after back-off waits that grow; stop ends the loop."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.kit.wait import wait_until
from tests.workers.brokers.tradovate.fake_ws import FakeUserSocket
from workers.brokers.tradovate.socket import Backoff
from workers.brokers.tradovate.usersync import UserSync
from workers.brokers.tradovate.wsproto import PropsEvent

SNAPSHOT = {
    "users": [{"id": 9}],
    "accounts": [{"id": 100, "name": "DEMO0001", "userId": 9}],
    "orders": [{"id": 42, "accountId": 100, "ordStatus": "Working"}],
}


class Rig:
    def __init__(self, server: FakeUserSocket, **kwargs: object) -> None:
        self.server = server
        self.entities: list[PropsEvent] = []
        self.resyncs = 0
        self.waits: list[float] = []
        self.stop = threading.Event()
        self.token = "good-token"
        self.client = UserSync(
            server.url,
            token=lambda: self.token,
            user_id=lambda: 9,
            on_entity=self.entities.append,
            on_resync=self._resynced,
            stop=self.stop,
            sleep=self.waits.append,
            heartbeat_s=0.1,
            **kwargs,  # type: ignore[arg-type]
        )
        self.thread = threading.Thread(target=self.client.run, daemon=True)

    def _resynced(self) -> None:
        self.resyncs += 1

    def start(self) -> Rig:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive(), "UserSync.run did not stop"


@pytest.fixture
def server() -> Iterator[FakeUserSocket]:
    fake = FakeUserSocket(snapshot=SNAPSHOT).start()
    yield fake
    fake.stop()


def requests_of(frames: list[str]) -> list[str]:
    return [f.split("\n", 1)[0] for f in frames if f != "[]"]


def test_authorize_first_then_sync_heartbeats_and_props(server: FakeUserSocket) -> None:
    fill = {"id": 7, "orderId": 42, "qty": 1, "price": 1680.25, "action": "Buy"}
    server.push_after_sync("fill", "Created", fill)
    rig = Rig(server).start()
    try:
        wait_until(lambda: rig.resyncs == 1, what="the first sync")
        wait_until(lambda: any(e.entity_type == "fill" for e in rig.entities), what="the fill")
        wait_until(lambda: server.received[0].count("[]") >= 3, what="client heartbeats")
        server.push_now("order", "Updated", {"id": 42, "accountId": 100, "ordStatus": "Filled"})
        wait_until(lambda: any(e.event_type == "Updated" for e in rig.entities), what="order")
    finally:
        rig.close()
    frames = server.received[0]
    assert frames[0] == "authorize\n0\n\ngood-token"
    endpoint, rid, query, body = frames[1].split("\n", 3)
    assert (endpoint, rid, query) == ("user/syncrequest", "1", "")
    assert json.loads(body)["users"] == [9]
    assert PropsEvent("account", "Snapshot", SNAPSHOT["accounts"][0]) in rig.entities
    assert PropsEvent("order", "Snapshot", SNAPSHOT["orders"][0]) in rig.entities
    (got_fill,) = [e for e in rig.entities if e.entity_type == "fill"]
    assert got_fill.event_type == "Created" and got_fill.entity["price"] == Decimal("1680.25")
    # the snapshot reaches the callback before on_resync, the events after it
    assert rig.entities.index(got_fill) > rig.entities.index(
        PropsEvent("order", "Snapshot", SNAPSHOT["orders"][0])
    )
    assert rig.waits == []


def test_a_drop_reconnects_with_a_fresh_authorize_and_sync(server: FakeUserSocket) -> None:
    rig = Rig(server).start()
    try:
        wait_until(lambda: rig.resyncs == 1, what="the first sync")
        server.drop_all()
        wait_until(lambda: rig.resyncs == 2, what="a resync after the drop")
        server.push_now("fill", "Created", {"id": 8, "orderId": 42})
        wait_until(lambda: any(e.entity.get("id") == 8 for e in rig.entities), what="new fill")
        server.drop_all()
        wait_until(lambda: rig.resyncs == 3, what="a resync after the second drop")
    finally:
        rig.close()
    assert len(server.received) == 3
    for frames in server.received:
        assert requests_of(frames)[:2] == ["authorize", "user/syncrequest"]
    assert len(rig.waits) == 2
    assert 1.0 <= rig.waits[0] <= 1.5
    assert rig.waits[1] >= rig.waits[0]


def test_refused_authorize_backs_off_longer_each_time(server: FakeUserSocket) -> None:
    rig = Rig(server)
    rig.token = "expired"
    rig.start()
    try:
        wait_until(lambda: len(rig.waits) >= 5, what="five refused connections")
        rig.token = "good-token"
        wait_until(lambda: rig.resyncs == 1, what="a sync once the token is good")
    finally:
        rig.close()
    first = rig.waits[:5]
    assert first == sorted(first)
    for n, wait in enumerate(first):
        assert 2**n <= wait <= 1.5 * 2**n
    assert all(requests_of(frames) == ["authorize"] for frames in server.received[:5])


def test_backoff_is_capped_at_thirty_seconds() -> None:
    backoff = Backoff(rng=lambda: 1.0)
    waits = [backoff.next_wait() for _ in range(10)]
    assert waits[:4] == [1.5, 3.0, 6.0, 12.0]
    assert max(waits) == 30.0 and waits[-1] == 30.0
    backoff.reset()
    assert backoff.next_wait() == 1.5


def test_a_silent_server_counts_as_gone(server: FakeUserSocket) -> None:
    rig = Rig(server, silence_s=0.6).start()
    try:
        wait_until(lambda: rig.resyncs == 1, what="the first sync")
        server.silent = True
        wait_until(lambda: len(server.received) >= 2, timeout=10, what="a new connection")
        server.silent = False
        wait_until(lambda: rig.resyncs >= 2, what="a resync after the silence")
    finally:
        rig.close()
    assert rig.waits and rig.waits[0] >= 1.0


def test_stop_ends_run_promptly(server: FakeUserSocket) -> None:
    rig = Rig(server).start()
    wait_until(lambda: rig.resyncs == 1, what="the first sync")
    rig.close()
    assert not rig.thread.is_alive()


def test_the_token_reaches_no_log_line_even_at_debug(
    server: FakeUserSocket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("websockets").setLevel(logging.DEBUG)
    rig = Rig(server)
    rig.token = "secret-token-x"
    server.tokens.add("secret-token-x")
    rig.start()
    try:
        wait_until(lambda: rig.resyncs == 1, what="the first sync")
        server.drop_all()
        wait_until(lambda: rig.resyncs == 2, what="a resync")
    finally:
        rig.close()
        logging.getLogger("websockets").setLevel(logging.NOTSET)
    assert server.received[0][0] == "authorize\n0\n\nsecret-token-x"
    assert "synced" in caplog.text
    assert "secret-token-x" not in caplog.text
