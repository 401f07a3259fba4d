"""The Tradovate user-sync listener: broker pushes in, one pending fill delivery per account
out (``tradefleet broker listen --broker tradovate``).

It runs ``workers.brokers.tradovate.usersync.UserSync`` for the user of the configured
credentials and maps each props event of a watched account to a request for
``tradefleet.orders.deliver`` of that account, coalesced (``workers.orders.deliver``):
- ``fill``, ``order``, ``position``, ``command``, ``orderVersion`` events count; others
  (cash balances, margin snapshots, ...) do not;
- the account is the entity's ``accountId``; a fill, command or order version has only an
  ``orderId``: its order's account, known from the sync snapshot's and the events' orders, else
  asked of ``order_account`` (a REST lookup), else unknown: then EVERY watched account is
  delivered (a delivery is idempotent; missing one is not);
- Tradovate's account ids come from the snapshot's ``account`` entities (by name);
- the snapshot's own entities queue nothing: after every (re)sync, ``on_resync`` queues a
  delivery for every watched account, so polling catches up whatever the socket missed.

It lives in ``workers.orders`` (not beside the client in ``workers.brokers.tradovate``)
because it queues tasks by name (``workers.dispatch``), which the brokers layer may not use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis

from trading.exceptions import BadInput
from workers.brokers.tradovate.auth import tokens_for
from workers.brokers.tradovate.usersync import UserSync
from workers.brokers.tradovate.wsproto import PropsEvent
from workers.connections import redis_client
from workers.dispatch import names
from workers.orders.deliver import PENDING_TTL_S, request_delivery
from workers.settings import Settings

log = logging.getLogger(__name__)

DELIVERY_TYPES = frozenset({"fill", "order", "position", "command", "orderVersion"})
"""The entity types whose events mean the account's fills or orders may have changed."""
SNAPSHOT = "Snapshot"
"""The event type ``wsproto.snapshot_entities`` gives the sync answer's entities."""

OrderAccount = Callable[[int], int | None]
"""A Tradovate order id → its account id (a REST ``order/item`` lookup), ``None`` if unknown."""


class AccountRouter:
    """Which watched accounts a props event concerns; learns account and order ids as they
    pass (snapshot and events)."""

    def __init__(self, accounts: Iterable[str], order_account: OrderAccount | None = None) -> None:
        self.accounts = tuple(dict.fromkeys(accounts))
        self.order_account = order_account
        self.account_names: dict[int, str] = {}
        """Tradovate account id → name, for every account the user has (watched or not)."""
        self.order_accounts: dict[int, int] = {}

    def accounts_of(self, event: PropsEvent) -> tuple[str, ...]:
        entity = event.entity
        if event.entity_type == "account":
            self._learn_account(entity)
            return ()
        if event.entity_type == "order":
            order_id, account_id = _int(entity.get("id")), _int(entity.get("accountId"))
            if order_id is not None and account_id is not None:
                self.order_accounts[order_id] = account_id
        if event.entity_type not in DELIVERY_TYPES:
            return ()
        account_id = _int(entity.get("accountId"))
        if account_id is None:
            account_id = self._account_of_order(_int(entity.get("orderId")))
        if account_id is None or not self.account_names:
            return self.accounts
        name = self.account_names.get(account_id)
        return (name,) if name in self.accounts else ()

    def _learn_account(self, entity: Mapping[str, Any]) -> None:
        account_id, name = _int(entity.get("id")), entity.get("name")
        if account_id is not None and isinstance(name, str):
            self.account_names[account_id] = name

    def _account_of_order(self, order_id: int | None) -> int | None:
        if order_id is None:
            return None
        known = self.order_accounts.get(order_id)
        if known is None and self.order_account is not None:
            try:
                known = self.order_account(order_id)
            except Exception as exc:
                log.warning("order %s: its account is unknown (%s)", order_id, type(exc).__name__)
                return None
            if known is not None:
                self.order_accounts[order_id] = known
        return known


class FillListener:
    """UserSync's two callbacks: events and resyncs become coalesced delivery requests."""

    def __init__(
        self,
        client: redis.Redis,
        router: AccountRouter,
        send: Callable[[str], object],
        ttl_s: int = PENDING_TTL_S,
    ) -> None:
        self.client = client
        self.router = router
        self.send = send
        self.ttl_s = ttl_s
        self.queued = 0

    def on_entity(self, event: PropsEvent) -> None:
        accounts = self.router.accounts_of(event)
        if event.event_type == SNAPSHOT:
            return
        for account in accounts:
            self._request(account)

    def on_resync(self) -> None:
        for account in self.router.accounts:
            self._request(account)

    def _request(self, account: str) -> None:
        if request_delivery(self.client, self.send, account, self.ttl_s):
            self.queued += 1
            log.info("deliver queued for account %s", account)


def run_listener(
    settings: Settings,
    accounts: Iterable[str],
    stop_event: threading.Event,
    send_task: Callable[..., object],
    *,
    client: redis.Redis | None = None,
    order_account: OrderAccount | None = None,
) -> None:
    """Listen until ``stop_event``: user sync of the configured Tradovate user, each change on
    a watched account a coalesced ``tradefleet.orders.deliver`` (``send_task`` is Celery's
    ``app.send_task``)."""
    watched = tuple(accounts)
    if not watched:
        raise BadInput("name at least one account to listen for")
    client = client if client is not None else redis_client(settings.redis.url)
    queue = settings.queues.orders

    def send(account: str) -> object:
        return send_task(names.ORDERS_DELIVER, args=[account], queue=queue)

    listener = FillListener(client, AccountRouter(watched, order_account), send)
    access_token, user_id, ws_url = _tradovate(settings, client)
    UserSync(
        ws_url,
        token=access_token,
        user_id=user_id,
        on_entity=listener.on_entity,
        on_resync=listener.on_resync,
        stop=stop_event,
    ).run()


def _tradovate(
    settings: Settings, client: redis.Redis
) -> tuple[Callable[[], str], Callable[[], int], str]:
    """The token source, the user id and the user WebSocket URL of the configured user."""
    tokens = tokens_for(settings.tradovate, client)
    return tokens.access_token, tokens.user_id, settings.tradovate.ws_url


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
