"""The Tradovate user-sync listener: which accounts a props event concerns (pure), the
coalescing of delivery requests on real Redis, and the listener on a UserSync against a
Tradovate-like WebSocket server in the test (``fake_ws``)."""

from __future__ import annotations

import threading

import pytest
import redis

from tests.kit.wait import wait_until
from tests.workers.brokers.tradovate.fake_ws import FakeUserSocket
from workers.brokers.tradovate.usersync import UserSync
from workers.brokers.tradovate.wsproto import PropsEvent, snapshot_entities
from workers.orders.deliver import pending_key
from workers.orders.listener import AccountRouter, FillListener

# assumed entity fields as in the shared contract (Account{id, name}, Order{id, accountId},
# Fill{id, orderId}, Position{accountId}, Command{orderId}, OrderVersion{orderId}).
SNAPSHOT = {
    "users": [{"id": 9}],
    "accounts": [
        {"id": 100, "name": "DEMO0001", "userId": 9},
        {"id": 200, "name": "DEMO0002", "userId": 9},
        {"id": 300, "name": "OTHER", "userId": 9},
    ],
    "orders": [{"id": 41, "accountId": 100}, {"id": 51, "accountId": 300}],
}
WATCHED = ("DEMO0001", "DEMO0002")


def learned(router: AccountRouter) -> AccountRouter:
    for entity in snapshot_entities(SNAPSHOT):
        router.accounts_of(entity)
    return router


def ev(entity_type: str, **entity: object) -> PropsEvent:
    return PropsEvent(entity_type, "Created", entity)


def test_events_map_to_their_accounts() -> None:
    router = learned(AccountRouter(WATCHED))
    assert router.accounts_of(ev("fill", id=1, orderId=41)) == ("DEMO0001",)
    assert router.accounts_of(ev("fill", id=2, orderId=51)) == ()
    assert router.accounts_of(ev("position", id=3, accountId=200)) == ("DEMO0002",)
    assert router.accounts_of(ev("order", id=61, accountId=200)) == ("DEMO0002",)
    assert router.accounts_of(ev("command", id=4, orderId=61)) == ("DEMO0002",)
    assert router.accounts_of(ev("orderVersion", id=5, orderId=41)) == ("DEMO0001",)
    assert router.accounts_of(ev("cashBalance", id=6, accountId=100)) == ()
    assert router.accounts_of(ev("position", id=7, accountId=300)) == ()


def test_an_unknown_order_is_looked_up_once_else_every_account_is_delivered() -> None:
    asked: list[int] = []

    def lookup(order_id: int) -> int | None:
        asked.append(order_id)
        return 200 if order_id == 77 else None

    router = learned(AccountRouter(WATCHED, lookup))
    assert router.accounts_of(ev("fill", id=1, orderId=77)) == ("DEMO0002",)
    assert router.accounts_of(ev("fill", id=2, orderId=77)) == ("DEMO0002",)
    assert router.accounts_of(ev("fill", id=3, orderId=88)) == WATCHED
    assert asked == [77, 88]
    assert AccountRouter(WATCHED).accounts_of(ev("position", accountId=100)) == WATCHED


class Sent:
    def __init__(self) -> None:
        self.accounts: list[str] = []
        self.fail = False

    def __call__(self, account: str) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.accounts.append(account)


@pytest.mark.integration
def test_a_burst_queues_one_delivery_until_it_starts(redis_client: redis.Redis) -> None:
    sent = Sent()
    listener = FillListener(redis_client, learned(AccountRouter(WATCHED)), sent)
    for n in range(5):
        listener.on_entity(ev("fill", id=n, orderId=41))
    assert sent.accounts == ["DEMO0001"]
    assert 0 < int(redis_client.ttl(pending_key("DEMO0001"))) <= 30  # type: ignore[arg-type]
    listener.on_resync()
    assert sent.accounts == ["DEMO0001", "DEMO0002"]
    redis_client.delete(pending_key("DEMO0001"))  # what the task does as it starts
    listener.on_entity(ev("fill", id=9, orderId=41))
    listener.on_entity(ev("fill", id=10, orderId=41))
    assert sent.accounts == ["DEMO0001", "DEMO0002", "DEMO0001"]


@pytest.mark.integration
def test_a_failed_send_or_an_expired_key_lets_the_next_request_through(
    redis_client: redis.Redis,
) -> None:
    sent = Sent()
    listener = FillListener(redis_client, learned(AccountRouter(WATCHED)), sent, ttl_s=1)
    sent.fail = True
    with pytest.raises(ConnectionError):
        listener.on_entity(ev("position", accountId=100))
    assert redis_client.get(pending_key("DEMO0001")) is None
    sent.fail = False
    listener.on_entity(ev("position", accountId=100))
    listener.on_entity(ev("position", accountId=100))
    assert sent.accounts == ["DEMO0001"]
    wait_until(lambda: redis_client.get(pending_key("DEMO0001")) is None, timeout=5, what="TTL")
    listener.on_entity(ev("position", accountId=100))
    assert sent.accounts == ["DEMO0001", "DEMO0001"]


@pytest.mark.integration
def test_the_listener_on_a_user_socket(redis_client: redis.Redis) -> None:
    server = FakeUserSocket(snapshot=SNAPSHOT).start()
    sent = Sent()
    listener = FillListener(redis_client, AccountRouter(WATCHED), sent)
    stop = threading.Event()
    waits: list[float] = []
    sync = UserSync(
        server.url,
        token=lambda: "good-token",
        user_id=lambda: 9,
        on_entity=listener.on_entity,
        on_resync=listener.on_resync,
        stop=stop,
        sleep=waits.append,
        heartbeat_s=0.1,
    )
    thread = threading.Thread(target=sync.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: sorted(sent.accounts) == sorted(WATCHED), what="the first resync")
        redis_client.delete(pending_key("DEMO0001"), pending_key("DEMO0002"))
        server.push_now("fill", "Created", {"id": 1, "orderId": 41, "qty": 1})
        server.push_now("fill", "Created", {"id": 2, "orderId": 41, "qty": 1})
        server.push_now("fill", "Created", {"id": 3, "orderId": 51, "qty": 1})
        wait_until(lambda: len(sent.accounts) == 3, what="a delivery for the fill")
        server.push_now("cashBalance", "Updated", {"id": 1, "accountId": 200})
        redis_client.delete(pending_key("DEMO0001"), pending_key("DEMO0002"))
        server.drop_all()
        wait_until(lambda: len(sent.accounts) == 5, what="deliveries after the resync")
    finally:
        stop.set()
        thread.join(5)
        server.stop()
    assert sent.accounts[2] == "DEMO0001"
    assert sorted(sent.accounts[3:]) == sorted(WATCHED)
    assert len(waits) == 1
